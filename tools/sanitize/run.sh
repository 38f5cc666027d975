#!/usr/bin/env bash
# Builds hpctrain with sanitizers into $BUILD_DIR (build-asan, build-tsan) and runs what they check.
#   tools/sanitize/run.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer (CI): the unit tests
#                                of every component, the multi-rank tests (1, 2, 4 ranks) and a
#                                real 2-rank train and resume (HPCTRAIN_SANITIZE_FUZZ=1: and the
#                                checkpoint fuzz test)
#   tools/sanitize/run.sh tsan   ThreadSanitizer: the loader, watchdog, signal, checkpoint
#                                (background save) and gradient-bucket tests, the threads hpctrain
#                                runs beside training
# Findings fail the run; suppressions (tools/sanitize/*.supp) cover libtorch and Open MPI only.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$(pwd)
kind=${1:-asan}
case $kind in
  asan) flags=address,undefined ;;
  tsan) flags=thread ;;
  *) echo "usage: tools/sanitize/run.sh asan|tsan" >&2; exit 2 ;;
esac
BUILD_DIR=${BUILD_DIR:-build-$kind}
start=$(date +%s)
BUILD_DIR=$BUILD_DIR tools/build.sh -DHPCTRAIN_SANITIZE=$flags
echo "sanitize $kind: build $(( $(date +%s) - start )) s"

