#!/usr/bin/env bash
# On a real local SLURM cluster (tests/slurm/cluster.sh): slurm/train.sbatch runs a 2-rank job to
# completion; the same job, preempted with USR1, checkpoints, requeues itself, restarts with
# SLURM_RESTART_COUNT=1, resumes, and ends with parameters bitwise equal to the uninterrupted run.
#   slurm_jobs_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$1
SRC=$2
if ! command -v slurmctld >/dev/null || [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root and slurm-wlm (tools/install-deps.sh) to start a local cluster"; exit 0
fi
export HPCT_SLURM_DIR=/tmp/hpctrain-slurm-$$
"$SRC/tests/slurm/cluster.sh" start || exit 1
trap '"$SRC/tests/slurm/cluster.sh" stop >/dev/null' EXIT
export SLURM_CONF=$HPCT_SLURM_DIR/etc/slurm.conf
work=$(mktemp -d /tmp/hpct-slurm-XXXXXX)
cd "$work"
failed=0; passed=0
check() { if eval "$2"; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi; }

"$BUILD/hpctrain-data" convert --from digits --out data --eval_fraction 0.2 >/dev/null || exit 1
args=("$SRC/jobs/mlp-digits.ini" --data.train "$work/data/train" --data.eval "$work/data/eval" --max_steps 1500
      --model.hidden_sizes 512,512 --model.dropout 0.1 --save_strategy steps --save_steps 100000 --logging_steps 100
      --eval_strategy no
      --metric_for_best_model "" --early_stopping_patience 0)
export HPCTRAIN=$BUILD/hpctrain

# 1. A job that runs to completion.
RUNS=$work/runs-a sbatch --wait -J full -o "$work/full-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}" >/dev/null
rc=$?
check "sbatch --wait of a 2-rank job exits 0" '[ $rc -eq 0 ]'
check "its output says done" 'grep -q "done: metrics in" '"$work"'/full-*.out'
full_dir=$(ls -d "$work"/runs-a/full-*)
check "it ran on 2 ranks" 'grep -q "\[rank 0/2\]" '"$work"'/full-*.out'
check "its final checkpoint exists" '[ -f '"$full_dir"'/checkpoint-1500/state.h5 ]'

# 2. The same job preempted: USR1 to its tasks once it trains.
jid=$(RUNS=$work/runs-b sbatch --parsable -J pre -o "$work/pre-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}")
for _ in $(seq 600); do grep -q "step 200/1500" "$work/pre-$jid.out" 2>/dev/null && break; sleep 0.1; done
scancel --signal=USR1 "$jid"
state=""
for _ in $(seq 240); do
  state=$(scontrol show job "$jid" 2>/dev/null | grep -o 'JobState=[A-Z]*')
  [ "$state" = JobState=COMPLETED ] || [ "$state" = JobState=FAILED ] && break
  sleep 0.5
done
out=$work/pre-$jid.out
check "the preempted job completes" '[ "$state" = JobState=COMPLETED ]'
check "it was requeued once" 'scontrol show job '"$jid"' | grep -q "Restarts=1"'
check "all ranks checkpointed the agreed step" 'grep -q "checkpointing step" '"$out"
check "rank 0 requeued the job" 'grep -q "job '"$jid"' requeued" '"$out"
check "the second run saw SLURM_RESTART_COUNT=1" 'grep -q "restart 1 on" '"$out"
check "the second run resumed from the checkpoint" 'grep -q "resumed from .*checkpoint-" '"$out"
check "the output of both runs is kept (--open-mode=append)" '[ $(grep -c "hpctrain: job" '"$out"') -eq 2 ]'
pre_dir=$(ls -d "$work"/runs-b/pre-*)
check "parameters are bitwise those of the uninterrupted job" \
  'h5diff -q '"$full_dir"'/checkpoint-1500/state.h5 '"$pre_dir"'/checkpoint-1500/state.h5 /model /model'
steps=$(grep -c '"grad_norm"' "$pre_dir/metrics.jsonl")
check "metrics.jsonl has each logged step once (15)" '[ "$steps" -eq 15 ]'

echo "slurm: $passed passed, $failed failed"
[ $failed -eq 0 ] || { echo "--- logs in $work"; tail -30 "$out"; exit 1; }
rm -rf "$work"
