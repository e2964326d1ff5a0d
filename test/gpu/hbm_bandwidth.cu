// hbm_bandwidth.cu: the GPU's memory read bandwidth, the floor of a decoded token's speed (weights
// are read once per token). Reads a buffer far larger than the L2 cache with 16-byte loads, several
// times, and prints the best pass in GB/s (10^9 bytes) on stdout. Built and run by
// test/gpu/run_device_checks.sh; not part of the library.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

__global__ void read_sum(const float4 *__restrict__ p, size_t n, float *out)
{
    float acc = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float4 v = p[i];
        acc += v.x + v.y + v.z + v.w;
    }
    if (acc == 1234.5f) // never true for the zeroed buffer; keeps the loads
        *out = acc;
}

int main(int argc, char **argv)
{
    const double gib = argc > 1 ? atof(argv[1]) : 4.0;
    const size_t bytes = (size_t)(gib * (double)(1u << 30));
    const size_t n = bytes / sizeof(float4);
    float4 *p = NULL;
    float *out = NULL;
    if (cudaMalloc(&p, n * sizeof(float4)) != cudaSuccess || cudaMalloc(&out, 4) != cudaSuccess ||
        cudaMemset(p, 0, n * sizeof(float4)) != cudaSuccess) {
        fprintf(stderr, "hbm_bandwidth: cannot allocate %zu bytes: %s\n", bytes,
                cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    double best = 0;
    for (int rep = 0; rep < 8; rep++) {
        cudaEventRecord(a);
        read_sum<<<sms * 8, 512>>>(p, n, out);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        const double gbs = (double)(n * sizeof(float4)) / (ms * 1e-3) / 1e9;
        if (rep > 0 && gbs > best) // the first pass warms up
            best = gbs;
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        fprintf(stderr, "hbm_bandwidth: %s\n", cudaGetErrorString(err));
        return 1;
    }
    printf("%.1f\n", best);
    cudaFree(p);
    cudaFree(out);
    return 0;
}
