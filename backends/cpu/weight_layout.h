/* weight_layout.h: the row-interleaved layout of Q8_0/Q4_0 weights for the CPU's integer
 * kernels (internal).
 *
 * Why: in the file's row layout every 32-weight block carries its own f16 scale (34 or 18
 * bytes), so a decode kernel reads one row at a time, unaligned, and spends more instructions
 * per weight reducing and scaling than the memory takes to deliver them (measured: Q4_0 reached
 * half the memory bandwidth on two cores). In the R16 layout the weights of 16 consecutive rows
 * are interleaved four bytes at a time, so one 64-byte load holds four weights of each of 16
 * rows and an integer dot-product instruction against four broadcast activation bytes yields
 * all 16 rows' partial sums in 16 lanes, with no horizontal reduction; the 16 rows' scales of a
 * block sit together and convert as one vector.
 *
 * A group of 16 rows of `cols` weights (nb = cols / 32 blocks) is, in this order:
 *   scales   nb x 16 f16: the scale of block b of row r at [b][r];
 *   weights  Q8_0: nb x 8 x 16 x 4 bytes: elements 4j..4j+3 of block b of row r at [b][j][r],
 *                  each stored as q + 128 (q XOR 0x80), an unsigned byte, so that unsigned-by-
 *                  signed byte products take it as is; the kernels subtract 128 x sum(x);
 *            Q4_0: nb x 4 x 16 x 4 bytes: bytes 4j..4j+3 of the block's 16 nibble bytes (low
 *                  nibbles elements 4j.., high nibbles elements 16+4j..) of row r at [b][j][r].
 * A group has exactly the bytes of its 16 rows in the row layout, so a tensor keeps its size
 * and two tensors that follow each other still do. */
#ifndef R1_WEIGHT_LAYOUT_H
#define R1_WEIGHT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

enum r1_layout {
    R1_LAYOUT_ROWS = 0, /* row-major in the dtype's own blocks: the file's layout */
    R1_LAYOUT_R16 = 1,  /* groups of 16 rows interleaved (above); Q8_0 and Q4_0 only */
};

enum { R1_R16_ROWS = 16 };

/* Whether a (rows, cols) weight of dtype dt can take the R16 layout: Q8_0 or Q4_0, rows a
 * multiple of 16, cols a multiple of 32. */
int r1_layout__r16_eligible(int32_t dt, int64_t rows, int64_t cols);

/* Bytes of one group of 16 rows (the same as 16 rows in the row layout). */
size_t r1_layout__r16_group_bytes(int32_t dt, int64_t cols);

/* src (rows x cols in the row layout) to dst in the R16 layout; the weight must be eligible and
 * dst must not overlap src. */
void r1_layout__to_r16(int32_t dt, const void *src, int64_t rows, int64_t cols, void *dst);

/* The 16 rows of one R16 group dequantised to float (16 x cols, row-major): the values
 * r1_dtype__dequantize_row() gives for the same rows in the row layout. */
void r1_layout__r16_dequant_group(int32_t dt, const void *group, int64_t cols, float *out);

#endif
