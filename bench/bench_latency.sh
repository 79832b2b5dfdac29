#!/usr/bin/env bash
# bench/bench_latency.sh - service KD across a slow network (issue 13 section 2).
# A broker and 2 teacher workers (LightNN teacher, --delay-ms F standing in for
# a bigger teacher's forward, capacity 8) on 127.0.0.1, with tests/delay_relay.py
# between the student and the broker's frontend AND between the broker's backend
# and the workers, at 0, 5, 20 and 50 ms one-way delay. The student (LightNN,
# --loss kd, default --inflight: the measured-round-trip rule) trains one epoch
# on N images; prints samples/s per delay, the ratio to zero delay, the
# --inflight the rule chose, and whether every checkpoint equals the zero-delay
# one byte for byte. With --epochs E > 1 samples/s is over all epochs and
# "later" over epochs 2..E, whose first batches the student sends ahead while
# it finishes the epoch before (the pipeline fill is paid once per run).
#
#   bench/bench_latency.sh [--images N] [--forward-ms F] [--delays "0 5 20 50"] [--epochs E]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${DQ_BUILD_DIR:-$top/build}
data=${DQ_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
PY=${PYTHON:-/usr/bin/python3}
images=3000 fwd=8 delays="0 5 20 50" epochs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --forward-ms) fwd=$2; shift 2 ;;
    --delays) delays=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench_latency: unknown option $1" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d /tmp/dq-bench-lat.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
m=$top/models/lightnn-fmnist.model
"$bin/distillq-train" --model "$m" --data "$data" --limit-train 512 --limit-test 64 --epochs 1 \
  --batch 64 --seed 1 --quiet --out "$tmp/teacher.safetensors" || exit 1
port=$((20000 + ($$ * 13) % 12000)) # below the ephemeral range (32768-60999)
printf "%-8s %10s %8s %9s %8s %8s %8s %s\n" "delay" "samples/s" "ratio" "inflight" "train_s" \
  "wait_s" "later" "checkpoint"
base=""
for d in $delays; do
  fe=$port be=$((port + 1)) rf=$((port + 2)) rb=$((port + 3)); port=$((port + 4))
  run=()
  "$bin/distillq-broker" --frontend "tcp://127.0.0.1:$fe" --backend "tcp://127.0.0.1:$be" \
    > "$tmp/broker$d.log" 2>&1 & run+=($!)
  "$PY" "$top/tests/delay_relay.py" --listen "$rf" --to "127.0.0.1:$fe" --delay-ms "$d" & run+=($!)
  "$PY" "$top/tests/delay_relay.py" --listen "$rb" --to "127.0.0.1:$be" --delay-ms "$d" & run+=($!)
  sleep 0.5
  for _ in 1 2; do
    "$bin/distillq-teacher" --broker "tcp://127.0.0.1:$rb" --service fmnist --model "$m" \
      --weights "$tmp/teacher.safetensors" --capacity 8 --delay-ms "$fwd" >> "$tmp/w$d.log" 2>&1 &
    run+=($!)
  done
  pids+=("${run[@]}")
  for _ in $(seq 1 100); do
    "$bin/distillq-broker" --stats "tcp://127.0.0.1:$fe" 2>/dev/null | grep -q '"workers": 2' && break
    sleep 0.1
  done
  "$bin/distillq-train" --model "$m" --data "$data" --limit-train "$images" --limit-test 100 \
    --epochs "$epochs" --batch 50 --seed 5 --threads 1 --loss kd \
    --teacher "tcp://127.0.0.1:$rf/fmnist" --out "$tmp/s$d.safetensors" 2> "$tmp/s$d.err" ||
    { tail -5 "$tmp/s$d.err"; exit 1; }
  # per epoch: samples, seconds, teacher wait; sums over all epochs and over 2..E
  read -r sps es ws later < <(sed 's/[{}]//g' "$tmp/s$d.safetensors.metrics.jsonl" | awk -F, '
    { for (i = 1; i <= NF; i++) { split($i, kv, ":"); gsub(/"/, "", kv[1]); v[kv[1]] = kv[2] }
      n += v["train_samples"]; s += v["seconds"]; w += v["teacher_wait_s"]
      if (NR > 1) { n2 += v["train_samples"]; s2 += v["seconds"] } }
    END { printf "%f %f %f %s\n", n / s, s, w, (s2 > 0 ? sprintf("%.0f", n2 / s2) : "-") }')
  k=$(grep -o -- '--inflight [0-9]*' "$tmp/s$d.err" | head -1 | cut -d' ' -f2)
  [ -z "$base" ] && base=$sps
  same=different; cmp -s "$tmp/s0.safetensors" "$tmp/s$d.safetensors" 2>/dev/null && same=identical
  printf "%-8s %10.0f %8.2f %9s %8.2f %8.2f %8s %s\n" "${d}ms" "$sps" \
    "$(awk -v a="$sps" -v b="$base" 'BEGIN{print a/b}')" "${k:-?}" "$es" "$ws" "$later" "$same"
  for p in "${run[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait "${run[@]}" 2>/dev/null
done
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
