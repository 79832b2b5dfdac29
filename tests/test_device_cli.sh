#!/usr/bin/env bash
# test_device_cli.sh - --device on distillq-predict, -train and -teacher:
# asking for a GPU that this build or this machine cannot provide is a
# one-line error with a non-zero exit, in every build (the reason differs:
# "this build has no CUDA support" or "no CUDA device found"); a malformed
# value is an argument error; cpu is accepted. On a machine with a usable
# GPU, cuda:0 is accepted and cuda:99 is the one-line error instead.
# No model or data is read: device selection comes first.
# TAP output; every process is bounded by `timeout`.
set -u
bin=${top_builddir:-.}
tmp=$(mktemp -d /tmp/dq-device.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
echo "1..13"

none="(this build has no CUDA support \(configure --with-cuda\)|no CUDA device found \(cudaGetDeviceCount: .+\))"

# run NAME ARGS...: runs a program, leaves its exit code in rc and stderr in $tmp/err.
run() {
  local prog=$1; shift
  timeout 60 "$bin/$prog" "$@" > /dev/null 2> "$tmp/err"; rc=$?
}

# expect_one_line DESC REGEX: rc != 0 and stderr is exactly one line matching REGEX.
expect_one_line() {
  local lines
  lines=$(wc -l < "$tmp/err")
  if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$lines" -eq 1 ] && grep -Eq "$2" "$tmp/err"; then
    ok "$1"
  else
    notok "$1 (rc=$rc, $lines lines)"; sed 's/^/# /' "$tmp/err"
  fi
}

predict=(--model "$tmp/none.model" --weights "$tmp/none.st" --data "$tmp/none" --output "$tmp/o.npy")
train=(--model "$tmp/none.model" --data "$tmp/none" --out "$tmp/o.safetensors")
teacher=(--broker tcp://127.0.0.1:9 --service s --model "$tmp/none.model" --weights "$tmp/none.st")

# Is there a usable GPU here? Then cuda:0 gets past selection to the model file.
run distillq-predict --device cuda:0 "${predict[@]}"
if grep -q "none.model" "$tmp/err"; then
  gpu=1; dev=cuda:99
  echo "# a usable GPU is present: checking cuda:99 instead of cuda:0"
  msg="--device cuda:99: only [0-9]+ CUDA devices? \(cuda:0( to cuda:[0-9]+)?\)"
else
  gpu=0; dev=cuda:0
  msg="--device cuda:0: $none"
fi

run distillq-predict --device "$dev" "${predict[@]}"
expect_one_line "distillq-predict --device $dev is a one-line error" "^distillq-predict: $msg\$"
run distillq-predict --device cuda "${predict[@]}"
if [ "$gpu" -eq 1 ]; then
  if grep -q "none.model" "$tmp/err"; then ok "--device cuda = cuda:0 is accepted"; else notok "--device cuda accepted"; fi
else
  expect_one_line "distillq-predict --device cuda is a one-line error" \
    "^distillq-predict: --device cuda: $none\$"
fi
run distillq-train --device "$dev" "${train[@]}"
expect_one_line "distillq-train --device $dev is a one-line error" "^distillq-train: $msg\$"
run distillq-teacher --device "$dev" "${teacher[@]}"
expect_one_line "distillq-teacher --device $dev is a one-line error" "^distillq-teacher: $msg\$"

# Malformed values are argument errors naming the value.
for bad in gpu cuda:x cuda:-1; do
  run distillq-predict --device "$bad" "${predict[@]}"
  expect_one_line "--device $bad is rejected" \
    "^distillq-predict: --device $bad: expected cpu, cuda or cuda:N\$"
done

# cpu passes selection: the next error is about the (missing) model file.
run distillq-predict --device cpu "${predict[@]}"
expect_one_line "predict --device cpu gets past device selection" "none\.model"
run distillq-teacher --device cpu "${teacher[@]}"
expect_one_line "teacher --device cpu gets past device selection" "none\.model"

# --eval-chunk is the GPU executor's: on the CPU it is an argument error, out
# of range it is one too, and with a GPU it is accepted.
run distillq-teacher --eval-chunk 64 "${teacher[@]}"
expect_one_line "teacher --eval-chunk without --device cuda is a one-line error" \
  "^distillq-teacher: --eval-chunk is for --device cuda"
run distillq-predict --eval-chunk 0 "${predict[@]}"
expect_one_line "predict --eval-chunk 0 is rejected" \
  "^distillq-predict: --eval-chunk: expected an integer in \\[1, 65536\\], got '0'\$"
if [ "$gpu" -eq 1 ]; then
  run distillq-predict --device cuda:0 --eval-chunk 64 "${predict[@]}"
  expect_one_line "predict --device cuda:0 --eval-chunk 64 gets past selection" "none\.model"
else
  run distillq-predict --eval-chunk 64 "${predict[@]}"
  expect_one_line "predict --eval-chunk without --device cuda is a one-line error" \
    "^distillq-predict: --eval-chunk is for --device cuda"
fi

# With a GPU, training on it is accepted: the next error is the missing model.
if [ "$gpu" -eq 1 ]; then
  run distillq-train --device cuda:0 "${train[@]}"
  expect_one_line "train --device cuda:0 gets past device selection" "none"
else
  run distillq-train --device cpu "${train[@]}"
  expect_one_line "train --device cpu gets past device selection" "none"
fi
[ "$failed" -eq 0 ]
