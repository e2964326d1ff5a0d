/* kernels_levels.h: the row-kernel table each SIMD level provides (internal). */
#ifndef R1_KERNELS_LEVELS_H
#define R1_KERNELS_LEVELS_H

#include <stdint.h>

#include "dtype.h"

/* The dot product of one weight row (n elements in the row's dtype; for fp8 scale_row holds the
 * row's ceil(n/128) block scales, else it is ignored) with float x. Each implementation fixes
 * its own summation order, which never depends on the row's index or on threads. */
typedef float (*r1_cpu_dot_fn)(const void *row, const float *scale_row, const float *x, int64_t n);
/* The row dequantised to float, the same values as r1_dtype__dequantize_row(). */
typedef void (*r1_cpu_dequant_fn)(const void *row, const float *scale_row, float *out, int64_t n);

typedef struct r1_cpu_kernel_table {
    const char *name;
    r1_cpu_dot_fn dot[R1_DTYPE_COUNT];
    r1_cpu_dequant_fn dequant[R1_DTYPE_COUNT];
    float (*dot_f32)(const float *a, const float *b, int64_t n);
} r1_cpu_kernel_table;

const r1_cpu_kernel_table *r1_cpu__kernels_scalar(void);
/* Only present on x86 builds (R1_CPU_X86_KERNELS), and only called when the CPU has them. */
const r1_cpu_kernel_table *r1_cpu__kernels_avx2(void);
const r1_cpu_kernel_table *r1_cpu__kernels_avx512(void);

/* The table for r1_cpu__active_level(). */
const r1_cpu_kernel_table *r1_cpu__kernels_active(void);

#endif
