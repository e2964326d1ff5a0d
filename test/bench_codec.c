/* bench_codec.c: size and single-core decode speed of every expert-blob coding, per dtype, on
 * real-shaped random experts (built, run by hand; numbers in docs/performance.md).
 *
 * Usage: bench_codec [--hidden N] [--inter N] [--seconds S] [--level L]
 *   --hidden, --inter  expert shape (default 2048 and 1408: DeepSeek-V2-Lite)
 *   --seconds S        time spent decoding each coding (default 1)
 *   --level L          zstd level of the candidate codings (default: the converter's)
 * For each weight type a blob of gate, up and down projections is filled with Gaussian weights
 * (std 0.02, as the checkpoints of test/ref; FP8 with 128x128 block scales, q8_0/q4_0 through the
 * converter's quantisers), then every candidate coding (raw, zstd, byte-plane + zstd for 16-bit
 * types, nibble-plane + zstd for 8-bit ones) is decoded on one thread through
 * r1_blob_decoder__decode(), which the expert store uses, checksum included, timed in that thread's
 * CPU time. GB/s counts raw (decoded) bytes; "in GB/s" counts stored bytes, what the drive must
 * deliver. "chosen" marks what r1_blob_encoder__encode(), the converter's choice, picks; a coding
 * the converter chooses must decode at 1 GB/s or more, and the table says when one does not (the
 * exit status does not: it is 1 only when a coding fails to round-trip). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "blob_codec.h"
#include "checksum.h"
#include "container.h"
#include "dtype.h"

/* This thread's CPU time: a shared, busy machine then slows the measure far less than wall time
 * would (the thread is not charged while others run), though caches are still shared. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static float gaussian(float std)
{
    return (float)(std * sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

/* The e4m3fn byte nearest to x (|x| <= 448), by bisection over the positive codes' values, which
 * grow with the code. */
static uint8_t fp8_from_f32(float x)
{
    const float *t = r1_fp8_e4m3__table();
    float a = fabsf(x);
    int lo = 0, hi = 126; /* 0x7e = 448; 0x7f is NaN */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (t[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    int code = a - t[lo] <= t[hi] - a ? lo : hi;
    return (uint8_t)(code | (x < 0 ? 0x80 : 0));
}

/* Fills projection k of b (rows x cols) with Gaussian weights stored as b->dtype[k]. */
static void fill_projection(const r1_expert_blob *b, int k, uint8_t *raw)
{
    int64_t rows = k == 2 ? b->hidden : b->inter, cols = k == 2 ? b->inter : b->hidden;
    int32_t dt = b->dtype[k];
    float *row = malloc((size_t)cols * sizeof *row);
    uint8_t *data = raw + b->data_off[k];
    size_t rb = r1_dtype__row_bytes(dt, cols);
    int64_t scale_cols = (cols + 127) / 128;
    float *scale = (float *)(void *)(raw + b->scale_off[k]);
    if (dt == R1_DTYPE_FP8_E4M3) /* per-block scales as DeepSeek's: about max|w| / 448 */
        for (int64_t i = 0; i < (rows + 127) / 128 * scale_cols; i++)
            scale[i] = 0.02f * (4.0f + (float)uniform()) / 448.0f;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++)
            row[c] = gaussian(0.02f);
        uint8_t *out = data + (size_t)r * rb;
        for (int64_t c = 0; c < cols; c++) {
            switch (dt) {
            case R1_DTYPE_F32: memcpy(out + 4 * c, &row[c], 4); break;
            case R1_DTYPE_F16:
            case R1_DTYPE_BF16: {
                uint16_t h =
                    dt == R1_DTYPE_F16 ? r1_fp16__from_f32(row[c]) : r1_bf16__from_f32(row[c]);
                memcpy(out + 2 * c, &h, 2);
                break;
            }
            case R1_DTYPE_FP8_E4M3: {
                float s = scale[(r / 128) * scale_cols + c / 128];
                float v = row[c] / s;
                out[c] = fp8_from_f32(v > 448.0f ? 448.0f : v < -448.0f ? -448.0f : v);
                break;
            }
            default: break;
            }
        }
        if (dt == R1_DTYPE_Q8_0)
            r1_quantize__q8_0(row, (r1_block_q8_0 *)(void *)out, cols);
        else if (dt == R1_DTYPE_Q4_0)
            r1_quantize__q4_0(row, (r1_block_q4_0 *)(void *)out, cols);
    }
    free(row);
}

/* The filters of docs/format.md §6, written from the specification. */
static void split_planes(int filter, const uint8_t *in, size_t n, uint8_t *out)
{
    size_t half = n / 2;
    for (size_t i = 0; i < half; i++) {
        uint8_t a = in[2 * i], b = in[2 * i + 1];
        out[i] = filter == R1M_FILTER_BYTEPLANE2 ? a : (uint8_t)((a >> 4) | (b & 0xf0));
        out[half + i] = filter == R1M_FILTER_BYTEPLANE2 ? b : (uint8_t)((a & 0x0f) | (b << 4));
    }
    if (n & 1)
        out[n - 1] = in[n - 1];
}

/* Decodes (b, stored) repeatedly for about `seconds` of CPU time; raw bytes per CPU second, or 0
 * on failure. */
