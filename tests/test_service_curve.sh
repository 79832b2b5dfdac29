#!/usr/bin/env bash
# test_service_curve.sh - the teacher service under CURVE (issue 12 section 1)
# with the real programs on 127.0.0.1: distillq-keygen keys, a broker with
# --curve-cert/--allow-students/--allow-workers, distillq-teacher workers
# and distillq-predict --teacher with their certificates, checked against
# local distillq-predict bit for bit:
#   b. a worker SIGKILLed mid-stream: outputs still bit-identical;
#   f. the broker SIGKILLed and restarted on the same endpoints: the same;
#   plus: a student key offered as a worker, and an unlisted student key,
#   are refused with a clear error and a non-zero exit within seconds, and
#   the broker logs each refusal; a worker without keys exits saying the
#   broker requires CURVE (it used to re-join in silence for ever).
tmp_prefix=dq-svc-curve
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..12"

model=$src/models/lightnn-fmnist.model
hb=(--heartbeat-ms 100 --liveness 3)
keys=$tmp/keys
mkdir -p "$keys" "$tmp/students" "$tmp/workers"
for k in broker s1 w1 w2 intruder; do "$bin/distillq-keygen" "$keys/$k" > /dev/null; done
cp "$keys/s1" "$tmp/students/"; cp "$keys/w1" "$keys/w2" "$tmp/workers/"
curve_broker=(--curve-cert "$keys/broker_secret" --allow-students "$tmp/students"
              --allow-workers "$tmp/workers")
as() { echo --curve-server-cert "$keys/broker" --curve-cert "$keys/${1}_secret"; }

cstats() { "$bin/distillq-broker" --stats "$1" $(as s1) 2>/dev/null; }
start_broker() { # NAME FRONTEND BACKEND
  local name=$1 fe=$2 be=$3
  "$bin/distillq-broker" --frontend "$fe" --backend "$be" "${hb[@]}" "${curve_broker[@]}" \
    < /dev/null > "$tmp/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_until 10 "cstats $fe > /dev/null"
}
start_worker() { # NAME BACKEND KEY [args...]
  local name=$1 be=$2 key=$3; shift 3
  # shellcheck disable=SC2046
  "$bin/distillq-teacher" --broker "$be" --service light --model "$model" \
    --weights "$tmp/w1.safetensors" "${hb[@]}" $(as "$key") "$@" < /dev/null > "$tmp/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
}
workers_live() { [ "$(num "$(cstats "$1")" workers)" = "$2" ]; }
served() { num "$(cstats "$1")" served; }
remote() { # OUT URL LIMIT KEY [args...]
  local out=$1 url=$2 lim=$3 key=$4; shift 4
  # shellcheck disable=SC2046
  timeout 120 "$bin/distillq-predict" --teacher "$url" --data "$data" --limit "$lim" --batch 8 \
    --inflight 16 --request-timeout-ms 20000 --output "$tmp/$out.npy" $(as "$key") "$@" \
    2> "$tmp/$out.err"
}

timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 \
  --limit-test 64 --batch 64 --epochs 1 --seed 1 --quiet --out "$tmp/w1.safetensors" \
  2> "$tmp/train.err"
timeout 120 "$bin/distillq-predict" --model "$model" --weights "$tmp/w1.safetensors" \
  --data "$data" --limit 4000 --batch 8 --output "$tmp/ref1.npy" 2> "$tmp/ref1.err"
check "keys made; teacher trained and predicted locally" \
  '[ -s "$tmp/ref1.npy" ] && [ "$(stat -c %a "$keys/s1_secret")" = 600 ]'

# ---- b. SIGKILL one of 2 workers mid-stream --------------------------------------------
pb=$(pick_ports)
feb=tcp://127.0.0.1:$pb beb=tcp://127.0.0.1:$((pb + 1))
start_broker b-broker "$feb" "$beb"
start_worker b-w1 "$beb" w1 --delay-ms 8; bw1=$pid
start_worker b-w2 "$beb" w2 --delay-ms 8
wait_until 10 "workers_live $feb 2"
remote b "$feb/light" 4000 s1 & cpid=$!; pids+=("$cpid")
wait_until 60 '[ "$(served $feb)" -ge 100 ] 2>/dev/null'
kill -KILL "$bw1"; wait "$bw1" 2> /dev/null
wait "$cpid"; rc=$?
check "b: under CURVE the client finishes after a worker is SIGKILLed (rc=$rc)" \
  '[ $rc -eq 0 ] || { show "$tmp/b.err"; false; }'
