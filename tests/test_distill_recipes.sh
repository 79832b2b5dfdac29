#!/usr/bin/env bash
# test_distill_recipes.sh - the promises test_distill.sh leaves out, with real
# processes on 127.0.0.1, on a 500-image Fashion-MNIST subset (1 epoch):
#   T. determinism at --threads 2: two runs, the same bytes
#   C. --loss cosine and R. --loss regressor (LightNN students with hidden
#      features, LightNN teachers of the same feature shapes): local,
#      through a broker with a cache, and replayed from that cache, bit for
#      bit; and each differs from plain cross-entropy (the hidden loss counts)
#   E. a weighted ensemble through the caching broker equals the local one;
#      a cache holding several teachers: replay without --replay-teacher asks
#      which one, --replay-teacher replays that one, and --replay-teacher once
#      per teacher with the same weights replays the ensemble bit for bit
#   S. several students sharing one cache: two at once through the broker,
#      a third served by the cache alone (its worker gone), two replays at
#      once while the broker still holds the cache open: all the same bytes
# TAP output; every wait is bounded; every process is killed by pid on exit.
tmp_prefix=dq-recipes
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..22"

hb=(--heartbeat-ms 100 --liveness 10)
sha() { sha256sum "$1" | cut -c1-64; }
ran() { # NAME: the run exited 0 and wrote its checkpoint
  [ "$(cat "$tmp/$1.rc")" = 0 ] && [ -s "$tmp/$1.safetensors" ] || { show "$tmp/$1.err"; false; }
}
same() { cmp -s "$tmp/$1.safetensors" "$tmp/$2.safetensors"; }
run() { # NAME ARGS...: a student run, its status in NAME.rc
  local name=$1; shift
  "$@" --out "$tmp/$name.safetensors" 2> "$tmp/$name.err"; echo $? > "$tmp/$name.rc"
}

lenet=$src/models/lightnn-fmnist.model
cosm=$src/models/lightnn-cosine-fmnist.model
regm=$src/models/lightnn-regressor-fmnist.model
teach() { # OUT MODEL SEED
  "$bin/distillq-train" --model "$2" --data "$data" --limit-train 512 --limit-test 64 \
    --epochs 1 --batch 64 --seed "$3" --quiet --out "$tmp/$1.safetensors" 2> "$tmp/$1.err"
}
teach t1 "$lenet" 1; teach t2 "$lenet" 2; teach tc "$cosm" 3; teach tr "$regm" 4
check "four teachers trained (LightNN x2, cosine, regressor)" \
  '[ -s "$tmp/t1.safetensors" ] && [ -s "$tmp/t2.safetensors" ] && [ -s "$tmp/tc.safetensors" ] && [ -s "$tmp/tr.safetensors" ]'
st=(--data "$data" --limit-train 500 --limit-test 100 --epochs 1 --batch 50 --seed 5 --quiet)
kd=("$bin/distillq-train" --model "$lenet" "${st[@]}" --threads 1 --loss kd)

# T. --threads 2, twice
run T2a "${kd[@]}" --threads 2 --teacher-local "$lenet:$tmp/t1.safetensors"
run T2b "${kd[@]}" --threads 2 --teacher-local "$lenet:$tmp/t1.safetensors"
check "T: --threads 2 trains" 'ran T2a && ran T2b'
check "T: two --threads 2 runs give the same bytes" 'same T2a T2b'

# one broker with a cache, a worker per teacher
P=$(pick_ports)
U=tcp://127.0.0.1:$P
start_broker broker "$P" --cache "$tmp/cache"
start_worker w1 "$P" fmnist "$lenet" "$tmp/t1.safetensors"; w1=$wpid
start_worker w2 "$P" second "$lenet" "$tmp/t2.safetensors"
start_worker wc "$P" cos "$cosm" "$tmp/tc.safetensors"
start_worker wr "$P" reg "$regm" "$tmp/tr.safetensors"
wait_until 20 '[ "$(workers_of $P)" = 4 ]'
check "a caching broker with 4 teacher workers" '[ "$(workers_of $P)" = 4 ] || { show "$tmp/broker.log"; false; }'

# C. cosine, R. regressor: local = service = replay, and not plain CE
for rc in C:cosine:"$cosm":tc:cos R:regressor:"$regm":tr:reg; do
  IFS=: read -r k loss m t svc <<< "$rc"
  base=("$bin/distillq-train" --model "$m" "${st[@]}" --threads 1)
  run "${k}L" "${base[@]}" --loss "$loss" --teacher-local "$m:$tmp/$t.safetensors"
  run "${k}S" "${base[@]}" --loss "$loss" --teacher "$U/$svc"
  run "${k}R" "${base[@]}" --loss "$loss" --replay "$tmp/cache" --replay-teacher "$(sha "$tmp/$t.safetensors")"
  run "${k}0" "${base[@]}" --loss ce
  check "$k: --loss $loss trains with a local teacher" "ran ${k}L"
  check "$k: --loss $loss through the broker equals local bit for bit" "ran ${k}S && same ${k}L ${k}S"
  check "$k: --loss $loss replayed from the cache equals the service run bit for bit" "ran ${k}R && same ${k}S ${k}R"
  check "$k: --loss $loss differs from plain cross-entropy (the hidden loss counts)" "ran ${k}0 && ! same ${k}0 ${k}L"
