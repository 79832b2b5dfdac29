#!/usr/bin/env bash
# kd_seeds.sh - is distillation worth it here? KD against cross-entropy over
# several seeds at one setting (issue 9 section 6), with a fixed teacher.
#
# For each seed: the student trained with cross-entropy alone and with KD from
# the teacher (conventional: the teacher in the student's process; service and
# replay KD are bit-identical to it, tests/test_distill.sh), same batches, same
# initialisation. Prints each seed's test accuracies and the mean and spread
# (min..max, sample std) of the KD - CE difference.
#
# usage: bench/kd_seeds.sh --teacher MODEL:WEIGHTS [--seeds 1,2,3] [--full]
#                          [--build DIR] [--out DIR]
#   default setting = the demo's: LightNN, 2 epochs on 20,000 images, 2,000
#   test images; --full: 3 epochs on all 60,000, all 10,000 test images.
#   KD recipe: T=2, 0.25 soft / 0.75 CE (the tutorial's).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build seeds=1,2,3 full=0 teacher="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --teacher) teacher=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --full) full=1 ;;
    --build) build=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "kd_seeds.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$teacher" ] || { echo "kd_seeds.sh: --teacher MODEL:WEIGHTS is required" >&2; exit 2; }
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/dq-kdseeds.XXXXXX")}
mkdir -p "$out"
data=/usr/share/datasets/fashion-mnist
if [ $full -eq 1 ]; then set_args=(--epochs 3); else
  set_args=(--epochs 2 --limit-train 20000 --limit-test 2000); fi
acc() { sed -n 's/.*"test_acc":\([0-9.e-]*\).*/\1/p' "$1" | tail -1; }
rows=()
for s in ${seeds//,/ }; do
  common=(--model "$top/models/lightnn-fmnist.model" --data "$data" --batch 128 --lr 1e-3
          --seed "$s" --threads 1 --quiet "${set_args[@]}")
  "$build/distillq-train" "${common[@]}" --out "$out/ce-$s.safetensors"
  "$build/distillq-train" "${common[@]}" --loss kd --T 2 --soft-weight 0.25 --ce-weight 0.75 \
    --teacher-local "$teacher" --out "$out/kd-$s.safetensors"
  ce=$(acc "$out/ce-$s.safetensors.metrics.jsonl"); kd=$(acc "$out/kd-$s.safetensors.metrics.jsonl")
  rows+=("$s $ce $kd")
  awk -v s="$s" -v c="$ce" -v k="$kd" \
    'BEGIN { printf "seed %s: CE %.2f%%  KD %.2f%%  KD-CE %+.2f points\n", s, 100*c, 100*k, 100*(k-c) }'
done
printf '%s\n' "${rows[@]}" | awk '{ce+=$2; kd+=$3; d[NR]=($3-$2)*100; n++}
  END { m=0; for(i=1;i<=n;i++) m+=d[i]; m/=n; v=0; lo=d[1]; hi=d[1]
        for(i=1;i<=n;i++){v+=(d[i]-m)^2; if(d[i]<lo)lo=d[i]; if(d[i]>hi)hi=d[i]}
        sd = n > 1 ? sqrt(v/(n-1)) : 0
        printf "over %d seeds: CE %.2f%%, KD %.2f%%, KD-CE mean %+.2f points (std %.2f, range %+.2f..%+.2f)\n",
               n, 100*ce/n, 100*kd/n, m, sd, lo, hi }'
echo "runs in $out"
