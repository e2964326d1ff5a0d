/* fake_cublas.c: the five cuBLAS calls of backends/cuda/backend_cuda.c over host memory, built as
 * a shared library that the emulated run loads through R1_CUDA_CUBLAS=PATH, so that the prompt
 * path (dequantisation kernel, then SGEMM with its transposes and leading dimensions) is checked
 * against the CPU too. Column-major, as cuBLAS; only the cases the backend uses. */
#include <cublas_api.h>
#include <stdlib.h>

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    *handle = (cublasHandle_t)malloc(16);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    free(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    (void)handle;
    (void)stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    (void)handle;
    return mode == CUBLAS_DEFAULT_MATH ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

/* C(m, n) = alpha op(A)(m, k) op(B)(k, n) + beta C, column-major with leading dimensions. */
cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float *alpha,
                              const float *A, int lda, const float *B, int ldb, const float *beta,
                              float *C, int ldc)
{
    (void)handle;
    if (m < 0 || n < 0 || k < 0 || ldc < m || lda < (transa == CUBLAS_OP_N ? m : k) ||
        ldb < (transb == CUBLAS_OP_N ? k : n))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0;
            for (int l = 0; l < k; l++) {
                const float a =
                    transa == CUBLAS_OP_N ? A[i + (size_t)l * lda] : A[l + (size_t)i * lda];
                const float b =
                    transb == CUBLAS_OP_N ? B[l + (size_t)j * ldb] : B[j + (size_t)l * ldb];
                acc += a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = *alpha * acc + (*beta != 0 ? *beta * *c : 0);
        }
    return CUBLAS_STATUS_SUCCESS;
}
