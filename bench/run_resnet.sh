#!/bin/sh
# run_resnet.sh - issue 9 section 5: ResNet-18-fmnist against PyTorch, one table.
#
# Runs bench/bench_net on models/resnet18-fmnist.model and bench/pytorch_resnet.py
# on torchvision's resnet18 with the same 1-channel conv1, alternating per thread
# count so both see the same machine state, on the same Fashion-MNIST test
# images, then prints samples/s side by side with the ratio and the issue's
# targets: eval forward >= 0.9x PyTorch at 1 thread and >= 1.2x at 2 threads,
# training step >= 1.0x at both.
#
# usage: bench/run_resnet.sh [BUILD_DIR]      (default ./build; `make bench-resnet`)
# environment: BENCH_THREADS (1,2)  BENCH_SECONDS (5)  BENCH_PYTHON (/usr/bin/python3)
#              BENCH_MODEL (models/resnet18-fmnist.model)
set -u
case "${1:-}" in
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "run_resnet.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac
srcdir=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$srcdir/build}
build=$(cd "$build" && pwd) || exit 2
bench="$build/bench/bench_net"
python=${BENCH_PYTHON:-/usr/bin/python3}
seconds=${BENCH_SECONDS:-5}
threads=${BENCH_THREADS:-1,2}
model=${BENCH_MODEL:-$srcdir/models/resnet18-fmnist.model}
[ -x "$bench" ] || { echo "run_resnet.sh: build first: make -C $build bench/bench_net" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dq-resnet.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
res="$tmp/results.tsv"
: >"$res"
echo "ResNet-18-fmnist benchmark  $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
have_torch=no
"$python" -c 'import torch, torchvision' 2>/dev/null && have_torch=yes
for t in $(echo "$threads" | tr ',' ' '); do
  for what in fwd train; do
    "$bench" --model "$model" --tag resnet18 --threads "$t" --seconds "$seconds" --only "$what" \
      >>"$res" || exit 1
    [ $have_torch = yes ] && "$python" "$srcdir/bench/pytorch_resnet.py" --threads "$t" \
      --seconds "$seconds" --only "$what" >>"$res"
  done
done
get() { awk -F'\t' -v i="$1" -v t="$2" -v m="$3" '$1=="RESULT" && $2==i && $3==t && $4==m {v=$5} END {print v}' "$res"; }
printf '%-22s %3s %12s %12s %7s  %s\n' metric thr distillq pytorch ratio target
for t in $(echo "$threads" | tr ',' ' '); do
  for m in fwd train; do
    d=$(get distillq "$t" "resnet18_${m}_sps"); p=$(get pytorch "$t" "resnet18_${m}_sps")
    case "$m/$t" in fwd/1) goal=0.9 ;; fwd/*) goal=1.2 ;; *) goal=1.0 ;; esac
    if [ -n "$p" ]; then
      awk -v m="resnet18 $m samples/s" -v t="$t" -v d="$d" -v p="$p" -v g="$goal" 'BEGIN {
        r = d / p; printf "%-22s %3s %12.1f %12.1f %6.2fx  >= %.1fx %s\n", m, t, d, p, r, g, (r >= g ? "PASS" : "MISS") }'
    else
      printf '%-22s %3s %12.1f %12s\n' "resnet18 $m samples/s" "$t" "$d" "(no torch)"
    fi
  done
done
