/* backend_cuda.c: the CUDA backend's device, memory, stream-ordered queue and ops (the kernels
 * are in cuda_kernels.cu, prompt-sized products go to cuBLAS when it can be loaded). */
#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda.h"
#include "cuda_kernels.h"
#include "dtype.h"
#include "error.h"

/* The CUDA runtime is linked statically: it loads the driver (libcuda.so) only when first
 * called, so libr1 still loads on a machine without an NVIDIA driver and probe() says why. */

/* Sequence numbers map to events in a ring; older than the ring means long complete. */
enum { R1_CUDA_EVENT_RING = 64 };

struct r1_dev {
    int device;
    cudaStream_t stream;
    cudaEvent_t events[R1_CUDA_EVENT_RING];
    uint64_t submitted;
    uint64_t completed;
    /* cuBLAS (r1_cuda_blas): loaded on the first prompt-sized product */
    int blas_tried;
    void *blas_lib;
    cublasHandle_t blas;
    cublasStatus_t (*blas_destroy)(cublasHandle_t);
    cublasStatus_t (*sgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const float *, const float *, int, const float *, int, const float *,
                            float *, int);
    char blas_why[256];
    float *deq; /* float32 scratch for weights dequantised for cuBLAS */
    size_t deq_bytes;
    /* Device memory held (buffers and scratch) against the budget: the device's memory, or
     * R1_CUDA_MEMORY_BUDGET bytes when set (tests use a small one to exercise the CPU
     * fallback). Buffers are allocated and freed from the threads sharing a model. */
    pthread_mutex_t budget_mu;
    uint64_t budget, held;
};

struct r1_buf {
    void *ptr;
    size_t bytes;
};

static r1_status cuda_fail(cudaError_t err, const char *what)
{
    return r1_error__set(err == cudaErrorMemoryAllocation ? R1_ERR_NO_MEMORY : R1_ERR_BACKEND,
                         "cuda: %s failed: %s", what, cudaGetErrorString(err));
}

static int32_t cuda_probe(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(why, why_len, "%s", cudaGetErrorString(err));
        return 0;
    }
    if (n == 0)
        snprintf(why, why_len, "the CUDA driver reports no device");
    return n;
}

static void r1_cuda_mfree(r1_dev *dev, void *p, size_t bytes);

static void cuda_close(r1_dev *dev)
{
    if (dev == NULL)
        return;
    cudaSetDevice(dev->device);
    if (dev->stream != NULL)
        cudaStreamSynchronize(dev->stream);
    if (dev->blas != NULL)
        dev->blas_destroy(dev->blas);
    if (dev->blas_lib != NULL)
        dlclose(dev->blas_lib);
    r1_cuda_mfree(dev, dev->deq, dev->deq_bytes);
    for (int i = 0; i < R1_CUDA_EVENT_RING; i++)
        if (dev->events[i] != NULL)
            cudaEventDestroy(dev->events[i]);
    if (dev->stream != NULL)
        cudaStreamDestroy(dev->stream);
    pthread_mutex_destroy(&dev->budget_mu);
    free(dev);
}

static r1_status cuda_open(r1_dev **out, int32_t index)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess)
        return cuda_fail(err, "cudaGetDeviceCount");
    if (index < 0 || index >= n)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cuda: device index %d is outside 0..%d",
                             (int)index, n - 1);
    r1_dev *dev = calloc(1, sizeof *dev);
    if (dev == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the cuda device");
    dev->device = index;
    pthread_mutex_init(&dev->budget_mu, NULL);
    dev->budget = UINT64_MAX;
    const char *env = getenv("R1_CUDA_MEMORY_BUDGET");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        const unsigned long long v = strtoull(env, &end, 10);
        if (end != env && *end == '\0')
            dev->budget = v;
    }
    r1_status st = R1_OK;
    if ((err = cudaSetDevice(index)) != cudaSuccess)
        st = cuda_fail(err, "cudaSetDevice");
    else if ((err = cudaStreamCreateWithFlags(&dev->stream, cudaStreamNonBlocking)) != cudaSuccess)
        st = cuda_fail(err, "cudaStreamCreate");
    for (int i = 0; st == R1_OK && i < R1_CUDA_EVENT_RING; i++)
        if ((err = cudaEventCreateWithFlags(&dev->events[i], cudaEventDisableTiming)) !=
            cudaSuccess)
            st = cuda_fail(err, "cudaEventCreate");
    if (st != R1_OK) {
        cuda_close(dev);
        return st;
    }
    *out = dev;
    return R1_OK;
}

static r1_status cuda_device_info(r1_dev *dev, r1_device_info *out)
{
    struct cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, dev->device);
    if (err != cudaSuccess)
        return cuda_fail(err, "cudaGetDeviceProperties");
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    size_t free_b = 0, total_b = 0;
    cudaSetDevice(dev->device);
    if ((err = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess)
        return cuda_fail(err, "cudaMemGetInfo");
    out->memory_total_bytes = total_b;
    out->memory_free_bytes = free_b;
    out->host_shared = 0;
    return R1_OK;
}

