// cuda_kernels.cu: the CUDA backend's kernels for every op of lib/compute/backend.h, behind the
// C interface of cuda_kernels.h. Weights are dequantised in registers and every sum is float32
// (the router's scores double, as lib/model/router.c); `__fmul_rn` and friends keep products
// unfused where the CPU computes them unfused (rotary, SwiGLU, MoE combine, RMSNorm's scaling).
#ifndef R1_CUDA_EMULATED
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"

// A kernel launch on a stream. test/gpu/emu compiles this file with a host compiler and its own
// definition, to run the kernels on the CPU (R1_CUDA_EMULATED).
#ifndef R1_LAUNCH
#define R1_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif

namespace
{

// lib/core/dtype.h's r1_dtype values.
enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2, DT_FP8 = 3, DT_Q8_0 = 4, DT_Q4_0 = 5 };
// lib/model/model_config.h's routing enums.
enum { TOPK_GREEDY = 0, TOPK_NOAUX_TC = 2, SCORING_SIGMOID = 1 };

constexpr int kWarp = 32;
constexpr int kRowsBlock = 256; // threads of the row-wise kernels (a power of two)

// Two bytes of a little-endian f16 or bf16 anywhere (blocks of 34 or 18 bytes are not aligned).
__device__ __forceinline__ unsigned u16_at(const uint8_t *p)
{
    return (unsigned)p[0] | ((unsigned)p[1] << 8);
}

__device__ __forceinline__ float f16_at(const uint8_t *p)
{
    return __half2float(__ushort_as_half((unsigned short)u16_at(p)));
}

__device__ __forceinline__ float fp8_e4m3(unsigned v)
{
    const unsigned e = (v >> 3) & 15u, m = v & 7u;
    float mag;
    if (e == 0u)
        mag = (float)m * (1.0f / 512.0f); // subnormal: m * 2^-3 * 2^-6
    else if (e == 15u && m == 7u)
        mag = __uint_as_float(0x7fc00000u); // e4m3fn has NaN and no infinity
    else
        mag = __uint_as_float(((e + 120u) << 23) | (m << 20));
    return (v & 0x80u) != 0u ? -mag : mag;
}

// Element c of weight row r whose first byte is at rp.
template <int DT>
__device__ __forceinline__ float w_elem(const r1_cuda_weight &W, const uint8_t *rp, int64_t r,
                                        int64_t c)
{
    if (DT == DT_F32)
        return reinterpret_cast<const float *>(rp)[c];
    if (DT == DT_F16)
        return f16_at(rp + 2 * c);
    if (DT == DT_BF16)
        return __uint_as_float(u16_at(rp + 2 * c) << 16);
    if (DT == DT_FP8)
        return fp8_e4m3(rp[c]) * W.scale[(r / 128) * W.scale_cols + c / 128];
    if (DT == DT_Q8_0) {
        const uint8_t *blk = rp + (c / 32) * 34;
        return f16_at(blk) * (float)(int8_t)blk[2 + c % 32];
    }
    const uint8_t *blk = rp + (c / 32) * 18; // q4_0: element j low nibble, j + 16 high
    const int j = (int)(c % 32);
    const unsigned q = (blk[2 + (j & 15)] >> ((j >> 4) * 4)) & 15u;
    return f16_at(blk) * ((float)q - 8.0f);
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = kWarp / 2; o > 0; o /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum or maximum over a block of kRowsBlock threads; every thread calls it and gets the result.
template <typename T, bool MAX> __device__ T block_reduce(T v)
{
    __shared__ T red[kRowsBlock];
    const int tid = threadIdx.x;
    red[tid] = v;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h /= 2) {
        if (tid < h)
            red[tid] =
                MAX ? (red[tid + h] > red[tid] ? red[tid + h] : red[tid]) : red[tid] + red[tid + h];
        __syncthreads();
    }
    const T r = red[0];
    __syncthreads(); // red is reused by the next call
    return r;
}

// ---- matrix products ---------------------------------------------------------------------

constexpr int kMmvWarps = 4; // output rows per block
constexpr int kMmvTokens = 8;

