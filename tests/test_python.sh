#!/usr/bin/env bash
# test_python.sh - the Python package (python/distillq, libdistillq through
# ctypes) under pytest: tests/python/*.py, one TAP line per pytest test.
# Debian's python3 with numpy, torch and pytest runs them; without one of
# those the test is skipped, unless CI=true, where that is a failure.
set -u
bin=${top_builddir:-.}
src=${top_srcdir:-.}
py=${PYTHON:-/usr/bin/python3}
data=${DQ_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
missing=""
for m in numpy torch pytest; do
  "$py" -c "import $m" 2> /dev/null || missing="$missing $m"
done
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || missing="$missing fashion-mnist"
if [ -n "$missing" ]; then
  if [ "${CI:-}" = true ]; then echo "1..1"; echo "not ok 1 - missing:$missing"; exit 1; fi
  echo "1..0 # SKIP missing:$missing"; exit 0
fi
lib=$(cd "$bin" && pwd)/.libs/libdistillq.so.0
[ -f "$lib" ] || { echo "1..1"; echo "not ok 1 - $lib not built"; exit 1; }
# A sanitizer build's libdistillq needs the ASan runtime loaded first into
# the (uninstrumented) python3 or example that loads it: preload it, and keep
# LeakSanitizer for our own programs (python's interpreter-lifetime
# allocations are not leaks of ours).
san=()
if ldd "$lib" 2> /dev/null | grep -q libasan; then
  san=(env LD_PRELOAD="$(ldd "$lib" | awk '/libasan/ {print $3}')"
       ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi
out=$(mktemp /tmp/dq-pytest.XXXXXX)
trap 'rm -f "$out"' EXIT
DQ_BIN=$(cd "$bin" && pwd) DQ_SRC=$(cd "$src" && pwd) DISTILLQ_LIB=$lib \
  PYTHONPATH="$(cd "$src" && pwd)/python:$(cd "$src" && pwd)/tests/python${PYTHONPATH:+:$PYTHONPATH}" \
  PYTHONDONTWRITEBYTECODE=1 \
  "${san[@]}" timeout 900 "$py" -m pytest -v -p no:cacheprovider -rfE "$src/tests/python" > "$out" 2>&1
rc=$?
n=0
tap=()
while IFS= read -r line; do
  case "$line" in
    *::*" PASSED"*) n=$((n + 1)); tap+=("ok $n - ${line%% PASSED*}") ;;
    *::*" SKIPPED"*) n=$((n + 1)); tap+=("ok $n - ${line%% SKIPPED*} # SKIP") ;;
    *::*" FAILED"*|*::*" ERROR"*) n=$((n + 1)); tap+=("not ok $n - ${line%% [FE][AR]*}") ;;
  esac
done < <(grep -E '::[A-Za-z0-9_]+ (PASSED|FAILED|ERROR|SKIPPED)' "$out")
if [ $n -eq 0 ]; then echo "1..1"; echo "not ok 1 - pytest ran nothing (rc=$rc)"
else echo "1..$n"; printf '%s\n' "${tap[@]}"; fi
[ $rc -eq 0 ] || sed 's/^/# /' "$out" | tail -n 80
exit $((rc != 0))
