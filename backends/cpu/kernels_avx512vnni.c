/* kernels_avx512vnni.c: the integer Q8_0/Q4_0 kernels with vpdpbusd, called only on CPUs with
 * AVX512-VNNI; everything else of the level comes from kernels_avx512.c. */
#define R1_QX_VNNI 1
#include "kernels_qx_avx512.h"

void r1_cpu__avx512vnni_qx_q8_0(const void *rows, size_t row_bytes, int32_t n_rows,
                                const r1_cpu_qx_block *x, int64_t n_blocks, float *out);
void r1_cpu__avx512vnni_qx_q4_0(const void *rows, size_t row_bytes, int32_t n_rows,
                                const r1_cpu_qx_block *x, int64_t n_blocks, float *out);

void r1_cpu__avx512vnni_qx_q8_0(const void *rows, size_t row_bytes, int32_t n_rows,
                                const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    r1_qx_rows(0, rows, row_bytes, n_rows, x, n_blocks, out);
}

void r1_cpu__avx512vnni_qx_q4_0(const void *rows, size_t row_bytes, int32_t n_rows,
                                const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    r1_qx_rows(1, rows, row_bytes, n_rows, x, n_blocks, out);
}

void r1_cpu__avx512vnni_r16_q8_0(const void *const *groups, int32_t n_groups,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out);
void r1_cpu__avx512vnni_r16_q4_0(const void *const *groups, int32_t n_groups,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out);

void r1_cpu__avx512vnni_r16_q8_0(const void *const *groups, int32_t n_groups,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    r1_r16_groups(0, groups, n_groups, x, n_blocks, out);
}

void r1_cpu__avx512vnni_r16_q4_0(const void *const *groups, int32_t n_groups,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    r1_r16_groups(1, groups, n_groups, x, n_blocks, out);
}
