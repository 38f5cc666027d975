#!/usr/bin/env bash
# On a real local SLURM cluster (tests/slurm/cluster.sh): slurm/train.sbatch runs a 2-rank job to
# completion; the same job, preempted with USR1, checkpoints, requeues itself, restarts with
# SLURM_RESTART_COUNT=1, resumes, and ends with parameters bitwise equal to the uninterrupted run.
# A job that SLURM requeues itself (TERM, then requeue) checkpoints on TERM and resumes exactly.
# A job with a 1-minute limit and no signal checkpoints before the limit, requeues and finishes.
# A second job into a run directory in use is refused. A 4-point sweep runs as a job array (one
# task preempted and resumed) and hpctrain-sweep report ranks it. USR1 and TERM at 10 moments of
# a job's start-up end in a requeue, never a failure, also for a task that dies of the signal
# before its first instruction.
#   slurm_jobs_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$1
SRC=$2
if ! command -v slurmctld >/dev/null || [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root and slurm-wlm (tools/install-deps.sh) to start a local cluster"; exit 0
fi
export HPCT_SLURM_DIR=${TMPDIR:-/tmp}/hpctrain-slurm-$$
# Ports no other cluster on this machine listens on (slurmctld on PORT, slurmd on PORT+1).
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
HPCT_SLURM_PORT=6917
while listening $HPCT_SLURM_PORT || listening $((HPCT_SLURM_PORT + 1)); do HPCT_SLURM_PORT=$((HPCT_SLURM_PORT + 2)); done
export HPCT_SLURM_PORT
trap '"$SRC/tests/slurm/cluster.sh" stop >/dev/null' EXIT  # also after a start that failed half-way
"$SRC/tests/slurm/cluster.sh" start || exit 1
export SLURM_CONF=$HPCT_SLURM_DIR/etc/slurm.conf
work=$(mktemp -d "${TMPDIR:-/tmp}/hpct-slurm-XXXXXX")
cd "$work"
source "$SRC/tests/common/script_lib.sh"  # check, wait_job, ranks_of
# settle: until no job is left in the queue (a job still COMPLETING can make the next step's
# launch fail on this one-node cluster).
settle() { for _ in $(seq 120); do [ -z "$(squeue -h 2>/dev/null)" ] && return; sleep 0.5; done; }


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
check "its checkpoint verifies" '"$BUILD/hpctrain-ckpt" verify '"$full_dir"' >/dev/null'

# 2. The same job preempted: USR1 to its tasks once it trains.
jid=$(RUNS=$work/runs-b sbatch --parsable -J pre -o "$work/pre-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}")
for _ in $(seq 600); do grep -q "step 200/1500" "$work/pre-$jid.out" 2>/dev/null && break; sleep 0.1; done
scancel --signal=USR1 "$jid"
state=$(wait_job "$jid")
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
check "the preempted job's checkpoints verify" \
  '(for c in '"$pre_dir"'/checkpoint-*; do "$BUILD/hpctrain-ckpt" verify "$c" >/dev/null || exit 1; done)'
steps=$(grep -c '"grad_norm"' "$pre_dir/metrics.jsonl")
check "metrics.jsonl has each logged step once (15)" '[ "$steps" -eq 15 ]'

settle
# 2b. A preemption that requeues by itself (PreemptMode=REQUEUE; here `scontrol requeue` from
# outside): TERM, KillWait (15 s here), requeue. The job checkpoints on TERM and resumes exactly.
jid=$(RUNS=$work/runs-r sbatch --parsable -J ext -o "$work/ext-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}")
# The ranks are stopped at their first logged step (seen in metrics.jsonl, which rank 0 writes
# itself: srun's copy of the output can lag by seconds on a loaded machine) while the requeue is on
# its way (on a loaded machine they finished the remaining steps before `scontrol requeue` acted):
# SLURM's TERM waits for them, and they go on, with it pending, once the job is no longer running
# (SLURM sends SIGCONT; so does the test).
for _ in $(seq 3000); do grep -qs grad_norm "$work/runs-r/ext-$jid/metrics.jsonl" && break; sleep 0.02; done
ranks=$(ranks_of "$work/runs-r/ext-$jid")
[ -n "$ranks" ] && kill -STOP $ranks
scontrol requeue "$jid"
for _ in $(seq 600); do scontrol show job "$jid" | grep -q "JobState=RUNNING" || break; sleep 0.1; done
[ -n "$ranks" ] && kill -CONT $ranks 2>/dev/null
state=$(wait_job "$jid")
out=$work/ext-$jid.out
check "the externally requeued job completes after one restart" \
  '[ "$state" = JobState=COMPLETED ] && scontrol show job '"$jid"' | grep -q "Restarts=1"'
check "it checkpointed on TERM and saw that SLURM requeues it" \
  'grep -q "signal 15 received: checkpointing" '"$out"' && grep -q "SLURM has requeued job '"$jid"' already" '"$out"
check "it resumed from that checkpoint" 'grep -q "resumed from .*checkpoint-" '"$out"
ext_dir=$(ls -d "$work"/runs-r/ext-*)
check "its parameters are bitwise those of the uninterrupted job" \
  'h5diff -q '"$full_dir"'/checkpoint-1500/state.h5 '"$ext_dir"'/checkpoint-1500/state.h5 /model /model'


settle
# 3. The time limit without a signal: a job checkpoints before its limit, requeues itself and
# finishes in later runs. (--signal=URG, ignored by hpctrain, replaces the script's USR1@120: no
# signal gives the warning.) Independent of the machine's speed: the time limit is whole minutes
# covering 1.5 x the first job's start-up (from its script's first line to its first step: seconds
# when idle, much more on a loaded machine) + 45 s, and time_limit_margin leaves each run about
# 15 s of training after start-up (never under 30 s). Its first run is frozen (SIGSTOP of its
# ranks) from its first steps until less than the margin is left, so it meets the limit however
# fast the machine trains then (a speed measured once does not hold: beside other tests under
# load, the first job trained at 104 steps/s and this one at ~400, and finished before its
# margin); the job's length is what the first job trained in 10 s (at least 3000 steps).
read -r rate startup < <(/usr/bin/python3 - "$full_dir/metrics.jsonl" "$work"/full-*.out <<'PY'
import datetime, json, re, sys
rate = [json.loads(l) for l in open(sys.argv[1])][-1]["train_steps_per_second"]
start = first = None
for line in open(sys.argv[2]):
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? (.*)", line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1))
    if start is None and m.group(3).startswith("hpctrain: job"):
        start = t  # the job script's first line: the job's start
    if "step 100/" in m.group(3):
        first = t
        break
startup = (first - start).total_seconds() - 100 / rate if start and first else 60.0
print(rate, max(1.0, startup))
PY
)
tl_steps=$(/usr/bin/python3 -c "print(max(3000, int($rate * 10 / 100) * 100))")
tl_minutes=$(/usr/bin/python3 -c "import math; print(max(1, math.ceil((1.5 * $startup + 45) / 60)))")
tl_margin=$(/usr/bin/python3 -c "print(int($tl_minutes * 60 - $startup - 15))")
echo "  the first job started in ${startup} s, trained $rate steps/s: a $tl_minutes-minute limit, margin $tl_margin s, $tl_steps steps"
jid=$(RUNS=$work/runs-t sbatch --parsable -J tl --time="$tl_minutes" --signal=URG@1 -o "$work/tl-%j.out" "$SRC/slurm/train.sbatch" \
      "${args[@]}" --max_steps "$tl_steps" --time_limit_margin "$tl_margin")
out=$work/tl-$jid.out
for _ in $(seq 3000); do grep -q "step 100/$tl_steps" "$out" 2>/dev/null && break; sleep 0.1; done
tl_line=$(grep -m1 "time limit: [0-9]* s left" "$out")
tl_left=$(grep -o "time limit: [0-9]* s left" <<< "$tl_line" | grep -o "[0-9]*")
tl_read=$(date -d "${tl_line:0:26}" +%s.%N)
ranks=$(ranks_of "$work/runs-t/tl-$jid")
[ -n "$ranks" ] && kill -STOP $ranks
sleep "$(/usr/bin/python3 -c "import time; print(max(0.0, $tl_read + $tl_left - $tl_margin + 3 - time.time()))")"
[ -n "$ranks" ] && kill -CONT $ranks
state=$(wait_job "$jid" $((480 + 240 * tl_minutes)))
check "the time-limited job completes (not TIMEOUT)" '[ "$state" = JobState=COMPLETED ]'
check "it checkpointed before the time limit" 'grep -q "before the job.s time limit" '"$out"
check "it requeued itself and resumed" 'grep -q "requeued" '"$out"' && grep -q "resumed from .*checkpoint-" '"$out"
check "it reached the last step ($tl_steps)" 'grep -q "step $tl_steps/$tl_steps" '"$out"
grep -h "time limit" "$out" | sed 's/^/  /'   # the figures, for the log
tl_dir=$(ls -d "$work"/runs-t/tl-*)
check "metrics.jsonl has each logged step once ($((tl_steps / 100)))" \
  '[ "$(grep -c grad_norm '"$tl_dir"'/metrics.jsonl)" -eq $((tl_steps / 100)) ]'

settle
# 4. The run-directory lock: a second job into a directory in use is refused, naming the holder.
# Then scancel (TERM) stops the first job after a checkpoint, and it stays cancelled.
l1=$(RUNS=$work/runs-l sbatch --parsable -J l1 -o "$work/l1-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}" \
     --output_dir "$work/shared-run" --max_steps 1000000)
for _ in $(seq 600); do grep -q "step 100/1000000" "$work/l1-$l1.out" 2>/dev/null && break; sleep 0.1; done
RUNS=$work/runs-l sbatch --wait -J l2 -o "$work/l2-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}" \
  --output_dir "$work/shared-run" >/dev/null
rc=$?
check "the second job into the same output_dir exits 2" '[ $rc -eq 2 ]'
check "its error names the holder (job $l1)" 'grep -q "is in use by job '"$l1"'" '"$work"'/l2-*.out'
check "the first job is undisturbed" 'grep -q "step 200/1000000" '"$work"'/l1-'"$l1"'.out && [ "$(scontrol show job '"$l1"' | grep -o "JobState=[A-Z]*")" = JobState=RUNNING ]'
scancel "$l1"
for _ in $(seq 300); do grep -q "requeued" "$work/l1-$l1.out" && break; sleep 0.1; done
sleep 1
check "scancel ends it as CANCELLED, not requeued" \
  '[ "$(wait_job "$l1")" = JobState=CANCELLED ] && scontrol show job '"$l1"' | grep -q "Restarts=0"'
# scancel sends TERM to the tasks and to the batch shell, which passes it on to srun as USR1:
# whichever reaches the ranks first is the one they name (USR1 won on a loaded machine).
check "it checkpointed on TERM and said it stays cancelled" \
  'grep -Eq "signal (15|10) received: checkpointing" '"$work"'/l1-'"$l1"'.out && grep -q "JobState=COMPLETING: cancelled.*so it is not requeued" '"$work"'/l1-'"$l1"'.out && ls -d '"$work"'/shared-run/checkpoint-* >/dev/null'

settle
# 5. A sweep of 4 points as a job array, 2 tasks at once; task 3 (a wide point, some seconds of
# training) is preempted (the signal reaches its batch shell only, which forwards it) and resumes.
printf '%s\n' "[sweep]" "name = tiny" "metric = eval_accuracy" "count = 2" "[grid]" \
  "model.hidden_sizes = 256,256 512,512" "[random]" "learning_rate = loguniform 1e-3 1e-2" > "$work/space.ini"
sweep_args=(--config "$SRC/jobs/mlp-digits.ini" --data.train "$work/data/train" --data.eval "$work/data/eval"
            --max_steps 3000 --logging_steps 100 --eval_strategy steps --eval_steps 300 --save_strategy steps
            --save_steps 100000 --early_stopping_patience 0 --model.dropout 0.1)
"$BUILD/hpctrain-sweep" plan "$work/space.ini" --config "$SRC/jobs/mlp-digits.ini" --runs "$work/sweeps" \
  > "$work/plan.txt" 2>&1
check "hpctrain-sweep plan counts 4 points and prints the array line" \
  'grep -q "4 points" '"$work"'/plan.txt && grep -q -- "--array=0-3%" '"$work"'/plan.txt'
aid=$(RUNS=$work/sweeps sbatch --parsable --array=0-3%2 -J sweep -o "$work/sweep-%A_%a.out" "$SRC/slurm/sweep.sbatch" \
      "$work/space.ini" "${sweep_args[@]}")
t3=$work/sweep-${aid}_3.out
for _ in $(seq 1800); do grep -q "step 200/3000" "$t3" 2>/dev/null && break; sleep 0.1; done
scancel --batch --signal=USR1 "${aid}_3"  # the batch shell alone: sweep.sbatch forwards it to the ranks
all_done=1
for t in 0 1 2 3; do [ "$(wait_job "${aid}_$t" 300)" = JobState=COMPLETED ] || all_done=0; done
check "all 4 array tasks complete" '[ $all_done -eq 1 ]'
check "task 3 was preempted and requeued by its own id" 'grep -q "job '"${aid}"'_3 requeued" '"$t3"
check "task 3 resumed from its own checkpoint" 'grep -q "resumed from .*point-003/checkpoint-" '"$t3"
check "only task 3 restarted" \
  'scontrol show job '"${aid}"'_3 | grep -q "Restarts=1" && scontrol show job '"${aid}"'_2 | grep -q "Restarts=0"'
check "each point recorded its name and values in trainer_state.json" \
  'for i in 0 1 2 3; do grep -q "tiny-00$i" '"$work"'/sweeps/tiny/point-00$i/trainer_state.json && grep -q trial_params '"$work"'/sweeps/tiny/point-00$i/trainer_state.json || exit 1; done'
"$BUILD/hpctrain-sweep" report "$work/sweeps/tiny" > "$work/report.txt" 2>&1
rc=$?
csv=$work/sweeps/tiny/report.csv
check "hpctrain-sweep report exits 0" '[ $rc -eq 0 ]'
check "the report lists 4 finished points" '[ "$(grep -c ",finished," '"$csv"')" -eq 4 ]'
check "the report ranks them by eval_accuracy, best first" \
  'tail -n +2 '"$csv"' | cut -d, -f4 | sort -g -r -c && [ "$(tail -n +2 '"$csv"' | cut -d, -f1 | tr "\n" " ")" = "1 2 3 4 " ]'
sed 's/^/  /' "$work/sweeps/tiny/report.md"   # for the log
check "the report has Markdown and a plot" '[ -s '"$work"'/sweeps/tiny/report.md ] && [ -s '"$work"'/sweeps/tiny/report.png ]'

settle
# 6. A signal at any moment of start-up, at 10 moments from the batch shell's first line (its
# traps are set) through srun, MPI and libtorch start-up to the first steps:
#   USR1 to every process of the job (scancel --full: the shell, srun and each task);
#   TERM to the batch shell alone (scancel --batch, as --signal=B:TERM@... sends it);
#   SLURM's own TERM-and-requeue (scontrol requeue, what a preemption with PreemptMode=REQUEUE does).
# Each job checkpoints or, before its first step, has nothing to save; it is requeued once and
# completes, never FAILED. The jobs overlap (the node declares 8 CPUs).
# requeued_once_or_by_slurm JOB Restarts=N: the signal's requeue is the job's one restart. A
# further one counts only when SLURM itself stopped a later start with TERM (the start then says
# "signal 15 received: checkpointing"): on a loaded node slurmctld retries the kill of a requeued
# job a minute later, and the retry can reach the job's next start (MessageTimeout, slurm.conf.in).
requeued_once_or_by_slurm() {
  local n=${2#Restarts=} log=$work/early-$1.out
  [ -n "$n" ] && [ "$n" -ge 1 ] || return 1
  [ "$(grep -c "hpctrain: job $1 restart" "$log")" -eq $((n + 1)) ] || return 1
  [ "$n" -eq 1 ] || [ "$(sed -n '/hpctrain: job '"$1"' restart 1 /,$p' "$log" | grep -c "signal 15 received: checkpointing")" -ge $((n - 1)) ]
}
early=()
for k in 0 1 2 3 4 5 6 7 8 9; do
  case $((k % 4)) in 0 | 2) how=usr1-full ;; 1) how=term-batch ;; 3) how=requeue ;; esac
  delay=$(/usr/bin/python3 -c "print(round(0.3 * $k, 2))")
  jid=$(RUNS=$work/runs-e sbatch --parsable -J early$k -o "$work/early-%j.out" "$SRC/slurm/train.sbatch" "${args[@]}" \
        --max_steps 1000)
  # Until the job runs (its script's first line is out). It can wait for a slot behind the jobs
  # before it; a signal to a job still pending is dropped without a word (a job pending for over
  # the minute this waited before ran untouched, seen once in 60 here).
  for _ in $(seq 15000); do [ -s "$work/early-$jid.out" ] && break; sleep 0.02; done
  if ! [ -s "$work/early-$jid.out" ]; then
    early+=("$jid:$how:$delay:never-started")
    continue
  fi
  sleep "$delay"
  case $how in
    usr1-full) scancel --full --signal=USR1 "$jid" ;;
    term-batch) scancel --batch --signal=TERM "$jid" ;;
    requeue) scontrol requeue "$jid" ;;
  esac
  early+=("$jid:$how:$delay:")
