#!/usr/bin/env bash
# run_emulated.sh: the CUDA op tests (test/test_cuda.c with the shared test/device_parity.c, case
# "ops") with the backend's host code as built and its kernels run on the CPU (cuda_emu.h: CUDA
# threads as fibers) over a fake runtime (fake_cudart.c). Catches indexing, reduction and
# launch-shape mistakes where no GPU is present;
# it is no substitute for test/gpu/run_device_checks.sh on a GPU (no speed, no nvcc codegen).
# Usage: test/gpu/emu/run_emulated.sh BUILD [CUDA_INCLUDE_DIR]
#        (a build with -Dcuda=enabled and -Dtests=enabled; meson passes the toolkit's include dir,
#        which it found from nvcc's own dry run, backends/meson.build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
build=$(cd "${1:?usage: run_emulated.sh BUILD}" && pwd)
cuda_inc=${2:-/usr/local/cuda/include}
work="$build/test/cuda-emu"
mkdir -p "$work"
ninja -C "$build" test/test_cuda >/dev/null
g++ -std=c++17 -O2 -g -ffp-contract=off -Wall -Wextra -Werror -Wno-unknown-pragmas \
    -I"$top/backends/cuda" -c "$here/cuda_kernels_emu.cpp" -o "$work/cuda_kernels_emu.o"
gcc -std=c11 -O2 -g -Wall -Wextra -Werror -I"$cuda_inc" -c "$here/fake_cudart.c" \
    -o "$work/fake_cudart.o"
gcc -std=c11 -O2 -g -Wall -Wextra -Werror -shared -fPIC -I"$cuda_inc" "$here/fake_cublas.c" \
    -o "$work/libfake_cublas.so"
# test_cuda's own link line, with the emulated kernels and runtime in front and without the real
# runtime; the archive's nvcc object is then never pulled (every symbol it offers is defined).
link=$(cd "$build" && ninja -t commands test/test_cuda | tail -1)
link=${link//-o test\/test_cuda /-o test/cuda-emu/test_cuda_emu }
link=${link//test\/test_cuda.p\/test_cuda.c.o/test/test_cuda.p/test_cuda.c.o test/cuda-emu/cuda_kernels_emu.o test/cuda-emu/fake_cudart.o -lstdc++}
# shellcheck disable=SC2001
link=$(echo "$link" | sed 's#[^ ]*libcudart_static\.a##')
(cd "$build" && eval "$link")
echo "running the op tests on the emulated device (slow: every CUDA thread is a fiber)"
cd "$build"
# Prompt-sized products go through the stand-in cuBLAS (R1_CUDA_CUBLAS=PATH), and must.
R1_EXPECT_CUDA=1 R1_CUDA_CUBLAS="$work/libfake_cublas.so" R1_EXPECT_CUBLAS=1 R1_CPU_ACT_Q8=0 R1_TEST_MODELS_DIR="$build/test" \
    R1_TEST_DATA_DIR="$top/test/data" CK_RUN_CASE=ops CK_DEFAULT_TIMEOUT=3600 \
    "$work/test_cuda_emu"
