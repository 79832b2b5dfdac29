#!/usr/bin/env bash
# test_worker_health.sh - a teacher worker whose forward keeps failing
# (issue 12 section 4), on the CPU with the test hook
# DQ_TEST_FORWARD_FAIL_AFTER=N (every forward after the first N fails):
#   1. with --max-failed-forwards 1 next to a healthy worker: the failing
#      worker leaves at its first failure without answering, exits 3, and
#      the broker requeues its requests to the healthy one: the client gets
#      every output, bit-identical to the local forward, and no error;
#   2. alone with --max-failed-forwards 3: the first two failures are
#      answered with errors naming the failure, the third makes it leave and
#      exit 3 (not before).
tmp_prefix=dq-health
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..6"

model=$src/models/lightnn-fmnist.model
hb=(--heartbeat-ms 100 --liveness 3)
start_broker() { # NAME FRONTEND BACKEND
  "$bin/distillq-broker" --frontend "$2" --backend "$3" "${hb[@]}" --request-timeout-ms 3000 \
    < /dev/null > "$tmp/$1.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_until 10 "stats $2 > /dev/null"
}
start_worker() { # NAME BACKEND [args...]
  local name=$1 be=$2; shift 2
  "$bin/distillq-teacher" --broker "$be" --service light --model "$model" \
    --weights "$tmp/w1.safetensors" "${hb[@]}" "$@" < /dev/null > "$tmp/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
}
workers_live() { [ "$(num "$(stats "$1")" workers)" = "$2" ]; }
remote() { # OUT URL LIMIT [args...]
  local out=$1 url=$2 lim=$3; shift 3
  timeout 120 "$bin/distillq-predict" --teacher "$url" --data "$data" --limit "$lim" --batch 8 \
    --request-timeout-ms 20000 --output "$tmp/$out.npy" "$@" 2> "$tmp/$out.err"
}

timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 \
  --limit-test 64 --batch 64 --epochs 1 --seed 1 --quiet --out "$tmp/w1.safetensors" \
  2> "$tmp/train.err"
timeout 120 "$bin/distillq-predict" --model "$model" --weights "$tmp/w1.safetensors" \
  --data "$data" --limit 2000 --batch 8 --output "$tmp/ref.npy" 2> "$tmp/ref.err"

# ---- 1. a failing worker next to a healthy one -------------------------------------------
p=$(pick_ports)
fe=tcp://127.0.0.1:$p be=tcp://127.0.0.1:$((p + 1))
start_broker b1 "$fe" "$be"
start_worker good "$be" --delay-ms 4
DQ_TEST_FORWARD_FAIL_AFTER=20 start_worker bad "$be" --delay-ms 4 --max-failed-forwards 1
bad=$pid
wait_until 10 "workers_live $fe 2"
remote a "$fe/light" 2000 --inflight 16; rc=$?
wait_until 10 '! kill -0 $bad 2>/dev/null'
wait "$bad"; brc=$?
check "1: the client gets all 250 batches without an error (rc=$rc)" \
  '[ $rc -eq 0 ] || { show "$tmp/a.err"; false; }'
check "1: outputs bit-identical to the local forward" 'cmp "$tmp/ref.npy" "$tmp/a.npy"'
check "1: the failing worker left unhealthy and exited 3 (rc=$brc)" \
  '[ $brc -eq 3 ] && grep -q "unhealthy (device lost), leaving" "$tmp/bad.log" && grep -q "injected forward failure" "$tmp/bad.log" || { show "$tmp/bad.log"; false; }'
js=$(stats "$fe")
check "1: the broker requeued its requests and served none of them as errors" \
  'grep -q "requeued" "$tmp/b1.log" && [ "$(num "$js" errors)" = 0 ] || { show "$tmp/b1.log"; echo "# $js"; false; }'

# ---- 2. N failures in a row before it leaves -------------------------------------------
p=$(pick_ports)
fe=tcp://127.0.0.1:$p be=tcp://127.0.0.1:$((p + 1))
start_broker b2 "$fe" "$be"
DQ_TEST_FORWARD_FAIL_AFTER=0 start_worker alone "$be" --max-failed-forwards 3; alone=$pid
wait_until 10 "workers_live $fe 1"
remote n1 "$fe/light" 8; r1=$?
remote n2 "$fe/light" 8; r2=$?
kill -0 $alone 2>/dev/null; alive2=$?
remote n3 "$fe/light" 8 --request-timeout-ms 4000; r3=$?
wait_until 10 '! kill -0 $alone 2>/dev/null'
wait "$alone"; arc=$?
check "2: the first two failures are error replies naming the failure, the worker stays" \
  '[ $r1 -ne 0 ] && [ $r2 -ne 0 ] && [ $alive2 -eq 0 ] && grep -q "injected forward failure" "$tmp/n1.err" || { show "$tmp/n1.err"; false; }'
check "2: the third makes it leave unanswered and exit 3 (rc=$arc, client rc=$r3)" \
  '[ $arc -eq 3 ] && [ $r3 -ne 0 ] && grep -q "3 forwards in a row failed" "$tmp/alone.log" || { show "$tmp/alone.log"; false; }'
tap_exit