/* Takes bytes from the budget (or gives them back, with give set); 0 when they do not fit. */
static int r1_cuda_budget_take(r1_dev *dev, uint64_t bytes, int give)
{
    pthread_mutex_lock(&dev->budget_mu);
    int ok = 1;
    if (give)
        dev->held -= bytes;
    else if (bytes > dev->budget || dev->held > dev->budget - bytes)
        ok = 0;
    else
        dev->held += bytes;
    pthread_mutex_unlock(&dev->budget_mu);
    return ok;
}

/* size bytes of device memory counted against the budget; *out NULL on failure. */
static r1_status r1_cuda_malloc(r1_dev *dev, size_t bytes, void **out)
{
    *out = NULL;
    if (!r1_cuda_budget_take(dev, bytes, 0))
        return r1_error__set(R1_ERR_NO_MEMORY,
                             "cuda: %zu more bytes exceed the memory budget of %llu bytes", bytes,
                             (unsigned long long)dev->budget);
    cudaSetDevice(dev->device);
    cudaError_t err = cudaMalloc(out, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        *out = NULL;
        r1_cuda_budget_take(dev, bytes, 1);
        return cuda_fail(err, "cudaMalloc");
    }
    return R1_OK;
}

static void r1_cuda_mfree(r1_dev *dev, void *p, size_t bytes)
{
    if (p == NULL)
        return;
    cudaSetDevice(dev->device);
    cudaFree(p);
    r1_cuda_budget_take(dev, bytes, 1);
}

static r1_status cuda_alloc(r1_dev *dev, size_t bytes, r1_buf **out)
{
    *out = NULL;
    r1_buf *buf = calloc(1, sizeof *buf);
    if (buf == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a cuda buffer header");
    r1_status st = r1_cuda_malloc(dev, bytes, &buf->ptr);
    if (st != R1_OK) {
        free(buf);
        return st;
    }
    buf->bytes = bytes;
    *out = buf;
    return R1_OK;
}

static void cuda_free(r1_dev *dev, r1_buf *buf)
{
    if (buf == NULL)
        return;
    r1_cuda_mfree(dev, buf->ptr, buf->bytes);
    free(buf);
}

static r1_status cuda_check_range(const r1_buf *buf, size_t off, size_t n)
{
    if (buf == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "cuda: a transfer without a buffer");
    if (off > buf->bytes || n > buf->bytes - off)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "cuda: transfer of %zu bytes at offset %zu exceeds a %zu-byte buffer",
                             n, off, buf->bytes);
    return R1_OK;
}

static r1_status cuda_upload(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n)
{
    if (src == NULL && n > 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "cuda: an upload without a source");
    r1_status st = cuda_check_range(dst, off, n);
    if (st != R1_OK || n == 0)
        return st;
    cudaSetDevice(dev->device);
    cudaError_t err =
        cudaMemcpyAsync((char *)dst->ptr + off, src, n, cudaMemcpyHostToDevice, dev->stream);
    return err == cudaSuccess ? R1_OK : cuda_fail(err, "cudaMemcpyAsync (upload)");
}

static r1_status cuda_download(r1_dev *dev, void *dst, r1_buf *src, size_t off, size_t n)
{
    if (dst == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "cuda: a download without a destination");
    r1_status st = cuda_check_range(src, off, n);
    if (st != R1_OK || n == 0)
        return st;
    cudaSetDevice(dev->device);
    cudaError_t err =
        cudaMemcpyAsync(dst, (const char *)src->ptr + off, n, cudaMemcpyDeviceToHost, dev->stream);
    return err == cudaSuccess ? R1_OK : cuda_fail(err, "cudaMemcpyAsync (download)");
}

/* ---- cuBLAS, loaded at run time -------------------------------------------------------------
 * Only libcublas.so is installed with the toolkit (no static archive), and linking it would make
 * libr1 fail to load on a machine without CUDA. So it is dlopened on the first prompt-sized
 * product; without it every product runs on the backend's own kernels. */

typedef cublasStatus_t (*r1_cublas_create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*r1_cublas_destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*r1_cublas_set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*r1_cublas_set_math_fn)(cublasHandle_t, cublasMath_t);
typedef cublasStatus_t (*r1_cublas_sgemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                             int, int, int, const float *, const float *, int,
                                             const float *, int, const float *, float *, int);

static r1_status cuda_blas_fail(cublasStatus_t err, const char *what)
{
    return r1_error__set(err == CUBLAS_STATUS_ALLOC_FAILED ? R1_ERR_NO_MEMORY : R1_ERR_BACKEND,
                         "cuda: %s failed: cuBLAS status %d", what, (int)err);
}

/* The device's cuBLAS handle on its stream, or NULL when cuBLAS cannot be had here (the reason
 * stays in dev->blas_why). R1_CUDA_CUBLAS=0 turns it off, so the own kernels can be measured. */
