#!/usr/bin/env bash
# test_distill.sh - distillation training end to end (issue 5) with real
# processes on 127.0.0.1: the promise that teacher faults change nothing.
# On a 1,000-image Fashion-MNIST subset, a KD student trained
#   A. with the teacher in-process (--teacher-local),
#   B. through a broker (with an LMDB cache) and 2 workers, one SIGKILLed
#      mid-run and another joining,
#   C. replayed from that cache (--replay, no broker),
#   D. through a broker (with a cache) that is SIGKILLed mid-epoch, while the
#      student has requests in flight, and restarted on the same cache,
#   and replayed from that cache,
# must give bit-identical checkpoints; with --augment local and service agree
# too, and differ from the same run without it. Then the errors that must
# come before training: a bad --teacher URL, an unknown service, a teacher
# with 100 classes for a 10-class student.
# TAP output; every wait is bounded; every process is killed by pid on exit.
tmp_prefix=dq-distill
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..30"

hb=(--heartbeat-ms 100 --liveness 3)
# busy PORT N: the broker's workers hold at least N requests (the run is under way)
busy() { local f; f=$(stats "tcp://127.0.0.1:$1" | grep -o '"in_flight": [0-9]*' | head -1 | grep -o '[0-9]*$'); [ "${f:-0}" -ge "$2" ]; }

lenet=$src/models/lightnn-fmnist.model
# The teacher: a LightNN trained for a moment (fast enough for ASan runs).
"$bin/distillq-train" --model "$lenet" --data "$data" --limit-train 512 --limit-test 64 \
  --epochs 1 --batch 64 --seed 1 --quiet --out "$tmp/teacher.safetensors" 2> "$tmp/teacher.err"
# student_v logs to stderr (the client's "resent" lines); student is quiet
student_v=("$bin/distillq-train" --model "$lenet" --data "$data" --limit-train 1000
           --limit-test 200 --epochs 2 --batch 50 --seed 5 --threads 1 --loss kd)
student=("${student_v[@]}" --quiet)

# A. conventional
"${student[@]}" --teacher-local "$lenet:$tmp/teacher.safetensors" --out "$tmp/A.safetensors" \
  2> "$tmp/A.err"; rc=$?
check "conventional KD trains (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/A.err"; false; }'

# B. service, one worker SIGKILLed mid-run, another joining later
P=$(pick_ports)
start_broker brokerB "$P" --cache "$tmp/cache"
# 40 requests at 100 ms each: w2 alone needs >= 4 s, time enough for w3 to join
start_worker w1 "$P" fmnist "$lenet" "$tmp/teacher.safetensors" --delay-ms 100; w1=$wpid
start_worker w2 "$P" fmnist "$lenet" "$tmp/teacher.safetensors" --delay-ms 100
wait_until 10 '[ "$(workers_of $P)" = 2 ]'
"${student[@]}" --teacher "tcp://127.0.0.1:$P/fmnist" --inflight 4 --out "$tmp/B.safetensors" \
  2> "$tmp/B.err" &
spid=$!; pids+=("$spid")
wait_until 30 'busy $P 3'; busy_rc=$? # both workers hold requests: w1 dies with work in hand
kill -0 "$spid" 2>/dev/null; alive=$?
kill -KILL "$w1"; wait "$w1" 2>/dev/null
check "B: w1 was killed with requests in hand, the student training" \
  '[ $busy_rc -eq 0 ] && [ $alive -eq 0 ] || { show "$tmp/brokerB.log"; false; }'
start_worker w3 "$P" fmnist "$lenet" "$tmp/teacher.safetensors" --delay-ms 20; w3=$wpid
# w3 is in and the dead w1 is out (2 = w2 + w3), and the student still runs
wait_until 60 'grep -q "^distillq-teacher.* join " "$tmp/w3.log" && [ "$(workers_of $P)" = 2 ]'
joined=$?
kill -0 "$spid" 2>/dev/null; alive=$?
check "B: the late worker w3 joined while the student was still training" \
  '[ $joined -eq 0 ] && [ $alive -eq 0 ] || { show "$tmp/w3.log"; show "$tmp/brokerB.log"; false; }'
wait_until 120 '! kill -0 $spid 2>/dev/null'
wait "$spid"; rc=$?
kill -TERM "$w3"; wait "$w3" 2>/dev/null
check "B: the late worker w3 served requests" \
  'grep -Eq "leave \(.*\): served [1-9][0-9]* in" "$tmp/w3.log" || { show "$tmp/w3.log"; false; }'
