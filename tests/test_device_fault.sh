#!/usr/bin/env bash
# test_device_fault.sh - a teacher worker whose device is lost leaves, exits
# non-zero, and the broker requeues what it held: a second worker serves
# every request exactly once and the client's outputs are unchanged.
#
# The loss is injected (DQ_TEST_DEVICE_FAULT_AFTER=N, teacher.c: every
# forward after the first N fails as a sticky CUDA error would, with
# DQ_ERR_DEVICE), so the test runs on the CPU; DQ_TEST_WORKER_DEVICE=cuda
# runs the workers and the local reference on the GPU (scripts/gpu-check),
# where the reference is bit-identical too because the GPU eval forward is
# batch-invariant (net_cuda.h).
#
# TAP output; every wait is bounded; every process is killed by pid on exit.
tmp_prefix=dq-fault
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..6"

model=$src/models/lightnn-fmnist.model
dev=${DQ_TEST_WORKER_DEVICE:-cpu}
hb=(--heartbeat-ms 100 --liveness 3)
limit=800 # 100 requests of 8

timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 \
  --limit-test 64 --batch 64 --epochs 1 --seed 3 --quiet --out "$tmp/w.safetensors" \
  2> "$tmp/train.err"
timeout 120 "$bin/distillq-predict" --model "$model" --weights "$tmp/w.safetensors" \
  --data "$data" --limit $limit --batch 8 --device "$dev" --output "$tmp/ref.npy" \
  2> "$tmp/ref.err"
check "teacher trained and predicted locally on $dev" \
  '[ -s "$tmp/ref.npy" ] || { show "$tmp/train.err"; show "$tmp/ref.err"; false; }'

p=$(pick_ports)
fe=tcp://127.0.0.1:$p be=tcp://127.0.0.1:$((p + 1))
"$bin/distillq-broker" --frontend "$fe" --backend "$be" "${hb[@]}" < /dev/null \
  > "$tmp/broker.log" 2>&1 &
pids+=("$!")
wait_until 10 "stats $fe > /dev/null"
start_worker() { # NAME [env...]
  local name=$1; shift
  env "$@" "$bin/distillq-teacher" --broker "$be" --service light --model "$model" \
    --weights "$tmp/w.safetensors" --device "$dev" --capacity 4 --delay-ms 5 "${hb[@]}" \
    < /dev/null > "$tmp/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
}

# The faulty worker alone first: it serves 10 forwards, then its device is lost.
start_worker sick DQ_TEST_DEVICE_FAULT_AFTER=10; sick=$pid
wait_until 10 '[ "$(num "$(stats "$fe")" workers)" = 1 ]'
timeout 120 "$bin/distillq-predict" --teacher "$fe/light" --data "$data" --limit $limit \
  --batch 8 --inflight 16 --request-timeout-ms 30000 --output "$tmp/remote.npy" \
  2> "$tmp/remote.err" &
cpid=$!; pids+=("$cpid")
if wait_until 30 '! kill -0 $sick 2>/dev/null'; then
  wait "$sick"; src_rc=$?
else
  kill -KILL "$sick"; wait "$sick" 2>/dev/null; src_rc=0 # still there: the check fails
  echo "# the faulty worker did not leave within 30 s"
fi
check "the worker whose device was lost left and exited non-zero (rc=$src_rc)" \
  '[ $src_rc -ne 0 ] && grep -q "device lost" "$tmp/sick.log" &&
   grep -q "DQ_TEST_DEVICE_FAULT_AFTER=10" "$tmp/sick.log" || { show "$tmp/sick.log"; false; }'
js=$(stats "$fe")
check "it answered no request with an error; the broker requeued what it held" \
  '[ "$(num "$js" errors)" = 0 ] && [ "$(num "$js" requeues)" -ge 1 ] || { echo "# $js"; false; }'

# A healthy worker joins and serves the rest.
start_worker healthy
wait_until 60 '! kill -0 $cpid 2>/dev/null' || kill -KILL "$cpid"
wait "$cpid"; rc=$?
check "the client finished through the healthy worker (rc=$rc)" \
  '[ $rc -eq 0 ] || { show "$tmp/remote.err"; show "$tmp/healthy.log"; false; }'
check "outputs bit-identical to the local forward" 'cmp "$tmp/ref.npy" "$tmp/remote.npy"'
js=$(stats "$fe")
check "every request answered exactly once, none with an error" \
  '[ "$(num "$js" requests)" = 100 ] && [ "$(num "$js" replies)" = 100 ] &&
   [ "$(num "$js" duplicates)" = 0 ] && [ "$(num "$js" errors)" = 0 ] || { echo "# $js"; false; }'
tap_exit
