# The shell tests' helpers (sourced by tests/slurm/slurm_jobs_test.sh and tests/cluster/*_test.sh).
#   SCALE          HPCTRAIN_TEST_TIME_SCALE (1 to 100, as for every test) rounded up: waits multiply by it
#   check NAME EXPR   counts and prints "ok: NAME" or "FAILED: NAME"; $passed and $failed
#   SLURM_CLIENT   how SLURM's commands run (empty: here; on emulated nodes: on their head)
#   wait_job ID [SECONDS]   until SLURM reports the job (or array task) ended; prints its JobState
#   ranks_of RUN_DIR   the pids of the ranks (hpctrain-main) training into RUN_DIR
#   eval_loss RUN_DIR  the last eval_loss in RUN_DIR/metrics.jsonl
#   emulated_nodes_dir PREFIX   $work: a new directory under $TMPDIR, home of the emulated nodes
#                  ($HPCT_NODES_DIR, reaped if this test dies); at exit the nodes are stopped and
#                  $work removed, or kept and named after a failure (needs $NODES: nodes.sh)
#   check_placement FILE NODES PER_NODE   checks `hpctrain env`'s lines in FILE: rank r is local rank
#                  r % PER_NODE on node<r / PER_NODE + 1>, and every rank counts NODES nodes
SCALE=$(awk -v s="${HPCTRAIN_TEST_TIME_SCALE:-1}" 'BEGIN { v = s + 0; if (v < 1 || v > 100) v = 1; print int(v) + (v > int(v)) }')
failed=0 passed=0
SLURM_CLIENT=()
check() { if eval "$2"; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi; }
wait_job() {
  local st=""
  for _ in $(seq $((${2:-240} * SCALE * 2))); do
    st=$("${SLURM_CLIENT[@]}" scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1)
    case $st in JobState=COMPLETED|JobState=FAILED|JobState=TIMEOUT|JobState=CANCELLED|JobState=NODE_FAIL) break ;; esac
    sleep 0.5
  done
  echo "$st"
}
ranks_of() {
  local p
  for p in $(pgrep -f -- "--output_dir $1"); do [[ $(readlink "/proc/$p/exe") == */hpctrain-main ]] && echo "$p"; done
}
eval_loss() { grep -o '"eval_loss":[-0-9.e+]*' "$1/metrics.jsonl" | tail -1 | cut -d: -f2; }
check_placement() {
  local file=$1 nodes=$2 per=$3 r
  grep '^rank' "$file" | sort
  for r in $(seq 0 $((nodes * per - 1))); do
    check "rank $r is local rank $((r % per))/$per on node$((r / per + 1)), which counts $nodes nodes" \
      'grep -Eq "^rank '$r'/'$((nodes * per))' +local rank '$((r % per))'/'$per' +host node'$((r / per + 1))' +nodes '$nodes'" '"$file"
  done
}
emulated_nodes_dir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1-XXXXXX")
  export HPCT_NODES_DIR=$work/cluster HPCT_NODES_OWNER=$$
  trap '"$NODES" stop >/dev/null 2>&1; if ((failed == 0)); then rm -rf "$work"; else echo "kept for a look: $work"; fi' EXIT
}
