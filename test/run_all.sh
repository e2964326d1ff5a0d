#!/usr/bin/env bash
# run_all.sh: the whole test suite as CI runs it: dependencies, a normal build with every test
# (unit, API, install/consumer, symbols, ABI, format, docs, reference goldens), an
# AddressSanitizer+UBSan build running the unit and API suites again, a ThreadSanitizer build
# running the suites that share a model across threads, and a bounded libFuzzer run of the
# model-file reader. Prints Check's totals at the end.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh .ci/deps
# .ci/deps installs lavapipe (mesa-vulkan-drivers): here a missing Vulkan device fails the Vulkan
# tests instead of skipping them, and -Dtests=enabled makes a missing Check fail the setup
# instead of dropping the C suites.
export R1_EXPECT_VULKAN=1
jobs=$(nproc 2>/dev/null || echo 2)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Where the CUDA toolkit is installed (nvcc; /usr/local/cuda/bin on the CI image) the CUDA backend
# must build, warnings as errors; its tests skip (exit 77) without a GPU.
cuda_opt=-Dcuda=auto
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
    cuda_opt=-Dcuda=enabled
fi
echo "== build (debugoptimized) =="
[ -f build/build.ninja ] || meson setup build --buildtype=debugoptimized -Dtests=enabled \
    -Dvulkan=enabled "$cuda_opt"
ninja -C build -j "$jobs"
echo "== tests =="
meson test -C build --print-errorlogs --verbose --num-processes "$jobs" 2>&1 | tee -a "$log"
# The numeric suites must pass on every x86-64 machine, whatever sgemm kernel OpenBLAS picks for
# the CPU and whatever SIMD level the CPU backend runs (backends/cpu/cpu_features.c reads
# R1_CPU_LEVEL). The kernels suite forces every level itself, so it runs for the BLAS variants only.
for coretype in Haswell SkylakeX Zen; do
    echo "== numeric suites with OPENBLAS_CORETYPE=$coretype =="
    OPENBLAS_CORETYPE=$coretype meson test -C build --print-errorlogs --verbose \
        --num-processes "$jobs" forward kernels 2>&1 | tee -a "$log"
done
for level in scalar avx2; do
    echo "== forward suite with R1_CPU_LEVEL=$level =="
    R1_CPU_LEVEL=$level meson test -C build --print-errorlogs --verbose \
        --num-processes "$jobs" forward 2>&1 | tee -a "$log"
done

echo "== build (address,undefined sanitizers) =="
[ -f build-asan/build.ninja ] || meson setup build-asan --buildtype=debug -Dtests=enabled \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=all -Dcpp_args=-fno-sanitize-recover=all
ninja -C build-asan -j "$jobs"
echo "== tests under sanitizers =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:protect_shadow_gap=0 UBSAN_OPTIONS=print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --verbose --num-processes "$jobs" \
    --no-suite abi --no-suite install --no-suite lint 2>&1 | tee -a "$log"

echo "== build (thread sanitizer) and the suites that share a model across threads =="
[ -f build-tsan/build.ninja ] || meson setup build-tsan --buildtype=debug -Dtests=enabled \
    -Db_sanitize=thread \
    -Db_lundef=false -Dcuda=disabled -Dvulkan=disabled
ninja -C build-tsan -j "$jobs"
TSAN_OPTIONS=halt_on_error=1 meson test -C build-tsan --print-errorlogs --verbose \
    --num-processes "$jobs" error expert_cache expert_stats expert_stream generate dlopen batch 2>&1 | tee -a "$log"

echo "== fuzzing every parser of untrusted input (libFuzzer, bounded) =="
# R1_FUZZ_SECONDS is per target: 8 targets x 25 s keeps CI's fuzzing near 4 minutes.
R1_BUILD_DIR="$top/build" FUZZ_WORK="$top/build-fuzz" sh test/fuzz/run.sh "${R1_FUZZ_SECONDS:-25}"

# Check prints "NN%: Checks: N, Failures: F, Errors: E" per suite; add them up.
awk '/^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
        gsub(",", ""); c += $3; f += $5; e += $7 }
     END { pct = c ? int(100 * (c - f - e) / c) : 0;
           printf "%d%%: Checks: %d, Failures: %d, Errors: %d\n", pct, c, f, e }' "$log"
