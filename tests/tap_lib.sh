# tap_lib.sh - what the shell tests share (sourced, not run): TAP counters,
# the Fashion-MNIST skip (a failure under CI=true), a temp dir, processes
# killed by pid on exit, free loopback ports, bounded waits and the
# broker's stats.
#
# Before sourcing set `tmp_prefix` (e.g. dq-svc). After sourcing: $bin, $src,
# $data, $tmp, the pids array (append every background pid), and a cleanup
# hook `extra_cleanup` the test may define.
# shellcheck shell=bash disable=SC2034
set -u
bin=${top_builddir:-.}
src=${top_srcdir:-.}
data=${DQ_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
# Without the data the test cannot run: a SKIP on a developer's machine, a
# FAILURE under CI=true, where scripts/bootstrap installs it (a CI that
# silently skips every end-to-end test must not look green).
if [ ! -f "$data/t10k-images-idx3-ubyte.gz" ]; then
  if [ "${CI:-}" = true ]; then
    echo "1..1"
    echo "not ok 1 - Fashion-MNIST not installed ($data) and CI=true: scripts/bootstrap installs it"
    exit 1
  fi
  echo "1..0 # SKIP Fashion-MNIST not installed ($data)"; exit 0
fi
tmp=$(mktemp -d "/tmp/${tmp_prefix:-dq-test}.XXXXXX")
pids=()
extra_cleanup() { :; }
# TERM every started process, KILL what is left after 2 s, remove $tmp.
tap_cleanup() {
  exec 2> /dev/null # no job reports for what we kill here
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for _ in $(seq 1 40); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.05
  done
  for p in "${pids[@]}"; do kill -KILL "$p"; done
  wait
  extra_cleanup
  for d in "${TMPDIR:-/tmp}"/dq-port.*; do
    [ "$(cat "$d/pid" 2>/dev/null)" = "$$" ] && rm -rf "$d"
  done
  rm -rf "$tmp"
}
trap tap_cleanup EXIT

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else notok "$1"; fi; }
show() { echo "# ---- $1"; tail -n "${2:-15}" "$1" | sed 's/^/# /'; }
# The exit status of a TAP test: failures make it non-zero.
tap_exit() { exit $((failed > 0)); }

# Two free consecutive loopback ports, starting from one derived from our pid.
# They are reserved, not only probed: make check runs tests in parallel, and
# two tests that both found a port free would bind it one after the other
# (the loser's clients then talk to the winner's broker, which may well stay
# silent to them). A reservation is a directory ${TMPDIR:-/tmp}/dq-port.N
# holding the owner's pid; one whose owner is gone is taken over; ours are
# removed on exit (tap_cleanup). $$ is the test's pid in $(pick_ports) too.
port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_claim() {
  local d="${TMPDIR:-/tmp}/dq-port.$1" owner
  if mkdir "$d" 2>/dev/null; then echo $$ > "$d/pid"; return 0; fi
  owner=$(cat "$d/pid" 2>/dev/null)
  if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
    rm -rf "$d" && mkdir "$d" 2>/dev/null && { echo $$ > "$d/pid"; return 0; }
  fi
  return 1
}
# Below Linux's ephemeral range (32768-60999): a port there can be taken at
# any moment as the local end of some process's outgoing connection (every
# zmq client has some), and then our broker cannot bind it.
next_port=$((20000 + ($$ * 7) % 11000))
pick_ports() {
  for _ in $(seq 1 400); do
    next_port=$((next_port + 2))
    [ $next_port -lt 32700 ] || next_port=20000
    if port_free $next_port && port_free $((next_port + 1)) && port_claim $next_port &&
       port_claim $((next_port + 1)); then echo $next_port; return 0; fi
  done
  return 1
}

stats() { "$bin/distillq-broker" --stats "$1" 2>/dev/null; }
# num JSON KEY: the first number after "KEY":
num() { printf '%s' "$1" | grep -o "\"$2\": [0-9]*" | head -1 | grep -o '[0-9]*$'; }
# wait_until SECONDS CMD: polls CMD every 0.05 s.
wait_until() {
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do eval "$1" && return 0; sleep 0.05; done
  return 1
}

# A broker on PORT/PORT+1 and a teacher worker for it, started in the
# background with the test's heartbeat options (its array hb), logs appended
# to $tmp/LOGNAME.log, pids in bpid/wpid and in pids (cleaned up on exit).
# Tests with other needs define their own start_worker after sourcing this.
start_broker() { # LOGNAME PORT [args]
  local name=$1 p=$2; shift 2
  "$bin/distillq-broker" --frontend "tcp://127.0.0.1:$p" --backend "tcp://127.0.0.1:$((p + 1))" \
    "${hb[@]}" "$@" < /dev/null >> "$tmp/$name.log" 2>&1 &
  bpid=$!; pids+=("$bpid")
  wait_until 10 "stats tcp://127.0.0.1:$p > /dev/null"
}
start_worker() { # LOGNAME PORT SERVICE MODEL WEIGHTS [args]
  local name=$1 p=$2 svc=$3 m=$4 w=$5; shift 5
  "$bin/distillq-teacher" --broker "tcp://127.0.0.1:$((p + 1))" --service "$svc" --model "$m" \
    --weights "$w" "${hb[@]}" "$@" < /dev/null >> "$tmp/$name.log" 2>&1 &
  wpid=$!; pids+=("$wpid")
}
# Workers the broker at PORT has, from its stats.
workers_of() { num "$(stats "tcp://127.0.0.1:$1")" workers; }
