#!/usr/bin/env bash
# Checkpoint benchmark table: hpctrain's synchronous checkpoint save (host copy, every rank writing
# its share of state.h5, fsync, commit) and load for about 100 MB and 1 GB of state on 1 and 2
# ranks, beside a raw sequential write of the same bytes with fsync on the same disk, interleaved,
# 3 times each (median, with the range). Exits nonzero if a run read back wrong data or its median
# wrote below 50% of the raw rate.
#   tools/bench/ckpt_bench.sh [BUILD_DIR] [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
DIR=${2:-/tmp/hpctrain-ckpt-bench}
MPI=(mpirun)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
status=0
echo "| ranks | state MB | raw write MB/s (fsync) | checkpoint write MB/s (fsync, commit) | ratio | load MB/s per rank |"
echo "|---|---|---|---|---|---|"
# Each cell: the median of 3 interleaved runs [min-max].
for np in 1 2; do
  for mb in 100 1000; do
    line=$("${MPI[@]}" -np $np "$BUILD/tools/ckpt_bench" --mb $mb --dir "$DIR" --repeat 3 2>/dev/null | grep '^RESULT') || status=1
    eval "$(echo "$line" | cut -d' ' -f2-)"
    echo "| $ranks | $state_mb | $raw_write_mbs [$raw_min-$raw_max] | $ckpt_write_mbs [$ckpt_min-$ckpt_max] | $ratio [$ratio_min-$ratio_max] | $load_mbs_per_rank |"
  done
done
exit $status