done

# E. a weighted ensemble through the caching broker; the cache now holds
# several teachers: replay asks which one, or blends the ones named
run EL "${kd[@]}" --teacher-local "$lenet:$tmp/t1.safetensors" \
  --teacher-local "$lenet:$tmp/t2.safetensors" --teacher-weights 0.7,0.3
run ES "${kd[@]}" --teacher "$U/fmnist" --teacher "$U/second" --teacher-weights 0.7,0.3
check "E: a weighted ensemble through the caching broker equals local bit for bit" 'ran EL && ran ES && same EL ES'
run E2L "${kd[@]}" --teacher-local "$lenet:$tmp/t2.safetensors"
run ER "${kd[@]}" --replay "$tmp/cache"
check "E: replaying a cache of several teachers without --replay-teacher is an error listing them" \
  '[ "$(cat "$tmp/ER.rc")" != 0 ] && [ ! -f "$tmp/ER.safetensors" ] && grep -q "several teachers" "$tmp/ER.err" &&
   grep -q "$(sha "$tmp/t2.safetensors")" "$tmp/ER.err" || { show "$tmp/ER.err"; false; }'
run ER2 "${kd[@]}" --replay "$tmp/cache" --replay-teacher "$(sha "$tmp/t2.safetensors" | cut -c1-12)"
check "E: --replay-teacher (a sha256 prefix) replays the ensemble's second teacher = local" \
  'ran E2L && ran ER2 && same E2L ER2'
run ERE "${kd[@]}" --replay "$tmp/cache" --replay-teacher "$(sha "$tmp/t1.safetensors")" \
  --replay-teacher "$(sha "$tmp/t2.safetensors" | cut -c1-12)" --teacher-weights 0.7,0.3
check "E: the ensemble replayed (--replay-teacher per teacher, same weights) equals the service run bit for bit" \
  'ran ERE && same ES ERE'
run ERW "${kd[@]}" --replay "$tmp/cache" --replay-teacher "$(sha "$tmp/t1.safetensors")" \
  --replay-teacher "$(sha "$tmp/t2.safetensors")"
check "E: the replayed ensemble's weights count (equal weights train other bytes)" \
  'ran ERW && ! same ES ERW && ! same ERE ERW'

# S. several students share the cache
run KL "${kd[@]}" --teacher-local "$lenet:$tmp/t1.safetensors"
run K1 "${kd[@]}" --teacher "$U/fmnist" & k1=$!; pids+=("$k1")
run K2 "${kd[@]}" --teacher "$U/fmnist" & k2=$!; pids+=("$k2")
wait "$k1" "$k2"
check "S: two students at once through one caching broker: both equal local" \
  'ran KL && ran K1 && ran K2 && same KL K1 && same KL K2'
kill -TERM "$w1"; wait "$w1" 2> /dev/null
wait_until 20 '[ "$(workers_of $P)" = 3 ]'
run K3 "${kd[@]}" --teacher "$U/fmnist" --teacher-timeout-ms 5000
check "S: a third student, its worker gone, is served by the cache alone = local" 'ran K3 && same KL K3'
run KR1 "${kd[@]}" --replay "$tmp/cache" --replay-teacher "$(sha "$tmp/t1.safetensors")" & r1=$!; pids+=("$r1")
run KR2 "${kd[@]}" --replay "$tmp/cache" --replay-teacher "$(sha "$tmp/t1.safetensors")" & r2=$!; pids+=("$r2")
wait "$r1" "$r2"
check "S: two replays at once, beside the live broker's open cache: both equal local" \
  'ran KR1 && ran KR2 && same KL KR1 && same KL KR2'
kill -TERM "$bpid"; wait_until 20 '! kill -0 $bpid 2>/dev/null'
hits=$(sed -n 's/.*cache: \([0-9]*\) hits.*/\1/p' "$tmp/broker.log" | tail -1)
check "S: the broker answered from the cache (${hits:-no} hits >= the third student's 10 batches)" \
  '[ "${hits:-0}" -ge 10 ] || { show "$tmp/broker.log"; false; }'
reports=$(grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp"/*.log "$tmp"/*.err 2>/dev/null)
check "no sanitizer report in any process's log" '[ -z "$reports" ] || { for f in $reports; do show "$f" 30; done; false; }'
tap_exit
