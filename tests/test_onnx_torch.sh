#!/bin/sh
# test_onnx_torch.sh - ONNX import against PyTorch: tests/onnx_export.py
# exports small models covering every supported operator (opsets 10-17) with
# PyTorch's outputs, tests/onnx_check imports each and compares (TAP comes
# from onnx_check). Without torch/onnx/numpy for ${PYTHON:-/usr/bin/python3}
# the test is skipped, except under CI=true, where it fails: CI must run it
# (scripts/bootstrap installs python3-torch python3-onnx python3-numpy).
py="${PYTHON:-/usr/bin/python3}"
bin="${top_builddir:-.}/tests/onnx_check"
src="${top_srcdir:-.}"
if ! "$py" -c 'import torch, onnx, numpy' >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
        echo "1..1"
        echo "not ok 1 - $py cannot import torch, onnx and numpy (CI=true: required)"
        exit 1
    fi
    echo "1..0 # SKIP $py has no torch/onnx/numpy (apt-get install python3-torch python3-onnx python3-numpy)"
    exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/dq-onnx-XXXXXX") || { echo "1..1"; echo "not ok 1 - mktemp"; exit 1; }
trap 'rm -rf "$dir"' EXIT
if ! "$py" "$src/tests/onnx_export.py" "$dir" >"$dir/export.log" 2>&1; then
    echo "1..1"
    echo "not ok 1 - onnx_export.py failed"
    grep -v -i warn "$dir/export.log" | tail -20 | sed 's/^/# /'
    exit 1
fi
"$bin" "$dir"