static cublasHandle_t r1_cuda_blas(r1_dev *dev)
{
    if (dev->blas_tried)
        return dev->blas;
    dev->blas_tried = 1;
    const char *env = getenv("R1_CUDA_CUBLAS");
    if (env != NULL && strcmp(env, "0") == 0) {
        snprintf(dev->blas_why, sizeof dev->blas_why, "R1_CUDA_CUBLAS=0");
        return NULL;
    }
    /* R1_CUDA_CUBLAS=PATH loads that library instead (test/gpu/emu's stand-in on the CPU). */
    const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    if (env != NULL && env[0] != '\0')
        names[0] = names[1] = names[2] = env;
    for (size_t i = 0; dev->blas_lib == NULL && i < sizeof names / sizeof names[0]; i++)
        dev->blas_lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (dev->blas_lib == NULL) {
        const char *why = dlerror();
        snprintf(dev->blas_why, sizeof dev->blas_why, "%s", why ? why : "libcublas not found");
        return NULL;
    }
    r1_cublas_create_fn create = (r1_cublas_create_fn)dlsym(dev->blas_lib, "cublasCreate_v2");
    dev->blas_destroy = (r1_cublas_destroy_fn)dlsym(dev->blas_lib, "cublasDestroy_v2");
    r1_cublas_set_stream_fn set_stream =
        (r1_cublas_set_stream_fn)dlsym(dev->blas_lib, "cublasSetStream_v2");
    r1_cublas_set_math_fn set_math =
        (r1_cublas_set_math_fn)dlsym(dev->blas_lib, "cublasSetMathMode");
    dev->sgemm = (r1_cublas_sgemm_fn)dlsym(dev->blas_lib, "cublasSgemm_v2");
    cublasHandle_t h = NULL;
    if (create == NULL || dev->blas_destroy == NULL || set_stream == NULL || set_math == NULL ||
        dev->sgemm == NULL) {
        snprintf(dev->blas_why, sizeof dev->blas_why, "libcublas lacks a symbol");
    } else if (create(&h) != CUBLAS_STATUS_SUCCESS) {
        snprintf(dev->blas_why, sizeof dev->blas_why, "cublasCreate failed");
        h = NULL;
    } else if (set_stream(h, dev->stream) != CUBLAS_STATUS_SUCCESS ||
               /* float32 precision throughout: never TF32, which rounds the inputs to 10 bits */
               set_math(h, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        snprintf(dev->blas_why, sizeof dev->blas_why, "cublasSetStream failed");
        dev->blas_destroy(h);
        h = NULL;
    }
    if (h == NULL) {
        dlclose(dev->blas_lib);
        dev->blas_lib = NULL;
    }
    dev->blas = h;
    return h;
}

int32_t r1_backend_cuda__uses_cublas(r1_dev *dev, char *why, size_t why_len)
{
    if (dev->blas != NULL)
        return 1;
    snprintf(why, why_len, "%s", dev->blas_tried ? dev->blas_why : "no prompt-sized product yet");
    return 0;
}

/* ---- ops --------------------------------------------------------------------------------------
 */

/* Tokens above which a product goes to cuBLAS (the weight dequantised into float32 scratch, a
 * chunk of rows at a time): the matrix-vector kernel reads the weight once per 8 tokens. */
enum { R1_CUDA_GEMM_MIN_TOKENS = 9 };
/* The dequantisation scratch is at most this large; a larger weight goes in chunks of rows. */
static const size_t R1_CUDA_DEQ_MAX_BYTES = (size_t)128 << 20;
/* CUDA's grid limit along y and z. */
enum { R1_CUDA_GRID_YZ = 65535 };

static int r1_cuda_weight_type(int32_t dt)
{
    return dt >= 0 && dt < R1_DTYPE_COUNT && r1_dtype__traits(dt) != NULL;
}

static const char *r1_cuda_matmul_refusal(const r1_op *op)
{
    if (op->n_src < 2)
        return "a matrix product takes two sources";
    const r1_dtensor *x = &op->src[0], *w = &op->src[1], *y = &op->dst;
    if (x->dtype != R1_DTYPE_F32 || y->dtype != R1_DTYPE_F32)
        return "activations must be float32";
    if (!r1_cuda_weight_type(w->dtype))
        return "unknown weight type";
    if (w->n_dims != 2 || x->n_dims != 2 || y->n_dims != 2)
        return "matrix products take 2-d tensors";
    const int64_t rows = w->shape[0], cols = w->shape[1], T = x->shape[0];
    if (rows <= 0 || cols <= 0 || T <= 0 || x->shape[1] != cols || y->shape[0] != T ||
        y->shape[1] != rows)
        return "shapes do not match";
    if (r1_dtype__row_bytes(w->dtype, cols) == 0)
        return "the row length is not a whole number of blocks";
    /* cuBLAS takes int dimensions; the kernels' grid takes rows / 4 blocks along x. */
    if (rows > INT32_MAX || cols > INT32_MAX || T > INT32_MAX)
        return "a dimension exceeds 2^31";
    return NULL;
}

static const char *r1_cuda_mla_refusal(const r1_op *op)
{
    r1_mla_shape m;
    if (!r1_backend__mla_shape_of(op, &m) || op->n_src != 3)
        return "attention takes q, the latent cache and kv_b_proj";
    const r1_dtensor *w = &op->src[2];
    if (op->src[0].dtype != R1_DTYPE_F32 || op->src[1].dtype != R1_DTYPE_F32 ||
        op->dst.dtype != R1_DTYPE_F32 || !r1_cuda_weight_type(w->dtype))
        return "float32 activations and a known kv_b_proj type";
    if (m.H <= 0 || m.dn <= 0 || m.dr < 0 || m.dv <= 0 || m.rkv <= 0 || m.n_keys <= 0 ||
        !(m.scale > 0) || w->n_dims != 2 || w->shape[0] != m.H * (m.dn + m.dv) ||
        w->shape[1] != m.rkv)
        return "kv_b_proj does not match the heads";
    if (m.rkv + m.dr > R1_CUDA_MAX_LATENT)
        return "a latent row longer than the kernel's table";
    if (r1_dtype__row_bytes(w->dtype, m.rkv) == 0)
        return "kv_b_proj rows are not whole blocks";
    if (m.H > INT32_MAX || m.n_tokens > R1_CUDA_GRID_YZ)
        return "too many heads or queries in one chunk";
    return NULL;
}

static const char *r1_cuda_router_refusal(const r1_op *op)
{
    const r1_op_router_params *p = op->params;
    if (p == NULL || (op->n_src != 1 && op->n_src != 2) || !r1_backend__f32_op(op))
        return "routing takes float32 logits and an optional bias";
    const int64_t E = p->n_experts, g = p->n_group > 0 ? p->n_group : 1;
    /* lib/model/router.c's bounds (r1_router__check) and its rule that the kept groups can
     * supply top_k experts. */
    if (p->n_rows <= 0 || p->n_rows > INT32_MAX || E <= 0 || E > R1_CUDA_MAX_EXPERTS ||
        g > R1_CUDA_MAX_GROUPS || E % g != 0 || p->top_k <= 0 || p->top_k > R1_CUDA_MAX_TOPK ||
        p->top_k > E || p->topk_group < 1 || p->topk_group > g || p->topk_method < 0 ||
        p->topk_method > 2 || p->scoring_func < 0 || p->scoring_func > 1)
        return "a routing configuration outside lib/model/router.c's bounds";
    if (p->topk_method != 0 && g > 1 && p->topk_group * (E / g) < p->top_k)
        return "the kept groups cannot supply top_k experts";
    return NULL;
}

static const char *r1_cuda_gqa_refusal(const r1_op *op)
{
    const r1_op_gqa_decode_params *p = op->params;
    if (p == NULL || op->n_src != 3)
        return "grouped-query attention takes q and the two caches";
    if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads != 0 ||
        p->head_dim <= 0 || p->head_dim > R1_CUDA_MAX_HEAD_DIM || p->n_keys <= 0 ||
        p->n_heads > INT32_MAX)
        return "bad attention shape";
    if (p->kv_dtype != R1_DTYPE_F32 && p->kv_dtype != R1_DTYPE_F16 && p->kv_dtype != R1_DTYPE_Q8_0)
        return "a cache type other than f32, f16 or q8_0";
    if (op->src[0].dtype != R1_DTYPE_F32 || op->dst.dtype != R1_DTYPE_F32 ||
        op->src[1].dtype != p->kv_dtype || op->src[2].dtype != p->kv_dtype ||
        r1_dtype__row_bytes(p->kv_dtype, p->head_dim) == 0)
        return "operand types do not match";
    return NULL;
}

