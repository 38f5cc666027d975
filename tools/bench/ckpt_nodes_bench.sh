#!/usr/bin/env bash
# Checkpoint cost across nodes: a synchronous save (CheckpointManager: checksums gathered to rank 0,
# state.h5 laid out by rank 0, every rank writing and flushing its share, commit) of states of
# several sizes, each split into few or many tensors, on 2 emulated nodes x 2 ranks
# (tests/cluster/nodes.sh: Open MPI over TCP through a bridge) and on 1 node x 4 ranks, the
# cells interleaved. Each cell is the median of REPS saves in one run (min-max across them). The
# save's cost should follow its bytes, not its tensor count: the table shows both. Root only.
#   tools/bench/ckpt_nodes_bench.sh [BUILD_DIR]         REPS=5 tools/bench/ckpt_nodes_bench.sh
# Exits nonzero when a save read back wrong data, or when a tensor costs more than 0.2 ms beyond
# its bytes ((time of 1000 tensors - time of 10 tensors of the same bytes) / 990: what rank 0's
# layout of one more dataset and its checksum cost).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
BUILD=$(cd "${1:-build}" && pwd)
REPS=${REPS:-3}
[ -x "$BUILD/tools/ckpt_bench" ] || { echo "build first: tools/build.sh" >&2; exit 2; }
[[ "$REPS" =~ ^[0-9]+$ ]] && [ "$REPS" -ge 1 ] && [ "$REPS" -le 20 ] ||
  { echo "REPS=$REPS: expected 1 to 20 saves per cell" >&2; exit 2; }
work=$(mktemp -d /tmp/hpctrain-ckpt-nodes-XXXXXX)
export HPCT_NODES_DIR=$work/cluster HPCT_NODES_OWNER=$$
trap '"$SRC/tests/cluster/nodes.sh" stop >/dev/null 2>&1; rm -rf "$work"' EXIT
"$SRC/tests/cluster/nodes.sh" start 2 >&2
export OMPI_MCA_rmaps_base_oversubscribe=1
out=$work/results
status=0
for mb in 1 100; do
  for tensors in 10 1000; do
    for where in nodes node; do
      place=(--map-by ppr:2:node)
      [ $where = node ] && place=(--host node1:4)
      "$SRC/tests/cluster/nodes.sh" mpirun -np 4 "${place[@]}" "$BUILD/tools/ckpt_bench" --mb $mb --tensors $tensors \
        --repeat "$REPS" --min_ratio 0 --dir "$work/ckpt" 2>&1 | grep '^RESULT' >> "$out" || status=1
    done
  done
done
/usr/bin/python3 - "$out" <<'PY' || status=1
import sys
rows = [dict(kv.split("=") for kv in line.split()[1:]) for line in open(sys.argv[1])]
print("| state MB | tensors | 2 nodes x 2 ranks: save s | 1 node x 4 ranks: save s | 2 nodes / 1 node | cost of a tensor beyond its bytes, ms (2 nodes / 1 node) |")
print("|---|---|---|---|---|---|")
cells, bad = {}, []
for r in rows:
    cells[(float(r["state_mb"]), int(r["tensors"]), int(r["nodes"]))] = r
    if r["correct"] != "1": bad.append(f"{r['state_mb']} MB in {r['tensors']} tensors on {r['nodes']} nodes read back wrong")
def t(r): return float(r["save_s"])
def cell(r): return f"{t(r):.3f} ({float(r['save_min_s']):.3f}-{float(r['save_max_s']):.3f})" if r else "-"
def per_tensor(mb, nodes):  # seconds a tensor costs beyond its bytes
    many, few = cells.get((mb, 1000, nodes)), cells.get((mb, 10, nodes))
    return (t(many) - t(few)) / 990 if many and few else None
for (mb, n, nodes), r in sorted(cells.items()):
    if nodes != 2: continue
    one = cells.get((mb, n, 1))
    extra = "-"
    if n == 1000:
        a, b = per_tensor(mb, 2), per_tensor(mb, 1)
        extra = " / ".join("-" if v is None else f"{v * 1e3:.3f}" for v in (a, b))
    print(f"| {mb:.0f} | {n} | {cell(r)} | {cell(one)} | {t(r) / t(one):.2f}x | {extra} |" if one else f"| {mb:.0f} | {n} | {cell(r)} | - | - | - |")
for mb in sorted({k[0] for k in cells}):
    for nodes in (1, 2):
        v = per_tensor(mb, nodes)
        if v is not None and v > 2e-4:
            bad.append(f"{mb:.0f} MB on {nodes} node(s): a tensor costs {v * 1e3:.3f} ms beyond its bytes, more than 0.2 ms")
for b in bad: print("BELOW TARGET: " + b)
sys.exit(1 if bad else 0)
PY
exit $status