// One warp per output row, kMmvTokens tokens per block along y; every dequantised weight serves
// all of them. Quantised rows go a block of 32 per lane (the 34- or 18-byte blocks of a warp
// are contiguous), the others an element per lane.
template <int DT>
__global__ void __launch_bounds__(kMmvWarps *kWarp)
    mmv_kernel(r1_cuda_weight W, const float *__restrict__ x, int64_t T, float *__restrict__ y)
{
    const int lane = threadIdx.x % kWarp;
    const int64_t row = (int64_t)blockIdx.x * kMmvWarps + threadIdx.x / kWarp;
    if (row >= W.rows)
        return;
    const int64_t t0 = (int64_t)blockIdx.y * kMmvTokens;
    const int nt = (int)(T - t0 < kMmvTokens ? T - t0 : kMmvTokens);
    const int64_t cols = W.cols;
    const float *xt = x + t0 * cols;
    const uint8_t *rp = W.w + row * W.row_bytes;
    float acc[kMmvTokens];
#pragma unroll
    for (int t = 0; t < kMmvTokens; t++)
        acc[t] = 0.0f;
    if (DT == DT_Q8_0 || DT == DT_Q4_0) {
        const int64_t nb = cols / 32;
        for (int64_t b = lane; b < nb; b += kWarp) {
            const uint8_t *blk = rp + b * (DT == DT_Q8_0 ? 34 : 18);
            const float d = f16_at(blk);
            float v[32];
            if (DT == DT_Q8_0) {
#pragma unroll
                for (int i = 0; i < 32; i++)
                    v[i] = d * (float)(int8_t)blk[2 + i];
            } else {
#pragma unroll
                for (int i = 0; i < 16; i++) {
                    const unsigned q = blk[2 + i];
                    v[i] = d * ((float)(q & 15u) - 8.0f);
                    v[i + 16] = d * ((float)(q >> 4) - 8.0f);
                }
            }
#pragma unroll
            for (int t = 0; t < kMmvTokens; t++) {
                if (t >= nt)
                    break;
                const float *xb = xt + t * cols + b * 32;
                float s = 0.0f;
#pragma unroll
                for (int i = 0; i < 32; i++)
                    s += v[i] * xb[i];
                acc[t] += s;
            }
        }
    } else {
        for (int64_t c = lane; c < cols; c += kWarp) {
            const float wv = w_elem<DT>(W, rp, row, c);
#pragma unroll
            for (int t = 0; t < kMmvTokens; t++) {
                if (t >= nt)
                    break;
                acc[t] += wv * xt[t * cols + c];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < kMmvTokens; t++) {
        const float s = warp_sum(acc[t]);
        if (lane == 0 && t < nt)
            y[(t0 + t) * W.rows + row] = s;
    }
}

template <int DT>
__global__ void dequantize_kernel(r1_cuda_weight W, int64_t row0, int64_t n, float *out)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const int64_t r = row0 + i / W.cols, c = i % W.cols;
    out[i] = w_elem<DT>(W, W.w + r * W.row_bytes, r, c);
}

// ---- attention -------------------------------------------------------------------------------

constexpr int kChunk = 512; // keys per online-softmax step

// The absorbed MLA of docs/model.md §2.6 for one head (x) of one query (y), as
// backends/vulkan/shaders/mla.comp: q through W_UK into the latent space, scores against the
// latent rows the query sees, an online softmax over chunks of keys, the value sum over the
// latents, and W_UV.
template <int DT>
__global__ void __launch_bounds__(kRowsBlock)
    mla_kernel(r1_cuda_weight W, int64_t H, int64_t dn, int64_t dr, int64_t dv, int64_t rkv,
               int64_t n_tokens, int64_t n_keys_all, float scale, const float *__restrict__ q,
               const float *__restrict__ lat, float *__restrict__ out)
{
    __shared__ float qlat[R1_CUDA_MAX_LATENT];
    __shared__ float olat[R1_CUDA_MAX_LATENT];
    __shared__ float prob[kChunk];
    const int64_t h = blockIdx.x, t = blockIdx.y;
    const int tid = threadIdx.x, group = blockDim.x;
    const int64_t dl = rkv + dr, row0 = h * (dn + dv);
    const float *qh = q + (t * H + h) * (dn + dr);
    const int64_t n_keys = n_keys_all - n_tokens + t + 1;

    for (int64_t r = tid; r < rkv; r += group) {
        float acc = 0.0f;
        for (int64_t i = 0; i < dn; i++) {
            const int64_t row = row0 + i;
            acc += qh[i] * w_elem<DT>(W, W.w + row * W.row_bytes, row, r);
        }
        qlat[r] = acc;
        olat[r] = 0.0f;
    }
    for (int64_t r = tid; r < dr; r += group)
        qlat[rkv + r] = qh[dn + r];
    __syncthreads();

    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < n_keys; j0 += kChunk) {
        const int nc = (int)(n_keys - j0 < kChunk ? n_keys - j0 : kChunk);
        float cmax = -INFINITY;
        for (int j = tid; j < nc; j += group) {
            const float *kr = lat + (j0 + j) * dl;
            float sc = 0.0f;
            for (int64_t r = 0; r < dl; r++)
                sc += qlat[r] * kr[r];
            prob[j] = sc;
            cmax = fmaxf(cmax, sc);
        }
        const float m_new = fmaxf(m, block_reduce<float, true>(cmax));
        const float alpha = expf((m - m_new) * scale); // 0 on the first chunk
        float part = 0.0f;
        for (int j = tid; j < nc; j += group) {
            const float e = expf((prob[j] - m_new) * scale);
            prob[j] = e;
            part += e;
        }
        l = l * alpha + block_reduce<float, false>(part); // its barriers publish prob
        for (int64_t r = tid; r < rkv; r += group) {
            float acc = 0.0f;
            for (int j = 0; j < nc; j++)
                acc += prob[j] * lat[(j0 + j) * dl + r];
            olat[r] = olat[r] * alpha + acc;
        }
        m = m_new;
        __syncthreads(); // prob is rewritten by the next chunk
    }
    const float inv = 1.0f / l;
    for (int64_t r = tid; r < rkv; r += group)
        olat[r] *= inv;
    __syncthreads();

    for (int64_t c = tid; c < dv; c += group) {
        const int64_t row = row0 + dn + c;
        const uint8_t *rp = W.w + row * W.row_bytes;
        float acc = 0.0f;
        for (int64_t r = 0; r < rkv; r++)
            acc += w_elem<DT>(W, rp, row, r) * olat[r];
        out[(t * H + h) * dv + c] = acc;
    }
}