static const char *r1_cuda_rows_refusal(const r1_op *op, int32_t n_src)
{
    const r1_op_rows_params *p = op->params;
    if (p == NULL || op->n_src != n_src || !r1_backend__f32_op(op))
        return "float32 rows with their parameters";
    if (p->n_rows <= 0 || p->n_rows > INT32_MAX || p->n <= 0 || p->x_stride < 0 ||
        p->b_stride < 0 || p->y_stride < 0 || (p->x_stride > 0 && p->x_stride < p->n) ||
        (p->b_stride > 0 && p->b_stride < p->n) || (p->y_stride > 0 && p->y_stride < p->n))
        return "bad row shape";
    return NULL;
}

/* Why op cannot run here, or NULL when it can. Buffers are not looked at (supports() is asked
 * before the core places anything). */
static const char *r1_cuda_refusal(const r1_op *op)
{
    /* The kernels read weights in the file's rows; another layout is some other backend's. */
    for (int32_t i = 0; i < op->n_src && i < R1_OP_MAX_SRC; i++)
        if (op->src[i].layout != 0)
            return "a weight in a layout other than rows";
    switch (op->kind) {
    case R1_OP_MATMUL: return r1_cuda_matmul_refusal(op);
    case R1_OP_MLA_DECODE:
    case R1_OP_MLA_PREFILL: return r1_cuda_mla_refusal(op);
    case R1_OP_GQA_DECODE: return r1_cuda_gqa_refusal(op);
    case R1_OP_RMSNORM:
    case R1_OP_SWIGLU: return r1_cuda_rows_refusal(op, 2);
    case R1_OP_MOE_COMBINE: return r1_backend__moe_combine_refusal(op);
    case R1_OP_ROPE: return r1_backend__rope_refusal(op);
    case R1_OP_SOFTMAX: {
        const r1_op_softmax_params *p = op->params;
        if (p == NULL || op->n_src != 0 || op->dst.dtype != R1_DTYPE_F32)
            return "softmax takes float32 rows";
        if (p->n_rows <= 0 || p->n_rows > INT32_MAX || p->n <= 0 || p->causal_base < 0 ||
            p->causal_period < 0)
            return "bad softmax shape";
        return NULL;
    }
    case R1_OP_ROUTER: return r1_cuda_router_refusal(op);
    default: return "an op kind this backend does not implement";
    }
}

