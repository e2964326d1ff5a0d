/* backend_cuda.c: the CUDA backend's device, memory and stream-ordered queue. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
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

static void cuda_close(r1_dev *dev)
{
    if (dev == NULL)
        return;
    cudaSetDevice(dev->device);
    if (dev->stream != NULL)
        cudaStreamSynchronize(dev->stream);
    for (int i = 0; i < R1_CUDA_EVENT_RING; i++)
        if (dev->events[i] != NULL)
            cudaEventDestroy(dev->events[i]);
    if (dev->stream != NULL)
        cudaStreamDestroy(dev->stream);
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

static r1_status cuda_alloc(r1_dev *dev, size_t bytes, r1_buf **out)
{
    r1_buf *buf = calloc(1, sizeof *buf);
    if (buf == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a cuda buffer header");
    cudaSetDevice(dev->device);
    cudaError_t err = cudaMalloc(&buf->ptr, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        free(buf);
        return cuda_fail(err, "cudaMalloc");
    }
    buf->bytes = bytes;
    *out = buf;
    return R1_OK;
}

static void cuda_free(r1_dev *dev, r1_buf *buf)
{
    if (buf == NULL)
        return;
    cudaSetDevice(dev->device);
    cudaFree(buf->ptr);
    free(buf);
}

static r1_status cuda_check_range(const r1_buf *buf, size_t off, size_t n)
{
    if (off > buf->bytes || n > buf->bytes - off)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "cuda: transfer of %zu bytes at offset %zu exceeds a %zu-byte buffer",
                             n, off, buf->bytes);
    return R1_OK;
}

static r1_status cuda_upload(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n)
{
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
    r1_status st = cuda_check_range(src, off, n);
    if (st != R1_OK || n == 0)
        return st;
    cudaSetDevice(dev->device);
    cudaError_t err =
        cudaMemcpyAsync(dst, (const char *)src->ptr + off, n, cudaMemcpyDeviceToHost, dev->stream);
    return err == cudaSuccess ? R1_OK : cuda_fail(err, "cudaMemcpyAsync (download)");
}

static int32_t cuda_supports(r1_dev *dev, const r1_op *op)
{
    (void)dev;
    (void)op;
    return 0; /* no kernels yet: every op runs on the CPU backend */
}

static r1_status cuda_run(r1_dev *dev, const r1_op *op)
{
    (void)dev;
    return r1_error__set(R1_ERR_UNSUPPORTED, "cuda: op kind %d has no kernel", (int)op->kind);
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
