#!/usr/bin/env bash
# Seconds per ES iteration on the real model: 1 process × 2 threads vs 2 MPI ranks × 1 thread
# (same config, same seed: the two runs must also write the same trajectory).
#
#   scripts/bench_mpi.sh                 # N = 8, 8 arith prompts (≤ 24 new tokens), 3 iterations
#   N=8 TRAIN=8 ITER=5 REPEAT=2 scripts/bench_mpi.sh
#
# Needs OpenMPI (mpirun) and the `mpi` feature (built here). Prints per-iteration means of
# `seconds` (whole iteration), `eval_seconds` (members + reward all-gather) and `update_seconds`
# from each run's metrics.jsonl, and the ratio. Other load on the machine shows up in the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8}
TRAIN=${TRAIN:-8}
ITER=${ITER:-3}
REPEAT=${REPEAT:-1}
BIN=target/release/evotune

cargo build --release -q -p evotune-cli --features mpi
MODEL=$("$BIN" fetch-model)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPIRUN=(mpirun --bind-to none -np 2)
if [ "$(id -u)" = 0 ]; then MPIRUN+=(--allow-run-as-root); fi
ARGS=(train --quiet --task arith --population "$N" --iterations "$ITER" --seed 7 --sigma 3e-3 --alpha 6e-3
  --eval-every 0 --task-opt "train_size=$TRAIN" --model "$MODEL")

echo "model $MODEL; N = $N, $TRAIN arith prompts, $ITER iterations, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPEAT"); do
  "$BIN" "${ARGS[@]}" --threads 2 --out "$OUT/p1t2-$r" >/dev/null 2>&1
  "${MPIRUN[@]}" "$BIN" "${ARGS[@]}" --threads 1 --out "$OUT/p2t1-$r" >/dev/null 2>&1
  cmp -s "$OUT/p1t2-$r/trajectory.jsonl" "$OUT/p2t1-$r/trajectory.jsonl" || { echo "trajectories differ" >&2; exit 1; }
done

python3 - "$OUT" "$REPEAT" <<'PY'
import json, sys
out, repeat = sys.argv[1], int(sys.argv[2])
def means(run):
    rows = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    rows = [r for r in rows if r["type"] == "iteration"]
    return {k: sum(r[k] for r in rows) / len(rows) for k in ("seconds", "eval_seconds", "update_seconds")}
for r in range(1, repeat + 1):
    a, b = means(f"p1t2-{r}"), means(f"p2t1-{r}")
    print(f"run {r}:")
    for name, m in (("1 process × 2 threads", a), ("2 ranks × 1 thread   ", b)):
        other = m["seconds"] - m["eval_seconds"] - m["update_seconds"]
        print(f"  {name}  {m['seconds']:7.2f} s/iteration  (members + all-gather {m['eval_seconds']:6.2f} s, "
              f"update {m['update_seconds']:5.2f} s, checksums + drift + log {other:5.2f} s)")
    print(f"  ratio (2×1 / 1×2)      {b['seconds'] / a['seconds']:7.3f}")
PY