static int32_t cuda_supports(r1_dev *dev, const r1_op *op)
{
    if (dev == NULL || op == NULL)
        return 0;
    return r1_cuda_refusal(op) == NULL;
}

/* The device address of n bytes at off in buf, checked against the buffer and aligned to align
 * bytes; NULL otherwise, with the failure in *st (the first one kept: *st is R1_OK before). */
static void *r1_cuda_at(const r1_buf *buf, size_t off, size_t n, size_t align, const char *what,
                        r1_status *st)
{
    r1_status why = R1_OK;
    char *p = buf != NULL ? (char *)buf->ptr + off : NULL;
    if (buf == NULL)
        why = r1_error__set(R1_ERR_INVALID_ARG, "cuda: %s has no buffer", what);
    else if ((why = cuda_check_range(buf, off, n)) == R1_OK && (uintptr_t)p % align != 0)
        why = r1_error__set(R1_ERR_INVALID_ARG, "cuda: %s is not %zu-byte aligned", what, align);
    if (why == R1_OK)
        return p;
    if (*st == R1_OK)
        *st = why;
    return NULL;
}

static float *r1_cuda_floats(const r1_dtensor *t, uint64_t floats, const char *what, r1_status *st)
{
    return r1_cuda_at(t->buf, t->offset, (size_t)floats * sizeof(float), sizeof(float), what, st);
}

static uint64_t r1_cuda_rows_span(int64_t n_rows, int64_t stride, int64_t n)
{
    return (uint64_t)(n_rows - 1) * (uint64_t)stride + (uint64_t)n;
}

static r1_status r1_cuda_launched(int err, const char *what)
{
    return err == 0 ? R1_OK : cuda_fail((cudaError_t)err, what);
}

/* A weight operand as the kernels read it; R1_OK or a message. */
static r1_status r1_cuda_weight_of(const r1_dtensor *w, r1_cuda_weight *out, const char *what)
{
    const int64_t rows = w->shape[0], cols = w->shape[1];
    const int fp8 = r1_dtype__traits(w->dtype)->has_block_scale;
    const size_t row_bytes = r1_dtype__row_bytes(w->dtype, cols);
    const int64_t scale_cols = (cols + R1_FP8_SCALE_BLOCK - 1) / R1_FP8_SCALE_BLOCK;
    const int64_t scale_rows = (rows + R1_FP8_SCALE_BLOCK - 1) / R1_FP8_SCALE_BLOCK;
    r1_status st = R1_OK;
    memset(out, 0, sizeof *out);
    /* float32 rows are read as floats; the other types byte by byte */
    out->w = r1_cuda_at(w->buf, w->offset, (size_t)rows * row_bytes,
                        w->dtype == R1_DTYPE_F32 ? sizeof(float) : 1, what, &st);
    if (out->w == NULL)
        return st;
    if (fp8) {
        out->scale = r1_cuda_at(w->scale_buf, w->scale_offset,
                                (size_t)(scale_rows * scale_cols) * sizeof(float), sizeof(float),
                                "fp8 block scales", &st);
        if (out->scale == NULL)
            return st;
    }
    out->dtype = w->dtype;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = (int64_t)row_bytes;
    out->scale_cols = scale_cols;
    return R1_OK;
}

/* Float32 scratch of at least bytes for dequantised weights; queued work may still read the
 * old one, so the stream is drained before it goes. */
static r1_status r1_cuda_deq_scratch(r1_dev *dev, size_t bytes)
{
    if (dev->deq_bytes >= bytes)
        return R1_OK;
    cudaError_t err = cudaStreamSynchronize(dev->stream);
    if (err != cudaSuccess)
        return cuda_fail(err, "cudaStreamSynchronize");
    r1_cuda_mfree(dev, dev->deq, dev->deq_bytes);
    dev->deq = NULL;
    dev->deq_bytes = 0;
    void *p = NULL;
    r1_status st = r1_cuda_malloc(dev, bytes, &p);
    if (st != R1_OK)
        return st;
    dev->deq = p;
    dev->deq_bytes = bytes;
    return R1_OK;
}

