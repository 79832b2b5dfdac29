#!/usr/bin/env bash
# test_no_broker.sh - distillq-predict --teacher and distillq-train --teacher end,
# within their timeouts (finite by default), with an error naming the endpoint when
# nothing answers there. (A teacher worker, a daemon, keeps retrying by design.)
# A free loopback port has no broker; each run is bounded by `timeout` so a
# hang fails instead of stalling the suite.
tmp_prefix=dq-nobroker
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..6"
port=$(pick_ports) || { echo "Bail out! no free port"; exit 1; }
ep="tcp://127.0.0.1:$port"

# distillq-predict --teacher with a short timeout: an error naming the endpoint.
start=$SECONDS
timeout 60 "$bin/distillq-predict" --teacher "$ep/fmnist" --data "$data" --limit 256 \
  --output "$tmp/p.npy" --request-timeout-ms 2000 > /dev/null 2> "$tmp/p.err"; rc=$?
check "predict against no broker fails (rc=$rc, not 124)" '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
check "predict's error names the endpoint" "tail -n 1 '$tmp/p.err' | grep -q 'tcp://127.0.0.1:$port'"
check "predict gave up within 30 s ($((SECONDS - start)) s)" '[ $((SECONDS - start)) -lt 30 ]' \
  || show "$tmp/p.err"
# The default is finite: --help says so (waiting 60 s here would slow the suite).
check "predict's --request-timeout-ms default is finite" \
  "'$bin/distillq-predict' --help | grep -A1 -- '--request-timeout-ms' | grep -q 'default 60000'"

# distillq-train --teacher: the probe before the first step fails the same way.
start=$SECONDS
timeout 60 "$bin/distillq-train" --model "$src/models/lightnn-fmnist.model" --data "$data" \
  --limit-train 256 --epochs 1 --loss kd --teacher "$ep/fmnist" --teacher-timeout-ms 2000 \
  --out "$tmp/s.safetensors" > /dev/null 2> "$tmp/t.err"; rc=$?
check "train against no broker fails before training (rc=$rc, not 124)" \
  '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ ! -f "$tmp/s.safetensors" ]'
check "train's error names the endpoint, within 30 s" \
  "grep -q 'tcp://127.0.0.1:$port' '$tmp/t.err' && [ \$((SECONDS - start)) -lt 30 ]" || show "$tmp/t.err"
tap_exit
