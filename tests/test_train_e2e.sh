#!/usr/bin/env bash
# test_train_e2e.sh - end-to-end: distillq-train on a 2,000-image Fashion-MNIST
# subset, resume bit-identity, Ctrl-C checkpointing and resuming to the same
# bytes, distillq-predict output.
# TAP output; every process is bounded by `timeout`.
tmp_prefix=dq-e2e
# shellcheck source=tests/tap_lib.sh
. "${top_srcdir:-.}/tests/tap_lib.sh"
echo "1..14"

train=("$bin/distillq-train" --model "$src/models/lightnn-fmnist.model" --data "$data"
       --limit-train 2000 --limit-test 1000 --batch 64 --seed 7 --threads 1 --quiet)

# 1. one epoch on 2,000 images beats what an untrained model can do (~10%).
timeout 300 "${train[@]}" --epochs 1 --out "$tmp/a.safetensors" 2> "$tmp/a.err"; rc=$?
check "train 1 epoch exits 0" '[ $rc -eq 0 ] || { cat "$tmp/a.err" >&2; false; }'
acc=$(sed -n 's/.*"test_acc":\([0-9.e-]*\).*/\1/p' "$tmp/a.safetensors.metrics.jsonl" | tail -1)
echo "# test accuracy after 1 epoch on 2000 images: $acc"
check "test accuracy $acc > 0.55 (untrained ~0.10)" 'awk -v a="${acc:-0}" "BEGIN{exit !(a > 0.55)}"'

# 2. two epochs straight vs. stop after 20 batches (mid-epoch 1) + resume.
timeout 300 "${train[@]}" --epochs 2 --out "$tmp/full.safetensors" 2> "$tmp/full.err"
timeout 300 "${train[@]}" --epochs 2 --out "$tmp/res.safetensors" --stop-after 20 2> "$tmp/res.err"
check "stop-after saves a state file" '[ -f "$tmp/res.state.safetensors" ]'
timeout 300 "${train[@]}" --epochs 2 --out "$tmp/res.safetensors" --resume 2>> "$tmp/res.err"; rc=$?
check "resumed run finishes" '[ $rc -eq 0 ] || { cat "$tmp/res.err" >&2; false; }'
check "resumed weights equal uninterrupted weights bit for bit" \
  'cmp -s "$tmp/full.safetensors" "$tmp/res.safetensors"'
strip() { sed 's/"samples_per_s":[^,]*,"seconds":[^,]*,"teacher_wait_s":[^,]*,//' "$1"; }
check "resumed metrics equal uninterrupted metrics" \
  '[ "$(strip "$tmp/full.safetensors.metrics.jsonl")" = "$(strip "$tmp/res.safetensors.metrics.jsonl")" ]'

# 3. SIGINT mid-run writes a resumable checkpoint and exits 130, and the
# resumed run ends in the same bytes as the uninterrupted one (full). The
# signal comes when the state says the run is under way: epoch 1's metrics
# line is written, epoch 2 (31 batches + eval) is in progress.
"${train[@]}" --epochs 2 --out "$tmp/int.safetensors" 2> "$tmp/int.err" &
pid=$!; pids+=("$pid")
wait_until 300 '[ -s "$tmp/int.safetensors.metrics.jsonl" ] || ! kill -0 $pid 2>/dev/null'
kill -0 $pid 2>/dev/null; alive=$?
kill -INT $pid
wait_until 60 '! kill -0 $pid 2>/dev/null'
kill -9 $pid 2>/dev/null
wait $pid; rc=$?
check "SIGINT in epoch 2 exits 130 with a resumable checkpoint (rc=$rc, alive at the signal: $alive)" \
  '[ $alive -eq 0 ] && [ $rc -eq 130 ] && [ -f "$tmp/int.state.safetensors" ] || { show "$tmp/int.err"; false; }'
timeout 300 "${train[@]}" --epochs 2 --out "$tmp/int.safetensors" --resume 2>> "$tmp/int.err"; rc=$?
check "the run resumed after SIGINT ends in the uninterrupted run's bytes (rc=$rc)" \
  '[ $rc -eq 0 ] && cmp -s "$tmp/full.safetensors" "$tmp/int.safetensors" || { show "$tmp/int.err"; false; }'
check "and in its metrics" \
  '[ "$(strip "$tmp/full.safetensors.metrics.jsonl")" = "$(strip "$tmp/int.safetensors.metrics.jsonl")" ]'

# 5. --lr-schedule cosine: not the constant rate's weights, and a run stopped
# mid-epoch and resumed continues on the same curve (the rate is a function
# of the step alone): the same bytes.
timeout 300 "${train[@]}" --epochs 2 --lr-schedule cosine --out "$tmp/cos.safetensors" \
  2> "$tmp/cos.err"
timeout 300 "${train[@]}" --epochs 2 --lr-schedule cosine --out "$tmp/cosr.safetensors" \
  --stop-after 20 2> "$tmp/cosr.err"
timeout 300 "${train[@]}" --epochs 2 --lr-schedule cosine --out "$tmp/cosr.safetensors" \
  --resume 2>> "$tmp/cosr.err"
check "cosine schedule trains, to other weights than the constant rate" \
  '[ -s "$tmp/cos.safetensors" ] && ! cmp -s "$tmp/full.safetensors" "$tmp/cos.safetensors" ||
   { show "$tmp/cos.err"; false; }'
check "cosine schedule: resumed weights equal uninterrupted weights bit for bit" \
  'cmp -s "$tmp/cos.safetensors" "$tmp/cosr.safetensors" || { show "$tmp/cosr.err"; false; }'

# 4. predict writes [N,10] logits and the same accuracy as training's eval.
timeout 120 "$bin/distillq-predict" --model "$src/models/lightnn-fmnist.model" \
  --weights "$tmp/a.safetensors" --data "$data" --limit 1000 --output "$tmp/p.npy" 2> "$tmp/p.err"; rc=$?
check "predict exits 0" '[ $rc -eq 0 ] || { cat "$tmp/p.err" >&2; false; }'
pacc=$(sed -n 's/^accuracy \([0-9.]*\)%.*/\1/p' "$tmp/p.err")
check "predict accuracy ($pacc%) equals training's test accuracy ($acc)" \
  'awk -v a="$acc" -v p="$pacc" "BEGIN{d=a*100-p; exit !(d < 0.006 && d > -0.006)}"'
check "predict writes a float32 [1000, 10] .npy" \
  'head -c 128 "$tmp/p.npy" | grep -aq "<f4.*(1000, 10)" &&
   [ "$(stat -c %s "$tmp/p.npy")" -eq $((128 + 1000 * 10 * 4)) ]'
tap_exit
