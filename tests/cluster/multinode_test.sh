#!/usr/bin/env bash
# On 2 emulated nodes (tests/cluster/nodes.sh: network and UTS namespaces joined by a bridge, Open
# MPI over TCP between them): `hpctrain env` on 2 nodes x 2 ranks reports 2 nodes, local ranks 0-1
# on each node and the nodes' own host names; a 2-node x 2-rank training run ends bitwise equal to
# 1 node x 4 ranks, and its checkpoint, written by ranks on both nodes, verifies. Then a node is
# lost: its link goes down and every process on it is killed at once (no signal the job could
# act on, no checkpoint on the way out). The ranks on the surviving node end within the
# collective timeout, mpirun exits nonzero, nothing is left running; the run resumes on both
# nodes bitwise equal to the uninterrupted run, and elastically on the surviving node alone
# (4 -> 2 ranks, the same global batch) with a final eval loss within 1e-3 of it, having lost at
# most one save interval.
#   multinode_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
NODES=$SRC/tests/cluster/nodes.sh
if [ "$(id -u)" -ne 0 ] || ! command -v nsenter >/dev/null || ! ip netns add "hpct-probe-$$" 2>/dev/null; then
  echo "SKIP: needs root and network namespaces (ip netns add) to emulate nodes"; exit 0
fi
ip netns del "hpct-probe-$$"
source "$SRC/tests/common/script_lib.sh"  # SCALE, check, ranks_of, eval_loss, check_placement
emulated_nodes_dir hpct-nodes
"$NODES" start 2 || exit 1
cd "$work"
export OMPI_MCA_rmaps_base_oversubscribe=1

# 1. Where every rank is.
"$NODES" mpirun -np 4 --map-by ppr:2:node "$BUILD/hpctrain" env > env.out 2>&1
check_placement env.out 2 2

# 2. Training across the nodes and on one node.
"$BUILD/hpctrain-data" convert --from digits --out data --eval_fraction 0.2 --shards 2 >/dev/null || exit 1
max=600
args=(train --config "$SRC/jobs/mlp-digits.ini" --data.train "$work/data/train" --data.eval "$work/data/eval"
      --max_steps $max --save_strategy steps --save_steps 100 --save_total_limit 0 --logging_steps 50
      --eval_strategy steps --eval_steps $max --metric_for_best_model "" --early_stopping_patience 0
      --lr_scheduler_type constant --warmup_steps 0 --model.dropout 0 --ddp_timeout $((20 * SCALE)))
"$NODES" mpirun -np 4 --map-by ppr:2:node "$BUILD/hpctrain" "${args[@]}" --output_dir "$work/two-nodes" > two.out 2>&1
check "2 nodes x 2 ranks train to the end" '[ $? -eq 0 ] && [ -f two-nodes/checkpoint-$max/state.h5 ]'
"$NODES" mpirun -np 4 --host node1:4 "$BUILD/hpctrain" "${args[@]}" --output_dir "$work/one-node" > one.out 2>&1
check "1 node x 4 ranks trains to the end" '[ $? -eq 0 ] && [ -f one-node/checkpoint-$max/state.h5 ]'
check "the run on 2 nodes is bitwise equal to the run on 1 node (model and optimizer)" \
  'h5diff -q two-nodes/checkpoint-$max/state.h5 one-node/checkpoint-$max/state.h5 /model /model &&
   h5diff -q two-nodes/checkpoint-$max/state.h5 one-node/checkpoint-$max/state.h5 /optimizer /optimizer'
check "the checkpoint written from both nodes verifies" '"$BUILD/hpctrain-ckpt" verify two-nodes >/dev/null'

# 3. A node is lost mid-run. The ranks are frozen the moment checkpoint 300 is committed, so that
# the loss lands between two checkpoints however fast this machine trains.
"$NODES" mpirun -np 4 --map-by ppr:2:node "$BUILD/hpctrain" "${args[@]}" --output_dir "$work/lost" > lost.out 2>&1 &
mpirun_pid=$!
ranks() { ranks_of "$work/lost"; }
for _ in $(seq $((1200 * SCALE))); do [ -d lost/checkpoint-300 ] && break; sleep 0.05; done
frozen=$(ranks)
kill -STOP $frozen 2>/dev/null
check "the run reached checkpoint 300 before the loss" '[ -d lost/checkpoint-300 ] && [ -n "$frozen" ]'
"$NODES" crash node2
kill -CONT $frozen 2>/dev/null
t0=$(date +%s)
limit=$((60 * SCALE))
for _ in $(seq $((limit * 5))); do kill -0 $mpirun_pid 2>/dev/null || break; sleep 0.2; done
if kill -0 $mpirun_pid 2>/dev/null; then
  echo "mpirun still running after ${limit}s; killing it"; kill -KILL $mpirun_pid; code=timeout
else
  wait $mpirun_pid; code=$?
fi
waited=$(($(date +%s) - t0))
echo "the job ended ${waited}s after the loss (exit $code)"; tail -5 lost.out
check "the job ends within ${limit}s of the loss, nonzero" '[ "$code" != timeout ] && [ "$code" -ne 0 ]'
check "its output names the lost node" \
  'grep -Eq "lost communication with a remote daemon|never reached by rank [23] on node2" lost.out'
check "nothing of the job is left on the surviving node" '[ -z "$(ranks)" ]'
last=$(cat lost/latest 2>/dev/null); last=${last##*-}
reached=$(grep -o '"step":[0-9]*' lost/metrics.jsonl | tail -1 | cut -d: -f2)
echo "last committed checkpoint: ${last:-none}; last step logged before the loss: ${reached:-none}"
check "its last committed checkpoint is at most one save interval (100 steps) before the loss, and verifies" \
  '[ -n "$last" ] && [ -n "$reached" ] && [ $((reached - last)) -lt 100 ] && "$BUILD/hpctrain-ckpt" verify lost >/dev/null'
cp -a lost lost-copy
"$NODES" revive node2
# 3a. Resumed on both nodes (the lost one back): bitwise the uninterrupted run.
"$NODES" mpirun -np 4 --map-by ppr:2:node "$BUILD/hpctrain" "${args[@]}" --output_dir "$work/lost-copy" \
  --resume_from_checkpoint auto > resume2.out 2>&1
check "the run resumes on 2 nodes" '[ $? -eq 0 ] && grep -q "resumed from .*checkpoint-$last" resume2.out'
check "and ends bitwise equal to the uninterrupted run" \
  'h5diff -q two-nodes/checkpoint-$max/state.h5 lost-copy/checkpoint-$max/state.h5 /model /model'
# 3b. Resumed on the surviving node alone: 2 ranks with 2 accumulation steps, the same global batch.
"$NODES" mpirun -np 2 --host node1:2 "$BUILD/hpctrain" "${args[@]}" --output_dir "$work/lost" \
  --resume_from_checkpoint auto > resume1.out 2>&1
check "the run resumes elastically on the surviving node (4 -> 2 ranks)" \
  '[ $? -eq 0 ] && grep -q "resumed from .*checkpoint-$last" resume1.out && grep -q "gradient_accumulation_steps" resume1.out'
full=$(eval_loss two-nodes); shrunk=$(eval_loss lost)
echo "final eval loss: uninterrupted $full, resumed on 1 node $shrunk"
check "its final eval loss is within 1e-3 of the uninterrupted run's" \
  '/usr/bin/python3 -c "import sys; sys.exit(abs(float(\"$full\") - float(\"$shrunk\")) > 1e-3)"'

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