check "service KD survives a SIGKILLed worker (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/B.err"; false; }'
check "service KD checkpoint equals conventional bit for bit" \
  'cmp -s "$tmp/A.safetensors" "$tmp/B.safetensors"'
check "the broker requeued the dead worker's batches" \
  'grep -q -i "requeue" "$tmp/brokerB.log" || { show "$tmp/brokerB.log"; false; }'
kill -TERM "$bpid"; wait_until 10 '! kill -0 $bpid 2>/dev/null'
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done

# C. replay from the cache the broker filled
"${student[@]}" --replay "$tmp/cache" --out "$tmp/C.safetensors" 2> "$tmp/C.err"; rc=$?
check "replay from the LMDB cache trains (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/C.err"; false; }'
check "replayed checkpoint equals conventional bit for bit" \
  'cmp -s "$tmp/A.safetensors" "$tmp/C.safetensors"'
"${student[@]}" --replay "$tmp/cache" --limit-train 1200 --out "$tmp/C2.safetensors" \
  2> "$tmp/C2.err"; rc=$?
check "replay with samples missing from the cache says how many" \
  '[ $rc -ne 0 ] && grep -q "missing" "$tmp/C2.err" || { show "$tmp/C2.err"; false; }'

# D. broker (with a cache) SIGKILLed mid-epoch and restarted on the same
# ports and the same cache; the student logs (not --quiet) so that its
# client's resends show
P=$(pick_ports)
start_broker brokerD "$P" --cache "$tmp/cacheD"
start_worker w4 "$P" fmnist "$lenet" "$tmp/teacher.safetensors" --delay-ms 40
wait_until 10 '[ "$(workers_of $P)" = 1 ]'
"${student_v[@]}" --teacher "tcp://127.0.0.1:$P/fmnist" --inflight 4 --out "$tmp/D.safetensors" \
  2> "$tmp/D.err" &
spid=$!; pids+=("$spid")
wait_until 30 'busy $P 1'; busy_rc=$?
sleep 0.2
kill -0 "$spid" 2>/dev/null; alive=$?
kill -KILL "$bpid"; wait "$bpid" 2>/dev/null
check "D: the broker was killed with requests in flight and the student training" \
  '[ $busy_rc -eq 0 ] && [ $alive -eq 0 ] || { show "$tmp/D.err"; false; }'
sleep 0.3
start_broker brokerD2 "$P" --cache "$tmp/cacheD"
wait_until 120 '! kill -0 $spid 2>/dev/null'
wait "$spid"; rc=$?
check "training completes across a broker restart (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/D.err"; false; }'
check "broker-restart checkpoint equals conventional bit for bit" \
  'cmp -s "$tmp/A.safetensors" "$tmp/D.safetensors"'
check "D: the student resent what the killed broker held" \
  'grep -Eq "resent [1-9]" "$tmp/D.err" || { show "$tmp/D.err"; false; }'
# the reader keeps --inflight batches out across the epoch boundary: epoch 2's
# first ones left while epoch 1 ended (and the checkpoint is still A's bits)
check "D: epoch 2's first batches were sent ahead during epoch 1" \
  'grep -Eq "teacher: [1-4] batches of epoch 2 were sent ahead" "$tmp/D.err" || { show "$tmp/D.err"; false; }'
"${student[@]}" --replay "$tmp/cacheD" --out "$tmp/D2.safetensors" 2> "$tmp/D2.err"; rc=$?
check "D: the cache both brokers filled replays the service run bit for bit (rc=$rc)" \
  '[ $rc -eq 0 ] && cmp -s "$tmp/D.safetensors" "$tmp/D2.safetensors" || { show "$tmp/D2.err"; false; }'
# The rest runs on a broker without a cache (section I needs a service that
# is really gone): restart once more, w4 re-joins by itself.
kill -TERM "$bpid"; wait_until 10 '! kill -0 $bpid 2>/dev/null'
start_broker brokerE "$P"
wait_until 20 '[ "$(workers_of $P)" = 1 ]'

# N. the same 1-epoch run without augmentation (compared with E and G)
"${student[@]}" --epochs 1 --teacher-local "$lenet:$tmp/teacher.safetensors" \
  --out "$tmp/N1.safetensors" 2> "$tmp/N1.err"; rc=$?