// One cache element of a GQA key or value head (f32, f16 or q8_0 rows of whole blocks).
template <int KV> __device__ __forceinline__ float kv_elem(const uint8_t *hp, int64_t d)
{
    if (KV == DT_F32)
        return reinterpret_cast<const float *>(hp)[d];
    if (KV == DT_F16)
        return f16_at(hp + 2 * d);
    const uint8_t *blk = hp + (d / 32) * 34;
    return f16_at(blk) * (float)(int8_t)blk[2 + d % 32];
}

// One query head per block: its kv head's rows, scores (dot products in double, as
// backends/cpu/cpu_gqa_attention.c), an online softmax over chunks of keys, the value sum.
template <int KV>
__global__ void __launch_bounds__(kRowsBlock)
    gqa_kernel(int64_t H, int64_t n_kv, int64_t hd, int64_t n_keys, int64_t row_bytes,
               int64_t head_bytes, double scale, const float *__restrict__ q,
               const uint8_t *__restrict__ k, const uint8_t *__restrict__ v,
               float *__restrict__ out)
{
    __shared__ float qs[R1_CUDA_MAX_HEAD_DIM];
    __shared__ float acc[R1_CUDA_MAX_HEAD_DIM];
    __shared__ float prob[kChunk];
    const int64_t j = blockIdx.x, g = j / (H / n_kv);
    const int tid = threadIdx.x, group = blockDim.x;
    for (int64_t d = tid; d < hd; d += group) {
        qs[d] = q[j * hd + d];
        acc[d] = 0.0f;
    }
    __syncthreads();
    const uint8_t *kg = k + g * head_bytes, *vg = v + g * head_bytes;
    float m = -INFINITY, l = 0.0f;
    for (int64_t n0 = 0; n0 < n_keys; n0 += kChunk) {
        const int nc = (int)(n_keys - n0 < kChunk ? n_keys - n0 : kChunk);
        float cmax = -INFINITY;
        for (int n = tid; n < nc; n += group) {
            const uint8_t *kr = kg + (n0 + n) * row_bytes;
            double dot = 0.0;
            for (int64_t d = 0; d < hd; d++)
                dot += (double)qs[d] * (double)kv_elem<KV>(kr, d);
            const float sc = (float)(dot * scale);
            prob[n] = sc;
            cmax = fmaxf(cmax, sc);
        }
        const float m_new = fmaxf(m, block_reduce<float, true>(cmax));
        const float alpha = expf(m - m_new);
        float part = 0.0f;
        for (int n = tid; n < nc; n += group) {
            const float e = expf(prob[n] - m_new);
            prob[n] = e;
            part += e;
        }
        l = l * alpha + block_reduce<float, false>(part);
        for (int64_t d = tid; d < hd; d += group) {
            float a = 0.0f;
            for (int n = 0; n < nc; n++)
                a += prob[n] * kv_elem<KV>(vg + (n0 + n) * row_bytes, d);
            acc[d] = acc[d] * alpha + a;
        }
        m = m_new;
        __syncthreads();
    }
    for (int64_t d = tid; d < hd; d += group)
        out[j * hd + d] = acc[d] / l;
}

