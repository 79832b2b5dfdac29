#!/usr/bin/env bash
# test_service.sh - the teacher service end to end with real processes on
# 127.0.0.1 (and ipc://): distillq-broker, distillq-teacher workers and
# distillq-predict --teacher as the client, checked against local
# distillq-predict bit for bit (cmp of the .npy files), on Fashion-MNIST
# batches of 8 with a LightNN teacher trained for a moment here.
#
#  a. scripts/cluster: 1 broker + 3 workers, 500 batches, 16 in flight
#  b. one worker SIGKILLed mid-stream, a new one started later
#  c. two clients on two services at once (ipc://), one worker SIGTERMed
#     mid-stream (graceful: exits 0, nothing lost)
#  d. a service with no worker: the timeout error names the service
#  e. malformed frames get bad_request replies; the broker keeps serving
#  f. the broker SIGKILLed mid-stream and restarted: workers re-join, the
#     client resends, the output is still bit-identical
#  g. a forward longer than liveness x heartbeat does not look like a death
#  h. a worker of other weights, refused (identity), backs off 100 ms
#     doubling to 2 s instead of retrying every 100-150 ms; the stats
#     announce the service's u8 normalisation
#
# Where a count must be exact (no requeue, no death) the broker's liveness is
# 1 s (a, g: 100 ms x 10, 200 ms x 5), so a live process must be starved for
# a second (ASan, 2 busy cores) before it looks dead; b, c and f, which kill
# processes on purpose, keep 300 ms.
#
# TAP output; every wait is bounded; every process is killed by pid on exit.
# (check's conditions are eval'd strings: shellcheck cannot see their uses)
tmp_prefix=dq-svc
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
extra_cleanup() {
  DQ_BUILD_DIR=$bin "$src/scripts/cluster" stop --run-dir "$tmp/cl" --wait 2 > /dev/null 2>&1
}
echo "1..29"

model=$src/models/lightnn-fmnist.model
hb=(--heartbeat-ms 100 --liveness 3)


start_broker() { # NAME FRONTEND BACKEND [args...]
  local name=$1 fe=$2 be=$3; shift 3
  "$bin/distillq-broker" --frontend "$fe" --backend "$be" "${hb[@]}" "$@" \
    < /dev/null > "$tmp/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_until 10 "stats $fe > /dev/null"
}
start_worker() { # NAME BACKEND SERVICE WEIGHTS [args...]
  local name=$1 be=$2 svc=$3 w=$4; shift 4
  "$bin/distillq-teacher" --broker "$be" --service "$svc" --model "$model" --weights "$w" \
    "${hb[@]}" "$@" < /dev/null > "$tmp/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
}
workers_live() { [ "$(num "$(stats "$1")" workers)" = "$2" ]; }
served() { num "$(stats "$1")" served; }
remote() { # OUT URL LIMIT [args...]
  local out=$1 url=$2 lim=$3; shift 3
  timeout 120 "$bin/distillq-predict" --teacher "$url" --data "$data" --limit "$lim" --batch 8 \
    --inflight 16 --request-timeout-ms 20000 --output "$tmp/$out.npy" "$@" 2> "$tmp/$out.err"
}

# ---- teachers and local references --------------------------------------------------
for s in 1 2; do
  timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 \
    --limit-test 64 --batch 64 --epochs 1 --seed $s --quiet --out "$tmp/w$s.safetensors" \
    2> "$tmp/train$s.err"
done
timeout 120 "$bin/distillq-predict" --model "$model" --weights "$tmp/w1.safetensors" --data "$data" \
  --limit 4000 --batch 8 --output "$tmp/ref1.npy" 2> "$tmp/ref1.err"
timeout 120 "$bin/distillq-predict" --model "$model" --weights "$tmp/w2.safetensors" --data "$data" \
  --limit 2000 --batch 8 --output "$tmp/ref2.npy" 2> "$tmp/ref2.err"
check "two teachers trained and predicted locally (4000 + 2000 images)" \
  '[ -s "$tmp/ref1.npy" ] && [ -s "$tmp/ref2.npy" ] && ! cmp -s "$tmp/w1.safetensors" "$tmp/w2.safetensors"'

