#!/usr/bin/env bash
# Background-save benchmark: 2 ranks train an MLP whose checkpoint holds over 500 MB of state
# (parameters and Adam moments), saving every 20 steps, in three modes: no saves, synchronous
# saves, background saves (save_async). The modes run interleaved, 3 times each; each cell is the
# median [min-max]. Beside them, measured in the same run: memcpy's rate (the limit of the host
# copy) and the disk's sequential write rate with fsync (the limit of the write).
# Exits nonzero when a run fails, a checkpoint does not verify, background saves make the mean
# step more than 1.10x slower than no saves, or training was blocked per save longer than the
# host copy (+10% and 10 ms).
#   tools/bench/ckpt_async_bench.sh [BUILD_DIR] [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
DIR=${2:-/tmp/hpctrain-async-bench}
[ -x "$BUILD/hpctrain" ] || { echo "build first: tools/build.sh" >&2; exit 2; }
MPI=(mpirun -np 2 --bind-to core)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
rm -rf "$DIR" && mkdir -p "$DIR"
# Chunked, compressed shards: the loader reads them through HDF5, whose lock the save shares.
"$BUILD/hpctrain-data" synth --samples 20000 --shape 512 --classes 10 --out "$DIR/data" --eval_fraction 0.05 \
  --chunk 256 --gzip 1 >/dev/null
exec /usr/bin/python3 - "$BUILD" "$DIR" "${MPI[@]}" <<'PY'
import json, os, re, shutil, statistics, subprocess, sys, time
import numpy as np

build, work, mpi = sys.argv[1], sys.argv[2], sys.argv[3:]
STEPS, EVERY, LOG = 80, 20, 10
base = [build + "/hpctrain", "train", "--config", "jobs/quickstart.ini", "--data.train", work + "/data/train",
        "--data.eval", work + "/data/eval", "--model.hidden_sizes", "4096,4096,4096,4096", "--model.dropout", "0",
        "--per_device_train_batch_size", "32", "--max_steps", str(STEPS), "--logging_steps", str(LOG),
        "--eval_strategy", "no", "--metric_for_best_model", "", "--lr_scheduler_type", "constant", "--warmup_ratio", "0",
        "--torch_threads", "1", "--save_total_limit", "1"]
modes = {"none": ["--save_strategy", "no"],
         "sync": ["--save_strategy", "steps", "--save_steps", str(EVERY), "--save_async", "false"],
         "background": ["--save_strategy", "steps", "--save_steps", str(EVERY), "--save_async", "true"]}

