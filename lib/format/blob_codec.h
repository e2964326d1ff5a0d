/* blob_codec.h: expert blob coding: the converter's choice of codec and the loaders' decoding. */
#ifndef R1_BLOB_CODEC_H
#define R1_BLOB_CODEC_H

#include <stdint.h>

#include "container.h"
#include "r1.h"

/* One per thread: holds the zstd context and the filter's scratch, reused across blobs so that a
 * load allocates nothing once warm. Not shareable between threads at the same time. */
typedef struct r1_blob_decoder r1_blob_decoder;

r1_status r1_blob_decoder__create(r1_blob_decoder **out);
void r1_blob_decoder__destroy(r1_blob_decoder *d);

/* Turns the b->stored_size bytes at `stored` (as read from the file) into b->raw_size raw bytes
 * at `raw` (64-byte aligned; may equal `stored` when b->codec is R1M_CODEC_RAW, then it only
 * verifies) and checks b->checksum. R1_ERR_FORMAT (damaged coding), R1_ERR_CHECKSUM,
 * R1_ERR_NO_MEMORY, each message naming layer, expert and offset. */
r1_status r1_blob_decoder__decode(r1_blob_decoder *d, const r1_expert_blob *b,
                                  const uint8_t *stored, uint8_t *raw);

/* The least share of the raw bytes, in percent, that a codec must save for the converter to
 * keep it; below that the blob is stored raw (docs/format.md §6). */
#define R1_BLOB_MIN_SAVING_PCT 5
/* The converter's zstd level for expert blobs: on filtered BF16 weights level 1 measured both
 * smaller (0.684 of raw against 0.712) and faster to decode (about 1.6x) than level 3
 * (test/bench_codec.c, docs/performance.md). */
#define R1_BLOB_ZSTD_LEVEL 1

/* One per converter thread: the zstd context and the filtered and coded bytes. */
typedef struct r1_blob_encoder r1_blob_encoder;

enum {
    R1_BLOB_ENCODE_DEFAULT = 0,
    /* never filter; as zstd alone decodes too slowly to pay on weights (test/bench_codec.c),
     * every blob is then stored raw */
    R1_BLOB_ENCODE_NO_FILTER = 1,
    /* the choices of the format 1.0 converter, for tests of old files: zstd, for 16-bit types
     * also after the byte-plane filter, the smaller kept when it saves 1/32 of raw_size */
    R1_BLOB_ENCODE_V1_0 = 2,
};

/* zstd_level: 0 for R1_BLOB_ZSTD_LEVEL. mode: one of the R1_BLOB_ENCODE_* values. */
r1_status r1_blob_encoder__create(r1_blob_encoder **out, int32_t zstd_level, int32_t mode);
void r1_blob_encoder__destroy(r1_blob_encoder *e);

/* The one coding the converter tries for b's dtypes, as the filter that goes before zstd:
 * R1M_FILTER_BYTEPLANE2 when all three are BF16 or F16, R1M_FILTER_NIBBLEPLANE2 when all are
 * FP8 E4M3; -1 (store raw) otherwise: zstd on the other types saves under 5 % on weights or
 * decodes under 1 GB/s per core (docs/performance.md). */
int32_t r1_blob_codec__filter_for(const r1_expert_blob *b);

/* Chooses how blob b is stored (in R1_BLOB_ENCODE_DEFAULT mode): b->dtype, raw_size and checksum
 * describe the raw bytes at raw; sets b->codec, b->filter and b->stored_size and points *stored_out
 * at the bytes to write (raw itself, or the encoder's buffer, valid until its next call). The
 * coding of r1_blob_codec__filter_for() is kept only when it saves R1_BLOB_MIN_SAVING_PCT;
 * otherwise the blob is stored raw. *coded_bytes (may be NULL): the coded size tried, 0 when none
 * was. R1_ERR_NO_MEMORY, R1_ERR_INTERNAL (zstd failure). */
r1_status r1_blob_encoder__encode(r1_blob_encoder *e, r1_expert_blob *b, const uint8_t *raw,
                                  const uint8_t **stored_out, uint64_t *coded_bytes);

#endif
