#!/bin/sh
# test_onnx_torch.sh - ONNX import against PyTorch: tests/onnx_export.py
# exports small models covering every supported operator (opsets 10-17) with
# PyTorch's outputs, tests/onnx_check imports each and compares (one TAP
# line per model); then distillq-predict runs an ONNX model on 8-bit images
# normalised from its metadata, against PyTorch, and refuses --weights with
# it. Without torch/onnx/numpy for ${PYTHON:-/usr/bin/python3} the test is
# skipped, except under CI=true, where it fails: CI must run it
# (scripts/bootstrap installs python3-torch python3-onnx python3-numpy).
py="${PYTHON:-/usr/bin/python3}"
top="${top_builddir:-.}"
src="${top_srcdir:-.}"
if ! "$py" -c 'import torch, torchvision, onnx, numpy' >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
        echo "1..1"
        echo "not ok 1 - $py cannot import torch, torchvision, onnx and numpy (CI=true: required)"
        exit 1
    fi
    echo "1..0 # SKIP $py has no torch/torchvision/onnx/numpy (apt-get install python3-torch python3-torchvision python3-onnx python3-numpy)"
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
fail=0
"$top/tests/onnx_check" "$dir" >"$dir/check.tap" || fail=1
grep -v '^1\.\.' "$dir/check.tap"
n=$(grep -c '^\(not \)\{0,1\}ok ' "$dir/check.tap")

# distillq-predict on u8 images: metadata normalisation + forward vs PyTorch.
n=$((n + 1))
if "$top/distillq-predict" --model "$dir/plain13.onnx" --data "$dir/plain13-images-idx3-ubyte" \
        --output "$dir/pred.npy" >"$dir/predict.log" 2>&1 &&
   "$py" - "$dir/pred.npy" "$dir/plain13.u8.logits.npy" >"$dir/cmp.log" 2>&1 <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
err = float(np.abs(a - b).max()) / float(np.abs(b).max())
print("max relative error %.2g" % err)
sys.exit(0 if a.shape == b.shape and err <= 1e-4 else 1)
PY
then
    echo "ok $n - distillq-predict --model plain13.onnx on u8 images: $(cat "$dir/cmp.log")"
else
    echo "not ok $n - distillq-predict --model plain13.onnx on u8 images"
    cat "$dir/predict.log" "$dir/cmp.log" | sed 's/^/# /'
    fail=1
fi
n=$((n + 1))
if "$top/distillq-predict" --model "$dir/plain13.onnx" --weights "$dir/w.safetensors" \
        --data "$dir/plain13-images-idx3-ubyte" --output "$dir/x.npy" >"$dir/w.log" 2>&1; then
    echo "not ok $n - distillq-predict took --weights with an ONNX model"
    fail=1
elif grep -q "weights are the file's initializers" "$dir/w.log"; then
    echo "ok $n - --weights with an ONNX model is refused: $(head -1 "$dir/w.log")"
else
    echo "not ok $n - unexpected message: $(head -1 "$dir/w.log")"
    fail=1
fi
echo "1..$n"
exit $fail
