#!/usr/bin/env bash
# test_wrong_port.sh - the broker's two ports swapped, the likeliest slip
# in a deployment: a teacher worker given the client port (frontend), and a
# student or `--stats` given the worker port (backend). Each ends within
# seconds with an error naming the right port, instead of the worker
# re-joining for ever and the student waiting out its 60 s timeout; the
# broker logs the client at its worker port.
tmp_prefix=dq-wrongport
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..4"
model=$src/models/lightnn-fmnist.model
hb=(--heartbeat-ms 200 --liveness 3)
port=$(pick_ports) || { echo "Bail out! no free ports"; exit 1; }
fe=tcp://127.0.0.1:$port be=tcp://127.0.0.1:$((port + 1))
start_broker broker "$port"
timeout 60 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 128 \
  --limit-test 64 --batch 64 --epochs 1 --quiet --out "$tmp/w.safetensors" 2> "$tmp/train.err"

# a worker at the client port: exit 2 (no restart helps), naming the worker port
t0=$SECONDS
timeout 30 "$bin/distillq-teacher" --broker "$fe" --service light --model "$model" \
  --weights "$tmp/w.safetensors" "${hb[@]}" < /dev/null > "$tmp/w.log" 2>&1; rc=$?
check "a worker at the client port exits 2 within $((SECONDS - t0)) s, naming $be" \
  '[ $rc -eq 2 ] && [ $((SECONDS - t0)) -le 10 ] && grep -q "is not a worker port.*$be" "$tmp/w.log" ||
   { echo "# rc=$rc"; show "$tmp/w.log"; false; }'

# a student at the worker port: a bad_request naming the client port, not a timeout
t0=$SECONDS
timeout 60 "$bin/distillq-predict" --teacher "$be/light" --data "$data" --limit 16 \
  --output "$tmp/p.npy" > /dev/null 2> "$tmp/p.err"; rc=$?
check "a student at the worker port fails (rc=$rc) within $((SECONDS - t0)) s, naming $fe" \
  '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $((SECONDS - t0)) -le 10 ] &&
   grep -q "worker port (backend).*client port (frontend) $fe" "$tmp/p.err" ||
   { show "$tmp/p.err"; false; }'
"$bin/distillq-broker" --stats "$be" > /dev/null 2> "$tmp/s.err"; rc=$?
check "--stats at the worker port says which port to use (rc=$rc)" \
  '[ $rc -ne 0 ] && grep -q "client port (frontend) $fe" "$tmp/s.err" || { show "$tmp/s.err"; false; }'
check "the broker logged the client at its worker port" \
  'grep -q "sent a .request. to the worker port: told it to use $fe" "$tmp/broker.log" ||
   { show "$tmp/broker.log"; false; }'
tap_exit