// ---- the rest of a layer -------------------------------------------------------------------

__global__ void __launch_bounds__(kRowsBlock)
    rmsnorm_kernel(int64_t n, int64_t xs, int64_t ys, float eps, const float *x,
                   const float *__restrict__ g, float *y)
{
    const int64_t row = blockIdx.x;
    const float *xr = x + row * xs;
    float *yr = y + row * ys;
    double ss = 0.0; // the sum of squares in double, as the CPU keeps it
    for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
        ss += (double)xr[c] * (double)xr[c];
    const double mean = block_reduce<double, false>(ss) / (double)n;
    const float inv = (float)(1.0 / sqrt(mean + (double)eps));
    for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
        yr[c] = __fmul_rn(__fmul_rn(xr[c], inv), g[c]);
}

__global__ void rope_kernel(int64_t n_rows, int64_t n_vecs, int64_t row_stride, int64_t vec_stride,
                            int64_t n_pairs, const float *__restrict__ cs, float *x)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_rows * n_vecs * n_pairs)
        return;
    const int64_t m = i % n_pairs, v = (i / n_pairs) % n_vecs, r = i / (n_pairs * n_vecs);
    float *p = x + r * row_stride + v * vec_stride + 2 * m;
    const float c = cs[r * 2 * n_pairs + 2 * m], s = cs[r * 2 * n_pairs + 2 * m + 1];
    const float a = p[0], b = p[1];
    p[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    p[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

__global__ void __launch_bounds__(kRowsBlock)
    softmax_kernel(int64_t n, int64_t causal_base, int64_t causal_period, float scale, float *x)
{
    const int64_t row = blockIdx.x;
    float *xr = x + row * n;
    int64_t valid = n;
    if (causal_period > 0) {
        const int64_t v = causal_base + row % causal_period + 1;
        valid = v < n ? v : n;
    }
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < valid; c += blockDim.x)
        mx = fmaxf(mx, xr[c]);
    mx = block_reduce<float, true>(mx);
    double sum = 0.0; // in double, as lib/model/softmax.h
    for (int64_t c = threadIdx.x; c < valid; c += blockDim.x) {
        const float e = expf((xr[c] - mx) * scale);
        xr[c] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / block_reduce<double, false>(sum)); // orders the writes above
    for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
        xr[c] = c < valid ? __fmul_rn(xr[c], inv) : 0.0f;
}

__global__ void swiglu_kernel(int64_t n_rows, int64_t n, int64_t as, int64_t bs, int64_t ys,
                              const float *a, const float *b, float *y)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_rows * n)
        return;
    const int64_t r = i / n, c = i % n;
    const float z = a[r * as + c];
    float silu; // the sigmoid written so that exp never overflows (docs/model.md §8.10)
    if (z >= 0.0f) {
        silu = __fdiv_rn(z, __fadd_rn(1.0f, expf(-z)));
    } else {
        const float e = expf(z);
        silu = __fdiv_rn(__fmul_rn(z, e), __fadd_rn(1.0f, e));
    }
    y[r * ys + c] = __fmul_rn(silu, b[r * bs + c]);
}

