/* weight_layout.c: conversion to and from the R16 layout (see weight_layout.h). */
#include "weight_layout.h"

#include <string.h>

#include "dtype.h"

int r1_layout__r16_eligible(int32_t dt, int64_t rows, int64_t cols)
{
    return (dt == R1_DTYPE_Q8_0 || dt == R1_DTYPE_Q4_0) && rows > 0 && cols > 0 &&
           rows % R1_R16_ROWS == 0 && cols % R1_QBLOCK == 0;
}

size_t r1_layout__r16_group_bytes(int32_t dt, int64_t cols)
{
    return R1_R16_ROWS * r1_dtype__row_bytes(dt, cols);
}

/* Bytes of one block's interleaved weights in a group: 16 rows x (32 or 16) bytes. */
static size_t r1_r16_block_bytes(int32_t dt)
{
    return dt == R1_DTYPE_Q8_0 ? R1_R16_ROWS * R1_QBLOCK : R1_R16_ROWS * R1_QBLOCK / 2;
}

void r1_layout__to_r16(int32_t dt, const void *src, int64_t rows, int64_t cols, void *dst)
{
    const int64_t nb = cols / R1_QBLOCK;
    const size_t row_bytes = r1_dtype__row_bytes(dt, cols);
    const size_t group_bytes = r1_layout__r16_group_bytes(dt, cols);
    const size_t wb = r1_r16_block_bytes(dt);
    for (int64_t g = 0; g < rows / R1_R16_ROWS; g++) {
        uint8_t *out = (uint8_t *)dst + (size_t)g * group_bytes;
        uint16_t *scales = (uint16_t *)(void *)out;
        uint8_t *w = out + (size_t)nb * R1_R16_ROWS * sizeof(uint16_t);
        for (int64_t r = 0; r < R1_R16_ROWS; r++) {
            const uint8_t *row = (const uint8_t *)src + (size_t)(g * R1_R16_ROWS + r) * row_bytes;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *wblock = w + (size_t)b * wb;
                if (dt == R1_DTYPE_Q8_0) {
                    const r1_block_q8_0 *blk = (const r1_block_q8_0 *)(const void *)row + b;
                    scales[b * R1_R16_ROWS + r] = blk->d;
                    for (int j = 0; j < 8; j++)
                        for (int k = 0; k < 4; k++)
                            wblock[(j * R1_R16_ROWS + r) * 4 + k] =
                                (uint8_t)blk->q[4 * j + k] ^ 0x80u;
                } else {
                    const r1_block_q4_0 *blk = (const r1_block_q4_0 *)(const void *)row + b;
                    scales[b * R1_R16_ROWS + r] = blk->d;
                    for (int j = 0; j < 4; j++)
                        memcpy(wblock + (j * R1_R16_ROWS + r) * 4, blk->qs + 4 * j, 4);
                }
            }
        }
    }
}

void r1_layout__r16_dequant_group(int32_t dt, const void *group, int64_t cols, float *out)
{
    const int64_t nb = cols / R1_QBLOCK;
    const uint16_t *scales = group;
    const uint8_t *w = (const uint8_t *)group + (size_t)nb * R1_R16_ROWS * sizeof(uint16_t);
    const size_t wb = r1_r16_block_bytes(dt);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wblock = w + (size_t)b * wb;
        for (int64_t r = 0; r < R1_R16_ROWS; r++) {
            const float d = r1_fp16__to_f32(scales[b * R1_R16_ROWS + r]);
            float *o = out + r * cols + b * R1_QBLOCK;
            if (dt == R1_DTYPE_Q8_0) {
                for (int j = 0; j < 8; j++)
                    for (int k = 0; k < 4; k++)
                        o[4 * j + k] =
                            d * (float)(int8_t)(wblock[(j * R1_R16_ROWS + r) * 4 + k] ^ 0x80u);
            } else {
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 4; k++) {
                        const uint8_t v = wblock[(j * R1_R16_ROWS + r) * 4 + k];
                        o[4 * j + k] = d * (float)((int)(v & 0x0f) - 8);
                        o[16 + 4 * j + k] = d * (float)((int)(v >> 4) - 8);
                    }
            }
        }
    }
}