/* y(T, rows) = x(T, cols) . W^T through cuBLAS: row-major y is column-major (rows, T), so
 * y = op(A) . x with A the weight's column-major (cols, rows) transposed. */
static r1_status r1_cuda_gemm(r1_dev *dev, cublasHandle_t blas, const r1_cuda_weight *w,
                              const float *x, int64_t T, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    const int64_t rows = w->rows, cols = w->cols;
    if (w->dtype == R1_DTYPE_F32) {
        cublasStatus_t bs =
            dev->sgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)T, (int)cols, &one,
                       (const float *)w->w, (int)cols, x, (int)cols, &zero, y, (int)rows);
        return bs == CUBLAS_STATUS_SUCCESS ? R1_OK : cuda_blas_fail(bs, "cublasSgemm");
    }
    const size_t row_f32 = (size_t)cols * sizeof(float);
    int64_t chunk = (int64_t)(R1_CUDA_DEQ_MAX_BYTES / row_f32);
    if (chunk < 1)
        chunk = 1;
    if (chunk > rows)
        chunk = rows;
    r1_status st = r1_cuda_deq_scratch(dev, (size_t)chunk * row_f32);
    if (st == R1_ERR_NO_MEMORY) { /* no room for the scratch: the kernel needs none */
        r1_error__clear();
        return r1_cuda_launched(r1_cuda__matmul(dev->stream, w, x, T, y), "the matmul kernel");
    }
    for (int64_t r0 = 0; st == R1_OK && r0 < rows; r0 += chunk) {
        const int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        st = r1_cuda_launched(r1_cuda__dequantize(dev->stream, w, r0, n, dev->deq),
                              "the dequantisation kernel");
        if (st != R1_OK)
            break;
        /* the same stream orders the next chunk's dequantisation after this product */
        cublasStatus_t bs =
            dev->sgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)T, (int)cols, &one, dev->deq,
                       (int)cols, x, (int)cols, &zero, y + r0, (int)rows);
        if (bs != CUBLAS_STATUS_SUCCESS)
            st = cuda_blas_fail(bs, "cublasSgemm");
    }
    return st;
}

static r1_status r1_cuda_run_matmul(r1_dev *dev, const r1_op *op)
{
    const r1_dtensor *x = &op->src[0], *y = &op->dst;
    const int64_t rows = op->src[1].shape[0], cols = op->src[1].shape[1], T = x->shape[0];
    r1_cuda_weight w;
    r1_status st = r1_cuda_weight_of(&op->src[1], &w, "matmul weight");
    if (st != R1_OK)
        return st;
    const float *xp = r1_cuda_floats(x, (uint64_t)(T * cols), "matmul input", &st);
    float *yp = r1_cuda_floats(y, (uint64_t)(T * rows), "matmul output", &st);
    if (xp == NULL || yp == NULL)
        return st;
    cublasHandle_t blas = T >= R1_CUDA_GEMM_MIN_TOKENS ? r1_cuda_blas(dev) : NULL;
    if (blas != NULL)
        return r1_cuda_gemm(dev, blas, &w, xp, T, yp);
    return r1_cuda_launched(r1_cuda__matmul(dev->stream, &w, xp, T, yp), "the matmul kernel");
}

static r1_status r1_cuda_run_mla(r1_dev *dev, const r1_op *op)
{
    r1_mla_shape m;
    if (!r1_backend__mla_shape_of(op, &m)) /* refused before this; the compiler cannot know */
        return r1_error__set(R1_ERR_INVALID_ARG, "cuda: attention without parameters");
    r1_cuda_weight w;
    r1_status st = r1_cuda_weight_of(&op->src[2], &w, "kv_b_proj");
    if (st != R1_OK)
        return st;
    const float *q =
        r1_cuda_floats(&op->src[0], (uint64_t)(m.n_tokens * m.H * (m.dn + m.dr)), "mla query", &st);
    const float *lat =
        r1_cuda_floats(&op->src[1], (uint64_t)(m.n_keys * (m.rkv + m.dr)), "mla latent cache", &st);
    float *out = r1_cuda_floats(&op->dst, (uint64_t)(m.n_tokens * m.H * m.dv), "mla output", &st);
    if (q == NULL || lat == NULL || out == NULL)
        return st;
    return r1_cuda_launched(r1_cuda__mla(dev->stream, &w, m.H, m.dn, m.dr, m.dv, m.rkv, m.n_tokens,
                                         m.n_keys, (float)m.scale, q, lat, out),
                            "the attention kernel");
}

