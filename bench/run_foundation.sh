#!/bin/sh
# run_foundation.sh - the issue 3 benchmarks: distillq against PyTorch, one table.
#
# Runs bench/bench_foundation (sgemm peak, DeepNN-fmnist forward, LightNN-fmnist
# training) and bench/pytorch_models.py on the same architectures with
# Debian's python3-torch when it is installed, alternating per thread count,
# then one LightNN cross-entropy epoch on Fashion-MNIST with distillq-train
# and with PyTorch at 1 thread, and prints the numbers side by side with ratios and
# PASS/MISS against the targets of the issue. Both programs print
# tab-separated "RESULT impl threads metric value" lines that are joined here.
# Installs nothing: without torch it prints the distillq numbers and says so.
#
# usage: bench/run_foundation.sh [BUILD_DIR]      (default: ./build, or . if it
#        holds bench/bench_foundation); `make bench` in a build dir runs this.
# environment: BENCH_THREADS (1,2)  BENCH_SECONDS (3, timed seconds per number)
#              BENCH_DATA (/usr/share/datasets/fashion-mnist; "none" skips the
#              epoch)  BENCH_PYTHON (/usr/bin/python3: Debian's, not a pyenv one)
set -u
case "${1:-}" in
    -h|--help) awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "run_foundation.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

srcdir=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-}
if [ -z "$build" ]; then
    if [ -x ./bench/bench_foundation ]; then build=.; else build="$srcdir/build"; fi
fi
[ -d "$build" ] || { echo "run_foundation.sh: no build dir '$build'" >&2; exit 2; }
build=$(cd "$build" && pwd) || exit 2
bench="$build/bench/bench_foundation"
train="$build/distillq-train"
threads=${BENCH_THREADS:-1,2}
seconds=${BENCH_SECONDS:-3}
data=${BENCH_DATA:-/usr/share/datasets/fashion-mnist}
python=${BENCH_PYTHON:-/usr/bin/python3}

if [ ! -x "$bench" ] || [ ! -x "$train" ]; then
    echo "run_foundation.sh: build first: make -C $build bench/bench_foundation distillq-train" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dq-bench.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
results="$tmp/results.tsv"
: >"$results"

now() { date +%s.%N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
echo "distillq foundation benchmarks  $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}; load average at start: $(load)"
echo "threads: $threads; batch 128; per number: warm-up, then the median of 5 windows over ${seconds} s"
echo

have_torch=no
if [ -x "$python" ] && "$python" -c 'import torch' 2>/dev/null; then
    have_torch=yes
fi
py() { # runs pytorch_models.py with the given arguments, appending to the results
    [ "$have_torch" = yes ] || return 0
    "$python" "$srcdir/bench/pytorch_models.py" --seconds "$seconds" "$@" >>"$results" || {
        echo "run_foundation.sh: PyTorch run failed" >&2; have_torch=failed; }
}

# distillq and PyTorch alternate per thread count, so that a slow spell of
# the machine does not fall on one side only.
for t in $(echo "$threads" | tr ',' ' '); do
    echo "== distillq, $t thread(s)" >&2
    "$bench" --threads "$t" --seconds "$seconds" --models "$srcdir/models" >>"$results" || {
        echo "run_foundation.sh: bench_foundation failed" >&2; exit 1; }
    [ "$have_torch" = yes ] && echo "== PyTorch ($python), $t thread(s)" >&2
    py --threads "$t"
done

if [ "$data" != none ] && [ -d "$data" ]; then
    echo "== distillq-train: one LightNN epoch, 1 thread" >&2
    t0=$(now)
    if "$train" --model "$srcdir/models/lightnn-fmnist.model" --data "$data" --epochs 1 \
        --batch 128 --threads 1 --seed 42 --quiet --out "$tmp/epoch.safetensors" 2>"$tmp/train.err"; then
        t1=$(now)
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "RESULT\tdistillq\t1\tepoch_s\t%.2f\n", b - a }' \
            >>"$results"
        acc=$(sed -n 's/.*"test_acc"[[:space:]]*:[[:space:]]*\([0-9.eE+-]*\).*/\1/p' \
            "$tmp/epoch.safetensors.metrics.jsonl" 2>/dev/null | tail -n1)
        [ -n "$acc" ] && printf 'INFO\tdistillq_epoch_test_acc\t%s\n' "$acc" >>"$results"
    else
        echo "run_foundation.sh: distillq-train failed: $(tail -n1 "$tmp/train.err")" >&2
    fi
    [ "$have_torch" = yes ] && echo "== PyTorch: one LightNN epoch, 1 thread" >&2
    py --threads "" --epoch-data "$data"
fi

