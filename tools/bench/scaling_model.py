#!/usr/bin/python3
"""The data-parallel scaling model, from one dp_bench.sh run (its COLL, RESULT and PATH lines).

Step time = compute + exposed communication + the optimizer step:
  replicated   T = C + AR(M, p) + O
  buckets      T = C + max(AR(M, p) / b, AR(M, p) - (2/3) C) + O    (b buckets; the backward pass,
               2/3 of the FLOPs, hides all but the last bucket where the link is fast enough; on a
               CPU rank the reduction takes the cores the backward pass computes on: no gain)
  zero1        T = C + RS(M, p) + AG(M, p) + O / p                     (same bytes as an allreduce)
with M the gradient bytes, and a collective of n bytes on p ranks costing the ring's bandwidth term
plus a tree's latency term: AR = 2 (p-1)/p n / B + 2 log2(p) a, RS = AG = (p-1)/p n / B + log2(p) a.
a and B are fitted here from comm_bench (MPI on this machine's shared memory); for GPUs they come
from published figures (stated below). The model is checked against the step times measured here
on 2 and 4 ranks, then projects the GPT benchmark's efficiency C(1) / T(p) to 8-1024 GPUs.
Exits 1 when a run failed or zero1's optimizer state per rank is not within 5% of 1/N of replicated.
"""
import math
import statistics
import sys

med = statistics.median


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


coll, paths, results, cores = {}, {}, {}, 2
for line in open(sys.argv[1]):
    f = fields(line)
    if line.startswith("CORES"):
        cores = int(f["n"])
    elif line.startswith("COLL"):
        coll.setdefault((f["op"], int(f["ranks"])), []).append((int(f["bytes"]), float(f["seconds"])))
    elif line.startswith("RESULT"):
        results.setdefault(int(f["ranks"]), []).append(f)
    elif line.startswith("PATH"):
        paths.setdefault((f["path"], int(f["ranks"])), []).append(f)

bad = []
if not paths or not coll:
    print("no results: a run failed")
    sys.exit(1)
params = int(next(iter(results.values()))[0]["params"])
M = 4 * params  # float32 gradients


# ---- 1. the collectives: latency a (the 4 KiB time) and bus bandwidth B at the size of the
# gradients (the measured size nearest M: shared-memory bandwidth falls as buffers leave the caches,
# so one straight line through all sizes fits none of them) ----
def fit(op, p):
    pts = sorted(coll[(op, p)])
    a = pts[0][1]
    n, t = min(pts, key=lambda x: abs(math.log(x[0] / M)))
    factor = 2 * (p - 1) / p if op == "allreduce" else (p - 1) / p
    return a, factor * n / max(t - a, 1e-9)  # bus bandwidth: bytes each rank moves per second


print(f"## Collectives here (MPI, shared memory, {cores} cores): latency a (4 KiB), bus bandwidth B (at the size nearest the gradients)\n")
print("| op | ranks | a (us) | B (GB/s) | " + " | ".join(f"{n >> 10} KiB (ms)" if n < (1 << 20) else f"{n >> 20} MiB (ms)"
                                                  for n, _ in sorted(next(iter(coll.values())))) + " |")
print("|---|---|---|---|" + "---|" * len(next(iter(coll.values()))))
fits = {}
for (op, p) in sorted(coll):
    a, B = fits[(op, p)] = fit(op, p)
    print(f"| {op} | {p} | {a * 1e6:.1f} | {B / 1e9:.2f} | " + " | ".join(f"{t * 1e3:.3f}" for _, t in sorted(coll[(op, p)])) + " |")


def collective(op, n, p, a, B):
    if p == 1:
        return 0.0
    hops = math.ceil(math.log2(p))
    if op == "allreduce":
        return 2 * (p - 1) / p * n / B + 2 * hops * a
    return (p - 1) / p * n / B + hops * a


# ---- 2. the measured paths ----
def spread(v, fmt="{:.1f}"):
    return (fmt + " (" + fmt + "-" + fmt + ")").format(med(v), min(v), max(v))


print(f"\n## The GPT benchmark's data-parallel paths ({params} parameters, {M / 1e6:.1f} MB of float32 gradients), "
      f"{len(next(iter(paths.values())))} runs per cell\n")
