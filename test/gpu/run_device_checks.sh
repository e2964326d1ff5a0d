#!/usr/bin/env bash
# run_device_checks.sh: the one-shot CUDA check on a machine with an NVIDIA GPU (issue 20 item 5):
# builds libr1 with the CUDA backend from this working tree, runs the CUDA parity suite
# (test/test_cuda.c: every op and every tiny model, MoE and dense, in every weight type, prefill
# and decode, 1e-3 relative to the CPU backend), measures the GPU's memory read bandwidth, and
# runs `r1 bench --backend cuda` (decode and prefill) on a DeepSeek-V2-Lite-shaped random model
# at Q4_0 generated on the spot, with its bandwidth floor (read bandwidth / weight bytes per
# decoded token). Everything it prints also goes to $OUT (or ./gpu-checks) as a log and JSON.
#
# Usage, from the repository root (no network needed):
#   bash test/gpu/run_device_checks.sh
# Environment:
#   R1_GPU_LAYERS    V2-Lite layers to generate (default 4: 1 dense + 3 MoE, about 4.6 GB of
#                    bf16 and 1.4 GB at Q4_0, a minute or two to generate; 27 is the whole
#                    model, ~31 GB of bf16, too slow for a 15-minute device session)
#   R1_GPU_STAGES    which stages to run, a subset of "build test bench" (default all three)
#   R1_GPU_WORK      where the generated model goes (default /tmp/r1-gpu-work; needs ~13 GB)
#   R1_GPU_BUILD     the build directory (default build-gpu; a carried one is reused, and used
#                    as it is where ninja is missing: build it here with
#                    `meson setup build-gpu --buildtype=release -Dtests=enabled -Dcuda=enabled
#                    -Dvulkan=disabled && ninja -C build-gpu examples/r1 test/test_cuda` plus the
#                    test/tiny-*.r1m targets; about 40 MiB)
#   R1_GPU_BENCH_CPU 1: also `r1 bench --backend cpu` on the same model (minutes more)
# Stages run in order of importance (parity first) and each prints its elapsed time, so a run cut
# short by the machine's time limit still leaves what it reached in the log.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
out=${OUT:-$top/gpu-checks}
mkdir -p "$out"
log="$out/device_checks.log"
exec > >(tee -a "$log") 2>&1
stages=${R1_GPU_STAGES:-build test bench}
layers=${R1_GPU_LAYERS:-4}
work=${R1_GPU_WORK:-/tmp/r1-gpu-work}
build=${R1_GPU_BUILD:-build-gpu}
jobs=$(nproc 2>/dev/null || echo 4)
t0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - t0)) s] $*"; }
has_stage() { case " $stages " in *" $1 "*) return 0 ;; esac; return 1; }
status=0

stamp "machine"
export PATH="/usr/local/cuda/bin:$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
nvcc --version 2>&1 | tail -2 || echo "no nvcc"
nproc; free -g | head -2; df -h "$(dirname "$work")" | tail -1
missing=""
for tool in nvcc meson ninja gcc pkg-config python3; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
for pc in check zstd libpcre2-8 libcjson openblas libutf8proc; do
    pkg-config --exists "$pc" 2>/dev/null || missing="$missing $pc(pkg-config)"
done
[ -z "$missing" ] || echo "MISSING:$missing (the build stage will fail unless $build is carried)"
cublas=""
for d in /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
    ls "$d"/libcublas.so* >/dev/null 2>&1 && cublas="$d"
done
if [ -n "$cublas" ]; then
    echo "libcublas: in $cublas"
else
    echo "libcublas: not found (prompt-sized products then use the backend's own kernels)"
fi

if has_stage build && ! command -v ninja >/dev/null && [ -x "$build/test/test_cuda" ]; then
    echo "no ninja here: using the carried $build as it is"
elif has_stage build; then
    stamp "build ($build, release, -Dcuda=enabled)"
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" --buildtype=release -Dtests=enabled -Dcuda=enabled \
            -Dvulkan=disabled || { echo "FAIL: meson setup"; exit 1; }
    fi
    mapfile -t tiny < <(cd "$build" && ninja -t targets all 2>/dev/null |
        grep -o '^test/tiny-[^:]*\.r1m')
    ninja -C "$build" -j "$jobs" examples/r1 test/test_cuda "${tiny[@]}" ||
        { echo "FAIL: build"; exit 1; }