check "b: outputs bit-identical to the local forward" 'cmp "$tmp/ref1.npy" "$tmp/b.npy"'
check "b: the broker named the workers by key and requeued the dead one's work" \
  'grep -q "worker w1@" "$tmp/b-broker.log" && grep -q "worker w2@" "$tmp/b-broker.log" &&
   grep -q "requeued" "$tmp/b-broker.log" || { show "$tmp/b-broker.log"; false; }'

# ---- refusals ---------------------------------------------------------------------------
start_worker bad-w "$beb" s1; bw=$pid
t0=$SECONDS
wait_until 15 '! kill -0 $bw 2>/dev/null'
wait "$bw"; wrc=$?
check "a student key cannot join as a worker: distillq-teacher exits 4 within $((SECONDS - t0)) s" \
  '[ $wrc -eq 4 ] && grep -q "refused our CURVE key" "$tmp/bad-w.log" || { show "$tmp/bad-w.log"; false; }'
"$bin/distillq-teacher" --broker "$beb" --service light --model "$model" \
  --weights "$tmp/w1.safetensors" "${hb[@]}" < /dev/null > "$tmp/plain-w.log" 2>&1 &
pw=$!; pids+=("$pw")
t0=$SECONDS
wait_until 15 '! kill -0 $pw 2>/dev/null'
wait "$pw"; wrc=$?
check "a worker without keys exits 4 within $((SECONDS - t0)) s: the broker requires CURVE" \
  '[ $wrc -eq 4 ] && grep -q "requires CURVE" "$tmp/plain-w.log" || { show "$tmp/plain-w.log"; false; }'
t0=$SECONDS
remote x "$feb/light" 16 intruder; rc=$?
check "an unlisted student key: predict fails (rc=$rc) within $((SECONDS - t0)) s with a clear error" \
  '[ $rc -ne 0 ] && [ $((SECONDS - t0)) -le 10 ] && grep -q "refused our CURVE key" "$tmp/x.err" || { show "$tmp/x.err"; false; }'
check "the broker logged both refusals" \
  'grep -q "refused workers connection.*which is s1 in --allow-students" "$tmp/b-broker.log" &&
   grep -q "refused students connection" "$tmp/b-broker.log" || { show "$tmp/b-broker.log"; false; }'

# ---- the broker's key options: a missing directory named with its option, an empty one warned of
pz=$(pick_ports)
"$bin/distillq-broker" --frontend "tcp://127.0.0.1:$pz" --backend "tcp://127.0.0.1:$((pz + 1))" \
  --curve-cert "$keys/broker_secret" --allow-students "$tmp/nonexistent" \
  --allow-workers "$tmp/workers" < /dev/null > "$tmp/nodir.log" 2>&1; rc=$?
mkdir -p "$tmp/none"
timeout 2 "$bin/distillq-broker" --frontend "tcp://127.0.0.1:$pz" --backend "tcp://127.0.0.1:$((pz + 1))" \
  --curve-cert "$keys/broker_secret" --allow-students "$tmp/students" \
  --allow-workers "$tmp/none" < /dev/null > "$tmp/empty.log" 2>&1
check "a missing --allow-students dir: exit 1 naming the option (rc=$rc); an empty --allow-workers: a warning" \
  '[ $rc -eq 1 ] && grep -q -- "--allow-students: allow directory $tmp/nonexistent" "$tmp/nodir.log" &&
   grep -q -- "WARNING: --allow-workers $tmp/none holds no certificate: no worker can connect" "$tmp/empty.log" ||
   { show "$tmp/nodir.log"; show "$tmp/empty.log"; false; }'

# ---- f. broker SIGKILLed mid-stream and restarted on the same endpoints ---------------------
pf=$(pick_ports)
fef=tcp://127.0.0.1:$pf bef=tcp://127.0.0.1:$((pf + 1))
start_broker f-broker "$fef" "$bef"; fb=$pid
start_worker f-w1 "$bef" w1 --delay-ms 8
start_worker f-w2 "$bef" w2 --delay-ms 8
wait_until 10 "workers_live $fef 2"
remote f "$fef/light" 4000 s1 & cpid=$!; pids+=("$cpid")
wait_until 60 '[ "$(served $fef)" -ge 100 ] 2>/dev/null'
kill -KILL "$fb"; wait "$fb" 2>/dev/null
sleep 0.5
start_broker f-broker2 "$fef" "$bef"
wait "$cpid"; rc=$?
check "f: under CURVE the client survives a broker restart (rc=$rc)" \
  '[ $rc -eq 0 ] || { show "$tmp/f.err"; false; }'
check "f: outputs still bit-identical to local" 'cmp "$tmp/ref1.npy" "$tmp/f.npy"'
check "f: both workers re-joined the new broker" \
  'grep -q "re-join" "$tmp/f-w1.log" && grep -q "re-join" "$tmp/f-w2.log" || { show "$tmp/f-w1.log" 5; false; }'
tap_exit