def physical_limits(state_bytes):
    # memcpy of a rank's share, best of 3; the disk: a sequential write of the whole state, fsync'd.
    src = np.ones(int(state_bytes / 2 / 4), dtype=np.float32)
    dst = np.empty_like(src)
    best = min(timeit(lambda: np.copyto(dst, src)) for _ in range(3))
    path = work + "/raw.bin"
    chunk = np.random.default_rng(0).integers(0, 255, 16 << 20, dtype=np.uint8).tobytes()
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(int(state_bytes // len(chunk))):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    disk = (state_bytes // len(chunk)) * len(chunk) / (time.perf_counter() - t)
    os.remove(path)
    return src.nbytes / best, disk

def timeit(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t

def run(mode, rep):
    out = f"{work}/{mode}-{rep}"
    p = subprocess.run(mpi + base + modes[mode] + ["--output_dir", out], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{mode} run {rep} failed:\n{p.stderr[-3000:]}")
    logs = [json.loads(l) for l in open(out + "/metrics.jsonl")]
    windows = [e for e in logs if "grad_norm" in e and e["step"] > LOG]  # the first window warms up
    step = sum(e["step_time"] for e in windows) / len(windows)
    wait = sum(e["data_wait_fraction"] * e["step_time"] for e in windows) / len(windows)
    saves = [tuple(map(float, m)) for m in re.findall(
        r"saved: ([\d.e+]+) MB, training blocked ([\d.e+-]+) s \(host copy ([\d.e+-]+) s\), written in ([\d.e+-]+) s"
        r".*HDF5 lock held ([\d.e+-]+) s", p.stderr)]
    periodic = saves[:STEPS // EVERY - 1]  # 20, 40, 60; the final save at 80 waits by design
    if mode != "none":
        v = subprocess.run([build + "/hpctrain-ckpt", "verify", out], capture_output=True, text=True)
        if v.returncode != 0:
            sys.exit(f"{mode} run {rep}: the checkpoint does not verify: {v.stdout}")
        if mode == "background" and "in the background" not in p.stderr:
            sys.exit("background mode wrote no checkpoint in the background")
    shutil.rmtree(out)
    return {"step": step, "wait": wait, "saves": periodic}

results = {m: [] for m in modes}
for rep in range(3):
    for mode in modes:
        results[mode].append(run(mode, rep))
        print(f"  {mode} run {rep + 1}: {results[mode][-1]['step'] * 1000:.0f} ms per step", file=sys.stderr, flush=True)

state_mb = results["sync"][0]["saves"][0][0]
memcpy, disk = physical_limits(state_mb * 1e6)

def cell(values, fmt):
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"

ms = lambda v: f"{v * 1000:.0f}"
step = {m: [r["step"] for r in results[m]] for m in modes}
ratio = {m: [s / n for s, n in zip(step[m], step["none"])] for m in modes}
blocked = {m: [statistics.mean(s[1] for s in r["saves"]) for r in results[m]] for m in ("sync", "background")}
copy = {m: [statistics.mean(s[2] for s in r["saves"]) for r in results[m]] for m in ("sync", "background")}
write = {m: [statistics.mean(s[3] for s in r["saves"]) for r in results[m]] for m in ("sync", "background")}
share_mb = state_mb / 2
print(f"Checkpoint state {state_mb:.0f} MB (a rank's share {share_mb:.0f} MB), a save every {EVERY} steps, 2 ranks, "
      f"3 interleaved runs per mode: median [min-max].")
print(f"Limits measured in this run: memcpy {memcpy / 1e9:.1f} GB/s (a share in {share_mb * 1e6 / memcpy * 1000:.0f} ms), "
      f"disk write with fsync {disk / 1e6:.0f} MB/s (the state in {state_mb * 1e6 / disk:.2f} s).")
print()
wait = {m: [r["wait"] for r in results[m]] for m in modes}
lock = {m: [statistics.mean(s[4] for s in r["saves"]) for r in results[m]] for m in ("sync", "background")}
us = lambda v: f"{v * 1e6:.0f}"
print("| mode | mean step ms | vs no saves | blocked per save ms | host copy ms | write per save s | HDF5 lock per save ms | data wait per step us |")
print("|---|---|---|---|---|---|---|---|")
print(f"| no saves | {cell(step['none'], ms)} | 1.00x | - | - | - | - | {cell(wait['none'], us)} |")
for m, name in (("sync", "synchronous saves"), ("background", "background saves")):
    print(f"| {name} | {cell(step[m], ms)} | {cell(ratio[m], lambda v: f'{v:.3f}x')} | {cell(blocked[m], ms)} | "
          f"{cell(copy[m], ms)} | {cell(write[m], lambda v: f'{v:.2f}')} | {cell(lock[m], ms)} | {cell(wait[m], us)} |")
bg_ratio = statistics.median(ratio["background"])
bg_blocked, bg_copy = statistics.median(blocked["background"]), statistics.median(copy["background"])
ok = bg_ratio <= 1.10 and bg_blocked <= 1.10 * bg_copy + 0.010
print()
print(f"background saves: {bg_ratio:.3f}x the step time without saves (goal <= 1.10x); blocked {bg_blocked * 1000:.0f} ms "
      f"per save against a host copy of {bg_copy * 1000:.0f} ms: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
