#!/usr/bin/env bash
# The quick start: builds hpctrain, makes a small data set and runs on 2 MPI ranks on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh >/dev/null
MPIEXEC_FLAGS=(-np 2)
[ "$(id -u)" -eq 0 ] && MPIEXEC_FLAGS+=(--allow-run-as-root)
set -x
build/hpctrain-data synth --kind classification --samples 4000 --shape 32 --classes 10 --shards 2 \
  --eval_fraction 0.2 --out output/quickstart/data
build/hpctrain-data inspect output/quickstart/data/train
mpirun "${MPIEXEC_FLAGS[@]}" build/hpctrain env
