#!/bin/sh
# run.sh [SECONDS]: build every libFuzzer target with clang (fuzzer, address, undefined) and run
# each for SECONDS (default 60) on its corpus: the committed seeds in test/fuzz/corpus/TARGET
# (the container target: .r1m files converted from the tiny checkpoints). Fails when any target
# crashes, leaks, times out or breaks an invariant; the input is left in $FUZZ_WORK/artifacts.
# R1_FUZZ_TARGETS="tokenize chat" runs a subset; R1_FUZZ_JOBS=N runs N targets at once.
set -eu
secs=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${FUZZ_WORK:-$top/build-fuzz}
all="container tokenize detokenize tokenizer_json tokenizer_blob safetensors config chat session_state"
targets=${R1_FUZZ_TARGETS:-$all}
jobs=${R1_FUZZ_JOBS:-1}
mkdir -p "$work/corpus" "$work/artifacts"
lib=$top/lib
fz=$top/test/fuzz

case " $targets " in *" container "*)
    cli_build=${R1_BUILD_DIR:-$work/cli}
    if [ ! -x "$cli_build/examples/r1" ]; then
        [ -d "$cli_build" ] || meson setup "$cli_build" "$top" >/dev/null
        ninja -C "$cli_build" examples/r1 >/dev/null
    fi
    r1=$cli_build/examples/r1
    data=$top/test/data
    [ -s "$work/corpus/v2lite-q4.r1m" ] ||
        "$r1" convert "$data/tiny-v2lite" "$work/corpus/v2lite-q4.r1m" --quant q4_0
    [ -s "$work/corpus/v2lite.r1m" ] || "$r1" convert "$data/tiny-v2lite" "$work/corpus/v2lite.r1m"
    [ -s "$work/corpus/v3.r1m" ] || "$r1" convert "$data/tiny-v3" "$work/corpus/v3.r1m"
    ;;
esac

# The library sources each target needs (internal functions are not exported by libr1.so).
tok_srcs="$lib/text/tokenizer.c $lib/text/tokenizer_json.c $lib/text/tokenizer_blob.c $lib/text/tokenizer_unicode.c
          $lib/text/tokenizer_normalize.c $lib/text/tokenizer_nfc_set.c $lib/core/utf8.c $lib/core/error.c"
sources() {
    case $1 in
    container) echo "$lib/format/container.c $lib/core/checksum.c $lib/core/name_index.c $lib/model/model_config.c
                     $lib/model/model_schema.c $lib/format/blob_codec.c $lib/experts/expert_cache.c
                     $lib/experts/expert_policy.c $lib/core/dtype.c $top/backends/cpu/weight_layout.c $lib/core/error.c" ;;
    tokenize | detokenize | tokenizer_json | tokenizer_blob) echo "$tok_srcs" ;;
    safetensors) echo "$lib/format/safetensors.c $lib/core/name_index.c $lib/core/error.c" ;;
    config) echo "$lib/model/model_config.c $lib/core/error.c" ;;
    chat) echo "$lib/text/chat.c $lib/core/utf8.c $lib/core/error.c" ;;
    session_state) echo "$lib/run/session_file.c $lib/core/checksum.c $lib/core/utf8.c $lib/core/error.c" ;;
    *) echo "run.sh: unknown fuzz target '$1'" >&2; exit 2 ;;
    esac
}
# Per target: extra libFuzzer options. Large .r1m seeds are cut to max_len (their prefix still
# drives the header, truncation and index paths); the text targets stay small, which keeps them
# fast and still reaches every path (the BPE queue bound needs only 16 bytes).
options() {
    case $1 in
    container) echo "-max_len=600000" ;;
    tokenize | detokenize) echo "-max_len=4096 -dict=$fz/tokenize.dict" ;;
    tokenizer_json) echo "-max_len=12288 -dict=$fz/json.dict" ;;
    tokenizer_blob) echo "-max_len=4096" ;;
    safetensors | config) echo "-max_len=8192 -dict=$fz/json.dict" ;;
    chat) echo "-max_len=4096 -dict=$fz/tokenize.dict" ;;
    session_state) echo "-max_len=65536" ;;
    esac
}

# The library's header folders (one per room of lib/, and the CPU weight layout).
incs=-I$top/backends/cpu
for d in core format experts model compute text run; do incs="$incs -I$lib/$d"; done
for t in $targets; do
    # shellcheck disable=SC2046,SC2086
    clang -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -I"$top/include" $incs -I"$fz" \
        -DR1_FUZZ_DATA_DIR="\"$top/test/data\"" \
        "$fz/fuzz_$t.c" $(sources "$t") $(pkg-config --cflags --libs libpcre2-8 libcjson libutf8proc) \
        -lzstd -lpthread -lm -o "$work/fuzz_$t"
done

run_one() {
    t=$1
    if [ "$t" = container ]; then
        corpus="$work/corpus"
    else
        corpus="$work/corpus-$t"
        mkdir -p "$corpus"
    fi
    seeds=
    [ -d "$fz/corpus/$t" ] && seeds="$fz/corpus/$t"
    echo "== fuzz_$t: $secs s =="
    # New inputs go to the work corpus (first directory); the committed seeds are only read.
    # shellcheck disable=SC2046,SC2086
    (cd "$work" && "./fuzz_$t" -max_total_time="$secs" -rss_limit_mb=4096 -timeout=25 \
        -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 $(options "$t") \
        "$corpus" $seeds) >"$work/fuzz_$t.log" 2>&1
}

failed=
running=0
pids=
for t in $targets; do
    run_one "$t" &
    pids="$pids $!:$t"
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        for pt in $pids; do
            wait "${pt%%:*}" || failed="$failed ${pt#*:}"
        done
        pids=
        running=0
    fi
done
for pt in $pids; do
    wait "${pt%%:*}" || failed="$failed ${pt#*:}"
done

for t in $targets; do
    # libFuzzer's final stats and the coverage line of its last report.
    echo "== fuzz_$t =="
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
        "$work/fuzz_$t.log" || true
    grep -E '^#[0-9]+.*(cov|DONE)' "$work/fuzz_$t.log" | tail -1 || true
done
if [ -n "$failed" ]; then
    for t in $failed; do
        echo "== fuzz_$t FAILED; its log ends: =="
        tail -40 "$work/fuzz_$t.log"
    done
    echo "fuzzing failed:$failed (inputs in $work/artifacts)" >&2
    exit 1
fi
echo "fuzzing: no crash in $targets ($secs s each)"