static double decode_rate(r1_blob_decoder *d, const r1_expert_blob *b, const uint8_t *stored,
                          uint8_t *out, double seconds)
{
    int64_t n = 0;
    double t0 = cpu_s(), t;
    do {
        if (r1_blob_decoder__decode(d, b, stored, out) != R1_OK) {
            fprintf(stderr, "bench_codec: decode failed: %s\n", r1_last_error());
            return 0;
        }
        n++;
        t = cpu_s() - t0;
    } while (t < seconds || n < 3);
    return (double)n * (double)b->raw_size / t;
}

int main(int argc, char **argv)
{
    int64_t hidden = 2048, inter = 1408;
    double seconds = 1.0;
    int level = R1_BLOB_ZSTD_LEVEL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hidden") == 0 && i + 1 < argc)
            hidden = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--inter") == 0 && i + 1 < argc)
            inter = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--level") == 0 && i + 1 < argc)
            level = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--hidden N] [--inter N] [--seconds S] [--level L]\n",
                    argv[0]);
            return 2;
        }
    }
    static const int32_t dtypes[] = {R1_DTYPE_BF16, R1_DTYPE_F16,  R1_DTYPE_FP8_E4M3,
                                     R1_DTYPE_Q8_0, R1_DTYPE_Q4_0, R1_DTYPE_F32};
    r1_blob_decoder *dec = NULL;
    r1_blob_encoder *enc = NULL;
    if (r1_blob_decoder__create(&dec) != R1_OK || r1_blob_encoder__create(&enc, level, 0) != R1_OK)
        return 1;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    printf("expert shape: hidden %" PRId64 ", moe_inter %" PRId64 "; zstd level %d; one thread\n",
           hidden, inter, level);
    printf("%-9s %-18s %10s %7s %9s %9s %s\n", "dtype", "coding", "bytes", "ratio", "GB/s",
           "in GB/s", "");
    int rc = 0;
    for (size_t di = 0; di < sizeof dtypes / sizeof dtypes[0]; di++) {
        r1_expert_blob b;
        memset(&b, 0, sizeof b);
        b.inter = inter;
        b.hidden = hidden;
        for (int k = 0; k < 3; k++)
            b.dtype[k] = dtypes[di];
        b.raw_size = r1_container__expert_layout(&b);
        size_t n = (size_t)b.raw_size, bound = ZSTD_compressBound(n);
        uint8_t *raw = aligned_alloc(64, (n + 63) / 64 * 64);
        uint8_t *out = aligned_alloc(64, (n + 63) / 64 * 64);
        uint8_t *planes = malloc(n), *coded = malloc(bound);
        memset(raw, 0, n);
        for (int k = 0; k < 3; k++)
            fill_projection(&b, k, raw);
        b.checksum = r1_checksum__xxh64(raw, n);
        const uint8_t *chosen_bytes;
        r1_expert_blob chosen = b;
        if (r1_blob_encoder__encode(enc, &chosen, raw, &chosen_bytes, NULL) != R1_OK)
            return 1;
        const char *name = r1_dtype__traits(dtypes[di])->name;
        const r1_dtype_traits *tr = r1_dtype__traits(dtypes[di]);
        for (int coding = 0; coding < 4; coding++) {
            r1_expert_blob c = b;
            const uint8_t *stored = raw;
            const char *label = "raw (verify)";
            /* the filters apply to 16-bit and to 8-bit elements respectively */
            if ((coding == 2 && tr->block_bytes != 2) ||
                (coding == 3 && (tr->block_bytes != 1 || tr->block_elems != 1)))
                continue;
            if (coding > 0) {
                const uint8_t *src = raw;
                int filter = coding == 2   ? R1M_FILTER_BYTEPLANE2
                             : coding == 3 ? R1M_FILTER_NIBBLEPLANE2
                                           : R1M_FILTER_NONE;
                if (filter != R1M_FILTER_NONE) {
                    split_planes(filter, raw, n, planes);
                    src = planes;
                }
                size_t cs = ZSTD_compressCCtx(cctx, coded, bound, src, n, level);
                if (ZSTD_isError(cs))
                    return 1;
                c.codec = R1M_CODEC_ZSTD;
                c.filter = (uint8_t)filter;
                c.stored_size = cs;
                stored = coded;
                label = coding == 2   ? "byteplane2+zstd"
                        : coding == 3 ? "nibbleplane2+zstd"
                                      : "zstd";
            } else {
                c.codec = R1M_CODEC_RAW;
                c.stored_size = b.raw_size;
            }
            double rate = decode_rate(dec, &c, stored, out, seconds);
            if (rate == 0 || memcmp(out, raw, n) != 0) {
                fprintf(stderr, "bench_codec: %s %s does not round-trip\n", name, label);
                rc = 1;
            }
            int is_chosen = chosen.codec == c.codec && chosen.filter == c.filter;
            double ratio = (double)c.stored_size / (double)n;
            printf("%-9s %-18s %10" PRIu64 " %7.3f %9.2f %9.2f %s\n", name, label, c.stored_size,
                   ratio, rate / 1e9, rate * ratio / 1e9,
                   is_chosen ? (rate >= 1e9 ? "chosen" : "chosen, BELOW 1 GB/s") : "");
        }
        free(raw);
        free(out);
        free(planes);
        free(coded);
    }
    ZSTD_freeCCtx(cctx);
    r1_blob_encoder__destroy(enc);
    r1_blob_decoder__destroy(dec);
    return rc;
}