fi
r1="$build/examples/r1"
"$r1" backends 2>&1 || true

if has_stage test; then
    stamp "CUDA parity suite (test_cuda)"
    [ -n "$cublas" ] && export R1_EXPECT_CUBLAS=1
    if command -v meson >/dev/null; then
        # meson's environment for the suite (test/meson.build), plus: a GPU must be found here
        R1_EXPECT_CUDA=1 meson test -C "$build" --no-rebuild cuda --verbose --print-errorlogs \
            2>&1 | tee "$out/test_cuda.log"
        rc=${PIPESTATUS[0]}
    else # a carried build on a machine without meson: the same environment by hand
        R1_EXPECT_CUDA=1 R1_CPU_ACT_Q8=0 R1_TEST_MODELS_DIR="$top/$build/test" \
            R1_TEST_DATA_DIR="$top/test/data" "$build/test/test_cuda" 2>&1 |
            tee "$out/test_cuda.log"
        rc=${PIPESTATUS[0]}
    fi
    echo "test_cuda exit status: $rc"
    [ "$rc" -eq 0 ] || status=1
fi

if has_stage bench; then
    stamp "GPU read bandwidth"
    nvcc -O3 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror \
        -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
        -o "$out/hbm_bandwidth" test/gpu/hbm_bandwidth.cu && bw=$("$out/hbm_bandwidth" 4)
    echo "read bandwidth: ${bw:-?} GB/s"
    stamp "V2-Lite-shaped random model, $layers layers, at Q4_0"
    mkdir -p "$work"
    model="$work/v2lite-${layers}l-q4_0.r1m"
    py=""
    for p in python3 /usr/bin/python3; do
        command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null && { py=$p; break; }
    done
    if [ -z "$py" ] && [ ! -f "$model" ]; then
        echo "FAIL: the model generator needs numpy, which no python3 here has"
        exit 1
    fi
    if [ ! -f "$model" ]; then
        "$py" test/ref/make_v2lite_shaped.py "$work/v2lite-hf" --layers "$layers" ||
            { echo "FAIL: generating the model"; exit 1; }
        stamp "convert"
        "$r1" convert "$work/v2lite-hf" "$model" --quant q4_0 --threads "$jobs" ||
            { echo "FAIL: convert"; exit 1; }
        rm -rf "$work/v2lite-hf" # the disk holds 64 GiB; the bf16 copy is not needed again
    fi
    ls -l "$model"
    # The CPU's run on the same model only when asked (R1_GPU_BENCH_CPU=1): it takes minutes.
    backends="cuda"
    [ "${R1_GPU_BENCH_CPU:-0}" = 1 ] && backends="cuda cpu"
    for be in $backends; do
        stamp "r1 bench --backend $be (pp 512, tg 128)"
        timeout 300 "$r1" bench -m "$model" --backend "$be" -p 512 -n 128 --reps 3 \
            --triad-mb 1024 --json >"$out/bench_$be.json" || { echo "FAIL: bench on $be"; status=1; }
        cat "$out/bench_$be.json"
    done
    # The GPU's floor: its read bandwidth over the weight bytes a decoded token reads (the
    # bench's own floor is the host's triad, which says nothing about the GPU).
    if [ -s "$out/bench_cuda.json" ]; then
        python3 - "$out/bench_cuda.json" "${bw:-0}" >"$out/floor.txt" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
bw = float(sys.argv[2]) * 1e9
tok = b["bytes_per_token"]
floor = bw / tok if tok and bw else 0
tg, pp = b["tg"]["tps_median"], b["pp"]["tps_median"]
print(f"{b.get('backend', '?')} decode {tg:.1f} tok/s, prefill {pp:.1f} tok/s; "
      f"{tok / 1e6:.1f} MB of weights per token; read bandwidth {bw / 1e9:.0f} GB/s -> floor "
      f"{floor:.0f} tok/s; decode reaches {100 * tg / floor if floor else 0:.1f} % of it")
EOF
        cat "$out/floor.txt"
    fi
fi
stamp "done (status $status); logs in $out"
exit $status
