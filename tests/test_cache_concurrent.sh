#!/usr/bin/env bash
# test_cache_concurrent.sh - the cache shared by two processes (issue 12
# section 5), with the real programs: a broker keeps filling its LMDB
# cache (a student distilling on 6000 images, most of them new) while another student
# replays from the same environment; the replayed student is bit-identical
# to the one that distilled from the service; then `distillq-cache stats`
# shows entries and bytes per teacher and `distillq-cache gc --keep` removes
# the other teacher's entries beside the live broker.
tmp_prefix=dq-cache-cc
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..6"

model=$src/models/lightnn-fmnist.model
hb=(--heartbeat-ms 100 --liveness 3)
for s in 1 2; do
  timeout 120 "$bin/distillq-train" --model "$model" --data "$data" --limit-train 256 \
    --limit-test 64 --batch 64 --epochs 1 --seed $s --quiet --out "$tmp/t$s.safetensors" \
    2> "$tmp/t$s.err"
done
p=$(pick_ports)
fe=tcp://127.0.0.1:$p be=tcp://127.0.0.1:$((p + 1))
"$bin/distillq-broker" --frontend "$fe" --backend "$be" "${hb[@]}" --cache "$tmp/cache" \
  --cache-max-gb 1 < /dev/null > "$tmp/broker.log" 2>&1 &
pids+=("$!")
wait_until 10 "stats $fe > /dev/null"
for s in 1 2; do
  "$bin/distillq-teacher" --broker "$be" --service "light$s" --model "$model" \
    --weights "$tmp/t$s.safetensors" "${hb[@]}" --delay-ms 60 < /dev/null > "$tmp/w$s.log" 2>&1 &
  pids+=("$!")
done
wait_until 10 '[ "$(num "$(stats $fe)" workers)" = 2 ]'
student() { # OUT SEED LIMIT [args...]
  local out=$1 seed=$2 lim=$3; shift 3
  timeout 300 "$bin/distillq-train" --model "$model" --data "$data" --limit-train "$lim" \
    --limit-test 64 --batch 64 --epochs 1 --seed "$seed" --quiet --loss kd \
    --out "$tmp/$out.safetensors" "$@" 2> "$tmp/$out.err"
}
student a 5 512 --teacher "$fe/light1"; rc=$?
check "a student distilled from the service fills the cache (rc=$rc)" \
  '[ $rc -eq 0 ] || { show "$tmp/a.err"; false; }'

# the broker writes (6000 images, most of them new) while r replays the first 512
student w 6 6000 --teacher "$fe/light1" & wp=$!; pids+=("$wp")
# light1's own count: the first "served" in the stats may be light2's (the
# services' order in the reply is not fixed)
served1() {
  stats "$fe" | "${PYTHON:-/usr/bin/python3}" -c 'import json, sys
print(next(s["served"] for s in json.load(sys.stdin)["services"] if s["name"] == "light1"))' \
    2> /dev/null || echo 0
}
# (room for a loaded machine: w's probe and first batches can take a while)
wait_until 120 '[ "$(served1)" -ge 20 ] 2>/dev/null'
before=$(served1)
student r 5 512 --replay "$tmp/cache"; rrc=$?
after=$(served1)
wait "$wp"; wrc=$?
check "the broker stored replies ($before -> $after served) while r replayed; both exit 0 ($rrc, $wrc)" \
  '[ $rrc -eq 0 ] && [ $wrc -eq 0 ] && [ "$after" -gt "$before" ] || { show "$tmp/r.err"; show "$tmp/w.err"; false; }'
check "replay is bit-identical to distilling from the service" \
  'cmp "$tmp/a.safetensors" "$tmp/r.safetensors"'
"$bin/distillq-cache" verify "$tmp/cache" > "$tmp/verify.out" 2>&1; vrc=$?
check "the cache verifies after the concurrent run" '[ $vrc -eq 0 ] || { show "$tmp/verify.out"; false; }'

# a second teacher, then stats per teacher and gc beside the live broker
timeout 120 "$bin/distillq-predict" --teacher "$fe/light2" --data "$data" --limit 400 --batch 8 \
  --output "$tmp/p2.npy" 2> "$tmp/p2.err"
sleep 0.3
"$bin/distillq-cache" stats "$tmp/cache" > "$tmp/stats.out" 2>&1
sha1=$(grep "service=light1" "$tmp/stats.out" | grep -o "sha256=[0-9a-f]*" | cut -d= -f2)
check "stats: two teachers with entries and bytes (light1: 6000 samples)" \
  '[ "$(grep -c "^teacher .* entries=[1-9][0-9]*$" "$tmp/stats.out")" = 2 ] &&
   [ "$(grep -c "^  bytes    [1-9][0-9]* " "$tmp/stats.out")" = 2 ] &&
   grep -A1 "service=light1 .* entries=6000$" "$tmp/stats.out" | grep -q "^  bytes    [1-9]" || { show "$tmp/stats.out"; false; }'
"$bin/distillq-cache" gc "$tmp/cache" --keep "$sha1" > "$tmp/gc.out" 2>&1; grc=$?
"$bin/distillq-cache" stats "$tmp/cache" > "$tmp/stats2.out" 2>&1
check "gc --keep light1 beside the live broker removes light2's 400 entries" \
  '[ $grc -eq 0 ] && grep -q "removed 1 teacher(s), 400 entries" "$tmp/gc.out" &&
   [ "$(grep -c "^teacher " "$tmp/stats2.out")" = 1 ] && grep -q "service=light1" "$tmp/stats2.out" || { show "$tmp/gc.out"; show "$tmp/stats2.out"; false; }'
tap_exit
