#!/usr/bin/env bash
# test_resnet_torch.sh - the residual models against PyTorch (issue 9):
# torchvision's ResNet-18 (models/resnet18-fmnist.model) and TinyMobileNet
# (models/mobilenet-tiny-fmnist.model) - PyTorch weights as safetensors into
# distillq (eval, folded batch norm, a training step's logits, gradients and
# running statistics), and a distillq-trained checkpoint back into PyTorch
# with load_state_dict(strict=True). tests/resnet_torch.py does the work and
# prints the TAP lines. Skips when Debian's python has no torch/torchvision,
# except under CI=true, where that is a failure.
tmp_prefix=dq-resnet
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
py=${PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import torch, torchvision, numpy' 2> /dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "1..1"; echo "not ok 1 - $py has no torch/torchvision (required under CI=true)"; exit 1
  fi
  echo "1..0 # SKIP $py has no torch/torchvision"; exit 0
fi
OPENBLAS_NUM_THREADS=1 DQ_FMNIST="$data" "$py" "$src/tests/resnet_torch.py" "$bin" "$src" "$tmp"