__global__ void combine_kernel(int64_t n_rows, int64_t n, int64_t n_dst, const float *src,
                               const float *w, const int32_t *rows, float *dst)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_rows * n)
        return;
    const int64_t r = i / n, c = i % n;
    float v = src[i];
    int64_t to = r;
    if (rows != NULL) {
        const int32_t d = rows[r];
        if (d < 0 || d >= n_dst)
            return; // refused on the host; never write outside dst
        to = d;
        v = __fmul_rn(w[r], v);
    }
    dst[to * n + c] = __fadd_rn(dst[to * n + c], v);
}

// lib/model/router.c step by step, so the same experts come out: the scores in parallel, the
// selection (group scores, kept groups, top_k rounds of argmax with ties to the lower index) by
// the block's first thread, in the CPU's order of operations.
constexpr int kRouterBlock = 128;

__device__ int64_t argmax_untaken(const double *v, const uint8_t *taken, int64_t n)
{
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best]))
            best = i;
    return best;
}

__global__ void __launch_bounds__(kRouterBlock)
    router_kernel(int64_t n, int64_t k, int64_t n_group, int64_t topk_group, int32_t topk_method,
                  int32_t scoring_func, int32_t norm_topk_prob, double rsf,
                  const float *__restrict__ logits, const float *__restrict__ bias,
                  float *__restrict__ out)
{
    __shared__ double score[R1_CUDA_MAX_EXPERTS];
    __shared__ double choice[R1_CUDA_MAX_EXPERTS];
    __shared__ uint8_t taken[R1_CUDA_MAX_EXPERTS];
    __shared__ uint8_t chosen[R1_CUDA_MAX_EXPERTS];
    __shared__ double mx_sum[2];
    const int64_t row = blockIdx.x;
    const float *u = logits + row * n;
    const int tid = threadIdx.x;
    if (scoring_func == SCORING_SIGMOID) {
        for (int64_t i = tid; i < n; i += blockDim.x) {
            const double z = u[i];
            score[i] = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
        }
    } else {
        if (tid == 0) {
            double mx = u[0];
            for (int64_t i = 1; i < n; i++)
                mx = u[i] > mx ? u[i] : mx;
            mx_sum[0] = mx;
        }
        __syncthreads();
        for (int64_t i = tid; i < n; i += blockDim.x)
            score[i] = exp((double)u[i] - mx_sum[0]);
        __syncthreads();
        if (tid == 0) {
            double sum = 0; // in index order, as the CPU adds them
            for (int64_t i = 0; i < n; i++)
                sum += score[i];
            mx_sum[1] = sum;
        }
        __syncthreads();
        for (int64_t i = tid; i < n; i += blockDim.x)
            score[i] /= mx_sum[1];
    }
    const int use_bias = topk_method == TOPK_NOAUX_TC && bias != NULL;
    for (int64_t i = tid; i < n; i += blockDim.x) {
        choice[i] = score[i] + (use_bias ? (double)bias[i] : 0.0);
        taken[i] = 0;
        chosen[i] = 0;
    }
    __syncthreads();
    if (tid != 0)
        return;
    const int64_t g = n_group > 0 ? n_group : 1;
    if (g > 1 && topk_method != TOPK_GREEDY) {
        const int64_t per = n / g;
        double gscore[R1_CUDA_MAX_GROUPS];
        uint8_t gtaken[R1_CUDA_MAX_GROUPS];
        for (int64_t j = 0; j < g; j++) {
            const double *c = choice + j * per;
            gtaken[j] = 0;
            if (topk_method == TOPK_NOAUX_TC) { // sum of the two largest
                double a = -INFINITY, b = -INFINITY;
                for (int64_t i = 0; i < per; i++) {
                    if (c[i] > a) {
                        b = a;
                        a = c[i];
                    } else if (c[i] > b) {
                        b = c[i];
                    }
                }
                gscore[j] = per > 1 ? a + b : a;
            } else { // group_limited_greedy: the maximum
                double a = -INFINITY;
                for (int64_t i = 0; i < per; i++)
                    a = c[i] > a ? c[i] : a;
                gscore[j] = a;
            }
        }
        for (int64_t kept = 0; kept < topk_group; kept++)
            gtaken[argmax_untaken(gscore, gtaken, g)] = 1;
        for (int64_t j = 0; j < g; j++) // excluded groups can never be chosen
            if (!gtaken[j])
                for (int64_t i = 0; i < per; i++)
                    taken[j * per + i] = 1;
    }
    for (int64_t s = 0; s < k; s++) {
        const int64_t best = argmax_untaken(choice, taken, n);
        taken[best] = 1;
        chosen[best] = 1;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (chosen[i])
            sum += score[i];
    const int normalise = norm_topk_prob && k > 1;
    float *o = out + row * 2 * k;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!chosen[i])
            continue;
        const double w = normalise ? score[i] / sum : score[i];
        o[at] = (float)(w * rsf);
        reinterpret_cast<int32_t *>(o)[k + at] = (int32_t)i;
        at++;
    }
}

