#!/usr/bin/env bash
# Builds hpctrain and runs the whole test suite (unit tests and multi-rank tests under mpiexec).
#   HPCTRAIN_TEST_TIME_SCALE=K   multiplies every time limit by K (1 to 100), for a loaded machine
# The tests' temporary files go to one directory, removed at the end when every test passed (kept,
# and named, when one failed); whatever a test left running (a rank, a test cluster) is stopped at
# the end, even after a test was killed at its time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
start=$(date +%s)
tools/build.sh
echo "build: $(( $(date +%s) - start )) s"
base=${TMPDIR:-/tmp}
TMPDIR=$(mktemp -d "$base/hpctrain-tests.XXXXXX")
export TMPDIR
build_abs=$(cd "$BUILD_DIR" && pwd)
cleanup() {
  local rc=$?
  # Processes started from the build tree that outlived their test (a killed test's ranks).
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [[ $exe == "$build_abs"/* ]] && kill -KILL "${p#/proc/}" 2>/dev/null && echo "run-tests: stopped leftover ${exe##*/} (pid ${p#/proc/})"
  done
  # A test cluster whose test was killed (slurm_jobs keeps its daemons' state under $TMPDIR).
  for d in "$TMPDIR"/hpctrain-slurm-*; do
    [[ -d $d ]] && HPCT_SLURM_DIR=$d tests/slurm/cluster.sh stop >/dev/null 2>&1 && echo "run-tests: stopped the test cluster in $d"
  done
  # Emulated nodes whose test was killed (their reaper stops them too, within a second).
  for d in "$TMPDIR"/hpct-nodes-*/cluster "$TMPDIR"/hpct-slurm-nodes-*/cluster; do
    [[ -d $d ]] && HPCT_NODES_DIR=$d tests/cluster/nodes.sh stop >/dev/null 2>&1 && echo "run-tests: stopped the emulated nodes in $d"
  done
  if [[ $rc -eq 0 ]]; then
    rm -rf "$TMPDIR"
  else
    echo "run-tests: the tests' temporary files are kept in $TMPDIR"
  fi
  exit $rc
}
trap cleanup EXIT
cd "$BUILD_DIR"
ctest --output-on-failure -j"$(nproc)" "$@"