done
for e in "${early[@]}"; do
  IFS=: read -r jid how delay never <<< "$e"
  state=$(wait_job "$jid" 300)
  restarts=$(scontrol show job "$jid" 2>/dev/null | grep -o "Restarts=[0-9]*")
  check "$how ${delay} s into job $jid: requeued once, completed${never:+ (it never started within 300 s: not signalled)}" \
    '[ -z "$never" ] && [ "$state" = JobState=COMPLETED ] && requeued_once_or_by_slurm "$jid" "$restarts"'
  if [ -n "$never" ] || [ "$state" != JobState=COMPLETED ] || [ "$restarts" != Restarts=1 ]; then
    echo "  job $jid: $state $restarts"
    out=$work/early-$jid.out
  fi
done

# 7. A task that dies of the signal before it can handle it: the instant between a task's start and
# its first instruction, which a loaded node stretches (seen once in 10 start-up moments with two
# busy processes beside the test), made certain here by a task that starts slowly: a shell that
# sleeps and, in its first start, never reaches hpctrain: USR1's default action ends it or its
# sleep (then it fails; under load the signal can reach the sleep first). The batch shell, which
# holds the signal until every rank is ready, sees the step fail and requeues; the next start
# trains.
settle
slow=$work/slow-start.sh
printf '#!/bin/sh\n[ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] || { sleep 60; exit 1; }\nexec "%s" "$@"\n' "$BUILD/hpctrain" > "$slow"
chmod +x "$slow"
jid=$(HPCTRAIN=$slow RUNS=$work/runs-s sbatch --parsable -J slow -o "$work/slow-%j.out" "$SRC/slurm/train.sbatch" \
      "${args[@]}" --max_steps 300)
for _ in $(seq 3000); do [ -s "$work/slow-$jid.out" ] && break; sleep 0.02; done
for _ in $(seq 300); do [ "$(pgrep -fc "^/bin/sh $slow")" -ge 2 ] && break; sleep 0.1; done  # both tasks sleep, no handler
scancel --full --signal=USR1 "$jid"
state=$(wait_job "$jid" 300)
check "a task killed by USR1 before its first instruction: the job is requeued once and completes" \
  '[ "$state" = JobState=COMPLETED ] && scontrol show job '"$jid"' | grep -q "Restarts=1"'
check "the batch shell says why it requeued" 'grep -q "USR1 came before every rank could handle it" '"$work/slow-$jid.out"
[ "$state" = JobState=COMPLETED ] || out=$work/slow-$jid.out

echo "slurm: $passed passed, $failed failed"
[ $failed -eq 0 ] || { echo "--- logs in $work"; tail -30 "$out"; exit 1; }
rm -rf "$work"
