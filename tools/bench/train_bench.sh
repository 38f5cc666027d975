#!/usr/bin/env bash
# Training benchmark table: hpctrain vs its floor (a bare libtorch loop) vs PyTorch DDP (gloo), for
# the MLP and the GPT on 1 and 2 ranks, one torch thread per rank, all measured in this run.
# Exits nonzero when hpctrain's loss curve differs from the floor's (train_bench checks it).
#   tools/bench/train_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
[ -x "$BUILD/tools/train_bench" ] || { echo "build first: tools/build.sh" >&2; exit 2; }
MPI=(mpirun --bind-to core)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
out=$(mktemp)
status=0
for model in mlp gpt; do
  steps=60; warm=10
  [ "$model" = gpt ] && { steps=20; warm=5; }
  for np in 1 2; do
    "${MPI[@]}" -np $np "$BUILD/tools/train_bench" --model $model --steps $steps --warmup $warm | grep '^RESULT' >>"$out" || status=1
    "${MPI[@]}" -np $np /usr/bin/python3 tools/bench/ddp_peer.py --model $model --steps $steps --warmup $warm \
      | grep '^RESULT' >>"$out" || status=1
  done
done
/usr/bin/python3 - "$out" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=") for kv in line.split()[1:] if "=" in kv)
    key = (f["model"], int(f["ranks"]))
    rows.setdefault(key, {}).update({("ddp_" if " ddp " in line else "") + k: v for k, v in f.items()})
print("| model | ranks | hpctrain samples/s | floor samples/s | hpctrain step time over floor | DDP samples/s | hpctrain / DDP | allreduce ms (hpctrain / raw MPI) | 1->2 scaling | loss curve = floor |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (m, n), r in sorted(rows.items()):
    h, fl, d = float(r["trainer_samples_s"]), float(r["floor_samples_s"]), float(r["ddp_samples_s"])
    one = rows.get((m, 1))
    scale = f"{h / (2 * float(one['trainer_samples_s'])):.0%}" if n == 2 and one else "-"
    ar = f"{float(r['allreduce_ms']):.3f} / {float(r['raw_allreduce_ms']):.3f}" if n > 1 else "-"
    print(f"| {m} | {n} | {h:.0f} | {fl:.0f} | {fl / h - 1:+.1%} | {d:.0f} | {h / d:.2f}x | {ar} | {scale} | "
          f"{'yes' if r['loss_match'] == '1' else 'NO'} (max rel diff {float(r['loss_max_rel_diff']):.1e}) |")
PY
rm -f "$out"
exit $status
