#!/usr/bin/env bash
# bench/bench_broker_scale.sh - one broker, many workers (issue 13 section 3).
# On 127.0.0.1: distillq-broker, W echo workers (distillq-teacher --echo, the
# LightNN shapes, no forward) and bench/svc_load's 32 closed-loop clients, one
# request of 8 Fashion-MNIST test images in flight each, for S seconds; every
# reply checked against the echo rows and delivered exactly once. For each W:
# requests/s, p50/p99 latency, broker CPU time per request (utime+stime from
# /proc over the load window), broker RSS, mean RSS per worker, and (workers
# SIGSTOPped, 32 x 16 requests queued) broker RSS per queued request. Then the
# chaos run: W=20 with 10 % of the workers SIGKILLed and restarted every P
# seconds for S2 seconds: lost / twice / wrong must all be 0.
# --callgrind runs the broker under valgrind's callgrind and adds the
# broker's instructions per request over the load window (Ir/req): a count
# that the machine's load does not move, unlike CPU time (the broker is then
# ~50x slower, so req/s and latency are callgrind's, not the broker's). It
# also counts the idle broker for S seconds before the load (heartbeats:
# W x 4/s each way) and gives Ir/req net of that, since under callgrind the
# fixed heartbeat traffic is ~4x larger per request than at full speed.
#
#   bench/bench_broker_scale.sh [--workers "2 20 100 200"] [--seconds S]
#                               [--chaos-seconds S2] [--chaos-period P] [--callgrind]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${DQ_BUILD_DIR:-$top/build}
data=${DQ_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
ws="2 20 100 200" secs=4 csecs=20 cper=4 cg=0
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) ws=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --chaos-seconds) csecs=$2; shift 2 ;;
    --chaos-period) cper=$2; shift 2 ;;
    --callgrind) cg=1; shift ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench_broker_scale: unknown option $1" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d /tmp/dq-bench-bscale.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
