/* backend_cpu.c: the CPU backend's operations table (always built; the reference backend). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cpu_kernels.h"
#include "cpu_ops.h"
#include "error.h"

/* Host memory is the device memory: buffers are plain aligned allocations or views of the
 * caller's memory, and the "queue" runs each op on the calling thread as it is recorded. */
struct r1_dev {
    _Atomic uint64_t submitted; /* sessions on one model submit from their own threads */
    r1_threadpool *pool;        /* the device's own pool (set_threads) or the shared one */
    int32_t holds_shared;       /* 1: pool is the shared pool, one reference of which is ours */
};

struct r1_buf {
    void *data;
    size_t bytes;
    int32_t owned; /* 0 for wrap_host views */
};

/* Wide enough for AVX-512 loads and to keep rows of different threads off one cache line. */
enum { R1_CPU_ALIGN = 64 };

static int32_t cpu_probe(char *why, size_t why_len)
{
    snprintf(why, why_len, "0: the host CPU (%ld cores online)", sysconf(_SC_NPROCESSORS_ONLN));
    return 1;
}

static r1_status cpu_open(r1_dev **out, int32_t index)
{
    if (index != 0)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu backend has one device, not index %d",
                             (int)index);
    r1_dev *dev = calloc(1, sizeof *dev);
    if (dev == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the cpu device");
    /* The pool's workers live exactly as long as some device uses them (threadpool.h). */
    r1_status st = r1_threadpool__acquire_shared(&dev->pool);
    if (st != R1_OK) {
        free(dev);
        return st;
    }
    dev->holds_shared = 1;
    *out = dev;
    return R1_OK;
}

static void r1_cpu_drop_pool(r1_dev *dev)
{
    if (dev->holds_shared)
        r1_threadpool__release_shared();
    else
        r1_threadpool__destroy(dev->pool);
    dev->pool = NULL;
    dev->holds_shared = 0;
}

static void cpu_close(r1_dev *dev)
{
    if (dev == NULL)
        return;
    r1_cpu_drop_pool(dev);
    free(dev);
}

static r1_status cpu_set_threads(r1_dev *dev, int32_t n_threads)
{
    r1_threadpool *pool = NULL;
    r1_status st = r1_threadpool__create(&pool, n_threads, -1);
    if (st != R1_OK)
        return st;
    r1_cpu_drop_pool(dev);
    dev->pool = pool;
    return R1_OK;
}

static r1_status cpu_device_info(r1_dev *dev, r1_device_info *out)
{
    (void)dev;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", r1_cpu__description());
    r1_cpu__memory(&out->memory_total_bytes, &out->memory_free_bytes);
    out->host_shared = 1;
    out->weight_layout = r1_cpu__weight_layout();
    return R1_OK;
}

static r1_status cpu_alloc(r1_dev *dev, size_t bytes, r1_buf **out)
{
    (void)dev;
    r1_buf *buf = calloc(1, sizeof *buf);
    if (buf == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a cpu buffer header");
    size_t rounded = (bytes + R1_CPU_ALIGN - 1) / R1_CPU_ALIGN * R1_CPU_ALIGN;
    if (rounded < bytes ||
        (buf->data = aligned_alloc(R1_CPU_ALIGN, rounded ? rounded : R1_CPU_ALIGN)) == NULL) {
        free(buf);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %zu bytes of host memory", bytes);
    }
    buf->bytes = bytes;
    buf->owned = 1;
    *out = buf;
    return R1_OK;
}

static void cpu_free(r1_dev *dev, r1_buf *buf)
{
    (void)dev;
    if (buf == NULL)
        return;
    if (buf->owned)
        free(buf->data);
    free(buf);
}

static r1_status cpu_wrap_host(r1_dev *dev, const void *host, size_t bytes, r1_buf **out)
{
    (void)dev;
    r1_buf *buf = calloc(1, sizeof *buf);
    if (buf == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a cpu buffer header");
    /* The view never writes through: weights are read-only mappings. */
    buf->data = (void *)(uintptr_t)host;
    buf->bytes = bytes;
    *out = buf;
    return R1_OK;
}

static r1_status cpu_check_range(const r1_buf *buf, size_t off, size_t n)
{
    if (off > buf->bytes || n > buf->bytes - off)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "transfer of %zu bytes at offset %zu exceeds a %zu-byte buffer", n,
                             off, buf->bytes);
    return R1_OK;
}

static r1_status cpu_upload(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n)
{
    (void)dev;
    r1_status st = cpu_check_range(dst, off, n);
    if (st == R1_OK && n)
        memcpy((char *)dst->data + off, src, n);
    return st;
}

static r1_status cpu_download(r1_dev *dev, void *dst, r1_buf *src, size_t off, size_t n)
{
    (void)dev;
    r1_status st = cpu_check_range(src, off, n);
    if (st == R1_OK && n)
        memcpy(dst, (const char *)src->data + off, n);
    return st;
}

void *r1_cpu__buf_data(r1_buf *buf)
{
    return buf->data;
}

size_t r1_cpu__buf_bytes(const r1_buf *buf)
{
    return buf->bytes;
}

static int32_t cpu_supports(r1_dev *dev, const r1_op *op)
{
    (void)dev;
    if (op != NULL && op->kind == R1_OP_MLA_PREFILL)
        return r1_cpu__mla_prefill_supported(op);
    if (op != NULL && op->kind == R1_OP_GQA_DECODE)
        return r1_cpu__gqa_decode_supported(op);
    return r1_cpu__op_supported(op);
}

static r1_status cpu_run(r1_dev *dev, const r1_op *op)
{
    if (op != NULL && op->kind == R1_OP_MLA_PREFILL)
        return r1_cpu__mla_prefill_run(dev->pool, op);
    if (op != NULL && op->kind == R1_OP_GQA_DECODE)
        return r1_cpu__gqa_decode_run(dev->pool, op);
    return r1_cpu__op_run(dev->pool, op);
}

static r1_status cpu_submit(r1_dev *dev, uint64_t *seq_out)
{
    /* Work already ran as it was recorded; the number only keeps the contract. */
    uint64_t seq = ++dev->submitted;
    if (seq_out != NULL)
        *seq_out = seq;
    return R1_OK;
}

static r1_status cpu_wait(r1_dev *dev, uint64_t seq)
{
    (void)dev;
    (void)seq;
    return R1_OK;
}

static uint64_t cpu_completed(r1_dev *dev)
{
    return dev->submitted;
}

static const r1_backend_ops r1_cpu_ops = {
    .abi = R1_BACKEND_ABI,
    .name = "cpu",
    .probe = cpu_probe,
    .open = cpu_open,
    .close = cpu_close,
    .device_info = cpu_device_info,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .wrap_host = cpu_wrap_host,
    .upload = cpu_upload,
    .download = cpu_download,
    .supports = cpu_supports,
    .run = cpu_run,
    .submit = cpu_submit,
    .wait = cpu_wait,
    .completed = cpu_completed,
    .set_threads = cpu_set_threads,
};

const r1_backend_ops *r1_backend_cpu__ops(void)
{
    return &r1_cpu_ops;
}
