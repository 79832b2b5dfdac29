#!/usr/bin/env bash
# test_metrics.sh - `--metrics HOST:PORT` on the broker and on a teacher
# worker (issue 12 section 3), with the real programs on 127.0.0.1:
#   - both pages are scraped during a run (served from the HTTP thread while
#     the loops work) and after it;
#   - both pass `promtool check metrics` (Debian's prometheus package);
#   - the broker's counters agree with its --stats reply (requests by
#     outcome, per-worker served, queue and in-flight gauges), the cache
#     counters move on a second, cached run, the worker's forward histogram
#     counts its forwards;
#   - distillq-train's JSON lines carry teacher_wait_s per epoch.
tmp_prefix=dq-metrics
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..10"

model=$src/models/lightnn-fmnist.model
hb=(--heartbeat-ms 100 --liveness 3)
scrape() { curl -sf --max-time 5 "http://$1/metrics"; }
# metric NAME LABELS PAGE: the value of the sample NAME{LABELS}
metric() { printf '%s\n' "$3" | awk -v k="$1{$2}" '$1 == k { print $2 }'; }

timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 \
  --limit-test 64 --batch 64 --epochs 1 --seed 1 --quiet --out "$tmp/w1.safetensors" \
  2> "$tmp/train.err"

p=$(pick_ports); next_port=$((p + 2)); m=$(pick_ports)
fe=tcp://127.0.0.1:$p be=tcp://127.0.0.1:$((p + 1))
bm=127.0.0.1:$m wm=127.0.0.1:$((m + 1))
"$bin/distillq-broker" --frontend "$fe" --backend "$be" "${hb[@]}" --metrics "$bm" \
  --cache "$tmp/cache" < /dev/null > "$tmp/broker.log" 2>&1 &
pids+=("$!")
wait_until 10 "stats $fe > /dev/null"
"$bin/distillq-teacher" --broker "$be" --service light --model "$model" \
  --weights "$tmp/w1.safetensors" "${hb[@]}" --delay-ms 5 --metrics "$wm" \
  < /dev/null > "$tmp/worker.log" 2>&1 &
pids+=("$!")
wait_until 10 '[ "$(num "$(stats $fe)" workers)" = 1 ]'

timeout 120 "$bin/distillq-predict" --teacher "$fe/light" --data "$data" --limit 2000 --batch 8 \
  --inflight 8 --output "$tmp/a.npy" 2> "$tmp/a.err" & cpid=$!; pids+=("$cpid")
wait_until 30 '[ "$(num "$(stats $fe)" served)" -ge 20 ] 2>/dev/null'
during_b=$(scrape "$bm"); during_w=$(scrape "$wm")
wait "$cpid"; rc=$?
check "scraped both pages during the run (client rc=$rc)" \
  '[ $rc -eq 0 ] && printf "%s" "$during_b" | grep -q "^distillq_broker_in_flight{service=\"light\"}" &&
   printf "%s" "$during_w" | grep -q "^distillq_worker_forward_seconds_bucket" ||
   { show "$tmp/a.err"; show "$tmp/broker.log" 30; show "$tmp/worker.log"; false; }'

sleep 0.5
after_b=$(scrape "$bm"); after_w=$(scrape "$wm"); js=$(stats "$fe")
printf '%s\n' "$after_b" > "$tmp/broker.prom"; printf '%s\n' "$after_w" > "$tmp/worker.prom"
if command -v promtool > /dev/null; then
  check "the broker's page passes promtool check metrics" \
    'promtool check metrics < "$tmp/broker.prom" > "$tmp/pt-b.out" 2>&1 || { show "$tmp/pt-b.out"; false; }'
  check "the worker's page passes promtool check metrics" \
    'promtool check metrics < "$tmp/worker.prom" > "$tmp/pt-w.out" 2>&1 || { show "$tmp/pt-w.out"; false; }'
else
  echo "ok 2 # SKIP promtool not installed (scripts/bootstrap installs prometheus)"; n=$((n + 1))
  echo "ok 3 # SKIP promtool not installed"; n=$((n + 1))
