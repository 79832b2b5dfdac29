#!/usr/bin/env bash
# bench/bench_service.sh - teacher service throughput versus the local
# forward pass: distillq-predict over Fashion-MNIST test images in batches
# of 128 (u8 over the wire), locally and through distillq-broker with 1 and
# 2 distillq-teacher workers (DeepNN-fmnist, 1 BLAS thread each, capacity 2,
# 16 batches in flight), on 127.0.0.1. Prints a table of samples/s.
#
#   bench/bench_service.sh [--images N] [--weights W] [--model M] [--repeat R]
#
# Without --weights it trains DeepNN for a moment (the numbers do not
# depend on the weights). Binaries from $DQ_BUILD_DIR (default build/).
# Every output is also compared with the local one (cmp): a service that is
# fast but wrong fails the bench.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${DQ_BUILD_DIR:-$top/build}
data=${DQ_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
images=10000 weights="" model=$top/models/deepnn-fmnist.model repeat=1
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench_service: unknown option $1" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d /tmp/dq-bench-svc.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "$weights" ]; then
  weights=$tmp/teacher.safetensors
  "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 --limit-test 64 \
    --epochs 1 --batch 64 --quiet --out "$weights" || exit 1
fi
now() { date +%s.%N; }
rate() { awk -v n="$images" -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", n / (b - a) }'; }
best() { # best of $repeat runs of "$@"; prints samples/s
  local r b=0
  for _ in $(seq 1 "$repeat"); do
    local t0 t1; t0=$(now); "$@" 2>> "$tmp/run.err" || { tail -5 "$tmp/run.err" >&2; exit 1; }; t1=$(now)
    r=$(rate "$t0" "$t1"); [ "$r" -gt "$b" ] && b=$r
  done
  echo "$b"
}

local_rate=$(best "$bin/distillq-predict" --model "$model" --weights "$weights" --data "$data" \
  --limit "$images" --batch 128 --threads 1 --output "$tmp/local.npy")

port=$((30000 + ($$ * 11) % 20000))
fe=tcp://127.0.0.1:$port be=tcp://127.0.0.1:$((port + 1))
"$bin/distillq-broker" --frontend "$fe" --backend "$be" > "$tmp/broker.log" 2>&1 & pids+=($!)
declare -A svc_rate
for w in 1 2; do
  "$bin/distillq-teacher" --broker "$be" --service deep --model "$model" --weights "$weights" \
    --threads 1 --capacity 2 > "$tmp/worker-$w.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 200); do
    "$bin/distillq-broker" --stats "$fe" 2>/dev/null | grep -q "\"workers\": $w," && break
    sleep 0.05
  done
  svc_rate[$w]=$(best "$bin/distillq-predict" --teacher "$fe/deep" --data "$data" \
    --limit "$images" --batch 128 --inflight 16 --output "$tmp/svc$w.npy")
  cmp -s "$tmp/local.npy" "$tmp/svc$w.npy" || { echo "bench_service: $w-worker output differs from local" >&2; exit 1; }
done

printf '\nteacher service throughput: %s, %d images, batch 128, %d core(s) here\n' \
  "$(basename "$model" .model)" "$images" "$(nproc)"
printf '%-34s %12s %10s\n' "path" "samples/s" "vs local"
printf '%-34s %12s %10s\n' "local forward (1 thread)" "$local_rate" "1.00"
for w in 1 2; do
  printf '%-34s %12s %10s\n' "service, $w worker(s) x 1 thread" "${svc_rate[$w]}" \
    "$(awk -v a="${svc_rate[$w]}" -v b="$local_rate" 'BEGIN { printf "%.2f", a / b }')"
done
echo "(outputs of every service run equal the local ones bit for bit)"