model=$top/models/lightnn-fmnist.model
hb=(--heartbeat-ms 250 --liveness 3)
port=$((20000 + ($$ * 19) % 12000)) # below the ephemeral range (32768-60999)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
num() { grep -o "\"$2\": [0-9.]*" <<< "$1" | head -1 | grep -o '[0-9.]*$'; }
hz=$(getconf CLK_TCK)
cg_dump() { # instructions since the last zero (callgrind_control -z)
  callgrind_control -d "$bpid" > /dev/null
  awk '/^summary:/ {print $2}' "$(ls -t "$tmp/cg.$w".* | head -1)"
}
start_worker() { # sets wpid
  "$bin/distillq-teacher" --echo --broker "tcp://127.0.0.1:$be" --service fmnist --model "$model" \
    --capacity 2 "${hb[@]}" < /dev/null >> "$tmp/workers.log" 2>&1 &
  wpid=$!; pids+=("$wpid")
}
port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_pool() { # W
  while ! port_free "$port" || ! port_free $((port + 1)); do port=$((port + 2)); done
  fe=$port be=$((port + 1)); port=$((port + 2))
  wrap=()
  [ "$cg" = 1 ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1")
  "${wrap[@]}" "$bin/distillq-broker" --frontend "tcp://127.0.0.1:$fe" \
    --backend "tcp://127.0.0.1:$be" "${hb[@]}" > "$tmp/broker.log" 2>&1 &
  bpid=$!; pids+=("$bpid")
  sleep 0.3; [ "$cg" = 1 ] && sleep 3
  kill -0 "$bpid" 2>/dev/null || { echo "bench_broker_scale: broker failed: $(cat "$tmp/broker.log")" >&2; return 1; }
  wk=()
  for _ in $(seq 1 "$1"); do start_worker; wk+=("$wpid"); done
  for _ in $(seq 1 600); do
    [ "$(num "$("$bin/distillq-broker" --stats "tcp://127.0.0.1:$fe" 2>/dev/null)" workers)" = "$1" ] && return 0
    sleep 0.1
  done
  echo "bench_broker_scale: $1 workers did not all register" >&2; return 1
}
stop_pool() {
  for p in "$bpid" "${wk[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  wait "$bpid" "${wk[@]}" 2>/dev/null
}
printf "%7s %8s %7s %7s %12s %10s %11s %13s %s\n" workers req/s p50_ms p99_ms \
  "broker_us/req" broker_MB "worker_MB" "KB/queued_req" "lost/twice/wrong"
for w in $ws; do
  start_pool "$w" || exit 1
  sleep 0.5
  if [ "$cg" = 1 ]; then
    callgrind_control -z "$bpid" > /dev/null; sleep "$secs"; idle=$(cg_dump)
    callgrind_control -z "$bpid" > /dev/null
  fi
  c0=$(cpu_ticks "$bpid")
  out=$("$bin/bench/svc_load" --endpoint "tcp://127.0.0.1:$fe" --data "$data" --clients 32 \
        --seconds "$secs")
  c1=$(cpu_ticks "$bpid")
  ir=""
  [ "$cg" = 1 ] && ir=$(cg_dump)
  brss=$(rss_kb "$bpid")
  wsum=0; for p in "${wk[@]}"; do wsum=$((wsum + $(rss_kb "$p"))); done
  # memory per queued request: workers stopped, 32 clients x 16 requests queue up
  r0=$(rss_kb "$bpid")
  for p in "${wk[@]}"; do kill -STOP "$p"; done
  "$bin/bench/svc_load" --endpoint "tcp://127.0.0.1:$fe" --data "$data" --clients 32 \
    --inflight 16 --seconds 1 > "$tmp/q.json" 2>&1 &
  qpid=$!
  sleep 2
  q=$(num "$("$bin/distillq-broker" --stats "tcp://127.0.0.1:$fe" 2>/dev/null)" queued)
  r1=$(rss_kb "$bpid")
  for p in "${wk[@]}"; do kill -CONT "$p"; done
  wait "$qpid"
  del=$(num "$out" delivered)
  printf "%7s %8s %7s %7s %12.1f %10.1f %11.1f %13s %s\n" "$w" "$(num "$out" req_per_s)" \
    "$(num "$out" p50_ms)" "$(num "$out" p99_ms)" \
    "$(awk -v a="$c0" -v b="$c1" -v n="$del" -v hz="$hz" 'BEGIN{print (b - a) / hz / n * 1e6}')" \
    "$(awk -v k="$brss" 'BEGIN{print k / 1024}')" "$(awk -v s="$wsum" -v n="$w" 'BEGIN{print s / n / 1024}')" \
    "$(awk -v a="$r0" -v b="$r1" -v q="${q:-0}" 'BEGIN{ if (q > 0) printf "%.1f (%d)", (b - a) / q, q; else print "-" }')" \
    "$(num "$out" lost)/$(num "$out" twice)/$(num "$out" wrong)"
  [ -n "$ir" ] && awk -v w="$w" -v i="$ir" -v z="$idle" -v n="$(num "$out" delivered)" 'BEGIN{
    printf "%7s broker instructions per request (callgrind): %.0f, net of idle %.0f (idle %.0f/s)\n",
           w, i / n, (i - z) / n, z / '"$secs"' }'
  stop_pool
done

# chaos: 10 % of 20 workers SIGKILLed and restarted every cper seconds (0 s: skip)
[ "$csecs" -gt 0 ] || { echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; }
start_pool 20 || exit 1
"$bin/bench/svc_load" --endpoint "tcp://127.0.0.1:$fe" --data "$data" --clients 32 \
  --seconds "$csecs" > "$tmp/chaos.json" 2>&1 &
lpid=$!
kills=0 end=$((SECONDS + csecs))
while [ $SECONDS -lt $end ]; do
  sleep "$cper"
  for i in 0 1; do
    j=$(( (kills + i * 7) % ${#wk[@]} ))
    kill -KILL "${wk[$j]}" 2>/dev/null; wait "${wk[$j]}" 2>/dev/null
    start_worker; wk[$j]=$wpid
  done
  kills=$((kills + 2))
done
wait "$lpid"; rc=$?
stats=$("$bin/distillq-broker" --stats "tcp://127.0.0.1:$fe" 2>/dev/null)
echo "chaos (20 workers, 2 SIGKILLed + restarted every ${cper} s, $kills kills in ${csecs} s): $(cat "$tmp/chaos.json")"
echo "  broker: requeues $(num "$stats" requeues), duplicates $(num "$stats" duplicates), late_dropped $(num "$stats" late_dropped); svc_load rc=$rc"
stop_pool
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
