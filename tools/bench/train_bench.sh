#!/usr/bin/env bash
# Training benchmark: hpctrain against its floor (a bare libtorch loop of the same model, data
# order and optimizer, in the same process) and against PyTorch DDP (gloo, the same ATen), for the
# MLP and the GPT on 1 and 2 ranks, one torch thread per rank. Every cell is measured REPS times
# (default 3), the runs interleaved (hpctrain+floor, then DDP, cell after cell, round after
# round), and within a run the Trainer and its floor alternate twice (Trainer-floor, floor-Trainer),
# the overhead being the median of the paired ratios; the table gives the median and the spread
# (min-max). The physical limit is measured in
# the same run: this machine's 1-thread 1024^3 sgemm rate (torch.mm, before and after the runs),
# and each cell's achieved FLOP/s per rank is given as a fraction of it.
#   tools/bench/train_bench.sh [BUILD_DIR]          REPS=5 tools/bench/train_bench.sh
# Exits nonzero when a loss curve differs from the floor's, or when hpctrain's median is below
# 0.95x DDP or more than 3% behind its floor in any cell.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
REPS=${REPS:-3}
[ -x "$BUILD/tools/train_bench" ] || { echo "build first: tools/build.sh" >&2; exit 2; }
[[ "$REPS" =~ ^[0-9]+$ ]] && [ "$REPS" -ge 1 ] && [ "$REPS" -le 50 ] ||
  { echo "REPS=$REPS: expected 1 to 50 runs per cell (3 or more for a median worth reading)" >&2; exit 2; }
MPI=(mpirun --bind-to core)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0

sgemm() {  # the 1-thread sgemm rate, GFLOP/s (median of 5 timings of 10 products)
  /usr/bin/python3 - <<'PY'
import time, statistics, torch
torch.set_num_threads(1)
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
for _ in range(3): torch.mm(a, b)
rates = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(10): torch.mm(a, b)
    rates.append(10 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9)
print(f"SGEMM gflops={statistics.median(rates):.2f}")
PY
}

sgemm >>"$out"
for rep in $(seq "$REPS"); do
  echo "round $rep of $REPS" >&2
  for model in mlp gpt; do
    steps=170; warm=10  # an MLP step is ~20 ms: 160 timed steps make each half of a round ~3 s
    [ "$model" = gpt ] && { steps=30; warm=5; }
    for np in 1 2; do
      "${MPI[@]}" -np $np "$BUILD/tools/train_bench" --model $model --steps $steps --warmup $warm --rounds 2 2>/dev/null \
        | grep '^RESULT' >>"$out" || status=1
      "${MPI[@]}" -np $np /usr/bin/python3 tools/bench/ddp_peer.py --model $model --steps $steps --warmup $warm \
        | grep '^RESULT' >>"$out" || status=1
    done
  done
done
sgemm >>"$out"

/usr/bin/python3 - "$out" <<'PY' || status=1
import statistics, sys
cells, sgemm = {}, []
for line in open(sys.argv[1]):
    f = dict(kv.split("=") for kv in line.split()[1:] if "=" in kv)
    if line.startswith("SGEMM"):
        sgemm.append(float(f["gflops"])); continue
    c = cells.setdefault((f["model"], int(f["ranks"])), {"h": [], "fl": [], "d": [], "over": [], "ar": [], "raw": [], "match": True})
    if " ddp " in line:
        c["d"].append(float(f["samples_s"]))
    else:
        c["h"].append(float(f["trainer_samples_s"])); c["fl"].append(float(f["floor_samples_s"]))
        c["over"].extend(float(x) for x in f["over_rounds"].split(","))  # every paired round
        c["ar"].append(float(f["allreduce_ms"])); c["raw"].append(float(f["raw_allreduce_ms"]))
        c["params"] = int(f["params"]); c["match"] &= f["loss_match"] == "1"
limit = statistics.median(sgemm)
# FLOP per training sample: 6 x parameters (forward and backward of every weight) for the MLP; for
# the GPT (4 layers, d_model 256, 128 tokens a sample) 6 x parameters x tokens + the attention
# scores and their use, 12 x layers x tokens x seq x d_model.
flop = {"mlp": lambda p: 6 * p, "gpt": lambda p: 6 * p * 128 + 12 * 4 * 128 * 128 * 256}
med = statistics.median
def spread(v): return f"{med(v):.0f} ({min(v):.0f}-{max(v):.0f})"
print(f"1-thread sgemm (1024^3, torch.mm), the limit per rank: {limit:.1f} GFLOP/s (before / after: "
      + " / ".join(f"{s:.1f}" for s in sgemm) + f"); {len(next(iter(cells.values()))['h'])} runs per cell\n")
print("| model | ranks | hpctrain samples/s | floor samples/s | hpctrain over floor | DDP samples/s | hpctrain / DDP | GFLOP/s per rank (of sgemm) | allreduce ms (hpctrain / raw MPI) | loss curve = floor |")
print("|---|---|---|---|---|---|---|---|---|---|")
bad = []
for (m, n), c in sorted(cells.items()):
    if not c["h"] or not c["d"]:
        bad.append(f"{m} on {n} ranks: a run failed"); continue
    # The overhead: the median of every paired round of every run (REPS x 2 pairs).
    pairs = c["over"]
    ratio, over = med(c["h"]) / med(c["d"]), med(pairs)
    gflops = med(c["h"]) / n * flop[m](c["params"]) / 1e9
    ar = f"{med(c['ar']):.3f} / {med(c['raw']):.3f}" if n > 1 else "-"
    print(f"| {m} | {n} | {spread(c['h'])} | {spread(c['fl'])} | {over:+.1%} ({min(pairs):+.1%} to {max(pairs):+.1%}, {len(pairs)} pairs) | "
          f"{spread(c['d'])} | {ratio:.2f}x | {gflops:.1f} ({gflops / limit:.0%}) | {ar} | {'yes' if c['match'] else 'NO'} |")
    if not c["match"]: bad.append(f"{m} on {n} ranks: the loss curve differs from the floor's")
    if ratio < 0.95: bad.append(f"{m} on {n} ranks: {ratio:.2f}x DDP, below 0.95x")
    if over > 0.03: bad.append(f"{m} on {n} ranks: {over:+.1%} behind the floor, more than 3%")
for b in bad: print("BELOW TARGET: " + b)
sys.exit(1 if bad else 0)
PY
exit $status