echo "load average at end: $(load)"
case $have_torch in
    no) echo "PyTorch skipped: $python cannot import torch (apt-get install python3-torch)";;
    failed) echo "PyTorch run failed; its numbers are missing";;
esac
echo

# Join the RESULT/INFO lines into the table.
awk -F'\t' -v threads="$threads" '
$1 == "INFO"   { info[$2] = $3; next }
$1 == "RESULT" { r[$2, $3, $4] = $5; next }
function has(impl, t, m) { return ((impl, t, m) in r) }
function cell(impl, t, m) { return has(impl, t, m) ? r[impl, t, m] : "-" }
function verdict(ok) { return ok ? "PASS" : "MISS" }
function row(name, t, m, ratio, target, status) {
    printf "%-26s %3s %10s %10s %8s  %-22s %s\n", name, t, cell("distillq", t, m),
        cell("pytorch", t, m), ratio, target, status
}
function speedup(t, m,    a, b) {   # ours / theirs for rates
    if (!has("distillq", t, m) || !has("pytorch", t, m) || r["pytorch", t, m] <= 0) return ""
    return r["distillq", t, m] / r["pytorch", t, m]
}
END {
    print "BLAS, distillq:  " (("distillq_blas" in info) ? info["distillq_blas"] : "?")
    if ("pytorch_blas" in info) {
        print "BLAS, PyTorch " info["torch"] ": " info["pytorch_blas"]
        print "PyTorch conv2d kernel: " info["pytorch_conv_kernel"] \
            " (linear layers use the BLAS above)"
    }
    print ""
    printf "%-26s %3s %10s %10s %8s  %-22s %s\n", "measurement", "thr", "distillq", "PyTorch",
        "ratio", "target", "result"
    n = split(threads, ts, ",")
    for (i = 1; i <= n; i++) {
        t = ts[i]
        row("sgemm 4096^3 GFLOP/s", t, "sgemm_gflops", "", "", "")
        s = speedup(t, "teacher_fwd_sps")
        row("teacher fwd samples/s", t, "teacher_fwd_sps", s == "" ? "" : sprintf("%.2fx", s),
            ">= 1.2x PyTorch", s == "" ? "n/a" : verdict(s >= 1.2))
        g = cell("distillq", t, "teacher_fwd_gflops"); p = cell("distillq", t, "sgemm_gflops")
        share = (g != "-" && p != "-" && p > 0) ? g / p : ""
        row("teacher fwd GFLOP/s", t, "teacher_fwd_gflops",
            share == "" ? "" : sprintf("%.0f%%", 100 * share),
            t == 1 ? ">= 60% of sgemm" : "(share of sgemm)",
            (t == 1 && share != "") ? verdict(share >= 0.6) : "")
        if (has("distillq", t, "teacher_sgemm_share_pct")) {
            a = r["distillq", t, "teacher_sgemm_share_pct"]
            row("teacher share, alternating", t, "teacher_sgemm_share_pct", sprintf("%.0f%%", a),
                t == 1 ? ">= 80% (issue 9)" : "", t == 1 ? verdict(a >= 80) : "")
        }
        s = speedup(t, "student_train_sps")
        row("student train samples/s", t, "student_train_sps", s == "" ? "" : sprintf("%.2fx", s),
            ">= 1.5x PyTorch", s == "" ? "n/a" : verdict(s >= 1.5))
        g = cell("distillq", t, "student_train_gflops")
        row("student train GFLOP/s", t, "student_train_gflops",
            (g != "-" && p != "-" && p > 0) ? sprintf("%.0f%%", 100 * g / p) : "",
            "(share of sgemm)", "")
    }
    if (has("distillq", 1, "epoch_s") || has("pytorch", 1, "epoch_s")) {
        s = ""
        if (has("distillq", 1, "epoch_s") && has("pytorch", 1, "epoch_s") && r["distillq", 1, "epoch_s"] > 0)
            s = sprintf("%.2fx", r["pytorch", 1, "epoch_s"] / r["distillq", 1, "epoch_s"])
        row("LightNN epoch+test, s", 1, "epoch_s", s, "(issue ref: 11.8 s)", "")
        if ("distillq_epoch_test_acc" in info || "pytorch_epoch_test_acc" in info)
            printf "%-26s %3s %10s %10s\n", "  test accuracy after it", "",
                ("distillq_epoch_test_acc" in info) ? info["distillq_epoch_test_acc"] : "-",
                ("pytorch_epoch_test_acc" in info) ? info["pytorch_epoch_test_acc"] : "-"
    }
    print ""
    print "ratio: distillq / PyTorch for rates, PyTorch / distillq for the epoch time (> 1: distillq faster);"
    print "GFLOP/s count conv+linear multiply-adds as 2 FLOPs; training counts 3x the forward FLOPs."
}' "$results"