print("| path | ranks | step ms | floor ms | over floor | optimizer state MB per rank | of replicated | peak RSS MB | exposed reduction ms | optimizer ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
measured = {}
for (path, p) in sorted(paths, key=lambda k: (k[1], ["replicated", "buckets", "zero1"].index(k[0]))):
    rs = paths[(path, p)]
    step = [float(r["trainer_step_ms"]) for r in rs]
    floor = [float(r["floor_step_ms"]) for r in rs]
    over = [float(r["over_floor"]) for r in rs]
    state = [float(r["optimizer_state_mb"]) for r in rs]
    rss = [float(r["peak_rss_mb"]) for r in rs]
    exposed = [float(r["exposed_reduce_ms"]) for r in rs]
    opt = [float(r["optimizer_ms"]) for r in rs]
    measured[(path, p)] = {"step": med(step), "exposed": med(exposed), "opt": med(opt), "state": med(state)}
    rep_state = med(float(r["optimizer_state_mb"]) for r in paths.get(("replicated", p), rs))
    share = med(state) / rep_state if rep_state > 0 else float("nan")
    print(f"| {path} | {p} | {spread(step)} | {spread(floor)} | {med(over):+.1%} | {med(state):.2f} | {share:.3f} (1/{p} = {1 / p:.3f}) | "
          f"{spread(rss, '{:.0f}')} | {spread(exposed, '{:.2f}')} | {spread(opt, '{:.2f}')} |")
    if any(r["loss_match"] != "1" for r in rs):
        bad.append(f"{path} on {p} ranks: the loss curve differs from the floor's")
    if path == "zero1" and abs(share * p - 1) > 0.05:
        bad.append(f"zero1 on {p} ranks: optimizer state {share:.3f} of replicated, not within 5% of 1/{p}")

# ---- 3. the model against the points measured here ----
one = measured.get(("replicated", 1))
if one:
    C1, O1 = one["step"] - one["opt"] - one["exposed"], one["opt"]
    print(f"\n## The model against this machine (compute C = {C1:.1f} ms and optimizer O = {O1:.2f} ms from 1 rank; "
          f"C x ranks/cores beyond {cores} ranks, which share the cores)\n")
    print("| path | ranks | exposed communication predicted / measured (ms) | step predicted / measured (ms) |")
    print("|---|---|---|---|")
    for (path, p), m in sorted(measured.items(), key=lambda k: (k[0][1], k[0][0])):
        if p == 1:
            continue
        a_ar, B_ar = fits[("allreduce", p)]
        a_rs, B_rs = fits[("reduce_scatter", p)]
        a_ag, B_ag = fits[("allgather", p)]
        C = C1 * max(1.0, p / cores)
        if path == "zero1":
            comm = 1e3 * (collective("reduce_scatter", M, p, a_rs, B_rs) + collective("allgather", M, p, a_ag, B_ag))
            exposed_pred = 1e3 * collective("reduce_scatter", M, p, a_rs, B_rs)  # the all-gather is in the optimizer phase
            step_pred = C + comm + O1 / p
        else:
            # On CPU ranks a bucket's reduction runs on the cores the backward pass computes on:
            # the step is compute + the whole allreduce whether or not it overlaps.
            comm = 1e3 * collective("allreduce", M, p, a_ar, B_ar)
            exposed_pred = comm if path == "replicated" else float("nan")
            step_pred = C + comm + O1
        e = f"{exposed_pred:.1f} / {m['exposed']:.1f}" if not math.isnan(exposed_pred) else f"(overlapped) / {m['exposed']:.1f}"
        print(f"| {path} | {p} | {e} | {step_pred:.0f} / {m['step']:.0f} ({step_pred / m['step'] - 1:+.0%}) |")

# ---- 4. projection to GPUs (published figures, not measured here) ----
# H100 SXM: 989 TFLOP/s dense bf16, sustained at 40% (MFU) for this small model; HBM3 3.35 TB/s for
# the optimizer (AdamW reads and writes 28 bytes per parameter). NVLink 4: 450 GB/s per direction
# per GPU, NCCL bus bandwidth taken as 80% of it, 8 us latency; between nodes, one 400 Gb/s NDR
# InfiniBand adapter per GPU (50 GB/s), 80% of it, 5 us per tree level. 8 GPUs a node.
flop_per_sample = 6 * (params - 128 * 256) * 128 + 12 * 4 * 128 * 128 * 256
C_gpu = 8 * flop_per_sample / (0.40 * 989e12)
O_gpu = 28 * params / 3.35e12


def gpu_link(p):
    return (8e-6, 0.8 * 450e9) if p <= 8 else (5e-6, 0.8 * 50e9)


print(f"\n## Projection: the GPT benchmark on H100 GPUs (C = {C_gpu * 1e6:.0f} us per step of 8 x 128 tokens at 40% of "
      f"989 TFLOP/s; M = {M / 1e6:.1f} MB; published link figures, see tools/bench/scaling_model.py)\n")
print("| GPUs | accumulation | replicated efficiency | buckets (4 MiB) efficiency | zero1 efficiency | optimizer state per GPU replicated / zero1 (MB) |")
print("|---|---|---|---|---|---|")
buckets = max(1, math.ceil(M / (4 << 20)))
for accumulation in (1, 16):
    for p in (8, 64, 256, 1024):
        a, B = gpu_link(p)
        C = C_gpu * accumulation  # the reduction comes once per optimizer step
        ar = collective("allreduce", M, p, a, B)
        rs = collective("reduce_scatter", M, p, a, B)
        rep = C + ar + O_gpu
        ovl = C + max(ar / buckets, ar - (2 / 3) * C_gpu) + O_gpu  # only the last micro-batch's backward hides it
        zero = C + 2 * rs + O_gpu / p
        print(f"| {p} | {accumulation} | {C / rep:.0%} | {C / ovl:.0%} | {C / zero:.0%} | "
              f"{8 * params / 1e6:.1f} / {8 * params / p / 1e6:.3f} |")

for b in bad:
    print("BELOW TARGET: " + b)
sys.exit(1 if bad else 0)
