#!/bin/sh
# vs_llama_cpp.sh: libr1 against llama.cpp on the same weights, engines alternated over rounds
# (finds or builds llama.cpp, then runs vs_llama_cpp.py; by hand, never in CI).
#
# usage: test/bench/vs_llama_cpp.sh [--r1 R1] [--llama-cpp DIR | --build-llama-cpp DIR]
#            -m LABEL:GGUF:R1M [-m ...] [options of vs_llama_cpp.py]
#
#   --r1 PATH              the r1 program (default: $R1, else build/examples/r1 of this checkout)
#   --llama-cpp DIR        a llama.cpp checkout with DIR/build/bin/llama-bench (default:
#                          $LLAMA_CPP, else ../peer/llama.cpp next to this checkout)
#   --build-llama-cpp DIR  build llama.cpp v0.5.0 into DIR first (when DIR has no llama-bench)
#                          with the peer tools' build-llama-cpp.sh
#   --peer-tools DIR       the folder holding build-llama-cpp.sh (default: $PEER_TOOLS)
#   --llama-bench PATH     this llama-bench instead of DIR/build/bin/llama-bench
#   --noamx-dir DIR        where to build llama-bench without AMX on a CPU that has it
#                          (default ${TMPDIR:-/tmp}/llama.cpp-noamx; see below)
#   -m LABEL:GGUF:R1M      one model in both formats (repeatable)
# The options above come first; every other option goes to vs_llama_cpp.py (--rounds 3, -t 2, --reps 3, -p 512, -n 128,
# --depth 4096, --depth-gen 32, --perf, --kernels BENCH_KERNELS, --out DIR; --help lists them).
#
# Example (the V2-Lite-shaped pair of docs/performance.md):
#   test/bench/vs_llama_cpp.sh --r1 build/examples/r1 \
#       -m Q4_0:../peer/v2lite-q4_0.gguf:../peer/v2lite-q4_0.r1m \
#       -m Q8_0:../peer/v2lite-q8_0.gguf:../peer/v2lite-q8_0.r1m
#
# AMX: llama.cpp v0.5.0 built native on a CPU with AMX (Xeon Sapphire/Emerald Rapids) puts
# weights in AMX buffers and aborts on DeepSeek models (GGML_ASSERT(*cur_backend_id != -1) in
# ggml_backend_sched_split_graph); llama-bench has no switch to avoid it. On such a CPU, unless
# --llama-bench is given, the script builds llama-bench from the same checkout with every
# x86 extension of the native build but AMX (cmake -DGGML_NATIVE=OFF + the AVX/AVX-512 flags,
# a build folder outside the checkout; once, then reused) and uses that; weight repacking stays
# on, as in the native build on CPUs without AMX (AMD Zen 4 among them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
r1=${R1:-}
llama=${LLAMA_CPP:-}
build=""
bench=""
noamx=${TMPDIR:-/tmp}/llama.cpp-noamx
peer_tools=${PEER_TOOLS:-}
while [ $# -gt 0 ]; do
    case $1 in
    --r1) r1=$2; shift 2 ;;
    --llama-cpp) llama=$2; shift 2 ;;
    --build-llama-cpp) build=$2; llama=$2; shift 2 ;;
    --llama-bench) bench=$2; shift 2 ;;
    --noamx-dir) noamx=$2; shift 2 ;;
    --peer-tools) peer_tools=$2; shift 2 ;;
    *) break ;;
    esac
done
if [ -z "$r1" ]; then
    r1=$root/build/examples/r1
fi
[ -x "$r1" ] || { echo "vs_llama_cpp.sh: no r1 program at $r1 (pass --r1)" >&2; exit 2; }
if [ -z "$llama" ]; then
    for d in "$root/../peer/llama.cpp" "$root/../../peer/llama.cpp"; do
        if [ -x "$d/build/bin/llama-bench" ]; then
            llama=$d
            break
        fi
    done
fi
if [ -n "$build" ] && [ ! -x "$build/build/bin/llama-bench" ]; then
    tool=$peer_tools/build-llama-cpp.sh
    [ -n "$peer_tools" ] && [ -f "$tool" ] ||
        { echo "vs_llama_cpp.sh: --build-llama-cpp needs --peer-tools DIR (build-llama-cpp.sh)" >&2; exit 2; }
    sh "$tool" "$build"
fi
if [ -z "$bench" ]; then
    if [ -z "$llama" ] || [ ! -x "$llama/build/bin/llama-bench" ]; then
        echo "vs_llama_cpp.sh: no llama-bench found (pass --llama-cpp DIR or --build-llama-cpp DIR)" >&2
        exit 2
    fi
    bench=$llama/build/bin/llama-bench
    if grep -q amx_int8 /proc/cpuinfo; then
        if [ ! -x "$noamx/bin/llama-bench" ]; then
            echo "vs_llama_cpp.sh: this CPU has AMX; building llama-bench without it in $noamx" >&2
            cmake -S "$llama" -B "$noamx" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
                -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
                -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON \
                -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON -DGGML_AMX_TILE=OFF \
                -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF \
                -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF \
                -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
            ninja -C "$noamx" -j2 llama-bench >&2
        fi
        bench=$noamx/bin/llama-bench
    fi
fi
[ -x "$bench" ] || { echo "vs_llama_cpp.sh: $bench is not a program" >&2; exit 2; }
gguf_py=""
[ -n "$llama" ] && [ -d "$llama/gguf-py" ] && gguf_py=$llama/gguf-py
# The numpy that gguf-py needs is the system one (/usr/bin/python3) on this project's machines.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
echo "r1: $r1 ($("$r1" --version 2>/dev/null | head -n 1)); llama-bench: $bench" \
    "(llama.cpp $(git -C "${llama:-.}" describe --tags --always 2>/dev/null || echo unknown))"
exec "$py" "$here/vs_llama_cpp.py" --r1 "$r1" --llama-bench "$bench" \
    ${gguf_py:+--gguf-py "$gguf_py"} "$@"
