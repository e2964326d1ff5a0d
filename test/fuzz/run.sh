#!/bin/sh
# run.sh [SECONDS]: build fuzz_container with clang (fuzzer, address, undefined) and run it on a
# seed corpus converted from the tiny checkpoints, for a bounded time (default 60 s).
set -eu
secs=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${FUZZ_WORK:-$top/build-fuzz}
mkdir -p "$work/corpus" "$work/artifacts"
cli_build=${R1_BUILD_DIR:-$work/cli}
if [ ! -x "$cli_build/examples/r1" ]; then
    [ -d "$cli_build" ] || meson setup "$cli_build" "$top" >/dev/null
    ninja -C "$cli_build" examples/r1 >/dev/null
fi
r1=$cli_build/examples/r1
data=$top/test/data
[ -s "$work/corpus/v2lite-q4.r1m" ] || "$r1" convert "$data/tiny-v2lite" "$work/corpus/v2lite-q4.r1m" --quant q4_0
[ -s "$work/corpus/v2lite.r1m" ] || "$r1" convert "$data/tiny-v2lite" "$work/corpus/v2lite.r1m"
[ -s "$work/corpus/v3.r1m" ] || "$r1" convert "$data/tiny-v3" "$work/corpus/v3.r1m"
# Large inputs make libFuzzer slow; the 1.4 MB FP8 seed is cut to max_len (its prefix still
# drives the header, truncation and index paths), the 350-570 kB V2-Lite seeds fit whole.
lib=$top/lib
srcs="$lib/container.c $lib/checksum.c $lib/name_index.c $lib/model_config.c $lib/expert_cache.c
      $lib/dtype.c $lib/weight_layout.c $lib/error.c"
# shellcheck disable=SC2086
clang -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -I"$top/include" -I"$lib" \
    "$top/test/fuzz/fuzz_container.c" $srcs -lzstd -lpthread -lm -o "$work/fuzz_container"
cd "$work"
./fuzz_container -max_total_time="$secs" -max_len=600000 -rss_limit_mb=4096 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 corpus