unsigned blocks_for(int64_t n, int per)
{
    return (unsigned)((n + per - 1) / per);
}

int launched(void)
{
    return (int)cudaGetLastError();
}

} // namespace

extern "C" int r1_cuda__matmul(void *stream, const r1_cuda_weight *w, const float *x,
                               int64_t n_tokens, float *y)
{
    cudaStream_t s = (cudaStream_t)stream;
    const dim3 grid(blocks_for(w->rows, kMmvWarps), blocks_for(n_tokens, kMmvTokens));
    const unsigned block = kMmvWarps * kWarp;
    switch (w->dtype) {
    case DT_F32: R1_LAUNCH(mmv_kernel<DT_F32>, grid, block, s)(*w, x, n_tokens, y); break;
    case DT_F16: R1_LAUNCH(mmv_kernel<DT_F16>, grid, block, s)(*w, x, n_tokens, y); break;
    case DT_BF16: R1_LAUNCH(mmv_kernel<DT_BF16>, grid, block, s)(*w, x, n_tokens, y); break;
    case DT_FP8: R1_LAUNCH(mmv_kernel<DT_FP8>, grid, block, s)(*w, x, n_tokens, y); break;
    case DT_Q8_0: R1_LAUNCH(mmv_kernel<DT_Q8_0>, grid, block, s)(*w, x, n_tokens, y); break;
    case DT_Q4_0: R1_LAUNCH(mmv_kernel<DT_Q4_0>, grid, block, s)(*w, x, n_tokens, y); break;
    default: return (int)cudaErrorInvalidValue;
    }
    return launched();
}

extern "C" int r1_cuda__dequantize(void *stream, const r1_cuda_weight *w, int64_t row0,
                                   int64_t n_rows, float *out)
{
    cudaStream_t s = (cudaStream_t)stream;
    const int64_t n = n_rows * w->cols;
    const unsigned grid = blocks_for(n, 256);
    switch (w->dtype) {
    case DT_F32: R1_LAUNCH(dequantize_kernel<DT_F32>, grid, 256, s)(*w, row0, n, out); break;
    case DT_F16: R1_LAUNCH(dequantize_kernel<DT_F16>, grid, 256, s)(*w, row0, n, out); break;
    case DT_BF16: R1_LAUNCH(dequantize_kernel<DT_BF16>, grid, 256, s)(*w, row0, n, out); break;
    case DT_FP8: R1_LAUNCH(dequantize_kernel<DT_FP8>, grid, 256, s)(*w, row0, n, out); break;
    case DT_Q8_0: R1_LAUNCH(dequantize_kernel<DT_Q8_0>, grid, 256, s)(*w, row0, n, out); break;
    case DT_Q4_0: R1_LAUNCH(dequantize_kernel<DT_Q4_0>, grid, 256, s)(*w, row0, n, out); break;
    default: return (int)cudaErrorInvalidValue;
    }
    return launched();
}

extern "C" int r1_cuda__mla(void *stream, const r1_cuda_weight *kv_b, int64_t n_heads, int64_t dn,
                            int64_t dr, int64_t dv, int64_t rkv, int64_t n_tokens, int64_t n_keys,
                            float scale, const float *q, const float *lat, float *out)
{
    cudaStream_t s = (cudaStream_t)stream;
    const dim3 grid((unsigned)n_heads, (unsigned)n_tokens);
#define R1_MLA(DT)                                                                                 \
    R1_LAUNCH(mla_kernel<DT>, grid, kRowsBlock, s)                                                 \
    (*kv_b, n_heads, dn, dr, dv, rkv, n_tokens, n_keys, scale, q, lat, out)
    switch (kv_b->dtype) {
    case DT_F32: R1_MLA(DT_F32); break;
    case DT_F16: R1_MLA(DT_F16); break;
    case DT_BF16: R1_MLA(DT_BF16); break;
    case DT_FP8: R1_MLA(DT_FP8); break;
    case DT_Q8_0: R1_MLA(DT_Q8_0); break;
    case DT_Q4_0: R1_MLA(DT_Q4_0); break;
    default: return (int)cudaErrorInvalidValue;
    }
#undef R1_MLA
    return launched();
}

