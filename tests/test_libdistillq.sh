#!/usr/bin/env bash
# test_libdistillq.sh - libdistillq as a user gets it: `make install` into a
# staging directory, examples/c_client_worker.c compiled with nothing but
# `pkg-config --cflags --libs distillq`, run against a real broker (its
# worker and client are the library's; the example checks every result).
# Also: the soname is versioned and only distillq_* symbols are exported,
# and the installed Python package imports from where python3 looks.
set -u
tmp_prefix=dq-lib
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..6"
abs_bin=$(cd "$bin" && pwd)
stage=$tmp/stage
prefix=/usr/local
make -C "$abs_bin" install DESTDIR="$stage" prefix=$prefix > "$tmp/install.log" 2>&1; rc=$?
check "make install DESTDIR (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/install.log"; false; }'
libdir=$stage$prefix/lib
check "versioned soname libdistillq.so.0" \
  '[ "$(objdump -p "$libdir/libdistillq.so" | awk "/SONAME/ {print \$2}")" = libdistillq.so.0 ]'
check "only distillq_* symbols exported" \
  '[ -z "$(nm -D --defined-only "$libdir/libdistillq.so" | awk "{print \$3}" | grep -v "^distillq_")" ]'
# A sanitizer build's libdistillq needs the ASan runtime loaded first into
# the uninstrumented example and python3 that load it: preload it, and keep
# LeakSanitizer for our own programs (python's interpreter-lifetime
# allocations are not leaks of ours).
san=()
if ldd "$libdir/libdistillq.so" 2> /dev/null | grep -q libasan; then
  san=(env LD_PRELOAD="$(ldd "$libdir/libdistillq.so" | awk '/libasan/ {print $3}')"
       ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi
export PKG_CONFIG_PATH=$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
# shellcheck disable=SC2046
gcc -std=c11 -Wall -Wextra -Werror "$src/examples/c_client_worker.c" \
  $(pkg-config --cflags --libs distillq) -lpthread -o "$tmp/example" 2> "$tmp/cc.err"; rc=$?
check "example builds with pkg-config only (rc=$rc)" '[ $rc -eq 0 ] || { show "$tmp/cc.err"; false; }'
P=$(pick_ports)
"$bin/distillq-broker" --frontend "tcp://127.0.0.1:$P" --backend "tcp://127.0.0.1:$((P + 1))" \
  --heartbeat-ms 100 < /dev/null > "$tmp/broker.log" 2>&1 &
pids+=($!)
wait_until 10 "stats tcp://127.0.0.1:$P > /dev/null"
LD_LIBRARY_PATH=$libdir "${san[@]}" timeout 60 "$tmp/example" "tcp://127.0.0.1:$((P + 1))" \
  "tcp://127.0.0.1:$P/toy" > "$tmp/example.out" 2>&1; rc=$?
check "example: worker + client through the broker, results in order (rc=$rc)" \
  '[ $rc -eq 0 ] && grep -q "ok: 20 batches" "$tmp/example.out" || { show "$tmp/example.out"; false; }'
py=${PYTHON:-/usr/bin/python3}
pydir=$(ls -d "$stage$prefix"/lib/python3*/dist-packages 2> /dev/null | head -1)
if "$py" -c "import numpy" 2> /dev/null && [ -n "$pydir" ]; then
  ver=$(cd /tmp && PYTHONPATH=$pydir LD_LIBRARY_PATH=$libdir "${san[@]}" "$py" -c \
        "import distillq, distillq._installed as i; print(distillq.__version__, i.LIBDIR)" 2>&1)
  check "installed Python package imports ($ver)" '[ "$ver" = "0.1.0 $prefix/lib" ]'
else
  ok "installed Python package imports # SKIP no numpy or no dist-packages"
fi
tap_exit
