#!/usr/bin/env bash
# SLURM across 2 emulated nodes (tests/cluster/nodes.sh start 2 --slurm: slurmctld on the head, a
# slurmd per node, srun --mpi=pmix, Open MPI over TCP between the nodes): `srun -N2` places local
# ranks 0-1 on each node; slurm/train.sbatch runs unchanged with --nodes=2; USR1 to the job on 2
# nodes checkpoints, requeues and resumes bitwise equal to the uninterrupted job; and a node lost
# mid-job (link down, every process on it killed: no signal, no checkpoint on the way out) ends
# the step on the surviving node within 30 s + SLURM's node timeout (10 s here), after which the
# job, submitted with --no-kill, goes on on the node left, elastically from the last checkpoint
# (4 -> 2 ranks, the same global batch), losing at most one save interval, and ends within 1e-3
# of the uninterrupted job's eval loss. When the lost node is the one that runs the job script,
# the job's watch on the other node requeues it and a helper job shrinks it to the node left,
# where it resumes elastically as well. A one-node job that loses its node is requeued by SLURM
# (train.sbatch's --no-kill does not keep it running without a node).
#   slurm_nodes_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
NODES=$SRC/tests/cluster/nodes.sh
if [ "$(id -u)" -ne 0 ] || ! command -v slurmctld >/dev/null || ! command -v nsenter >/dev/null ||
   ! ip netns add "hpct-probe-$$" 2>/dev/null; then
  echo "SKIP: needs root, slurm-wlm and network namespaces (ip netns add) to emulate a SLURM cluster"; exit 0
fi
ip netns del "hpct-probe-$$"
source "$SRC/tests/common/script_lib.sh"  # SCALE, check, wait_job, ranks_of, eval_loss, check_placement
emulated_nodes_dir hpct-slurm-nodes
"$NODES" start 2 --slurm || exit 1
cd "$work"
S() { "$NODES" run head "$@"; }  # SLURM's clients, on the head
SLURM_CLIENT=(S)

# 1. Where srun puts every rank.
S srun -N2 --ntasks-per-node=2 --mpi=pmix "$BUILD/hpctrain" env > env.out 2>&1
check_placement env.out 2 2

# 2. slurm/train.sbatch on 2 nodes: to the end, preempted, and with a node lost.
"$BUILD/hpctrain-data" convert --from digits --out data --eval_fraction 0.2 --shards 2 >/dev/null || exit 1
max=600
args=("$SRC/jobs/mlp-digits.ini" --data.train "$work/data/train" --data.eval "$work/data/eval" --max_steps $max
      --save_strategy steps --save_steps 100 --save_total_limit 0 --logging_steps 50 --eval_strategy steps
      --eval_steps $max --metric_for_best_model "" --early_stopping_patience 0 --model.dropout 0)
submit() {  # NAME [sbatch options...]: submits 2 nodes x 2 ranks; prints the job id
  local name=$1
  shift
  S env HPCTRAIN="$BUILD/hpctrain" RUNS="$work/runs" sbatch --parsable --nodes=2 --ntasks-per-node=2 -J "$name" \
    -o "$work/$name-%j.out" "$@" "$SRC/slurm/train.sbatch" "${args[@]}"
}
full=$(submit full)
state=$(wait_job "$full")
check "train.sbatch --nodes=2 completes" '[ "$state" = JobState=COMPLETED ] && [ -f runs/full-$full/checkpoint-$max/state.h5 ]'
check "on 4 ranks over 2 nodes" 'grep -q "4 ranks on 2 nodes" full-$full.out'
check "its checkpoint, written from both nodes, verifies" '"$BUILD/hpctrain-ckpt" verify runs/full-$full >/dev/null'

pre=$(submit pre)
for _ in $(seq $((600 * SCALE))); do grep -q '"step":150' "runs/pre-$pre/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
S scancel --signal=USR1 "$pre"
state=$(wait_job "$pre")
check "USR1 to the 2-node job: it completes" '[ "$state" = JobState=COMPLETED ]'
check "after one requeue" 'S scontrol show job '"$pre"' | grep -q "Restarts=1" && grep -q "job '"$pre"' requeued" pre-'"$pre"'.out'
check "and resumes bitwise equal to the uninterrupted job" \
  'grep -q "resumed from .*checkpoint-" pre-'"$pre"'.out &&
   h5diff -q runs/full-'"$full"'/checkpoint-$max/state.h5 runs/pre-'"$pre"'/checkpoint-$max/state.h5 /model /model'

lost=$(submit lost)  # train.sbatch has --no-kill
for _ in $(seq $((1200 * SCALE))); do [ -d "runs/lost-$lost/checkpoint-300" ] && break; sleep 0.05; done
frozen=$(ranks_of "$work/runs/lost-$lost")
kill -STOP $frozen 2>/dev/null  # the loss lands between two checkpoints however fast this machine trains
check "the job reached checkpoint 300 before the loss" '[ -d runs/lost-$lost/checkpoint-300 ] && [ -n "$frozen" ]'
"$NODES" crash node2
kill -CONT $frozen 2>/dev/null
t0=$(date +%s)
limit=$(((30 + 10) * SCALE))
for _ in $(seq $((limit * 4))); do
  left=""
  for p in $frozen; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
  [ -z "$left" ] && break
  sleep 0.25