extern "C" int r1_cuda__gqa_decode(void *stream, int64_t n_heads, int64_t n_kv_heads,
                                   int64_t head_dim, int64_t n_keys, int32_t kv_dtype,
                                   int64_t kv_row_bytes, double scale, const float *q,
                                   const uint8_t *k, const uint8_t *v, float *out)
{
    cudaStream_t s = (cudaStream_t)stream;
    const int64_t head_bytes = kv_row_bytes / n_kv_heads;
#define R1_GQA(KV)                                                                                 \
    R1_LAUNCH(gqa_kernel<KV>, (unsigned)n_heads, kRowsBlock, s)                                    \
    (n_heads, n_kv_heads, head_dim, n_keys, kv_row_bytes, head_bytes, scale, q, k, v, out)
    switch (kv_dtype) {
    case DT_F32: R1_GQA(DT_F32); break;
    case DT_F16: R1_GQA(DT_F16); break;
    case DT_Q8_0: R1_GQA(DT_Q8_0); break;
    default: return (int)cudaErrorInvalidValue;
    }
#undef R1_GQA
    return launched();
}

extern "C" int r1_cuda__rmsnorm(void *stream, int64_t n_rows, int64_t n, int64_t x_stride,
                                int64_t y_stride, float eps, const float *x, const float *g,
                                float *y)
{
    R1_LAUNCH(rmsnorm_kernel, (unsigned)n_rows, kRowsBlock, (cudaStream_t)stream)
    (n, x_stride, y_stride, eps, x, g, y);
    return launched();
}

extern "C" int r1_cuda__rope(void *stream, int64_t n_rows, int64_t n_vecs, int64_t row_stride,
                             int64_t vec_stride, int64_t n_pairs, const float *cs, float *x)
{
    const int64_t n = n_rows * n_vecs * n_pairs;
    R1_LAUNCH(rope_kernel, blocks_for(n, 256), 256, (cudaStream_t)stream)
    (n_rows, n_vecs, row_stride, vec_stride, n_pairs, cs, x);
    return launched();
}

extern "C" int r1_cuda__softmax(void *stream, int64_t n_rows, int64_t n, int64_t causal_base,
                                int64_t causal_period, float scale, float *x)
{
    R1_LAUNCH(softmax_kernel, (unsigned)n_rows, kRowsBlock, (cudaStream_t)stream)
    (n, causal_base, causal_period, scale, x);
    return launched();
}

extern "C" int r1_cuda__swiglu(void *stream, int64_t n_rows, int64_t n, int64_t a_stride,
                               int64_t b_stride, int64_t y_stride, const float *a, const float *b,
                               float *y)
{
    R1_LAUNCH(swiglu_kernel, blocks_for(n_rows * n, 256), 256, (cudaStream_t)stream)
    (n_rows, n, a_stride, b_stride, y_stride, a, b, y);
    return launched();
}

extern "C" int r1_cuda__router(void *stream, int64_t n_rows, int64_t n_experts, int64_t top_k,
                               int64_t n_group, int64_t topk_group, int32_t topk_method,
                               int32_t scoring_func, int32_t norm_topk_prob,
                               double routed_scaling_factor, const float *logits, const float *bias,
                               float *out)
{
    R1_LAUNCH(router_kernel, (unsigned)n_rows, kRouterBlock, (cudaStream_t)stream)
    (n_experts, top_k, n_group, topk_group, topk_method, scoring_func, norm_topk_prob,
     routed_scaling_factor, logits, bias, out);
    return launched();
}

extern "C" int r1_cuda__combine(void *stream, int64_t n_rows, int64_t n, int64_t n_dst_rows,
                                const float *src, const float *w, const int32_t *rows, float *dst)
{
    R1_LAUNCH(combine_kernel, blocks_for(n_rows * n, 256), 256, (cudaStream_t)stream)
    (n_rows, n, n_dst_rows, src, w, rows, dst);
    return launched();
}
