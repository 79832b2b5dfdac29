#!/usr/bin/env bash
# bench/seed_table.sh - the service-distillation table on this machine.
#
# Trains the LightNN student on Fashion-MNIST (batch 128, 1 epoch over
# --samples images) five ways, with cores pinned by taskset:
#   plain          cross-entropy, student on core 0
#   conventional   KD with the DeepNN teacher in the student's process (core 0)
#   service        KD through distillq-broker (core 0) and --workers teacher
#                  workers on core 1, with --augment so the teacher works on
#                  every batch (nothing can come from a cache)
#   replay         KD from the broker's LMDB cache (filled by an un-augmented
#                  service run first, not timed), no broker, no teacher
# and measures the teacher pool alone (distillq-predict --teacher through the
# same broker and workers). Prints samples/s, the ratio to plain training and
# the pipeline efficiency = service / min(plain, teacher pool) (target >= 0.9).
#
# usage: bench/seed_table.sh [--build DIR] [--samples N] [--workers N] [--out DIR]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=$top/build samples=12800 workers=1 out=/tmp/dq-seed-table
while [ $# -gt 0 ]; do
  case "$1" in
    --build) bdir=$2; shift ;;
    --samples) samples=$2; shift ;;
    --workers) workers=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "seed_table: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(nproc)" -ge 2 ] || { echo "seed_table: needs 2 cores" >&2; exit 1; }
for b in distillq-train distillq-broker distillq-teacher distillq-predict; do
  [ -x "$bdir/$b" ] || { echo "seed_table: $bdir/$b not built (scripts/build)" >&2; exit 1; }
done
data=/usr/share/datasets/fashion-mnist
deep=$top/models/deepnn-fmnist.model light=$top/models/lightnn-fmnist.model
rm -rf "$out"; mkdir -p "$out"
port=$((22000 + $$ % 20000))
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
sps() { sed -n 's/.*"samples_per_s":\([0-9.e+-]*\).*/\1/p' "$1" | tail -1; }

# A teacher checkpoint (throughput does not depend on how well it is trained).
taskset -c 0,1 "$bdir/distillq-train" --model "$deep" --data "$data" --limit-train 256 \
  --limit-test 128 --epochs 1 --threads 2 --quiet --out "$out/teacher.safetensors"
teacher=$out/teacher.safetensors
common=(--model "$light" --data "$data" --limit-train "$samples" --limit-test 128 --epochs 1
        --batch 128 --seed 42 --threads 1 --quiet)
kd=(--loss kd --T 2 --soft-weight 0.25 --ce-weight 0.75)

echo "plain student training (core 0) ..." >&2
taskset -c 0 "$bdir/distillq-train" "${common[@]}" --augment --out "$out/plain.safetensors"
echo "conventional distillation (core 0) ..." >&2
taskset -c 0 "$bdir/distillq-train" "${common[@]}" "${kd[@]}" --augment \
  --teacher-local "$deep:$teacher" --out "$out/conv.safetensors"

start_service() { # CACHE_ARGS...
  taskset -c 0 "$bdir/distillq-broker" --frontend "tcp://127.0.0.1:$port" \
    --backend "tcp://127.0.0.1:$((port + 1))" "$@" 2>> "$out/broker.log" &
  pids+=($!)
  for _ in $(seq 1 "$workers"); do
    taskset -c 1 "$bdir/distillq-teacher" --broker "tcp://127.0.0.1:$((port + 1))" \
      --service fmnist --model "$deep" --weights "$teacher" --threads 1 --capacity 2 \
      2>> "$out/workers.log" &
    pids+=($!)
  done
  for _ in $(seq 1 100); do
    n=$("$bdir/distillq-broker" --stats "tcp://127.0.0.1:$port" 2>/dev/null |
        grep -o '"workers": [0-9]*' | head -1 | grep -o '[0-9]*$' || true)
    [ "${n:-0}" -ge "$workers" ] && return 0
    sleep 0.1
  done
  echo "seed_table: workers did not join" >&2; exit 1
}
stop_service() { cleanup; pids=(); port=$((port + 2)); }

echo "teacher pool alone (workers on core 1) ..." >&2
start_service
t0=$(date +%s.%N)
taskset -c 0 "$bdir/distillq-predict" --teacher "tcp://127.0.0.1:$port/fmnist" --model "$deep" \
  --data "$data" --limit 5120 --output "$out/pool.npy" 2> /dev/null
t1=$(date +%s.%N)
pool=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", 5120 / (b - a)}')
echo "service distillation, --augment (student core 0, workers core 1) ..." >&2
taskset -c 0 "$bdir/distillq-train" "${common[@]}" "${kd[@]}" --augment \
  --teacher "tcp://127.0.0.1:$port/fmnist" --out "$out/service.safetensors"
stop_service

echo "filling the cache (un-augmented service run, not timed) ..." >&2
start_service --cache "$out/cache"
taskset -c 0 "$bdir/distillq-train" "${common[@]}" "${kd[@]}" \
  --teacher "tcp://127.0.0.1:$port/fmnist" --out "$out/fill.safetensors"
stop_service
echo "replay from the cache (core 0) ..." >&2
taskset -c 0 "$bdir/distillq-train" "${common[@]}" "${kd[@]}" --replay "$out/cache" \
  --out "$out/replay.safetensors"

plain=$(sps "$out/plain.safetensors.metrics.jsonl")
conv=$(sps "$out/conv.safetensors.metrics.jsonl")
svc=$(sps "$out/service.safetensors.metrics.jsonl")
rep=$(sps "$out/replay.safetensors.metrics.jsonl")
echo
echo "LightNN student, Fashion-MNIST, batch 128, $samples samples, 1 thread per process;"
echo "teacher DeepNN ($workers worker(s) on core 1); $(date -u +%F) on $(nproc) cores"
printf '%-40s %12s %10s\n' "mode" "samples/s" "vs plain"
row() { printf '%-40s %12.1f %10.3f\n' "$1" "$2" "$(awk -v a="$2" -v b="$plain" 'BEGIN{print a/b}')"; }
row "plain (cross-entropy)" "$plain"
row "conventional KD (teacher in-process)" "$conv"
row "service KD, --augment" "$svc"
row "replay KD from the LMDB cache" "$rep"
row "teacher pool alone (forward only)" "$pool"
eff=$(awk -v s="$svc" -v p="$plain" -v t="$pool" 'BEGIN{m = p < t ? p : t; printf "%.3f", s / m}')
echo "pipeline efficiency = service / min(plain, teacher pool) = $eff (target >= 0.9)"
