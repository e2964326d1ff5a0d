/* blob_codec.c: expert blob coding: the converter's choice of filter and zstd, and decoding. */
#include "blob_codec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "checksum.h"
#include "dtype.h"
#include "error.h"

/* ---- filters (docs/format.md §6) ----------------------------------------------------------
 * Both split the blob into two planes of n/2 bytes (an odd last byte stays last) so that the
 * predictable bits of every weight (sign and exponent) sit together in one plane, which zstd's
 * entropy coder shrinks, and the near-random mantissa bits in the other, which zstd stores as raw
 * blocks that decode at memcpy speed. Only half the bytes then pass through the entropy decoder,
 * which is what keeps the decode above 1 GB/s per core (test/bench_codec.c). */

/* Pairs of output words per join step: the output chunk (64 KiB) stays in L2 for the checksum. */
enum { JOIN_CHUNK = 1 << 15 };

/* R1M_FILTER_BYTEPLANE2: plane 0 holds the low byte of every 16-bit word, plane 1 the high byte
 * (BF16/F16 sign and exponent). */
static void byteplane2_split(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t half = n / 2;
    for (size_t i = 0; i < half; i++) {
        out[i] = in[2 * i];
        out[half + i] = in[2 * i + 1];
    }
    if (n & 1)
        out[n - 1] = in[n - 1];
}

/* Bytes [2*i0, 2*i1) of the inverse of byteplane2_split: byte 2i = p0[i], 2i+1 = p1[i]. */
static void byteplane2_join(const uint8_t *p0, const uint8_t *p1, size_t i0, size_t i1,
                            uint8_t *dst)
{
    size_t i = i0;
#if defined(__SSE2__)
    for (; i + 16 <= i1; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(p0 + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p1 + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), _mm_unpacklo_epi8(a, b));
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i + 16), _mm_unpackhi_epi8(a, b));
    }
#endif
    for (; i < i1; i++) {
        dst[2 * i] = p0[i];
        dst[2 * i + 1] = p1[i];
    }
}

/* R1M_FILTER_NIBBLEPLANE2: for each byte pair (a, b), plane 0 gets the high nibbles
 * (a >> 4) | (b & 0xf0) (FP8 E4M3 sign and top three exponent bits), plane 1 the low nibbles
 * (a & 0x0f) | (b << 4) (the last exponent bit and the mantissa). */
static void nibbleplane2_split(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t half = n / 2;
    for (size_t i = 0; i < half; i++) {
        uint8_t a = in[2 * i], b = in[2 * i + 1];
        out[i] = (uint8_t)((a >> 4) | (b & 0xf0));
        out[half + i] = (uint8_t)((a & 0x0f) | (b << 4));
    }
    if (n & 1)
        out[n - 1] = in[n - 1];
}

static void nibbleplane2_join(const uint8_t *p0, const uint8_t *p1, size_t i0, size_t i1,
                              uint8_t *dst)
{
    size_t i = i0;
#if defined(__SSE2__)
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    for (; i + 16 <= i1; i += 16) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p0 + i));
        __m128i l = _mm_loadu_si128((const __m128i *)(const void *)(p1 + i));
        /* 16-bit shifts are safe here: each byte is masked to its nibble before or after. */
        __m128i even =
            _mm_or_si128(_mm_slli_epi16(_mm_and_si128(h, lo4), 4), _mm_and_si128(l, lo4));
        __m128i odd =
            _mm_or_si128(_mm_andnot_si128(lo4, h), _mm_and_si128(_mm_srli_epi16(l, 4), lo4));
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), _mm_unpacklo_epi8(even, odd));
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i + 16), _mm_unpackhi_epi8(even, odd));
    }
#endif
    for (; i < i1; i++) {
        dst[2 * i] = (uint8_t)((p0[i] << 4) | (p1[i] & 0x0f));
        dst[2 * i + 1] = (uint8_t)((p0[i] & 0xf0) | (p1[i] >> 4));
    }
}

/* Inverts filter over the n filtered bytes at src into dst and returns the XXH64 of the result,
 * hashing each chunk while it is still in cache rather than in a second pass over memory. */
static uint64_t unfilter(int filter, const uint8_t *src, size_t n, uint8_t *dst)
{
    size_t half = n / 2;
    r1_xxh64_state h;
    r1_checksum__xxh64_init(&h);
    for (size_t i = 0; i < half; i += JOIN_CHUNK) {
        size_t end = half - i < JOIN_CHUNK ? half : i + JOIN_CHUNK;
        if (filter == R1M_FILTER_BYTEPLANE2)
            byteplane2_join(src, src + half, i, end, dst);
        else
            nibbleplane2_join(src, src + half, i, end, dst);
        r1_checksum__xxh64_update(&h, dst + 2 * i, 2 * (end - i));
    }
    if (n & 1) {
        dst[n - 1] = src[n - 1];
        r1_checksum__xxh64_update(&h, dst + n - 1, 1);
    }
    return r1_checksum__xxh64_digest(&h);
}

/* ---- decoding (the expert store) ---------------------------------------------------------- */