# ---- a. scripts/cluster, 3 workers, 500 batches of 8, 16 in flight ---------------------
pa=$(pick_ports)
DQ_BUILD_DIR=$bin "$src/scripts/cluster" start --workers 3 --service light --model "$model" \
  --weights "$tmp/w1.safetensors" --port-base "$pa" --run-dir "$tmp/cl" --heartbeat-ms 100 \
  --liveness 10 > "$tmp/cl.out" 2>&1; rc=$?
check "cluster start: broker + 3 workers up" '[ $rc -eq 0 ] || { show "$tmp/cl.out"; false; }'
remote a "tcp://127.0.0.1:$pa/light" 4000; rc=$?
check "a: remote predict of 500 batches exits 0" '[ $rc -eq 0 ] || { show "$tmp/a.err"; false; }'
check "a: remote outputs equal the local forward bit for bit" 'cmp "$tmp/ref1.npy" "$tmp/a.npy"'
check "a: same accuracy line as local" \
  '[ "$(grep ^accuracy "$tmp/a.err")" = "$(grep ^accuracy "$tmp/ref1.err")" ]'
js=$(stats "tcp://127.0.0.1:$pa")
nw=$(printf '%s' "$js" | grep -o '"served": [1-9][0-9]*, "errors": 0, "requeues": 0, "mean_service_ms": [0-9.]*, "draining"' | wc -l)
check "a: broker answered exactly 500 requests, each of the 3 workers served some ($nw)" \
  '[ "$(num "$js" requests)" = 500 ] && [ "$(num "$js" replies)" = 500 ] && [ "$(num "$js" duplicates)" = 0 ] && [ "$nw" = 3 ]'
DQ_BUILD_DIR=$bin "$src/scripts/cluster" status --run-dir "$tmp/cl" > "$tmp/cl.status" 2>&1
check "a: cluster status shows 4 live processes and the stats" \
  '[ "$(grep -c " alive$" "$tmp/cl.status")" = 4 ] && grep -q "\"served\": 500" "$tmp/cl.status"'
