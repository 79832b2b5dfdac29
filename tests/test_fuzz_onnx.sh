#!/bin/sh
# test_fuzz_onnx.sh - runs the libFuzzer target for the ONNX importer for a
# bounded time (DQ_FUZZ_SECONDS, default 20) with every sanitizer finding
# fatal, and reports TAP. Seeds: the small models tests/onnx_export.py
# exports when torch is there (deep paths from the start), else the
# dictionary alone. Skipped when configure found no clang.
bin="${top_builddir:-.}/tests/fuzz_onnx"
src="${top_srcdir:-.}"
py="${PYTHON:-/usr/bin/python3}"
if [ ! -x "$bin" ]; then
    echo "1..0 # SKIP no clang: libFuzzer target not built"
    exit 0
fi
echo "1..1"
dir=$(mktemp -d "${TMPDIR:-/tmp}/dq-fuzz-onnx-XXXXXX") || { echo "not ok 1 - mktemp"; exit 1; }
mkdir "$dir/corpus" "$dir/models"
seeds="dictionary only"
if "$py" -c 'import torch, onnx, numpy' >/dev/null 2>&1 &&
   "$py" "$src/tests/onnx_export.py" "$dir/models" >/dev/null 2>&1; then
    for m in plain13 residual11 clip10 matmul13 nodes13 view_static13 sigmoid13; do
        [ -f "$dir/models/$m.onnx" ] && cp "$dir/models/$m.onnx" "$dir/corpus/"
    done
    seeds="$(ls "$dir/corpus" | wc -l) exported models"
fi
secs="${DQ_FUZZ_SECONDS:-20}"
if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=131072 \
        -dict="$src/tests/fuzz_onnx.dict" -artifact_prefix="$dir/" "$dir/corpus" \
        >"$dir/log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$dir/log" | tail -1)
    echo "ok 1 - fuzz_onnx: ${runs:-done} in ${secs}s from $seeds, no crash"
    rc=0
else
    echo "not ok 1 - fuzz_onnx found a failing input (see below)"
    tail -40 "$dir/log" | sed 's/^/# /'
    for f in "$dir"/crash-* "$dir"/leak-* "$dir"/oom-* "$dir"/timeout-*; do
        [ -f "$f" ] && echo "# input: $(od -An -tx1 "$f" | head -4 | tr -s ' ')"
    done
    rc=1
fi
rm -rf "$dir"
exit $rc
