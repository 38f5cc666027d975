#!/usr/bin/env bash
# Builds hpctrain and runs the whole test suite (unit tests and multi-rank tests under mpiexec).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
start=$(date +%s)
tools/build.sh
echo "build: $(( $(date +%s) - start )) s"
cd "$BUILD_DIR"
ctest --output-on-failure -j"$(nproc)" "$@"