cpids=$(cat "$tmp"/cl/*.pid)
DQ_BUILD_DIR=$bin "$src/scripts/cluster" stop --run-dir "$tmp/cl" > "$tmp/cl.stop" 2>&1
alive=0; for p in $cpids; do kill -0 "$p" 2>/dev/null && alive=1; done
check "a: cluster stop ends exactly its processes (workers leave gracefully)" \
  '[ $alive -eq 0 ] && [ "$(grep -c "leave (stopped)" "$tmp"/cl/worker-*.log | grep -c ":1$")" = 3 ]'

# ---- b. SIGKILL one of 3 workers mid-stream, add a new one later -----------------------
pb=$(pick_ports)
feb=tcp://127.0.0.1:$pb beb=tcp://127.0.0.1:$((pb + 1))
start_broker b-broker "$feb" "$beb"
start_worker b-w1 "$beb" light "$tmp/w1.safetensors" --delay-ms 8; bw1=$pid
start_worker b-w2 "$beb" light "$tmp/w1.safetensors" --delay-ms 8
start_worker b-w3 "$beb" light "$tmp/w1.safetensors" --delay-ms 8
wait_until 10 "workers_live $feb 3"
remote b "$feb/light" 4000 & cpid=$!; pids+=("$cpid")
wait_until 60 '[ "$(served $feb)" -ge 100 ] 2>/dev/null'
kill -KILL "$bw1"; wait "$bw1" 2> /dev/null
wait_until 60 '[ "$(served $feb)" -ge 250 ] 2>/dev/null'
start_worker b-w4 "$beb" light "$tmp/w1.safetensors" --delay-ms 8; bw4=$pid
wait "$cpid"; rc=$?
kill -TERM "$bw4"; wait_until 20 '! kill -0 $bw4 2>/dev/null' # its leave line: what it served
check "b: remote predict survives a SIGKILLed worker (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/b.err"; false; }'
check "b: outputs still bit-identical to local" 'cmp "$tmp/ref1.npy" "$tmp/b.npy"'
js=$(stats "$feb")
check "b: the dead worker's requests were requeued and answered once" \
  '[ "$(num "$js" requeues)" -ge 1 ] && [ "$(num "$js" replies)" = 500 ] && grep -q "requeued" "$tmp/b-broker.log"'
check "b: the late worker joined and served" \
  'grep -q "^distillq-teacher.*: join " "$tmp/b-w4.log" &&
   grep -Eq "leave \(.*\): served [1-9][0-9]* in" "$tmp/b-w4.log" || { show "$tmp/b-w4.log" 5; false; }'

# ---- c. two services, two clients at once, over ipc://; graceful stop mid-stream --------
fec=ipc://$tmp/fe bec=ipc://$tmp/be
start_broker c-broker "$fec" "$bec" --request-timeout-ms 3000
start_worker c-l1 "$bec" light "$tmp/w1.safetensors" --delay-ms 8; cl1=$pid
start_worker c-l2 "$bec" light "$tmp/w1.safetensors" --delay-ms 8
start_worker c-m1 "$bec" light2 "$tmp/w2.safetensors" --delay-ms 4
start_worker c-m2 "$bec" light2 "$tmp/w2.safetensors" --delay-ms 4
wait_until 10 "workers_live $fec 4"
remote c1 "$fec/light" 4000 & p1=$!; pids+=("$p1")
remote c2 "$fec/light2" 2000 & p2=$!; pids+=("$p2")
wait_until 60 '[ "$(served $fec)" -ge 100 ] 2>/dev/null'
kill -TERM "$cl1"
wait_until 30 '! kill -0 $cl1 2>/dev/null'
wait "$cl1"; wrc=$?
wait "$p1"; rc1=$?
wait "$p2"; rc2=$?
check "c: both clients finish (rc $rc1, $rc2)" \
  '[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] || { show "$tmp/c1.err"; show "$tmp/c2.err"; false; }'
check "c: service light bit-identical to local (weights 1)" 'cmp "$tmp/ref1.npy" "$tmp/c1.npy"'
check "c: service light2 bit-identical to local (weights 2)" 'cmp "$tmp/ref2.npy" "$tmp/c2.npy"'
check "c: SIGTERMed worker drained, said goodbye and exited 0 (rc=$wrc)" \
  '[ $wrc -eq 0 ] && grep -q "leave (stopped)" "$tmp/c-l1.log" && grep -q "left" "$tmp/c-broker.log"'
check "c: the two services report different teachers" \
  '[ "$(grep -o "sha256 [0-9a-f]*" "$tmp/c1.err")" != "$(grep -o "sha256 [0-9a-f]*" "$tmp/c2.err")" ]'

# ---- d. a service nobody serves -------------------------------------------------------------
t0=$SECONDS
remote d "$fec/nosuch" 16; rc=$?
check "d: a request for a service with no worker fails (rc=$rc) within the timeout" \
  '[ $rc -ne 0 ] && [ $((SECONDS - t0)) -le 10 ]'
check "d: the error names the service and says why" \
  'grep -q "nosuch" "$tmp/d.err" && grep -Eq "timeout|unknown_service" "$tmp/d.err" || { show "$tmp/d.err"; false; }'

# ---- e. malformed frames ------------------------------------------------------------------
"$bin/tests/svc_poke" "$fec" light > "$tmp/e.out" 2>&1; rc=$?
check "e: malformed and unservable frames each get a bad_request reply" \
  '[ $rc -eq 0 ] || { show "$tmp/e.out"; false; }'
remote e "$fec/light" 400; rc=$?
# The first 400 rows of ref1 (after its 128-byte .npy header) are e's data.
check "e: and the broker keeps serving, still bit-identical" \
  '[ $rc -eq 0 ] && cmp <(tail -c 16000 "$tmp/e.npy") <(head -c 16128 "$tmp/ref1.npy" | tail -c 16000)'

# ---- g. forwards longer than liveness x heartbeat (2.5 s vs 1 s): never declared dead ----
feg=ipc://$tmp/gfe beg=ipc://$tmp/gbe
hb=(--heartbeat-ms 200 --liveness 5)
start_broker g-broker "$feg" "$beg"
start_worker g-slow "$beg" slow "$tmp/w1.safetensors" --delay-ms 2500
hb=(--heartbeat-ms 100 --liveness 3)
wait_until 10 "workers_live $feg 1"
remote g "$feg/slow" 16 --inflight 2; rc=$?
js=$(stats "$feg")
check "g: a worker busy for 2.5 s per forward still heartbeats (rc=$rc, no death, no requeue)" \
  '[ $rc -eq 0 ] && ! grep -q "died" "$tmp/g-broker.log" && [ "$(num "$js" requeues)" = 0 ] &&
   cmp <(tail -c 640 "$tmp/g.npy") <(head -c 768 "$tmp/ref1.npy" | tail -c 640) || { show "$tmp/g-broker.log"; false; }'

# ---- h. identity mismatch: backoff; the normalisation in the stats ----------------------------
start_worker h-other "$bec" light "$tmp/w2.safetensors"
sleep 3.5
refusals=$(grep -c "broker disconnected us" "$tmp/h-other.log")
last_wait=$(grep -o "re-joining in [0-9]*" "$tmp/h-other.log" | tail -1 | grep -o "[0-9]*$")
check "h: a refused worker backs off (refusals in 3.5 s: $refusals, last wait ${last_wait:-?} ms)" \
  '[ "$refusals" -ge 2 ] && [ "$refusals" -le 9 ] && [ "${last_wait:-0}" -ge 1000 ] || { show "$tmp/h-other.log" 12; false; }'
js=$(stats "$fec")
check "h: the stats announce what a u8 request implies (mean/std of the model file)" \
  'printf "%s" "$js" | grep -q "\"name\": \"light\".*\"mean\": \[0.5\], \"std\": \[0.5\]"'

# ---- f. broker SIGKILLed mid-stream and restarted on the same endpoints ---------------------
pf=$(pick_ports)
fef=tcp://127.0.0.1:$pf bef=tcp://127.0.0.1:$((pf + 1))
start_broker f-broker "$fef" "$bef"; fb=$pid
start_worker f-w1 "$bef" light "$tmp/w1.safetensors" --delay-ms 8
start_worker f-w2 "$bef" light "$tmp/w1.safetensors" --delay-ms 8
wait_until 10 "workers_live $fef 2"
remote f "$fef/light" 4000 & cpid=$!; pids+=("$cpid")
wait_until 60 '[ "$(served $fef)" -ge 100 ] 2>/dev/null'
kill -KILL "$fb"; wait "$fb" 2>/dev/null
sleep 0.5
start_broker f-broker2 "$fef" "$bef"
wait "$cpid"; rc=$?
check "f: the client survives a broker restart (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/f.err"; false; }'
check "f: outputs still bit-identical to local" 'cmp "$tmp/ref1.npy" "$tmp/f.npy"'
check "f: both workers re-joined the new broker; the client resent what it had in flight" \
  'grep -Fq "re-join $bef" "$tmp/f-w1.log" && grep -Fq "re-join $bef" "$tmp/f-w2.log" &&
   grep -Eq "resent [1-9]" "$tmp/f.err" || { show "$tmp/f-w1.log" 5; show "$tmp/f.err" 5; false; }'

# ---- every process still running stops cleanly; no sanitizer reports anywhere ---------------
left=() bad=""
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { kill -TERM "$p"; left+=("$p"); }; done
all_gone() { for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
wait_until 20 'all_gone "${left[@]}"'
for p in "${left[@]}"; do wait "$p"; rc=$?; [ $rc -eq 0 ] || bad="$bad $p:$rc"; done
check "all ${#left[@]} remaining brokers and workers exit 0 on SIGTERM${bad:+ (not:$bad)}" '[ -z "$bad" ]'
reports=$(grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp"/*.log "$tmp"/*.err \
          "$tmp"/cl/*.log 2>/dev/null)
check "no sanitizer report in any process's log" '[ -z "$reports" ] || { for f in $reports; do show "$f" 30; done; false; }'
tap_exit