struct r1_blob_decoder {
    ZSTD_DCtx *dctx;
    uint8_t *tmp; /* the filtered bytes before the inverse filter, grown on demand */
    size_t tmp_cap;
};

r1_status r1_blob_decoder__create(r1_blob_decoder **out)
{
    *out = NULL;
    r1_blob_decoder *d = calloc(1, sizeof *d);
    if (d == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory for a blob decoder");
    /* Our own context rather than ZSTD_decompress()'s hidden one, so that running out of memory
     * for it reads as that and not as a damaged blob. */
    d->dctx = ZSTD_createDCtx();
    if (d->dctx == NULL) {
        free(d);
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory for a zstd decompression context");
    }
    *out = d;
    return R1_OK;
}

void r1_blob_decoder__destroy(r1_blob_decoder *d)
{
    if (d == NULL)
        return;
    ZSTD_freeDCtx(d->dctx);
    free(d->tmp);
    free(d);
}

/* Decodes a zstd blob into raw and sets *hash to the XXH64 of the result. */
static r1_status decode_zstd(r1_blob_decoder *d, const r1_expert_blob *b, const uint8_t *stored,
                             uint8_t *raw, uint64_t *hash)
{
    size_t n_raw = (size_t)b->raw_size, n_stored = (size_t)b->stored_size;
    unsigned long long fcs = ZSTD_getFrameContentSize(stored, n_stored);
    size_t fsz = ZSTD_findFrameCompressedSize(stored, n_stored);
    if (fcs != b->raw_size || ZSTD_isError(fsz) || fsz != n_stored)
        return r1_error__set(R1_ERR_FORMAT,
                             "expert (layer %d, expert %d) at offset %" PRIu64
                             " is not one zstd frame of %" PRIu64 " bytes",
                             b->layer, b->expert, b->offset, b->raw_size);
    uint8_t *dst = raw;
    if (b->filter != R1M_FILTER_NONE) {
        if (d->tmp_cap < n_raw) {
            free(d->tmp);
            d->tmp_cap = 0;
            if ((d->tmp = malloc(n_raw)) == NULL)
                return r1_error__set(R1_ERR_NO_MEMORY,
                                     "out of memory decoding expert (layer %d, expert %d)",
                                     b->layer, b->expert);
            d->tmp_cap = n_raw;
        }
        dst = d->tmp;
    }
    size_t n = ZSTD_decompressDCtx(d->dctx, dst, n_raw, stored, n_stored);
    if (ZSTD_isError(n) || n != n_raw)
        return r1_error__set(
            R1_ERR_FORMAT, "expert (layer %d, expert %d) at offset %" PRIu64 ": zstd: %s", b->layer,
            b->expert, b->offset, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
    *hash = b->filter != R1M_FILTER_NONE ? unfilter(b->filter, dst, n_raw, raw)
                                         : r1_checksum__xxh64(raw, n_raw);
    return R1_OK;
}

r1_status r1_blob_decoder__decode(r1_blob_decoder *d, const r1_expert_blob *b,
                                  const uint8_t *stored, uint8_t *raw)
{
    r1_status st = R1_OK;
    uint64_t h = 0;
    if (b->filter > R1M_FILTER_NIBBLEPLANE2 ||
        (b->codec == R1M_CODEC_RAW && b->filter != R1M_FILTER_NONE))
        return r1_error__set(
            R1_ERR_FORMAT,
            "expert (layer %d, expert %d) at offset %" PRIu64 " has filter %u with codec %u",
            b->layer, b->expert, b->offset, (unsigned)b->filter, (unsigned)b->codec);
    if (b->codec == R1M_CODEC_RAW) {
        if (b->stored_size != b->raw_size)
            return r1_error__set(R1_ERR_FORMAT,
                                 "expert (layer %d, expert %d) at offset %" PRIu64
                                 " is stored raw but its stored size %" PRIu64
                                 " is not its raw size %" PRIu64,
                                 b->layer, b->expert, b->offset, b->stored_size, b->raw_size);
        if (raw != stored)
            memcpy(raw, stored, (size_t)b->raw_size);
        h = r1_checksum__xxh64(raw, (size_t)b->raw_size);
    } else if (b->codec == R1M_CODEC_ZSTD) {
        st = decode_zstd(d, b, stored, raw, &h);
    } else {
        st = r1_error__set(R1_ERR_FORMAT,
                           "expert (layer %d, expert %d) at offset %" PRIu64 " has codec %u",
                           b->layer, b->expert, b->offset, (unsigned)b->codec);
    }
    if (st != R1_OK)
        return st;
    if (h != b->checksum)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "expert (layer %d, expert %d) at offset %" PRIu64
                             " fails its checksum (stored %016" PRIx64 ", computed %016" PRIx64 ")",
                             b->layer, b->expert, b->offset, b->checksum, h);
    return R1_OK;
}

/* ---- encoding (the converter) ------------------------------------------------------------ */

struct r1_blob_encoder {
    ZSTD_CCtx *cctx;
    int32_t level, mode;
    uint8_t *planes, *coded;
    size_t planes_cap, coded_cap;
};

r1_status r1_blob_encoder__create(r1_blob_encoder **out, int32_t zstd_level, int32_t mode)
{
    *out = NULL;
    r1_blob_encoder *e = calloc(1, sizeof *e);
    if (e == NULL || (e->cctx = ZSTD_createCCtx()) == NULL) {
        free(e);
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory for zstd");
    }
    e->level = zstd_level != 0 ? zstd_level : R1_BLOB_ZSTD_LEVEL;
    e->mode = mode;
    *out = e;
    return R1_OK;
}

void r1_blob_encoder__destroy(r1_blob_encoder *e)
{
    if (e == NULL)
        return;
    ZSTD_freeCCtx(e->cctx);
    free(e->planes);
    free(e->coded);
    free(e);
}

static int grow(uint8_t **p, size_t *cap, size_t n)
{
    if (*cap >= n)
        return 1;
    free(*p);
    *p = malloc(n);
    *cap = *p ? n : 0;
    return *p != NULL;
}

int32_t r1_blob_codec__filter_for(const r1_expert_blob *b)
{
    int sixteen = 1, fp8 = 1;
    for (int k = 0; k < 3; k++) {
        sixteen &= b->dtype[k] == R1_DTYPE_BF16 || b->dtype[k] == R1_DTYPE_F16;
        fp8 &= b->dtype[k] == R1_DTYPE_FP8_E4M3;
    }
    return sixteen ? R1M_FILTER_BYTEPLANE2 : fp8 ? R1M_FILTER_NIBBLEPLANE2 : -1;
}

/* R1_BLOB_ENCODE_V1_0: what the 1.0 converter wrote (plain zstd, or byte-plane + zstd when
 * smaller, kept when it saves 1/32), so that tests read such blobs as old files hold them. */
static r1_status encode_v1_0(r1_blob_encoder *e, r1_expert_blob *b, const uint8_t *raw,
                             const uint8_t **stored_out)
{
    size_t n = (size_t)b->raw_size, bound = ZSTD_compressBound(n), best = n;
    int sixteen = r1_blob_codec__filter_for(b) == R1M_FILTER_BYTEPLANE2;
    if (!grow(&e->coded, &e->coded_cap, 2 * bound) || !grow(&e->planes, &e->planes_cap, n))
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory compressing an expert");
    for (int filtered = 0; filtered <= sixteen; filtered++) {
        if (filtered)
            byteplane2_split(raw, n, e->planes);
        uint8_t *dst = e->coded + (size_t)filtered * bound;
        size_t cs = ZSTD_compressCCtx(e->cctx, dst, bound, filtered ? e->planes : raw, n, e->level);
        if (ZSTD_isError(cs))
            return r1_error__set(R1_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(cs));
        if (cs < best && cs + n / 32 < n) {
            best = cs;
            b->codec = R1M_CODEC_ZSTD;
            b->filter = filtered ? R1M_FILTER_BYTEPLANE2 : R1M_FILTER_NONE;
            b->stored_size = cs;
            *stored_out = dst;
        }
    }
    return R1_OK;
}

r1_status r1_blob_encoder__encode(r1_blob_encoder *e, r1_expert_blob *b, const uint8_t *raw,
                                  const uint8_t **stored_out, uint64_t *coded_bytes)
{
    size_t n = (size_t)b->raw_size, bound = ZSTD_compressBound(n);
    b->codec = R1M_CODEC_RAW;
    b->filter = R1M_FILTER_NONE;
    b->stored_size = b->raw_size;
    *stored_out = raw;
    if (coded_bytes)
        *coded_bytes = 0;
    if (e->mode == R1_BLOB_ENCODE_V1_0)
        return encode_v1_0(e, b, raw, stored_out);
    int32_t filter = e->mode == R1_BLOB_ENCODE_NO_FILTER ? -1 : r1_blob_codec__filter_for(b);
    if (filter < 0)
        return R1_OK;
    if (!grow(&e->planes, &e->planes_cap, n) || !grow(&e->coded, &e->coded_cap, bound))
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory compressing an expert");
    if (filter == R1M_FILTER_BYTEPLANE2)
        byteplane2_split(raw, n, e->planes);
    else
        nibbleplane2_split(raw, n, e->planes);
    size_t cs = ZSTD_compressCCtx(e->cctx, e->coded, bound, e->planes, n, e->level);
    if (ZSTD_isError(cs))
        return r1_error__set(R1_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(cs));
    if (coded_bytes)
        *coded_bytes = cs;
    /* Below the saving threshold the drive reads the raw bytes about as fast as the coded ones,
     * and a raw blob needs no decode at all: it can go from the drive straight into the cache. */
    if ((uint64_t)cs * 100 > b->raw_size * (100 - R1_BLOB_MIN_SAVING_PCT))
        return R1_OK;
    b->codec = R1M_CODEC_ZSTD;
    b->filter = (uint8_t)filter;
    b->stored_size = cs;
    *stored_out = e->coded;
    return R1_OK;
}
