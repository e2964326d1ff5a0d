/* dtype.h: the weight types of libr1 (storage layout, conversion, quantisation) (internal). */
#ifndef R1_DTYPE_H
#define R1_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/* Values are stored in .r1m files: frozen, append only. Adding a type (a k-quant, say) means a
 * new value here, a row in the traits table of dtype.c and its row kernels: nothing else. */
typedef enum r1_dtype {
    R1_DTYPE_F32 = 0,
    R1_DTYPE_F16 = 1,
    R1_DTYPE_BF16 = 2,
    R1_DTYPE_FP8_E4M3 = 3, /* e4m3fn bytes; 128x128 float32 block scales in a separate tensor */
    R1_DTYPE_Q8_0 = 4,     /* blocks of 32: f16 scale d, 32 x int8 q; x = d*q */
    R1_DTYPE_Q4_0 = 5,     /* blocks of 32: f16 scale d, 16 bytes; x = d*(nibble-8) */
    R1_DTYPE_COUNT
} r1_dtype;

/* A row of a weight matrix is a whole number of blocks. */
typedef struct r1_dtype_traits {
    const char *name;        /* "f32", "f16", "bf16", "fp8_e4m3", "q8_0", "q4_0" */
    uint32_t block_elems;    /* elements per block (1 for plain types, 32 for q8_0/q4_0) */
    uint32_t block_bytes;    /* bytes per block */
    int32_t has_block_scale; /* 1 for fp8: needs a (ceil(rows/128), ceil(cols/128)) f32 scale */
} r1_dtype_traits;

enum { R1_FP8_SCALE_BLOCK = 128, R1_QBLOCK = 32 };

/* The block scales an FP8 weight has along a dimension of n values: ceil(n / 128), so a weight
 * (rows, cols) has (r1_fp8__scale_blocks(rows), r1_fp8__scale_blocks(cols)) float32 scales
 * (docs/model.md §5.3.2). The one place the formula is written. */
static inline int64_t r1_fp8__scale_blocks(int64_t n)
{
    return (n + R1_FP8_SCALE_BLOCK - 1) / R1_FP8_SCALE_BLOCK;
}

/* NULL when dt is not a known type. */
const r1_dtype_traits *r1_dtype__traits(int32_t dt);
/* Looks a type up by its traits name; -1 when unknown. */
int32_t r1_dtype__from_name(const char *name);
/* Bytes of one row of n_cols elements; 0 when n_cols is not a multiple of the block size or dt
 * is unknown. */
size_t r1_dtype__row_bytes(int32_t dt, int64_t n_cols);

/* Scalar conversions (exact where the format allows; f32->f16/bf16 round to nearest even). */
float r1_fp16__to_f32(uint16_t h);
uint16_t r1_fp16__from_f32(float f);
float r1_bf16__to_f32(uint16_t h);
uint16_t r1_bf16__from_f32(float f);
float r1_fp8_e4m3__to_f32(uint8_t b); /* 0x7f/0xff are NaN; no infinities */

/* Block formats, byte-exact on disk (little-endian f16 scale first). */
typedef struct r1_block_q8_0 {
    uint16_t d; /* f16 scale */
    int8_t q[32];
} r1_block_q8_0;
typedef struct r1_block_q4_0 {
    uint16_t d; /* f16 scale */
    uint8_t
        qs[16]; /* element j (j<16) in the low nibble of qs[j], element j+16 in its high nibble */
} r1_block_q4_0;

/* Reference quantisers (the converter's; test/ref/quant.py implements the same bit for bit).
 * n must be a multiple of 32. */
void r1_quantize__q8_0(const float *x, r1_block_q8_0 *out, int64_t n);
void r1_quantize__q4_0(const float *x, r1_block_q4_0 *out, int64_t n);

/* Dequantise one row (n_cols elements) of a matrix stored in type dt.
 * row_data points at the row's first byte. For fp8, scale_row points at the row of block scales
 * for this row (scale[(row/128) * scale_cols]), else it is ignored. */
void r1_dtype__dequantize_row(int32_t dt, const void *row_data, const float *scale_row, float *out,
                              int64_t n_cols);

/* The 256-entry e4m3fn decode table (exact float32 values), for kernels that gather from it. */
const float *r1_fp8_e4m3__table(void);

#endif
