/* tensor.h: a view of a host-resident weight tensor as the kernels see it (internal). */
#ifndef R1_TENSOR_H
#define R1_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum { R1_MAX_DIMS = 4 };

/* Shapes are in PyTorch order, outermost first: a Linear weight is (out_features, in_features),
 * row r holds the in_features weights of output r, contiguous, in the tensor's dtype, unless
 * layout says the CPU's kernels have had the rows interleaved (then only whole products read
 * it: no row access). */
typedef struct r1_tensor {
    int32_t dtype; /* r1_dtype */
    int32_t n_dims;
    int64_t shape[R1_MAX_DIMS];
    const void *data; /* row-major; borrowed (mmap or expert cache) */
    size_t nbytes;
    const float *scale; /* fp8 only: weight_scale_inv, (ceil(rows/128), ceil(cols/128)) */
    int64_t scale_cols; /* fp8 only: ceil(cols/128) */
    int32_t layout;     /* enum r1_layout (weight_layout.h): 0 = rows, as the file stores them */
} r1_tensor;

/* rows = product of all but the last dim; cols = last dim. */
static inline int64_t r1_tensor__cols(const r1_tensor *t)
{
    return t->shape[t->n_dims - 1];
}
static inline int64_t r1_tensor__rows(const r1_tensor *t)
{
    int64_t r = 1;
    for (int32_t i = 0; i + 1 < t->n_dims; i++)
        r *= t->shape[i];
    return r;
}

/* Bytes of an FP8 weight's block scales (ceil(rows/128) rows of scale_cols floats); 0 for a
 * weight without them. */
static inline size_t r1_tensor__scale_bytes(const r1_tensor *t)
{
    return t->scale != NULL
               ? (size_t)r1_fp8__scale_blocks(r1_tensor__rows(t)) * (size_t)t->scale_cols * 4
               : 0;
}

/* A float32 matrix (rows, cols) as a weight, so a product multiplies by it like by any other
 * (an activation used as a matrix: the latent cache, a transposed W_UK). */
static inline r1_tensor r1_tensor__f32_matrix(const float *data, int64_t rows, int64_t cols)
{
    r1_tensor t = {.dtype = R1_DTYPE_F32,
                   .n_dims = 2,
                   .shape = {rows, cols},
                   .data = data,
                   .nbytes = (size_t)(rows * cols) * sizeof(float)};
    return t;
}

/* dst (cols, rows) = src (rows, cols with a row stride of ld)^T, in tiles that stay in cache. */
static inline void r1_tensor__transpose_f32(const float *src, int64_t rows, int64_t cols,
                                            int64_t ld, float *dst)
{
    enum { TILE = 32 };
    for (int64_t r0 = 0; r0 < rows; r0 += TILE)
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            const int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
            const int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    dst[c * rows + r] = src[r * ld + c];
        }
}

#endif
