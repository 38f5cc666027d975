#!/usr/bin/env bash
# Data-parallel paths benchmark and the scaling model's inputs, in one run:
#  1. comm_bench on 2 and 4 ranks: allreduce, reduce-scatter and all-gather of 4 KiB to 64 MiB
#     (the latency and bandwidth terms of this machine's MPI);
#  2. the GPT benchmark model (train_bench --model gpt: 4 layers, d_model 256, 8 x 128 tokens per
#     rank, AdamW) for each path: replicated (one allreduce after the backward pass), buckets
#     (4 MiB, reduced on a communication thread during the backward pass) and zero1, on 1, 2 and 4
#     ranks, REPS rounds (default 3) interleaved path after path, each run its own process (its
#     peak RSS is its own) with the floor (a bare libtorch loop, one allreduce) alternating in it;
#  3. tools/bench/scaling_model.py: the table (median and range), the fit, the model checked against
#     the measured points, and its projection to 8-1024 GPUs.
#   tools/bench/dp_bench.sh [BUILD_DIR]          REPS=5 tools/bench/dp_bench.sh
# Exits nonzero when a run fails, a loss curve differs from its floor's, a collective gives a wrong
# result, or zero1's optimizer state per rank is not within 5% of 1/N of the replicated path's.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
REPS=${REPS:-3}
for t in train_bench comm_bench; do
  [ -x "$BUILD/tools/$t" ] || { echo "build first: tools/build.sh ($BUILD/tools/$t is missing)" >&2; exit 2; }
done
[[ "$REPS" =~ ^[0-9]+$ ]] && [ "$REPS" -ge 1 ] && [ "$REPS" -le 20 ] ||
  { echo "REPS=$REPS: expected 1 to 20 runs per cell (3 or more for a median worth reading)" >&2; exit 2; }
CORES=$(nproc --all)  # --all: nproc alone follows OMP_NUM_THREADS
MPI=(mpirun)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
# One core a rank while there are enough; beyond them the ranks share the cores, unbound.
bind() { if [ "$1" -le "$CORES" ]; then echo "--bind-to core"; else echo "--oversubscribe --bind-to none"; fi; }
export OMP_NUM_THREADS=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
echo "CORES n=$CORES" >>"$out"
for np in 2 4; do
  echo "collectives on $np ranks" >&2
  "${MPI[@]}" $(bind $np) -np $np "$BUILD/tools/comm_bench" --max_mib 64 2>/dev/null | grep '^COLL' >>"$out" || status=1
done
for rep in $(seq "$REPS"); do
  for np in 1 2 4; do
    for path in replicated buckets zero1; do
      [ $np -eq 1 ] && [ $path != replicated ] && continue  # one rank: the paths are the same step
      echo "round $rep of $REPS: $path on $np ranks" >&2
      "${MPI[@]}" $(bind $np) -np $np "$BUILD/tools/train_bench" --model gpt --path $path --steps 30 --warmup 5 --rounds 1 2>/dev/null \
        | grep -E '^(PATH|RESULT)' >>"$out" || status=1
    done
  done
done
/usr/bin/python3 tools/bench/scaling_model.py "$out" || status=1
exit $status
