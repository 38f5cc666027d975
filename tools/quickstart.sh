#!/usr/bin/env bash
# The quick start: builds hpctrain and runs it on 2 MPI ranks on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh >/dev/null
MPIEXEC_FLAGS=(-np 2)
[ "$(id -u)" -eq 0 ] && MPIEXEC_FLAGS+=(--allow-run-as-root)
set -x
mpirun "${MPIEXEC_FLAGS[@]}" build/hpctrain env