check "a 1-epoch conventional KD run (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/N1.err"; false; }'

# E. --augment: local and service agree as well
"${student[@]}" --epochs 1 --augment --teacher-local "$lenet:$tmp/teacher.safetensors" \
  --out "$tmp/E1.safetensors" 2> "$tmp/E1.err"
"${student[@]}" --epochs 1 --augment --teacher "tcp://127.0.0.1:$P/fmnist" \
  --out "$tmp/E2.safetensors" 2> "$tmp/E2.err"; rc=$?
check "augmented service KD equals augmented conventional KD (rc=$rc)" \
  'cmp -s "$tmp/E1.safetensors" "$tmp/E2.safetensors" || { show "$tmp/E2.err"; false; }'
check "augmentation changes the result of the same 1-epoch run" \
  '[ -s "$tmp/E1.safetensors" ] && ! cmp -s "$tmp/N1.safetensors" "$tmp/E1.safetensors"'

# G. an ensemble of two teachers (weighted 0.7 / 0.3): local and service agree
"$bin/distillq-train" --model "$lenet" --data "$data" --limit-train 512 --limit-test 64 \
  --epochs 1 --batch 64 --seed 2 --quiet --out "$tmp/teacher2.safetensors" 2> "$tmp/teacher2.err"
start_worker w6 "$P" second "$lenet" "$tmp/teacher2.safetensors"
wait_until 10 '[ "$(workers_of $P)" = 2 ]'
"${student[@]}" --epochs 1 --teacher-local "$lenet:$tmp/teacher.safetensors" \
  --teacher-local "$lenet:$tmp/teacher2.safetensors" --teacher-weights 0.7,0.3 \
  --out "$tmp/G1.safetensors" 2> "$tmp/G1.err"
"${student[@]}" --epochs 1 --teacher "tcp://127.0.0.1:$P/fmnist" \
  --teacher "tcp://127.0.0.1:$P/second" --teacher-weights 0.7,0.3 \
  --out "$tmp/G2.safetensors" 2> "$tmp/G2.err"; rc=$?
check "a weighted two-teacher ensemble: service equals local bit for bit (rc=$rc)" \
  'cmp -s "$tmp/G1.safetensors" "$tmp/G2.safetensors" || { show "$tmp/G2.err"; false; }'
check "the ensemble differs from its first teacher alone" '! cmp -s "$tmp/G1.safetensors" "$tmp/N1.safetensors"'

# H. the teacher changes under a running student: an error, unless allowed
start_worker w7 "$P" chg "$lenet" "$tmp/teacher.safetensors" --delay-ms 40; w7=$wpid
wait_until 10 '[ "$(workers_of $P)" = 3 ]'
"${student[@]}" --teacher "tcp://127.0.0.1:$P/chg" --inflight 2 --out "$tmp/H1.safetensors" \
  2> "$tmp/H1.err" &
spid=$!; pids+=("$spid")
wait_until 30 'busy $P 1'
sleep 0.2
kill -KILL "$w7"; wait "$w7" 2>/dev/null
start_worker w8 "$P" chg "$lenet" "$tmp/teacher2.safetensors" --delay-ms 40; w8=$wpid
wait_until 60 '! kill -0 $spid 2>/dev/null'
wait "$spid"; rc=$?
check "a teacher whose weights change mid-run stops the run (rc=$rc)" \
  '[ $rc -ne 0 ] && grep -q "changed" "$tmp/H1.err" || { show "$tmp/H1.err"; show "$tmp/brokerE.log"; false; }'
"${student[@]}" --teacher "tcp://127.0.0.1:$P/chg" --allow-teacher-change --epochs 1 \
  --out "$tmp/H2.safetensors" 2> "$tmp/H2.err"; rc=$?
check "--allow-teacher-change accepts it (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/H2.err"; false; }'
kill -TERM "$w8"; wait "$w8" 2>/dev/null

# I. the service goes away: stop with a resumable checkpoint; resume when it is back
start_worker w9 "$P" gone "$lenet" "$tmp/teacher.safetensors" --delay-ms 40; w9=$wpid
wait_until 10 '[ "$(workers_of $P)" = 3 ]'
"${student[@]}" --teacher "tcp://127.0.0.1:$P/gone" --inflight 2 --teacher-timeout-ms 1500 \
  --out "$tmp/I.safetensors" 2> "$tmp/I1.err" &
