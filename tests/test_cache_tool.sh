#!/usr/bin/env bash
# test_cache_tool.sh - distillq-cache stats/verify/export on a small known
# cache (written by `test_cache --fixture`), a corrupted copy, and bad usage.
# TAP output; every process is bounded by `timeout`.
set -u
bin=${top_builddir:-.}
tool="$bin/distillq-cache"
tmp=$(mktemp -d /tmp/dq-cache-tool.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else notok "$1"; fi; }
echo "1..14"
sha=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

timeout 60 "$bin/tests/test_cache" --fixture "$tmp/c" > /dev/null 2>&1
timeout 60 "$tool" stats "$tmp/c" > "$tmp/stats.out" 2>&1; rc=$?
check "stats exits 0" '[ $rc -eq 0 ] || { cat "$tmp/stats.out" >&2; false; }'
check "stats: 40 entries" 'grep -qx "entries    40" "$tmp/stats.out"'
check "stats: the teacher with its service, model, sha and count" \
  'grep -qx "teacher    service=fmnist model=deepnn-fmnist sha256=$sha entries=40" "$tmp/stats.out"'
check "stats: map size is the 4 GiB default" 'grep -q "^map size   4096.0 MiB" "$tmp/stats.out"'

out=$(timeout 60 "$tool" verify "$tmp/c" 2>&1); rc=$?
check "verify: 'ok 40 entries', exit 0" '[ $rc -eq 0 ] && [ "$out" = "ok 40 entries" ]'

timeout 60 "$tool" export "$tmp/c" --out "$tmp/l.npy" > "$tmp/exp.out" 2>&1; rc=$?
check "export (default teacher, logits) exits 0" '[ $rc -eq 0 ] || { cat "$tmp/exp.out" >&2; false; }'
check "export: [20, 10] float32, 128-byte header + 800 bytes" \
  'head -c 128 "$tmp/l.npy" | grep -q "'"'"'shape'"'"': (20, 10)" && [ "$(stat -c %s "$tmp/l.npy")" -eq 928 ]'
timeout 60 "$tool" export "$tmp/c" --teacher $sha --output features --out "$tmp/f.npy" > /dev/null 2>&1; rc=$?
check "export features: [20, 4, 2]" \
  '[ $rc -eq 0 ] && head -c 128 "$tmp/f.npy" | grep -q "'"'"'shape'"'"': (20, 4, 2)"'
err=$(timeout 60 "$tool" export "$tmp/c" --output nope --out "$tmp/n.npy" 2>&1); rc=$?
check "export of an absent output fails naming it" \
  '[ $rc -eq 1 ] && [[ "$err" == *"nope"* ]] && [ ! -e "$tmp/n.npy" ]'

mkdir "$tmp/empty"
err=$(timeout 60 "$tool" stats "$tmp/empty" 2>&1); rc=$?
check "stats of a directory without a cache fails clearly" '[ $rc -eq 1 ] && [[ "$err" == *"no cache"* ]]'
timeout 60 "$tool" frob "$tmp/c" > /dev/null 2>&1; rc=$?
check "unknown command: usage error 2" '[ $rc -eq 2 ]'
check "--help and --version exit 0" \
  '"$tool" --help | grep -q "^usage: distillq-cache" && "$tool" --version | grep -q "^distillq-cache "'

timeout 60 "$bin/tests/test_cache" --fixture "$tmp/bad" --corrupt > /dev/null 2>&1
out=$(timeout 60 "$tool" verify "$tmp/bad" 2>&1); rc=$?
check "verify of a corrupted cache exits 1" '[ $rc -eq 1 ]'
check "verify lists the bad key and reason" \
  '[ "$(echo "$out" | grep -c "^bad 0123456789ab\.\./[0-9a-f]\{32\}/[a-z]*: checksum mismatch$")" -eq 1 ] &&
   echo "$out" | grep -qx "FAILED 1 bad of 40 entries"'
exit $((failed > 0))