static r1_status r1_cuda_run_gqa(r1_dev *dev, const r1_op *op)
{
    const r1_op_gqa_decode_params *p = op->params;
    const int64_t kv_cols = p->n_kv_heads * p->head_dim;
    const size_t row_bytes = r1_dtype__row_bytes(p->kv_dtype, kv_cols);
    const size_t align = p->kv_dtype == R1_DTYPE_F32 ? sizeof(float) : 1;
    r1_status st = R1_OK;
    const float *q =
        r1_cuda_floats(&op->src[0], (uint64_t)(p->n_heads * p->head_dim), "attention query", &st);
    const uint8_t *k = r1_cuda_at(op->src[1].buf, op->src[1].offset, row_bytes * (size_t)p->n_keys,
                                  align, "key cache", &st);
    const uint8_t *v = r1_cuda_at(op->src[2].buf, op->src[2].offset, row_bytes * (size_t)p->n_keys,
                                  align, "value cache", &st);
    float *out =
        r1_cuda_floats(&op->dst, (uint64_t)(p->n_heads * p->head_dim), "attention output", &st);
    if (q == NULL || k == NULL || v == NULL || out == NULL)
        return st;
    return r1_cuda_launched(r1_cuda__gqa_decode(dev->stream, p->n_heads, p->n_kv_heads, p->head_dim,
                                                p->n_keys, p->kv_dtype, (int64_t)row_bytes,
                                                p->softmax_scale, q, k, v, out),
                            "the attention kernel");
}

static r1_status r1_cuda_run_rows(r1_dev *dev, const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int64_t xs = p->x_stride > 0 ? p->x_stride : p->n;
    const int64_t bs = p->b_stride > 0 ? p->b_stride : p->n;
    const int64_t ys = p->y_stride > 0 ? p->y_stride : p->n;
    const int norm = op->kind == R1_OP_RMSNORM;
    r1_status st = R1_OK;
    const float *a =
        r1_cuda_floats(&op->src[0], r1_cuda_rows_span(p->n_rows, xs, p->n), "rows", &st);
    const float *b =
        r1_cuda_floats(&op->src[1], norm ? (uint64_t)p->n : r1_cuda_rows_span(p->n_rows, bs, p->n),
                       norm ? "norm gain" : "swiglu up", &st);
    float *y = r1_cuda_floats(&op->dst, r1_cuda_rows_span(p->n_rows, ys, p->n), "rows output", &st);
    if (a == NULL || b == NULL || y == NULL)
        return st;
    if (norm)
        return r1_cuda_launched(
            r1_cuda__rmsnorm(dev->stream, p->n_rows, p->n, xs, ys, (float)p->eps, a, b, y),
            "the rmsnorm kernel");
    return r1_cuda_launched(r1_cuda__swiglu(dev->stream, p->n_rows, p->n, xs, bs, ys, a, b, y),
                            "the swiglu kernel");
}

static r1_status r1_cuda_run_rope(r1_dev *dev, const r1_op *op)
{
    const r1_op_rope_params *p = op->params;
    const uint64_t span = (uint64_t)(p->n_rows - 1) * (uint64_t)p->row_stride +
                          (uint64_t)(p->n_vecs - 1) * (uint64_t)p->vec_stride +
                          (uint64_t)(2 * p->n_pairs);
    r1_status st = R1_OK;
    float *x = r1_cuda_floats(&op->dst, span, "rotary vectors", &st);
    const float *cs =
        r1_cuda_floats(&op->src[0], (uint64_t)(p->n_rows * 2 * p->n_pairs), "rotary tables", &st);
    if (x == NULL || cs == NULL)
        return st;
    return r1_cuda_launched(r1_cuda__rope(dev->stream, p->n_rows, p->n_vecs, p->row_stride,
                                          p->vec_stride, p->n_pairs, cs, x),
                            "the rotary kernel");
}

static r1_status r1_cuda_run_softmax(r1_dev *dev, const r1_op *op)
{
    const r1_op_softmax_params *p = op->params;
    r1_status st = R1_OK;
    float *x = r1_cuda_floats(&op->dst, (uint64_t)(p->n_rows * p->n), "softmax rows", &st);
    if (x == NULL)
        return st;
    return r1_cuda_launched(r1_cuda__softmax(dev->stream, p->n_rows, p->n, p->causal_base,
                                             p->causal_period, (float)p->scale, x),
                            "the softmax kernel");
}

static r1_status r1_cuda_run_router(r1_dev *dev, const r1_op *op)
{
    const r1_op_router_params *p = op->params;
    r1_status st = R1_OK;
    const float *u =
        r1_cuda_floats(&op->src[0], (uint64_t)(p->n_rows * p->n_experts), "logits", &st);
    const float *bias =
        op->n_src > 1 ? r1_cuda_floats(&op->src[1], (uint64_t)p->n_experts, "routing bias", &st)
                      : NULL;
    float *out =
        r1_cuda_floats(&op->dst, (uint64_t)(p->n_rows * 2 * p->top_k), "routing output", &st);
    if (u == NULL || out == NULL || (op->n_src > 1 && bias == NULL))
        return st;
    return r1_cuda_launched(r1_cuda__router(dev->stream, p->n_rows, p->n_experts, p->top_k,
                                            p->n_group, p->topk_group, p->topk_method,
                                            p->scoring_func, p->norm_topk_prob,
                                            p->routed_scaling_factor, u, bias, out),
                            "the router kernel");
}

