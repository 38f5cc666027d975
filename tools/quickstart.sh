#!/usr/bin/env bash
# The quick start: builds hpctrain, makes a small data set and trains an MLP on 2 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "quickstart: building hpctrain (about 3 minutes on 2 cores the first time)"
tools/build.sh
MPIEXEC_FLAGS=(-np 2)
[ "$(id -u)" -eq 0 ] && MPIEXEC_FLAGS+=(--allow-run-as-root)
set -x
build/hpctrain-data synth --kind classification --samples 4000 --shape 32 --classes 10 --noise 2.5 --shards 2 \
  --eval_fraction 0.2 --out output/quickstart/data
mpirun "${MPIEXEC_FLAGS[@]}" build/hpctrain train --config jobs/quickstart.ini
build/hpctrain-ckpt verify output/quickstart/run
set +x
tools/hpctrain-plot output/quickstart/run/metrics.jsonl >/dev/null
echo "metrics: output/quickstart/run/metrics.jsonl; state: output/quickstart/run/trainer_state.json; plot: output/quickstart/run/metrics.png; checkpoint: output/quickstart/run/$(cat output/quickstart/run/latest)"
