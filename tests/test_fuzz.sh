#!/bin/sh
# test_fuzz.sh - runs every libFuzzer target (tests/fuzz_*: wire messages,
# whole broker messages, safetensors, model files, IDX/CIFAR-10, cache
# records) for a bounded time each (DQ_FUZZ_SECONDS, default 8; about a
# minute in all) from a seed corpus of valid inputs that each target writes
# itself, and reports one TAP line per target. Skipped when configure found
# no clang (the targets are then not built).
#
# A failing input is kept, not lost with the temp dir: it is copied to
# $top_builddir/tests/fuzz-failures/ and its path, size and bytes (hex, and
# base64 to paste into a file) are printed into the log, which
# scripts/test shows for failed tests, with the command that reproduces it.
bin="${top_builddir:-.}/tests"
src="${top_srcdir:-.}"
targets="msg broker safetensors model_file dataset cache"
secs="${DQ_FUZZ_SECONDS:-8}"
for t in $targets; do
    if [ ! -x "$bin/fuzz_$t" ]; then
        echo "1..0 # SKIP no clang: libFuzzer targets not built"
        exit 0
    fi
done
set -- $targets
echo "1..$#"
n=0 failed=0
keep="$bin/fuzz-failures"
for t in $targets; do
    n=$((n + 1))
    exe="$bin/fuzz_$t"
    dir=$(mktemp -d "${TMPDIR:-/tmp}/dq-fuzz-$t-XXXXXX") || { echo "not ok $n - fuzz_$t: mktemp"; failed=$((failed + 1)); continue; }
    mkdir "$dir/corpus"
    if ! DQ_FUZZ_SEED_DIR="$dir/corpus" "$exe" > "$dir/seeds.log" 2>&1; then
        echo "not ok $n - fuzz_$t: writing its seed corpus failed"
        sed 's/^/# /' "$dir/seeds.log" | tail -20
        failed=$((failed + 1)); rm -rf "$dir"; continue
    fi
    [ "$t" = model_file ] && cp "$src"/models/*.model "$dir/corpus/"
    nseeds=$(ls "$dir/corpus" | wc -l)
    set --
    [ -f "$src/tests/fuzz_$t.dict" ] && set -- "-dict=$src/tests/fuzz_$t.dict"
    if "$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
            -max_len=16384 -print_final_stats=1 -artifact_prefix="$dir/" "$@" "$dir/corpus" \
            > "$dir/log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
        echo "ok $n - fuzz_$t: ${runs:-?} runs in ${secs} s from $nseeds seeds, no failure"
    else
        failed=$((failed + 1))
        echo "not ok $n - fuzz_$t found a failing input (kept input, log tail, its bytes below)"
        mkdir -p "$keep"
        kept=""
        for f in "$dir"/crash-* "$dir"/leak-* "$dir"/oom-* "$dir"/timeout-* "$dir"/slow-unit-*; do
            [ -f "$f" ] || continue
            cp "$f" "$keep/fuzz_$t-${f##*/}"
            kept="$kept $keep/fuzz_$t-${f##*/}"
            echo "# input kept as $keep/fuzz_$t-${f##*/} ($(wc -c < "$f") bytes);" \
                 "reproduce: $exe $keep/fuzz_$t-${f##*/}"
        done
        grep -v -e '^#[0-9]' -e '^    #[0-9]*[0-9][0-9] ' "$dir/log" | tail -30 | sed 's/^/# /'
        for f in $kept; do
            echo "# ${f##*/}, first 512 bytes in hex:"
            od -An -tx1 -v "$f" | head -32 | sed 's/^/#  /'
            echo "# ${f##*/} in base64 (paste into base64 -d > input):"
            base64 -w 76 "$f" | sed 's/^/#  /'
        done
    fi
    rm -rf "$dir"
done
exit $((failed > 0))