static r1_status r1_cuda_run_combine(r1_dev *dev, const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int scatter = op->n_src == 3;
    const int64_t n_dst = op->dst.shape[0];
    if (!scatter && p->n_rows > n_dst)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cuda: %lld rows into %lld", (long long)p->n_rows,
                             (long long)n_dst);
    r1_status st = R1_OK;
    float *dst = r1_cuda_floats(&op->dst, (uint64_t)(n_dst * p->n), "combine output", &st);
    const float *src =
        r1_cuda_floats(&op->src[0], (uint64_t)(p->n_rows * p->n), "combine input", &st);
    const float *w =
        scatter ? r1_cuda_floats(&op->src[1], (uint64_t)p->n_rows, "combine weights", &st) : NULL;
    const int32_t *rows =
        scatter
            ? (const int32_t *)r1_cuda_floats(&op->src[2], (uint64_t)p->n_rows, "combine rows", &st)
            : NULL;
    if (dst == NULL || src == NULL || (scatter && (w == NULL || rows == NULL)))
        return st;
    return r1_cuda_launched(
        r1_cuda__combine(dev->stream, p->n_rows, p->n, n_dst, src, w, rows, dst),
        "the combine kernel");
}

static r1_status cuda_run(r1_dev *dev, const r1_op *op)
{
    if (dev == NULL || op == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "cuda: run needs a device and an op");
    const char *why = r1_cuda_refusal(op);
    if (why != NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "cuda: %s", why);
    cudaSetDevice(dev->device);
    switch (op->kind) {
    case R1_OP_MATMUL: return r1_cuda_run_matmul(dev, op);
    case R1_OP_MLA_DECODE:
    case R1_OP_MLA_PREFILL: return r1_cuda_run_mla(dev, op);
    case R1_OP_GQA_DECODE: return r1_cuda_run_gqa(dev, op);
    case R1_OP_RMSNORM:
    case R1_OP_SWIGLU: return r1_cuda_run_rows(dev, op);
    case R1_OP_ROPE: return r1_cuda_run_rope(dev, op);
    case R1_OP_SOFTMAX: return r1_cuda_run_softmax(dev, op);
    case R1_OP_ROUTER: return r1_cuda_run_router(dev, op);
    case R1_OP_MOE_COMBINE: return r1_cuda_run_combine(dev, op);
    default: return r1_error__set(R1_ERR_UNSUPPORTED, "cuda: op kind %d", (int)op->kind);
    }
}

static r1_status cuda_wait(r1_dev *dev, uint64_t seq);

static r1_status cuda_submit(r1_dev *dev, uint64_t *seq_out)
{
    uint64_t seq = dev->submitted + 1;
    /* Reusing a ring slot means its old number must be complete first. */
    if (seq > R1_CUDA_EVENT_RING) {
        r1_status st = cuda_wait(dev, seq - R1_CUDA_EVENT_RING);
        if (st != R1_OK)
            return st;
    }
    cudaSetDevice(dev->device);
    cudaError_t err = cudaEventRecord(dev->events[seq % R1_CUDA_EVENT_RING], dev->stream);
    if (err != cudaSuccess)
        return cuda_fail(err, "cudaEventRecord");
    dev->submitted = seq;
    if (seq_out != NULL)
        *seq_out = seq;
    return R1_OK;
}

static r1_status cuda_wait(r1_dev *dev, uint64_t seq)
{
    if (seq > dev->submitted)
        seq = dev->submitted;
    if (seq <= dev->completed)
        return R1_OK;
    cudaSetDevice(dev->device);
    cudaError_t err = cudaEventSynchronize(dev->events[seq % R1_CUDA_EVENT_RING]);
    if (err != cudaSuccess)
        return cuda_fail(err, "cudaEventSynchronize");
    dev->completed = seq;
    return R1_OK;
}

static uint64_t cuda_completed(r1_dev *dev)
{
    while (dev->completed < dev->submitted &&
           cudaEventQuery(dev->events[(dev->completed + 1) % R1_CUDA_EVENT_RING]) == cudaSuccess)
        dev->completed++;
    return dev->completed;
}

static const r1_backend_ops r1_cuda_ops = {
    .abi = R1_BACKEND_ABI,
    .name = "cuda",
    .probe = cuda_probe,
    .open = cuda_open,
    .close = cuda_close,
    .device_info = cuda_device_info,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .wrap_host = NULL,
    .upload = cuda_upload,
    .download = cuda_download,
    .supports = cuda_supports,
    .run = cuda_run,
    .submit = cuda_submit,
    .wait = cuda_wait,
    .completed = cuda_completed,
};

const r1_backend_ops *r1_backend_cuda__ops(void)
{
    return &r1_cuda_ops;
}