spid=$!; pids+=("$spid")
wait_until 30 'busy $P 1'
sleep 0.2
kill -KILL "$w9"; wait "$w9" 2>/dev/null
wait_until 60 '! kill -0 $spid 2>/dev/null'
wait "$spid"; rc=$?
check "an unavailable service stops training with a resumable checkpoint (rc=$rc)" \
  '[ $rc -ne 0 ] && [ -f "$tmp/I.state.safetensors" ] && grep -q "resumable checkpoint" "$tmp/I1.err" || { show "$tmp/I1.err"; false; }'
start_worker w10 "$P" gone "$lenet" "$tmp/teacher.safetensors"
"${student[@]}" --teacher "tcp://127.0.0.1:$P/gone" --resume --out "$tmp/I.safetensors" \
  2> "$tmp/I2.err"; rc=$?
check "resumed when the service is back, and equal to conventional KD bit for bit (rc=$rc)" \
  '[ $rc -eq 0 ] && cmp -s "$tmp/A.safetensors" "$tmp/I.safetensors" || { show "$tmp/I2.err"; false; }'

# J. dynamic batching: a slow worker with capacity 4 merges what queues up
# while it computes into one forward; replies stay those of the local forward
start_worker wm "$P" merge "$lenet" "$tmp/teacher.safetensors" --capacity 4 --delay-ms 200; wm=$wpid
wait_until 10 'stats tcp://127.0.0.1:$P | grep -q "\"name\": \"merge\""'
"$bin/distillq-predict" --teacher "tcp://127.0.0.1:$P/merge" --model "$lenet" --data "$data" \
  --limit 64 --batch 8 --inflight 8 --output "$tmp/merge.npy" 2> "$tmp/merge.err"
"$bin/distillq-predict" --model "$lenet" --weights "$tmp/teacher.safetensors" --data "$data" \
  --limit 64 --batch 8 --output "$tmp/merge-local.npy" 2> /dev/null
check "merged replies equal the local forward byte for byte" \
  'cmp -s "$tmp/merge.npy" "$tmp/merge-local.npy" || { show "$tmp/merge.err"; false; }'
kill -TERM "$wm"; wait "$wm" 2>/dev/null
check "the worker merged queued requests (fewer forwards than requests)" \
  'grep -Eq "served 8 in [1-7] hand-offs" "$tmp/wm.log" || { show "$tmp/wm.log"; false; }'

# F. errors before training starts
"${student[@]}" --teacher "tcp//127.0.0.1:$P" --out "$tmp/F1.safetensors" 2> "$tmp/F1.err"; rc=$?
check "a malformed --teacher URL is a clear error" \
  '[ $rc -ne 0 ] && [ ! -f "$tmp/F1.safetensors" ] && grep -q "teacher" "$tmp/F1.err" || { show "$tmp/F1.err"; false; }'
"${student[@]}" --teacher "tcp://127.0.0.1:$P/nosuch" --teacher-timeout-ms 1500 \
  --out "$tmp/F2.safetensors" 2> "$tmp/F2.err"; rc=$?
check "an unknown service is an error naming it, before training" \
  '[ $rc -ne 0 ] && [ ! -f "$tmp/F2.safetensors" ] && grep -q "nosuch" "$tmp/F2.err" || { show "$tmp/F2.err"; false; }'
# a teacher with 100 classes
sed 's/^name .*/name wide100/; s/linear in=256 out=10/linear in=256 out=100/' "$lenet" > "$tmp/wide100.model"
"$bin/distillq-train" --model "$tmp/wide100.model" --data "$data" --limit-train 64 --limit-test 64 \
  --epochs 1 --batch 64 --quiet --out "$tmp/wide.safetensors" 2> "$tmp/wide.err"
start_worker w5 "$P" wide "$tmp/wide100.model" "$tmp/wide.safetensors"
"${student[@]}" --teacher "tcp://127.0.0.1:$P/wide" --out "$tmp/F3.safetensors" 2> "$tmp/F3.err"; rc=$?
check "a 100-class teacher for a 10-class student is refused before training" \
  '[ $rc -ne 0 ] && [ ! -f "$tmp/F3.safetensors" ] && grep -q "\[100\]" "$tmp/F3.err" || { show "$tmp/F3.err"; false; }'
tap_exit