fi
ok_n=$(metric distillq_broker_requests_total 'service="light",outcome="ok"' "$after_b")
to_n=$(metric distillq_broker_requests_total 'service="light",outcome="timeout"' "$after_b")
wsrv=$(printf '%s\n' "$after_b" | awk '$1 ~ /^distillq_broker_worker_served_total/ { print $2 }')
check "counters agree with --stats: ok replies $ok_n = served $(num "$js" served) = 250, worker served $wsrv" \
  '[ "$ok_n" = 250 ] && [ "$(num "$js" served)" = 250 ] && [ "$wsrv" = 250 ] && [ "$to_n" = 0 ]'
check "gauges agree with --stats: queue 0, in flight 0, 1 idle worker" \
  '[ "$(metric distillq_broker_queue_length "service=\"light\"" "$after_b")" = 0 ] &&
   [ "$(metric distillq_broker_in_flight "service=\"light\"" "$after_b")" = 0 ] &&
   [ "$(metric distillq_broker_workers "service=\"light\",state=\"idle\"" "$after_b")" = 1 ]'
lat=$(metric distillq_broker_request_duration_seconds_count 'service="light"' "$after_b")
fwd=$(metric distillq_worker_forwards_total 'service="light"' "$after_w")
fwc=$(metric distillq_worker_forward_seconds_count 'service="light"' "$after_w")
rep=$(metric distillq_worker_requests_total 'service="light",outcome="replied"' "$after_w")
check "latency histogram counts 250 replies; worker: $rep replied in $fwd forwards ($fwc observed)" \
  '[ "$lat" = 250 ] && [ "$rep" = 250 ] && [ "$fwd" -ge 1 ] && [ "$fwd" = "$fwc" ]'

# a second run of the same images is answered from the cache
timeout 120 "$bin/distillq-predict" --teacher "$fe/light" --data "$data" --limit 2000 --batch 8 \
  --inflight 8 --output "$tmp/b.npy" 2> "$tmp/b.err"; rc=$?
sleep 0.5
again=$(scrape "$bm")
hits=$(metric distillq_broker_cache_hits_total '' "$again" 2>/dev/null)
[ -z "$hits" ] && hits=$(printf '%s\n' "$again" | awk '$1 == "distillq_broker_cache_hits_total" { print $2 }')
check "cache counters: the second run's 250 batches are hits ($hits), stored entries and bytes > 0" \
  '[ $rc -eq 0 ] && [ "$hits" = 250 ] && cmp -s "$tmp/a.npy" "$tmp/b.npy" &&
   printf "%s\n" "$again" | awk '"'"'$1=="distillq_broker_cache_bytes" && $2>0 {f=1} END {exit !f}'"'"

# the trainer records the time it waited for the teacher service
timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 512 \
  --limit-test 64 --batch 64 --epochs 2 --seed 3 --quiet --loss kd --teacher "$fe/light" \
  --out "$tmp/s.safetensors" 2> "$tmp/s.err"; rc=$?
check "distillq-train with a service teacher exits 0 (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/s.err"; false; }'
check "its JSON lines carry teacher_wait_s per epoch, within the epoch's seconds" \
  '[ "$(grep -c "\"teacher_wait_s\"" "$tmp/s.safetensors.metrics.jsonl")" = 2 ] &&
   ${PYTHON:-/usr/bin/python3} -c "
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert 0 < r[\"teacher_wait_s\"] <= r[\"seconds\"], r
" "$tmp/s.safetensors.metrics.jsonl"'

# a --metrics address already taken: the program stops and says why, naming it
p2=$(pick_ports)
timeout 20 "$bin/distillq-teacher" --broker "tcp://127.0.0.1:$((p2 + 1))" --service light \
  --model "$model" --weights "$tmp/w1.safetensors" --metrics "$bm" < /dev/null \
  > /dev/null 2> "$tmp/busy.err"; rc=$?
check "--metrics on a taken port: exit 1 naming it and the reason (rc=$rc)" \
  '[ $rc -eq 1 ] && grep -q -- "--metrics $bm: cannot listen: .*Address already in use" "$tmp/busy.err" ||
   { show "$tmp/busy.err"; false; }'
tap_exit
