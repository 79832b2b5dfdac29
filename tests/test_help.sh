#!/usr/bin/env bash
# test_help.sh - every program, script and built bench answers --help: exit
# 0 within 20 s, its name on standard output, nothing else done (no file in
# the working directory, no "--help" build directory in the source tree: that
# is what `scripts/build --help` did once); and an unknown option is refused
# with a non-zero exit. Needs no data and starts nothing that stays.
set -u
src=$(cd "${top_srcdir:-.}" && pwd)
bin=$(cd "${top_builddir:-.}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dq-help.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

progs=()
for p in distillq-broker distillq-cache distillq-keygen distillq-predict distillq-teacher \
         distillq-train bench/bench_broker bench/svc_load; do
  progs+=("$bin/$p")
done
for p in scripts/bootstrap scripts/build scripts/cluster scripts/demo scripts/gpu-check \
         scripts/test "$src"/bench/*.sh; do
  case "$p" in /*) progs+=("$p") ;; *) progs+=("$src/$p") ;; esac
done

echo "1..$((2 * ${#progs[@]}))"
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }

for p in "${progs[@]}"; do
  name=${p#"$bin"/}; name=${name#"$src"/}
  run="$tmp/run"; rm -rf "$run"; mkdir "$run"
  (cd "$run" && timeout 20 "$p" --help < /dev/null > "$tmp/out" 2> "$tmp/err"); rc=$?
  base=$(basename "$p")
  if [ $rc -eq 0 ] && grep -q -- "$base" "$tmp/out" && [ -z "$(ls -A "$run")" ] &&
     [ ! -e "$src/--help" ] && [ ! -e "$bin/--help" ]; then
    ok "$name --help"
  else
    notok "$name --help (rc=$rc, $(wc -l < "$tmp/out") lines out, cwd: $(ls -A "$run" | head -3))"
    sed 's/^/# /' "$tmp/err" | tail -n 5
  fi
  (cd "$run" && timeout 20 "$p" --no-such-option < /dev/null > /dev/null 2> "$tmp/err"); rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ -s "$tmp/err" ]; then
    ok "$name refuses an unknown option (rc=$rc)"
  else
    notok "$name refuses an unknown option (rc=$rc)"
  fi
done
rm -rf "$src/--help" "$bin/--help"
exit $((failed > 0))
