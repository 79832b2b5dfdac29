#!/usr/bin/env bash
# test_onnx_teacher.sh - an ONNX teacher is the same teacher (issue 9 section
# 4) with real processes on 127.0.0.1: a LightNN trained by distillq for a
# moment is exported to ONNX by PyTorch (tests/onnx_export.py --lightnn, its
# safetensors loaded with strict=True), and then
#   - distillq-predict gives bit-identical logits from the .onnx and from
#     the model file + safetensors,
#   - a KD student trained with --teacher-local FILE.onnx is bit-identical
#     to one trained with --teacher-local MODEL:WEIGHTS,
#   - distillq-teacher --model FILE.onnx serves through a broker, and the
#     teacher identity in the replies is the ONNX file's sha256.
# Skipped without Fashion-MNIST, or without torch unless CI=true.
tmp_prefix=dq-onnx-teacher
py="${PYTHON:-/usr/bin/python3}"
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
if ! "$py" -c 'import torch, onnx, numpy' > /dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "1..1"; echo "not ok 1 - $py cannot import torch, onnx and numpy (CI=true: required)"; exit 1
  fi
  echo "1..0 # SKIP $py has no torch/onnx/numpy"; exit 0
fi
echo "1..5"

lenet=$src/models/lightnn-fmnist.model
"$bin/distillq-train" --model "$lenet" --data "$data" --limit-train 512 --limit-test 64 \
  --epochs 1 --batch 64 --seed 1 --quiet --out "$tmp/teacher.safetensors" 2> "$tmp/teacher.err"
"$py" "$src/tests/onnx_export.py" --lightnn "$tmp/teacher.safetensors" "$tmp/teacher.onnx" \
  > "$tmp/export.log" 2>&1; rc=$?
check "PyTorch exports the distillq-trained LightNN (rc=$rc)" \
  '[ $rc -eq 0 ] || { show "$tmp/teacher.err"; show "$tmp/export.log"; false; }'

pred=("$bin/distillq-predict" --data "$data" --limit 300 --batch 64)
"${pred[@]}" --model "$lenet" --weights "$tmp/teacher.safetensors" --output "$tmp/mf.npy" \
  > "$tmp/pmf.log" 2>&1
"${pred[@]}" --model "$tmp/teacher.onnx" --output "$tmp/onnx.npy" > "$tmp/ponnx.log" 2>&1
check "distillq-predict: .onnx logits bit-identical to model file + weights" \
  'cmp -s "$tmp/mf.npy" "$tmp/onnx.npy" || { show "$tmp/pmf.log"; show "$tmp/ponnx.log"; false; }'

student=("$bin/distillq-train" --model "$lenet" --data "$data" --limit-train 600
         --limit-test 100 --epochs 1 --batch 50 --seed 5 --threads 1 --quiet --loss kd)
"${student[@]}" --teacher-local "$lenet:$tmp/teacher.safetensors" --out "$tmp/A.safetensors" \
  2> "$tmp/A.err"
"${student[@]}" --teacher-local "$tmp/teacher.onnx" --out "$tmp/B.safetensors" 2> "$tmp/B.err"
check "KD student with --teacher-local FILE.onnx bit-identical to MODEL:WEIGHTS" \
  'cmp -s "$tmp/A.safetensors" "$tmp/B.safetensors" || { show "$tmp/A.err"; show "$tmp/B.err"; false; }'

P=$(pick_ports)
"$bin/distillq-broker" --frontend "tcp://127.0.0.1:$P" --backend "tcp://127.0.0.1:$((P + 1))" \
  < /dev/null > "$tmp/broker.log" 2>&1 &
pids+=($!)
wait_until 10 "stats tcp://127.0.0.1:$P > /dev/null"
"$bin/distillq-teacher" --broker "tcp://127.0.0.1:$((P + 1))" --service onnx \
  --model "$tmp/teacher.onnx" < /dev/null > "$tmp/worker.log" 2>&1 &
pids+=($!)
wait_until 10 '[ "$(num "$(stats tcp://127.0.0.1:$P)" workers)" = 1 ]'
"${pred[@]}" --teacher "tcp://127.0.0.1:$P/onnx" --output "$tmp/svc.npy" > "$tmp/psvc.log" 2>&1
sha=$(sha256sum "$tmp/teacher.onnx" | cut -d' ' -f1)
check "distillq-teacher --model FILE.onnx serves the same logits" \
  'cmp -s "$tmp/mf.npy" "$tmp/svc.npy" || { show "$tmp/psvc.log"; show "$tmp/worker.log"; false; }'
check "the teacher identity is the ONNX file's sha256 ($sha)" \
  'grep -q "sha256 $sha" "$tmp/psvc.log" || { show "$tmp/psvc.log"; false; }'
tap_exit