done
gone=$(($(date +%s) - t0))
echo "the first step's ranks on the surviving node were gone ${gone}s after the loss"
check "the step on the surviving node ends within ${limit}s of the loss" '[ -z "$left" ] && [ "$gone" -le "$limit" ]'
state=$(wait_job "$lost")
out=lost-$lost.out
grep -E "lost .* nodes|elastic resume|resumed from" "$out"
check "the job goes on on the node left and completes" \
  '[ "$state" = JobState=COMPLETED ] && grep -q "the job lost 1 of 2 nodes; going on on node1" '"$out"
check "resuming elastically from the last checkpoint before the loss (4 -> 2 ranks)" \
  'grep -q "elastic resume: 4 -> 2 ranks" '"$out"' && grep -q "resumed from .*checkpoint-300 " '"$out"
full_loss=$(eval_loss "runs/full-$full"); lost_loss=$(eval_loss "runs/lost-$lost")
echo "final eval loss: uninterrupted $full_loss, after the loss $lost_loss"
check "its final eval loss is within 1e-3 of the uninterrupted job's" \
  '/usr/bin/python3 -c "import sys; sys.exit(abs(float(\"$full_loss\") - float(\"$lost_loss\")) > 1e-3)"'


# 3. The node that runs the job script is lost. The job's watch on the other node submits a helper
# job and requeues the job once SLURM has the node DOWN; the helper shrinks the pending job to the
# node left, where it starts again and resumes elastically from the last checkpoint.
"$NODES" revive node2
bh=$(submit bh)
for _ in $(seq $((1200 * SCALE))); do [ -d "runs/bh-$bh/checkpoint-300" ] && break; sleep 0.05; done
frozen=$(ranks_of "$work/runs/bh-$bh")
kill -STOP $frozen 2>/dev/null
check "the job reached checkpoint 300 before losing node1" '[ -d runs/bh-$bh/checkpoint-300 ] && [ -n "$frozen" ]'
"$NODES" crash node1
kill -CONT $frozen 2>/dev/null
t0=$(date +%s)
limit=$(((10 + 60) * SCALE))
for _ in $(seq $((limit * 2))); do S scontrol show job "$bh" 2>/dev/null | grep -q "Restarts=1" && break; sleep 0.5; done
requeued=$(($(date +%s) - t0))
echo "the job was requeued ${requeued}s after node1 was lost"
check "the watch requeues the job within ${limit}s of losing the node that ran its script" \
  'S scontrol show job '"$bh"' | grep -q "Restarts=1" && [ "$requeued" -le "$limit" ]'
for _ in $(seq $((120 * SCALE))); do S squeue -h -j "$bh" -t R 2>/dev/null | grep -q . && break; sleep 1; done
restarted=$(($(date +%s) - t0))
echo "the requeued job ran again ${restarted}s after node1 was lost"
state=$(wait_job "$bh")
out=bh-$bh.out
grep -E "is down: requeueing|shrunk to|elastic resume|resumed from" "$out"
check "a helper job shrinks the requeued job to the node left, where it completes without node1" \
  '[ "$state" = JobState=COMPLETED ] && grep -q "requeued job $bh shrunk to the nodes left: 1 x 2 ranks" '"$out"' &&
   grep -q "hpctrain: job $bh restart 1 on node2," '"$out"
check "resuming elastically from checkpoint 300 (4 -> 2 ranks)" \
  'grep -q "elastic resume: 4 -> 2 ranks" '"$out"' && grep -q "resumed from .*checkpoint-300 " '"$out"
bh_loss=$(eval_loss "runs/bh-$bh")
echo "final eval loss: uninterrupted $full_loss, after losing the script's node $bh_loss"
check "its final eval loss is within 1e-3 of the uninterrupted job's" \
  '/usr/bin/python3 -c "import sys; sys.exit(abs(float(\"$full_loss\") - float(\"$bh_loss\")) > 1e-3)"'

# 4. A one-node job with --no-kill (as train.sbatch has it) that loses its node: SLURM requeues it;
# here it waits for node1, which it was pinned to.
"$NODES" revive node1
one=$(S sbatch --parsable --no-kill --requeue -N1 -w node1 -J one -o "$work/one-%j.out" --wrap "sleep 600")
for _ in $(seq $((60 * SCALE))); do S squeue -h -j "$one" -t R 2>/dev/null | grep -q . && break; sleep 0.5; done
"$NODES" crash node1
for _ in $(seq $(((10 + 60) * SCALE))); do S scontrol show job "$one" 2>/dev/null | grep -q "Restarts=1" && break; sleep 1; done
check "a one-node --no-kill job that loses its node is requeued by SLURM" \
  'S scontrol show job '"$one"' | grep -q "Restarts=1" && S scontrol show job '"$one"' | grep -q "JobState=PENDING"'
S scancel "$one"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