# Leaks are checked at every process's exit with full stacks (fast_unwind_on_malloc=0: the
# suppressions name libraries deep in a stack); keep_modules.so keeps dlopen'd modules named.
cc -shared -fPIC -O2 -o "$BUILD_DIR/keep_modules.so" tools/sanitize/keep_modules.c
preload=$src/$BUILD_DIR/keep_modules.so
[[ $BUILD_DIR == /* ]] && preload=$BUILD_DIR/keep_modules.so
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:exitcode=99:fast_unwind_on_malloc=0:verify_asan_link_order=0"
export LSAN_OPTIONS="suppressions=$src/tools/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=98:suppressions=$src/tools/sanitize/ubsan.supp"
# history_size=7 (the largest): the other access of a race must keep its stack, or a suppression
# that names the library it happened in cannot match (seen here: Open MPI's copy into a background
# save's gather buffer, made on the training thread, reported with "failed to restore the stack").
export TSAN_OPTIONS="halt_on_error=1:exitcode=97:second_deadlock_stack=1:history_size=7:suppressions=$src/tools/sanitize/tsan.supp"
# Sanitized programs run slower: every time limit of the tests is tripled.
export HPCTRAIN_TEST_TIME_SCALE=${HPCTRAIN_TEST_TIME_SCALE:-3}
base=${TMPDIR:-/tmp}
TMPDIR=$(mktemp -d "$base/hpctrain-$kind.XXXXXX")
export TMPDIR
trap 'rc=$?; [[ $rc -eq 0 ]] && rm -rf "$TMPDIR" || echo "sanitize: files kept in $TMPDIR"; exit $rc' EXIT

cd "$BUILD_DIR"
t0=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { local np=$1; shift; mpiexec -n "$np" "$@"; }  # ranks inherit the environment (one node)
[[ $kind == asan ]] && export LD_PRELOAD=$preload
if [[ $kind == asan ]]; then
  # The unit tests of every component (the end-to-end cases of cli_test run the real binaries over
  # and over: the checkpoint fuzz test and the run below cover those), then the multi-rank tests.
  for t in core_test config_test ckpt_test data_test; do echo "sanitize: $t"; tests/$t --gtest_brief=1; done
  ctest --output-on-failure -j"$(nproc)" -L mpi
  # HPCTRAIN_SANITIZE_FUZZ=1: the checkpoint fuzz test too, every third case (a sanitized resume
  # takes ~9 s here, all 123 would take 18 minutes); not yet in CI (its first run found only
  # HDF5's damaged-header leak, now suppressed; a clean pass is still to be shown).
  if [[ ${HPCTRAIN_SANITIZE_FUZZ:-0} == 1 ]]; then
    HPCTRAIN_FUZZ_EVERY=3 tests/cli_test --gtest_filter='CheckpointFuzz.*'
  fi
  # A real run: 2 ranks train, evaluate and save in the background; then resume to the end.
  d=$TMPDIR/run
  ./hpctrain-data synth --samples 4000 --shape 32 --classes 8 --out "$d/data" --eval_fraction 0.1 >/dev/null
  args=(--config "$src/jobs/quickstart.ini" --output_dir "$d/out" --data.train "$d/data/train" --data.eval "$d/data/eval"
        --save_steps 20 --eval_strategy steps --eval_steps 40 --logging_steps 20 --resume_from_checkpoint auto)
  mpi 2 ./hpctrain train "${args[@]}" --max_steps 60 > "$d/first.log" 2>&1 || { cat "$d/first.log"; exit 1; }
  mpi 2 ./hpctrain train "${args[@]}" --max_steps 120 > "$d/second.log" 2>&1 || { cat "$d/second.log"; exit 1; }
  grep -q "resumed from $d/out/checkpoint-60" "$d/second.log" || { cat "$d/second.log"; echo "sanitize: no resume"; exit 1; }
  ./hpctrain-ckpt verify "$d/out"
  echo "sanitize asan: a 2-rank train to step 60 and its resume to step 120: clean"
else
  # The threads beside training: the loader's reader thread, the watchdog, the signal flags, the
  # background checkpoint writer, the gradient buckets' communication thread; then all of them at
  # once in a real job.
  tests/data_test --gtest_brief=1 --gtest_filter='Loader.*:Reader.*'
  tests/core_test --gtest_brief=1 --gtest_filter='Signals.*:SignalFlags.*'
  mpi 2 tests/dist_test --gtest_brief=1
  mpi 2 tests/ckpt_mpi_test --gtest_brief=1
  # The communication thread reducing gradient buckets while autograd's hooks post them.
  mpi 2 tests/trainer_mpi_test --gtest_brief=1 --gtest_filter='DataParallelPaths.*'
  # A real 2-rank job: background saves every 20 steps, evaluations, the loader's thread, the
  # watchdog; USR1 (forwarded by mpiexec) preempts it mid-run (a checkpoint, exit 4); it resumes.
  d=$TMPDIR/run
  ./hpctrain-data synth --samples 4000 --shape 32 --classes 8 --out "$d/data" --eval_fraction 0.1 >/dev/null
  args=(--config "$src/jobs/quickstart.ini" --output_dir "$d/out" --data.train "$d/data/train" --data.eval "$d/data/eval"
        --save_steps 20 --eval_strategy steps --eval_steps 40 --logging_steps 20 --max_steps 400
        --resume_from_checkpoint auto)
  mpiexec -n 2 ./hpctrain train "${args[@]}" > "$d/first.log" 2>&1 &  # mpiexec itself: it forwards USR1
  job=$!
  scale=${HPCTRAIN_TEST_TIME_SCALE%.*}  # a whole factor for bash's arithmetic, at least 1
  for ((i = 0; i < 600 * (${scale:-1} > 1 ? ${scale:-1} : 1); ++i)); do
    grep -q "step 100/400" "$d/first.log" && break
    kill -0 $job 2>/dev/null || break
    sleep 0.1
  done
  kill -USR1 $job 2>/dev/null || true
  rc=0; wait $job || rc=$?
  [[ $rc -eq 4 ]] || { cat "$d/first.log"; echo "sanitize: the preempted run exited $rc, expected 4"; exit 1; }
  grep -q "received: checkpointing step" "$d/first.log" || { cat "$d/first.log"; echo "sanitize: no preemption checkpoint"; exit 1; }
  mpi 2 ./hpctrain train "${args[@]}" > "$d/second.log" 2>&1 || { cat "$d/second.log"; exit 1; }
  grep -q "resumed from $d/out/checkpoint-" "$d/second.log" || { cat "$d/second.log"; echo "sanitize: no resume"; exit 1; }
  ./hpctrain-ckpt verify "$d/out"
  echo "sanitize tsan: a 2-rank job preempted by USR1 at $(grep -o 'checkpointing step [0-9]*' "$d/first.log" | head -1) and resumed to step 400: clean"
fi
echo "sanitize $kind: tests $(( $(date +%s) - t0 )) s"
