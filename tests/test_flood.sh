#!/usr/bin/env bash
# test_flood.sh - issue 15: one client must not be able to exhaust the broker
# or a teacher worker. Real processes on 127.0.0.1, limits lowered:
#
#   broker  --max-queue-bytes 16 MiB --max-client-bytes 1 MiB --max-msg-bytes 2 MiB
#   worker  DeepNN, --max-batch 512 --max-forward-batch 32
#
# tests/svc_flood sends 16 x 30 valid requests of 512 images (401 KB each,
# 190 MB in all) from 16 connections, plus 20 oversize frames of 3 MB, as
# fast as the sockets take them; a well-behaved distillq-predict runs
# alongside. Checks: every flood request answered exactly once (ok,
# overloaded or timeout), every oversize frame answered bad_request; the
# broker's peak RSS (VmHWM) under its budget plus a fixed overhead, the bytes
# it held never over the budget and back to 0; the worker's peak RSS far
# under what one unchunked forward of 512 DeepNN images needs (~1.1 GB);
# the polite client's outputs equal the local forward bit for bit.
tmp_prefix=dq-flood
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..9"

model=$src/models/deepnn-fmnist.model
budget=$((16 << 20))
overhead=$((48 << 20)) # libzmq's buffers per connection, the program, the allocator
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 64 \
  --limit-test 64 --batch 64 --epochs 1 --seed 1 --quiet --out "$tmp/w.safetensors" \
  2> "$tmp/train.err"
timeout 120 "$bin/distillq-predict" --model "$model" --weights "$tmp/w.safetensors" \
  --data "$data" --limit 512 --batch 64 --output "$tmp/ref.npy" 2> "$tmp/ref.err"
check "a DeepNN teacher trained and predicted locally (512 images)" '[ -s "$tmp/ref.npy" ]'

p=$(pick_ports)
fe=tcp://127.0.0.1:$p
next_port=$((p + 2)); mp=$(pick_ports)
# In the sanitizer build ASan keeps freed blocks in a 256 MB quarantine: that
# is the sanitizer's memory, not the broker's, so it is kept small here (the
# plain build ignores ASAN_OPTIONS).
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1:thread_local_quarantine_size_kb=64" \
"$bin/distillq-broker" --frontend "$fe" --backend "tcp://127.0.0.1:$((p + 1))" \
  --heartbeat-ms 200 --request-timeout-ms 4000 --max-queue-bytes $budget \
  --max-client-bytes $((1 << 20)) --max-msg-bytes $((2 << 20)) --metrics "127.0.0.1:$mp" \
  < /dev/null \
  > "$tmp/broker.log" 2>&1 &
bp=$!; pids+=("$bp")
"$bin/distillq-teacher" --broker "tcp://127.0.0.1:$((p + 1))" --service deep --model "$model" \
  --weights "$tmp/w.safetensors" --heartbeat-ms 200 --max-batch 512 --max-forward-batch 32 \
  < /dev/null > "$tmp/worker.log" 2>&1 &
wp=$!; pids+=("$wp")
wait_until 20 '[ "$(num "$(stats "$fe")" workers)" = 1 ]'

"$bin/tests/svc_flood" "$fe" deep -c 16 -n 480 -b 512 -o 3000000 -k 20 -t 90 \
  > "$tmp/flood.out" 2> "$tmp/flood.err" &
fp=$!; pids+=("$fp")
sleep 0.5
timeout 120 "$bin/distillq-predict" --teacher "$fe/deep" --data "$data" --limit 512 --batch 64 \
  --inflight 4 --request-timeout-ms 90000 --output "$tmp/polite.npy" 2> "$tmp/polite.err"; rc=$?
wait "$fp"; frc=$?
fl=$(cat "$tmp/flood.out")
echo "# $fl"
fnum() { printf '%s' "$fl" | grep -o "$1=[0-9]*" | cut -d= -f2; }
check "flood: every request answered exactly once (rc $frc)" \
  '[ $frc -eq 0 ] && [ "$(fnum duplicates)" = 0 ] && [ "$(fnum missing)" = 0 ] || { show "$tmp/flood.err"; false; }'
check "flood: the byte budget answered some with overloaded, oversize frames got bad_request" \
  '[ "$(fnum overloaded)" -gt 0 ] && [ "$(fnum oversize_answered)" = 20 ]'
js=$(stats "$fe")
echo "# broker: bytes_held_peak $(num "$js" bytes_held_peak), over_budget $(num "$js" over_budget)"
check "broker: bytes held never over the budget, back to 0, none lost" \
  '[ "$(num "$js" bytes_held_peak)" -le $budget ] && [ "$(num "$js" bytes_held)" = 0 ] && [ "$(num "$js" queued)" = 0 ] && [ "$(num "$js" in_flight)" = 0 ]'
bh=$(hwm_kb "$bp"); wh=$(hwm_kb "$wp")
echo "# broker VmHWM ${bh} kB (budget $((budget >> 10)) kB + overhead $((overhead >> 10)) kB); worker VmHWM ${wh} kB"
check "broker: peak RSS under budget + fixed overhead" '[ "$bh" -lt $(((budget + overhead) >> 10)) ]'
sleep 0.3 # the page is rebuilt every tick
page=$(curl -sf --max-time 5 "http://127.0.0.1:$mp/metrics")
mv() { printf '%s\n' "$page" | awk -v k="distillq_broker_$1" '$1 == k {printf "%d", $2}'; }
check "metrics: request bytes held back to 0, peak within the budget, over_budget counted" \
  '[ "$(mv request_bytes_held)" = 0 ] && [ "$(mv request_bytes_held_peak)" -le $budget ] &&
   [ "$(mv request_bytes_budget)" = $budget ] && [ "$(mv over_budget_total)" = "$(num "$js" over_budget)" ]'
check "worker: peak RSS under 400 MB (forward chunks of 32)" '[ "$wh" -lt 400000 ]'
check "polite client served alongside the flood (rc $rc)" '[ $rc -eq 0 ] || { show "$tmp/polite.err"; false; }'
check "polite client: outputs equal the local forward bit for bit" 'cmp "$tmp/ref.npy" "$tmp/polite.npy"'
grep -h "sent again" "$tmp/polite.err" | sed 's/^/# /'
tap_exit
