#!/usr/bin/env bash
# bench/bench_dist.sh - data-parallel student throughput (issue 13 section 1):
# samples/s of one epoch at R = 1 and 2 ranks (mpirun, loopback) with the
# plain (cross-entropy), service (KD through a broker and 2 LightNN teacher
# workers) and replay (KD from the cache that service run filled) sources.
# The student is DeepNN (a heavier step than LightNN, so there is something
# to split); every configuration's checkpoint is compared between two runs.
#
#   bench/bench_dist.sh [--images N] [--ranks "1 2"] [--threads T]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${DQ_BUILD_DIR:-$top/build}
data=${DQ_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
images=640 ranks="1 2" threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench_dist: unknown option $1" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d /tmp/dq-bench-dist.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
t=$top/models/lightnn-fmnist.model s=$top/models/deepnn-fmnist.model
"$bin/distillq-train" --model "$t" --data "$data" --limit-train 512 --limit-test 64 --epochs 1 \
  --batch 64 --seed 1 --quiet --out "$tmp/teacher.safetensors" || exit 1
port=$((30000 + ($$ * 17) % 20000))
"$bin/distillq-broker" --frontend "tcp://127.0.0.1:$port" --backend "tcp://127.0.0.1:$((port + 1))" \
  --cache "$tmp/cache" > "$tmp/broker.log" 2>&1 & pids+=($!)
for _ in 1 2; do
  "$bin/distillq-teacher" --broker "tcp://127.0.0.1:$((port + 1))" --service fmnist --model "$t" \
    --weights "$tmp/teacher.safetensors" --capacity 4 >> "$tmp/w.log" 2>&1 & pids+=($!)
done
sleep 1
train() { # R NAME args...
  local r=$1 name=$2; shift 2
  local cmd=("$bin/distillq-train" --model "$s" --data "$data" --limit-train "$images"
             --limit-test 64 --epochs 1 --batch 64 --seed 5 --threads "$threads" --quiet
             --out "$tmp/$name.safetensors" "$@")
  if [ "$r" -gt 1 ]; then
    mpirun --allow-run-as-root --oversubscribe -np "$r" --mca btl self,vader,tcp "${cmd[@]}"
  else
    "${cmd[@]}"
  fi > "$tmp/$name.err" 2>&1 || { tail -5 "$tmp/$name.err" >&2; return 1; }
  grep -o '"samples_per_s":[0-9.]*' "$tmp/$name.safetensors.metrics.jsonl" | cut -d: -f2
}
printf "%-8s %3s %10s %s\n" source R samples/s "deterministic (2 runs)"
# the service run first: it fills the cache that replay reads
for src in service plain replay; do
  case $src in
    plain) args=() ;;
    service) args=(--loss kd --teacher "tcp://127.0.0.1:$port/fmnist") ;;
    replay) args=(--loss kd --replay "$tmp/cache") ;;
  esac
  for r in $ranks; do
    a=$(train "$r" "$src$r" "${args[@]}") || exit 1
    train "$r" "$src${r}b" "${args[@]}" > /dev/null || exit 1
    same=no; cmp -s "$tmp/$src$r.safetensors" "$tmp/$src${r}b.safetensors" && same=yes
    printf "%-8s %3s %10.0f %s\n" "$src" "$r" "$a" "$same"
  done
done
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
