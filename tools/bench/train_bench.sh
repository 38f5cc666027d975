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
# Exits nonzero when a loss curve differs from the floor's, when hpctrain's median is below 0.95x
# DDP or more than 3% behind its floor in any cell, or when the GPT on 1 rank reaches less than 85%
# of the sgemm rate. The 1-rank GPT step is also set against its own matrix products timed alone.
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

limits() {  # the limits, measured in this run with the same ATen and 1 thread (median of 5 timings):
  # the 1024^3 sgemm rate (GFLOP/s), and the time of the 1-rank GPT step's own matrix products alone
  # (the 8 x 128 tokens' Linear forward, both backward products, the attention's 6 batched products
  # and the tied head's 3): the part of the step that no training loop can shorten.
  /usr/bin/python3 - <<'PY'
import time, statistics, torch
torch.set_num_threads(1)
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
def sgemm():
    t = time.perf_counter()
    for _ in range(10): torch.mm(a, b)
    return 10 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9
M, d, heads, T, layers, vocab = 8 * 128, 256, 4, 128, 4, 256
ops = []
def linear(k, n):  # y = x W^T + b; dx = dy W; dW = dy^T x
    x, w, bias, dy = torch.randn(M, k), torch.randn(n, k), torch.randn(n), torch.randn(M, n)
    ops.extend([lambda: torch.addmm(bias, x, w.t()), lambda: dy.mm(w), lambda: dy.t().mm(x)])
for _ in range(layers):
    for k, n in ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)): linear(k, n)
    q, k_, v = (torch.randn(M // T * heads, T, d // heads) for _ in range(3))
    p, g = torch.randn(M // T * heads, T, T), torch.randn(M // T * heads, T, T)
    ops.extend([lambda: torch.bmm(q, k_.transpose(1, 2)), lambda: torch.bmm(p, v), lambda: torch.bmm(g, k_),
                lambda: torch.bmm(g.transpose(1, 2), q), lambda: torch.bmm(v, v.transpose(1, 2)), lambda: torch.bmm(p.transpose(1, 2), v)])
x, w, dl = torch.randn(M, d), torch.randn(vocab, d), torch.randn(M, vocab)
ops.extend([lambda: x.mm(w.t()), lambda: dl.mm(w), lambda: dl.t().mm(x)])
def step():
    t = time.perf_counter()
    for o in ops: o()
    return time.perf_counter() - t
for _ in range(3): sgemm(); step()
print(f"SGEMM gflops={statistics.median(sgemm() for _ in range(5)):.2f} gpt_gemm_ms={statistics.median(step() for _ in range(5)) * 1e3:.2f}")
PY
}

limits >>"$out"
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
limits >>"$out"

/usr/bin/python3 - "$out" <<'PY' || status=1
import statistics, sys
cells, sgemm, gemm_ms = {}, [], []
for line in open(sys.argv[1]):
    f = dict(kv.split("=") for kv in line.split()[1:] if "=" in kv)
    if line.startswith("SGEMM"):
        sgemm.append(float(f["gflops"])); gemm_ms.append(float(f["gpt_gemm_ms"])); continue
    c = cells.setdefault((f["model"], int(f["ranks"])), {"h": [], "fl": [], "d": [], "over": [], "ar": [], "raw": [], "match": True})
    if " ddp " in line:
        c["d"].append(float(f["samples_s"]))
    else:
        c["h"].append(float(f["trainer_samples_s"])); c["fl"].append(float(f["floor_samples_s"]))
        c["over"].extend(float(x) for x in f["over_rounds"].split(","))  # every paired round
        c["ar"].append(float(f["allreduce_ms"])); c["raw"].append(float(f["raw_allreduce_ms"]))
        c["weights"] = int(f["matmul_weights"]); c["match"] &= f["loss_match"] == "1"
limit = statistics.median(sgemm)
# FLOP per training sample: 6 x the weights that take part in a matrix product (forward and both
# backward products), per token for the GPT (4 layers, d_model 256, 128 tokens a sample, the
# position table left out, the tied token table counted once as the output head), + the attention
# scores and their use, 12 x layers x tokens x seq x d_model.
flop = {"mlp": lambda p: 6 * p, "gpt": lambda p: 6 * p * 128 + 12 * 4 * 128 * 128 * 256}
med = statistics.median
def spread(v): return f"{med(v):.0f} ({min(v):.0f}-{max(v):.0f})"
print(f"1-thread sgemm (1024^3, torch.mm), the limit per rank: {limit:.1f} GFLOP/s (before / after: "
      + " / ".join(f"{s:.1f}" for s in sgemm) + f"); {len(next(iter(cells.values()))['h'])} runs per cell")
print(f"the 1-rank GPT step's matrix products alone: {med(gemm_ms):.1f} ms (before / after: "
      + " / ".join(f"{g:.1f}" for g in gemm_ms) + ")\n")
print("| model | ranks | hpctrain samples/s | floor samples/s | hpctrain over floor | DDP samples/s | hpctrain / DDP | GFLOP/s per rank (of sgemm) | step / its matrix products | allreduce ms (hpctrain / raw MPI) | loss curve = floor |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
bad = []
for (m, n), c in sorted(cells.items()):
    if not c["h"] or not c["d"]:
        bad.append(f"{m} on {n} ranks: a run failed"); continue
    # The overhead: the median of every paired round of every run (REPS x 2 pairs).
    pairs = c["over"]
    ratio, over = med(c["h"]) / med(c["d"]), med(pairs)
    gflops = med(c["h"]) / n * flop[m](c["weights"]) / 1e9
    ar = f"{med(c['ar']):.3f} / {med(c['raw']):.3f}" if n > 1 else "-"
    # The step time against the time of its matrix products alone (the GPT on 1 rank only).
    vs_gemm = f"{8 * n / med(c['h']) * 1e3 / med(gemm_ms):.2f}x" if (m, n) == ("gpt", 1) else "-"
    print(f"| {m} | {n} | {spread(c['h'])} | {spread(c['fl'])} | {over:+.1%} ({min(pairs):+.1%} to {max(pairs):+.1%}, {len(pairs)} pairs) | "
          f"{spread(c['d'])} | {ratio:.2f}x | {gflops:.1f} ({gflops / limit:.0%}) | {vs_gemm} | {ar} | {'yes' if c['match'] else 'NO'} |")
    if not c["match"]: bad.append(f"{m} on {n} ranks: the loss curve differs from the floor's")
    if ratio < 0.95: bad.append(f"{m} on {n} ranks: {ratio:.2f}x DDP, below 0.95x")
    if (m, n) == ("gpt", 1) and gflops / limit < 0.85: bad.append(f"gpt on 1 rank: {gflops / limit:.0%} of sgemm, below 85%")
    if over > 0.03: bad.append(f"{m} on {n} ranks: {over:+.1%} behind the floor, more than 3%")
for b in bad: print("BELOW TARGET: " + b)
sys.exit(1 if bad else 0)
PY
exit $status
