/* cuda_emu.h: just enough of CUDA's device language for backends/cuda/cuda_kernels.cu to compile
 * with a host C++ compiler and run on the CPU (test/gpu/emu/run_emulated.sh): every CUDA thread of
 * a block is a fiber (ucontext), blocks run one after the other, __syncthreads and warp shuffles
 * are barriers among the block's live fibers, __shared__ variables are function-local statics
 * (one block at a time uses them). A check of the kernels' indexing, reductions and launch
 * shapes where no GPU is present; it says nothing about speed, races between blocks, or what
 * nvcc's code generation does differently. */
#ifndef R1_CUDA_EMU_H
#define R1_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#define R1_CUDA_EMULATED 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef struct r1_emu_stream *cudaStream_t;
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

inline cudaError_t cudaGetLastError(void)
{
    return cudaSuccess;
}

struct r1_emu_half {
    unsigned short bits;
};

inline r1_emu_half __ushort_as_half(unsigned short h)
{
    return r1_emu_half{h};
}

inline float __half2float(r1_emu_half h)
{
    const unsigned s = (h.bits >> 15) & 1u, e = (h.bits >> 10) & 31u, m = h.bits & 1023u;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024u), (int)e - 25);
    return s ? -v : v;
}

inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Built with -ffp-contract=off, so these round each operation as the intrinsics do. */
inline float __fmul_rn(float a, float b)
{
    return a * b;
}
inline float __fadd_rn(float a, float b)
{
    return a + b;
}
inline float __fsub_rn(float a, float b)
{
    return a - b;
}
inline float __fdiv_rn(float a, float b)
{
    return a / b;
}

namespace r1_emu
{

enum { kStack = 256 * 1024, kMaxThreads = 1024 };

struct fiber {
    ucontext_t ctx;
    int state; /* 0 runnable, 1 waiting at a barrier, 2 finished */
};

inline ucontext_t scheduler;
inline std::vector<fiber> fibers;
inline std::vector<char *> stacks;
inline int current;
inline std::function<void()> body;
inline float slots[kMaxThreads];

inline void fiber_entry(void)
{
    body();
    fibers[current].state = 2;
    swapcontext(&fibers[current].ctx, &scheduler);
}

/* Every live thread of the block arrives before any leaves. */
inline void barrier(void)
{
    fibers[current].state = 1;
    swapcontext(&fibers[current].ctx, &scheduler);
}

inline void run_block(unsigned n)
{
    if (n > kMaxThreads)
        abort();
    fibers.assign(n, fiber{});
    while (stacks.size() < n)
        stacks.push_back(static_cast<char *>(malloc(kStack)));
    for (unsigned t = 0; t < n; t++) {
        getcontext(&fibers[t].ctx);
        fibers[t].ctx.uc_stack.ss_sp = stacks[t];
        fibers[t].ctx.uc_stack.ss_size = kStack;
        fibers[t].ctx.uc_link = nullptr;
        makecontext(&fibers[t].ctx, fiber_entry, 0);
    }
    for (;;) {
        for (unsigned t = 0; t < n; t++)
            if (fibers[t].state == 0) {
                current = (int)t;
                threadIdx = dim3(t);
                swapcontext(&scheduler, &fibers[t].ctx);
            }
        int waiting = 0;
        for (unsigned t = 0; t < n; t++)
            if (fibers[t].state == 1) {
                fibers[t].state = 0;
                waiting = 1;
            }
        if (!waiting)
            return;
    }
}

template <class K> struct launcher {
    dim3 grid, block;
    K kernel;
    template <class... A> void operator()(A... args)
    {
        body = [&] { kernel(args...); };
        gridDim = grid;
        blockDim = block;
        for (unsigned z = 0; z < grid.z; z++)
            for (unsigned y = 0; y < grid.y; y++)
                for (unsigned x = 0; x < grid.x; x++) {
                    blockIdx = dim3(x, y, z);
                    run_block(block.x * block.y * block.z);
                }
    }
};

} // namespace r1_emu

inline void __syncthreads(void)
{
    r1_emu::barrier();
}

inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask)
{
    (void)mask;
    const unsigned t = threadIdx.x;
    r1_emu::slots[t] = v;
    r1_emu::barrier();
    const float r = r1_emu::slots[(t & ~31u) | ((t & 31u) ^ (unsigned)lane_mask)];
    r1_emu::barrier();
    return r;
}

#define R1_LAUNCH(kernel, grid, block, stream)                                                     \
    (void)(stream), r1_emu::launcher<decltype(&kernel)>                                            \
    {                                                                                              \
        dim3(grid), dim3(block), &kernel                                                           \
    }

#endif
