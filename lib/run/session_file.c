/* session_file.c: the session file format (docs/format.md "Session files"): layout, writer and
 * the parser of untrusted files. */
#include "session_file.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"
#include "error.h"
#include "le.h"
#include "sampler.h"
#include "utf8.h"

/* Token ids, logits and cache rows are written as they lie in memory: little-endian, as libr1's
 * hosts are (the .r1m tensors are used in place on the same assumption). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "session files keep arrays in the host's byte order, which must be little-endian"
#endif

#define R1S_MAGIC "\x89R1S\r\n\x1a\n"
#define R1P_MAGIC "\x89R1P\r\n\x1a\n"
enum {
    R1S_VERSION_MAJOR = 1,
    R1S_VERSION_MINOR = 0,
    R1S_FLAG_REQUIRED = 1, /* a reader that does not know the section must refuse the file */
    R1S_GEN_FIXED = 96,    /* the generation section's fixed part */
    R1P_FIXED = 80,        /* the sampler blob before its bias entries */
    R1P_MIN = R1P_FIXED + 8,
    /* Chunk in which the file's cache rows are read to check them before anything is changed. */
    R1S_READ_CHUNK = 1 << 20,
};

/* The sections of version 1.0, in the order the writer writes them. */
enum { SEC_TOKS, SEC_KVCR, SEC_LOGT, SEC_GENR, SEC_DROP, SEC_SMPL, SEC_N };
static const char r1s_tags[SEC_N][5] = {"TOKS", "KVCR", "LOGT", "GENR", "DROP", "SMPL"};
static const char *const r1s_names[SEC_N] = {"token",      "cache",   "logits",
                                             "generation", "shifted", "sampler"};

/* ---- arithmetic on untrusted sizes -------------------------------------------------------- */

static int r1_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

static int r1_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    *out = a + b;
    return *out >= a;
}

static int32_t r1_parts(const r1_session_shape *sh)
{
    return sh->cache_kind == R1_SESSION_CACHE_GQA ? 2 : 1;
}

/* Bytes of the cache rows of position positions; 0 when that overflows (never 0 otherwise for a
 * non-empty cache: callers compare it with a size they know). */
static int r1_cache_bytes(const r1_session_shape *sh, int64_t position, uint64_t *out)
{
    uint64_t a;
    return r1_mul_ok((uint64_t)sh->n_layers, (uint64_t)position, &a) &&
           r1_mul_ok(a, sh->row_bytes, &a) && r1_mul_ok(a, (uint64_t)r1_parts(sh), out);
}

static float r1_f32_at(const uint8_t *p)
{
    uint32_t u = r1_le__u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void r1_put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    r1_le__put32(p, u);
}

/* ---- the sampler blob --------------------------------------------------------------------- */

size_t r1_session_file__sampler_size(const r1_sampler_image *smp)
{
    return R1P_MIN + 8 * (size_t)smp->n_bias + 4 * (size_t)smp->n_hist;
}

void r1_session_file__sampler_encode(const r1_sampler_image *smp, uint8_t *out)
{
    const size_t size = r1_session_file__sampler_size(smp);
    memset(out, 0, R1P_FIXED);
    memcpy(out, R1P_MAGIC, 8);
    r1_le__put16(out + 8, R1S_VERSION_MAJOR);
    r1_le__put16(out + 10, R1S_VERSION_MINOR);
    r1_le__put32(out + 12, smp->n_bias);
    r1_le__put32(out + 16, smp->n_hist);
    r1_le__put64(out + 24, size);
    r1_le__put64(out + 32, smp->seed);
    r1_le__put64(out + 40, smp->n_draws);
    r1_put_f32(out + 48, smp->temperature);
    r1_put_f32(out + 52, smp->top_p);
    r1_put_f32(out + 56, smp->min_p);
    r1_le__put32(out + 60, (uint32_t)smp->top_k);
    r1_le__put32(out + 64, (uint32_t)smp->last_n);
    r1_put_f32(out + 68, smp->repeat);
    r1_put_f32(out + 72, smp->frequency);
    r1_put_f32(out + 76, smp->presence);
    uint8_t *p = out + R1P_FIXED;
    for (uint32_t i = 0; i < smp->n_bias; i++, p += 8) {
        r1_le__put32(p, (uint32_t)smp->bias_ids[i]);
        r1_put_f32(p + 4, smp->bias[i]);
    }
    for (uint32_t i = 0; i < smp->n_hist; i++, p += 4)
        r1_le__put32(p, (uint32_t)smp->hist[i]);
    r1_le__put64(p, r1_checksum__xxh64(out, size - 8));
}

void r1_session_file__free_sampler(r1_sampler_image *smp)
{
    free(smp->bias_ids);
    free(smp->bias);
    free(smp->hist);
    memset(smp, 0, sizeof *smp);
}

r1_status r1_session_file__sampler_decode(const uint8_t *p, size_t n, const char *what,
                                          r1_sampler_image *smp)
{
    memset(smp, 0, sizeof *smp);
    if (n < R1P_MIN || memcmp(p, R1P_MAGIC, 8) != 0)
        return r1_error__set(R1_ERR_FORMAT, "%s is not a saved sampler (%s)", what,
                             n < R1P_MIN ? "too short" : "bad magic");
    if (r1_le__u16(p + 8) != R1S_VERSION_MAJOR)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "%s is a saved sampler of version %u.%u; this "
                             "libr1 reads major version %d",
                             what, r1_le__u16(p + 8), r1_le__u16(p + 10), R1S_VERSION_MAJOR);
    const uint64_t stored = r1_le__u64(p + n - 8), computed = r1_checksum__xxh64(p, n - 8);
    if (stored != computed)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "%s fails its checksum (stored %016" PRIx64 ", computed %016" PRIx64
                             ")",
                             what, stored, computed);
    smp->n_bias = r1_le__u32(p + 12);
    smp->n_hist = r1_le__u32(p + 16);
    const uint64_t size = r1_le__u64(p + 24);
    if (size != n || size != R1P_MIN + 8 * (uint64_t)smp->n_bias + 4 * (uint64_t)smp->n_hist)
        return r1_error__set(R1_ERR_FORMAT,
                             "%s: its size %" PRIu64 " does not match its %zu bytes or its %u "
                             "biases and %u history ids",
                             what, size, n, smp->n_bias, smp->n_hist);
    if (r1_le__u32(p + 20) != 0)
        return r1_error__set(R1_ERR_FORMAT, "%s: reserved bytes are not zero", what);
    smp->seed = r1_le__u64(p + 32);
    smp->n_draws = r1_le__u64(p + 40);
    smp->temperature = r1_f32_at(p + 48);
    smp->top_p = r1_f32_at(p + 52);
    smp->min_p = r1_f32_at(p + 56);
    smp->top_k = (int32_t)r1_le__u32(p + 60);
    smp->last_n = (int32_t)r1_le__u32(p + 64);
    smp->repeat = r1_f32_at(p + 68);
    smp->frequency = r1_f32_at(p + 72);
    smp->presence = r1_f32_at(p + 76);
    /* The ranges r1_sampler_set_* accept: nothing a setter refuses can enter a sampler. */
    const char *bad = NULL;
    if (!(smp->temperature >= 0.0f) || isinf(smp->temperature))
        bad = "temperature";
    else if (!(smp->top_p > 0.0f && smp->top_p <= 1.0f))
        bad = "top-p";
    else if (!(smp->min_p >= 0.0f && smp->min_p <= 1.0f))
        bad = "min-p";
    else if (smp->top_k < 0)
        bad = "top-k";
    else if (smp->last_n < 0 || smp->last_n > R1_SAMPLER_MAX_LAST_N)
        bad = "penalty window";
    else if (!(smp->repeat > 0.0f) || isinf(smp->repeat))
        bad = "repetition penalty";
    else if (!isfinite(smp->frequency) || !isfinite(smp->presence))
        bad = "frequency or presence penalty";
    else if (smp->n_hist > (uint32_t)smp->last_n)
        bad = "history length";
    if (bad != NULL)
        return r1_error__set(R1_ERR_FORMAT, "%s: its %s is out of range", what, bad);
    const size_t nb = smp->n_bias ? smp->n_bias : 1, nh = smp->n_hist ? smp->n_hist : 1;
    smp->bias_ids = malloc(nb * sizeof *smp->bias_ids);
    smp->bias = malloc(nb * sizeof *smp->bias);
    smp->hist = malloc(nh * sizeof *smp->hist);
    if (smp->bias_ids == NULL || smp->bias == NULL || smp->hist == NULL) {
        r1_session_file__free_sampler(smp);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a sampler's state");
    }
    const uint8_t *q = p + R1P_FIXED;
    r1_status st = R1_OK;
    for (uint32_t i = 0; i < smp->n_bias && st == R1_OK; i++, q += 8) {
        smp->bias_ids[i] = (int32_t)r1_le__u32(q);
        smp->bias[i] = r1_f32_at(q + 4);
        /* Sorted, distinct, non-zero, not NaN or +inf: the list r1_sampler_set_logit_bias
         * keeps. */
        if (smp->bias_ids[i] < 0 || (i > 0 && smp->bias_ids[i] <= smp->bias_ids[i - 1]) ||
            isnan(smp->bias[i]) || smp->bias[i] == INFINITY || smp->bias[i] == 0.0f)
            st =
                r1_error__set(R1_ERR_FORMAT, "%s: logit bias %u (id %d) is invalid or out of order",
                              what, i, (int)smp->bias_ids[i]);
    }
    for (uint32_t i = 0; i < smp->n_hist && st == R1_OK; i++, q += 4)
        if ((smp->hist[i] = (int32_t)r1_le__u32(q)) < 0)
            st = r1_error__set(R1_ERR_FORMAT, "%s: history id %u is negative", what, i);
    if (st != R1_OK)
        r1_session_file__free_sampler(smp);
    return st;
}

/* ---- the generation section --------------------------------------------------------------- */

static size_t r1_gen_size(const r1_gen_image *g)
{
    size_t n = R1S_GEN_FIXED + 4 * g->n_queue + 4 * g->n_forced + g->n_bridge + g->n_held;
    for (int32_t i = 0; i < g->n_stops; i++)
        n += 4 + strlen(g->stops[i]);
    return n;
}

static void r1_gen_encode(const r1_gen_image *g, uint8_t *out)
{
    memset(out, 0, R1S_GEN_FIXED);
    r1_le__put32(
        out, (uint32_t)((g->active ? 1 : 0) | (g->finished ? 2 : 0) | (g->in_reasoning ? 4 : 0)));
    r1_le__put32(out + 4, (uint32_t)g->max_tokens);
    r1_le__put32(out + 8, (uint32_t)g->think_budget);
    r1_le__put32(out + 12, (uint32_t)g->last_token);
    r1_le__put32(out + 16, (uint32_t)g->n_prompt);
    r1_le__put32(out + 20, (uint32_t)g->n_reasoning);
    r1_le__put32(out + 24, (uint32_t)g->n_answer);
    r1_le__put32(out + 28, (uint32_t)g->held_kind);
    r1_le__put32(out + 32, (uint32_t)g->n_stops);
    r1_le__put32(out + 36, g->n_stream_held);
    memcpy(out + 40, g->stream_held, g->n_stream_held);
    r1_le__put64(out + 48, g->n_queue);
    r1_le__put64(out + 56, g->n_forced);
    r1_le__put64(out + 64, g->i_forced);
    r1_le__put64(out + 72, g->n_bridge);
    r1_le__put64(out + 80, g->n_held);
    uint8_t *p = out + R1S_GEN_FIXED;
    for (size_t i = 0; i < g->n_queue; i++, p += 4)
        r1_le__put32(p, (uint32_t)g->queue[i]);
    for (size_t i = 0; i < g->n_forced; i++, p += 4)
        r1_le__put32(p, (uint32_t)g->forced[i]);
    if (g->n_bridge > 0)
        memcpy(p, g->bridge, g->n_bridge);
    p += g->n_bridge;
    if (g->n_held > 0)
        memcpy(p, g->held, g->n_held);
    p += g->n_held;
    for (int32_t i = 0; i < g->n_stops; i++) {
        const size_t len = strlen(g->stops[i]);
        r1_le__put32(p, (uint32_t)len);
        memcpy(p + 4, g->stops[i], len);
        p += 4 + len;
    }
}

void r1_session_file__free_gen(r1_gen_image *g)
{
    free(g->queue);
    free(g->forced);
    free(g->bridge);
    for (int32_t i = 0; g->stops != NULL && i < g->n_stops; i++)
        free(g->stops[i]);
    free(g->stops);
    free(g->held);
    memset(g, 0, sizeof *g);
}

/* A copy of n bytes as a C string: text without NUL bytes, valid UTF-8 (bridge and stops). */
static r1_status r1_take_text(const uint8_t *p, size_t n, const char *what, char **out)
{
    if (memchr(p, 0, n) != NULL || r1_utf8__valid_prefix(p, n) != n)
        return r1_error__set(R1_ERR_FORMAT, "the generation section: %s is not UTF-8 text", what);
    if ((*out = malloc(n + 1)) == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a generation's %s", what);
    memcpy(*out, p, n);
    (*out)[n] = '\0';
    return R1_OK;
}

static r1_status r1_ids(const uint8_t *p, size_t n, int64_t vocab, const char *what, int32_t **out)
{
    if ((*out = malloc((n ? n : 1) * sizeof **out)) == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %zu %s", n, what);
    for (size_t i = 0; i < n; i++) {
        const int32_t id = (int32_t)r1_le__u32(p + 4 * i);
        if (id < 0 || id >= vocab)
            return r1_error__set(R1_ERR_FORMAT, "%s %zu: id %d is outside the model's %" PRId64,
                                 what, i, (int)id, vocab);
        (*out)[i] = id;
    }
    return R1_OK;
}

static r1_status r1_gen_decode(const uint8_t *p, uint64_t n, const r1_session_shape *sh,
                               r1_gen_image *g)
{
    if (n < R1S_GEN_FIXED)
        return r1_error__set(R1_ERR_FORMAT,
                             "the generation section is %" PRIu64 " bytes, less "
                             "than its fixed %d",
                             n, R1S_GEN_FIXED);
    const uint32_t flags = r1_le__u32(p);
    g->active = (flags & 1) != 0;
    g->finished = (flags & 2) != 0;
    g->in_reasoning = (flags & 4) != 0;
    g->max_tokens = (int32_t)r1_le__u32(p + 4);
    g->think_budget = (int32_t)r1_le__u32(p + 8);
    g->last_token = (int32_t)r1_le__u32(p + 12);
    g->n_prompt = (int32_t)r1_le__u32(p + 16);
    g->n_reasoning = (int32_t)r1_le__u32(p + 20);
    g->n_answer = (int32_t)r1_le__u32(p + 24);
    g->held_kind = (int32_t)r1_le__u32(p + 28);
    const uint32_t n_stops = r1_le__u32(p + 32);
    g->n_stream_held = r1_le__u32(p + 36);
    const uint64_t n_queue = r1_le__u64(p + 48), n_forced = r1_le__u64(p + 56);
    const uint64_t i_forced = r1_le__u64(p + 64), n_bridge = r1_le__u64(p + 72);
    const uint64_t n_held = r1_le__u64(p + 80);
    int zero = r1_le__u64(p + 88) == 0 && r1_le__u32(p + 44) == 0;
    for (uint32_t i = g->n_stream_held; i < 4 && g->n_stream_held <= 3; i++)
        zero = zero && p[40 + i] == 0;
    /* What r1_generation can hold: limits of the options, and an inactive generation keeps
     * nothing of the last one but its counts and the queued prompt. */
    const char *bad = NULL;
    if ((flags & ~7u) != 0 || !zero)
        bad = "unknown flags or non-zero reserved bytes";
    else if (g->max_tokens < -1 || g->think_budget < -1 || g->n_prompt < 0 || g->n_reasoning < 0 ||
             g->n_answer < 0)
        bad = "a limit or count is negative";
    else if (g->last_token < -1 || g->last_token >= sh->vocab)
        bad = "the pending token is outside the vocabulary";
    else if (g->held_kind != R1_PIECE_REASONING && g->held_kind != R1_PIECE_ANSWER &&
             g->held_kind != R1_PIECE_NONE)
        bad = "the held text's kind is unknown";
    else if (n_stops > R1_SESSION_MAX_STOPS || g->n_stream_held > 3 || i_forced > n_forced)
        bad = "too many stop strings, held bytes or forced tokens";
    else if (n_queue > (uint64_t)(sh->n_ctx))
        bad = "the queue exceeds the context";
    else if (!g->active && (g->finished || g->last_token != -1 || n_stops != 0 ||
                            g->n_stream_held != 0 || n_forced != 0 || n_bridge != 0 || n_held != 0))
        bad = "an ended generation keeps state";
    if (bad != NULL)
        return r1_error__set(R1_ERR_FORMAT, "the generation section: %s", bad);
    uint64_t need = R1S_GEN_FIXED, part, queue_bytes;
    if (!r1_mul_ok(n_forced, 4, &part) || !r1_add_ok(need, part, &need) ||
        !r1_mul_ok(n_queue, 4, &queue_bytes) || !r1_add_ok(need, queue_bytes, &need) ||
        !r1_add_ok(need, n_bridge, &need) || !r1_add_ok(need, n_held, &need) || need > n)
        return r1_error__set(R1_ERR_FORMAT,
                             "the generation section's %" PRIu64 " bytes cannot "
                             "hold its queue, forced tokens and texts",
                             n);
    memcpy(g->stream_held, p + 40, g->n_stream_held);
    const uint8_t *q = p + R1S_GEN_FIXED;
    r1_status st = r1_ids(q, (size_t)n_queue, sh->vocab, "queued token", &g->queue);
    g->n_queue = (size_t)n_queue;
    q += 4 * n_queue;
    if (st == R1_OK)
        st = r1_ids(q, (size_t)n_forced, sh->vocab, "forced token", &g->forced);
    g->n_forced = (size_t)n_forced;
    g->i_forced = (size_t)i_forced;
    q += 4 * n_forced;
    if (st == R1_OK && g->active)
        st = r1_take_text(q, (size_t)n_bridge, "the think bridge", &g->bridge);
    g->n_bridge = (size_t)n_bridge;
    q += n_bridge;
    /* Held text is any bytes the detokenizer gave (a token may decode to a NUL). */
    if (st == R1_OK && (g->held = malloc((size_t)n_held + 1)) == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a generation's held text");
    if (st == R1_OK) {
        memcpy(g->held, q, (size_t)n_held);
        g->held[n_held] = '\0';
        g->n_held = (size_t)n_held;
    }
    q += n_held;
    if (st == R1_OK && n_stops > 0 && (g->stops = calloc(n_stops, sizeof *g->stops)) == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a generation's stop strings");
    const uint8_t *end = p + n;
    for (uint32_t i = 0; st == R1_OK && i < n_stops; i++) {
        uint32_t len = (size_t)(end - q) >= 4 ? r1_le__u32(q) : 0;
        if (len == 0 || len > R1_SESSION_MAX_STOP_BYTES || (size_t)(end - q) < 4 + (size_t)len) {
            st = r1_error__set(R1_ERR_FORMAT,
                               "the generation section: stop string %u is empty, "
                               "too long or cut short",
                               i);
            break;
        }
        st = r1_take_text(q + 4, len, "a stop string", &g->stops[i]);
        if (st == R1_OK)
            g->n_stops = (int32_t)i + 1;
        q += 4 + len;
    }
    if (st == R1_OK && q != end)
        st = r1_error__set(R1_ERR_FORMAT, "the generation section has %zu bytes past its end",
                           (size_t)(end - q));
    return st;
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct r1_layout {
    int32_t n_sections;
    int32_t which[SEC_N]; /* the section kind of each directory entry */
    uint64_t size[SEC_N];
    uint64_t offset[SEC_N];
    uint64_t total;
} r1_layout;

static r1_status r1_layout_of(const r1_session_file_src *src, r1_layout *lay)
{
    const r1_session_shape *sh = &src->shape;
    memset(lay, 0, sizeof *lay);
    uint64_t logit_bytes;
    int ok = r1_cache_bytes(sh, src->position, &lay->size[SEC_KVCR]) &&
             r1_mul_ok((uint64_t)src->logits_rows, (uint64_t)sh->vocab, &logit_bytes) &&
             r1_mul_ok(logit_bytes, 4, &logit_bytes) &&
             r1_add_ok(logit_bytes, 8, &lay->size[SEC_LOGT]);
    lay->size[SEC_TOKS] = 4 * (uint64_t)src->position;
    lay->size[SEC_GENR] = r1_gen_size(src->gen);
    lay->size[SEC_DROP] = 16 + 4 * (uint64_t)src->n_dropped;
    lay->size[SEC_SMPL] = src->sampler != NULL ? r1_session_file__sampler_size(src->sampler) : 0;
    lay->n_sections = src->sampler != NULL ? SEC_N : SEC_N - 1;
    uint64_t at = R1_SESSION_FILE_HEADER + (uint64_t)lay->n_sections * R1_SESSION_FILE_DIR_ENTRY;
    for (int32_t i = 0; i < lay->n_sections && ok; i++) {
        lay->which[i] = i;
        lay->offset[i] = at;
        ok = r1_add_ok(at, lay->size[i], &at);
    }
    lay->total = at;
    return ok ? R1_OK
              : r1_error__set(R1_ERR_INVALID_ARG, "the session's state is too large for a file");
}

r1_status r1_session_file__size(const r1_session_file_src *src, uint64_t *size_out)
{
    r1_layout lay;
    r1_status st = r1_layout_of(src, &lay);
    *size_out = lay.total;
    return st;
}

typedef struct r1_out {
    uint8_t *buf; /* NULL: the file fd */
    int fd;
    r1_xxh64_state sum; /* of the section being written */
} r1_out;

static r1_status r1_out_put(r1_out *o, uint64_t off, const void *data, size_t n, int hash)
{
    if (hash)
        r1_checksum__xxh64_update(&o->sum, data, n);
    if (o->buf != NULL) {
        memcpy(o->buf + off, data, n);
        return R1_OK;
    }
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = pwrite(o->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return r1_error__set(R1_ERR_IO, "cannot write the session file: %s",
                                 w < 0 ? strerror(errno) : "no progress");
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return R1_OK;
}

static r1_status r1_write_section(r1_out *o, const r1_session_file_src *src, int32_t which,
                                  uint64_t off, uint64_t size, uint64_t *sum)
{
    const r1_session_shape *sh = &src->shape;
    r1_checksum__xxh64_init(&o->sum);
    r1_status st = R1_OK;
    uint8_t *tmp = NULL;
    switch (which) {
    case SEC_TOKS: st = r1_out_put(o, off, src->tokens, (size_t)size, 1); break;
    case SEC_KVCR: {
        const size_t block = (size_t)(size / (uint64_t)(sh->n_layers * r1_parts(sh)));
        for (int32_t l = 0; l < sh->n_layers && st == R1_OK; l++)
            for (int32_t j = 0; j < r1_parts(sh) && st == R1_OK; j++, off += block)
                st = r1_out_put(o, off, src->rows.cache[j] + (uint64_t)l * src->rows.layer_stride,
                                block, 1);
        break;
    }
    case SEC_LOGT: {
        uint8_t rows[8];
        r1_le__put64(rows, (uint64_t)src->logits_rows);
        st = r1_out_put(o, off, rows, 8, 1);
        if (st == R1_OK && size > 8)
            st = r1_out_put(o, off + 8, src->logits, (size_t)(size - 8), 1);
        break;
    }
    case SEC_DROP: {
        uint8_t head[16];
        r1_le__put64(head, (uint64_t)src->dropped_keep);
        r1_le__put64(head + 8, (uint64_t)src->n_dropped);
        st = r1_out_put(o, off, head, 16, 1);
        if (st == R1_OK && src->n_dropped > 0)
            st = r1_out_put(o, off + 16, src->dropped, 4 * src->n_dropped, 1);
        break;
    }
    case SEC_GENR:
    case SEC_SMPL:
        if ((tmp = malloc((size_t)size)) == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "cannot encode the %s section",
                                 r1s_names[which]);
        if (which == SEC_GENR)
            r1_gen_encode(src->gen, tmp);
        else
            r1_session_file__sampler_encode(src->sampler, tmp);
        st = r1_out_put(o, off, tmp, (size_t)size, 1);
        free(tmp);
        break;
    }
    *sum = r1_checksum__xxh64_digest(&o->sum);
    return st;
}

r1_status r1_session_file__write(const r1_session_file_src *src, uint8_t *buf, size_t cap, int fd)
{
    r1_layout lay;
    r1_status st = r1_layout_of(src, &lay);
    if (st != R1_OK)
        return st;
    if (buf != NULL && cap < lay.total)
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "the session needs %" PRIu64 " bytes",
                             lay.total);
    r1_out o = {.buf = buf, .fd = fd};
    uint8_t head[R1_SESSION_FILE_HEADER + SEC_N * R1_SESSION_FILE_DIR_ENTRY];
    uint8_t *dir = head + R1_SESSION_FILE_HEADER;
    for (int32_t i = 0; i < lay.n_sections && st == R1_OK; i++) {
        uint8_t *e = dir + i * R1_SESSION_FILE_DIR_ENTRY;
        uint64_t sum = 0;
        st = r1_write_section(&o, src, lay.which[i], lay.offset[i], lay.size[i], &sum);
        memcpy(e, r1s_tags[lay.which[i]], 4);
        r1_le__put32(e + 4, R1S_FLAG_REQUIRED);
        r1_le__put64(e + 8, lay.offset[i]);
        r1_le__put64(e + 16, lay.size[i]);
        r1_le__put64(e + 24, sum);
    }
    if (st != R1_OK)
        return st;
    /* The header last: a file cut short while its sections were written has no magic. */
    const r1_session_shape *sh = &src->shape;
    const size_t dir_bytes = (size_t)lay.n_sections * R1_SESSION_FILE_DIR_ENTRY;
    memset(head, 0, R1_SESSION_FILE_HEADER);
    memcpy(head, R1S_MAGIC, 8);
    r1_le__put16(head + 8, R1S_VERSION_MAJOR);
    r1_le__put16(head + 10, R1S_VERSION_MINOR);
    r1_le__put32(head + 12, R1_SESSION_FILE_HEADER);
    r1_le__put64(head + 16, lay.total);
    r1_le__put64(head + 24, sh->model_id);
    r1_le__put32(head + 32, (uint32_t)sh->cache_kind);
    r1_le__put32(head + 36, (uint32_t)sh->cache_dtype);
    r1_le__put64(head + 40, (uint64_t)sh->n_ctx);
    r1_le__put64(head + 48, (uint64_t)src->position);
    r1_le__put32(head + 56, (uint32_t)sh->n_layers);
    r1_le__put32(head + 60, (uint32_t)lay.n_sections);
    r1_le__put64(head + 64, sh->row_bytes);
    r1_le__put64(head + 72, (uint64_t)sh->vocab);
    r1_le__put64(head + 80, r1_checksum__xxh64(dir, dir_bytes));
    r1_le__put64(head + 120, r1_checksum__xxh64(head, 120));
    return r1_out_put(&o, 0, head, R1_SESSION_FILE_HEADER + dir_bytes, 0);
}

/* ---- reading ------------------------------------------------------------------------------ */

static r1_status r1_in_read(const r1_session_file_in *in, uint64_t off, void *dst, size_t n)
{
    if (in->buf != NULL) {
        memcpy(dst, in->buf + off, n);
        return R1_OK;
    }
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t r = pread(in->fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r1_error__set(R1_ERR_IO, "cannot read %s at offset %" PRIu64 ": %s", in->name,
                                 off, r < 0 ? strerror(errno) : "it became shorter");
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return R1_OK;
}

/* The n bytes at off: in the buffer itself, or read into *tmp (malloc'd, caller frees). */
static r1_status r1_in_view(const r1_session_file_in *in, uint64_t off, uint64_t n,
                            const uint8_t **out, uint8_t **tmp)
{
    *tmp = NULL;
    if (in->buf != NULL) {
        *out = in->buf + off;
        return R1_OK;
    }
    if ((*tmp = malloc(n ? (size_t)n : 1)) == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %" PRIu64 " bytes to read %s", n,
                             in->name);
    r1_status st = r1_in_read(in, off, *tmp, (size_t)n);
    *out = *tmp;
    return st;
}

/* XXH64 of n bytes at off, read in chunks (the cache rows, which are not kept by the parse). */
static r1_status r1_in_hash(const r1_session_file_in *in, uint64_t off, uint64_t n, uint64_t *out)
{
    if (in->buf != NULL) {
        *out = r1_checksum__xxh64(in->buf + off, (size_t)n);
        return R1_OK;
    }
    const size_t chunk = n < R1S_READ_CHUNK ? (size_t)n : R1S_READ_CHUNK;
    uint8_t *tmp = malloc(chunk ? chunk : 1);
    if (tmp == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a read buffer for %s", in->name);
    r1_xxh64_state sum;
    r1_checksum__xxh64_init(&sum);
    r1_status st = R1_OK;
    for (uint64_t done = 0; done < n && st == R1_OK;) {
        const size_t m = n - done < chunk ? (size_t)(n - done) : chunk;
        st = r1_in_read(in, off + done, tmp, m);
        r1_checksum__xxh64_update(&sum, tmp, m);
        done += m;
    }
    free(tmp);
    *out = r1_checksum__xxh64_digest(&sum);
    return st;
}

static r1_status r1_mismatch(const r1_session_file_in *in, const char *what, int64_t file,
                             int64_t session)
{
    return r1_error__set(R1_ERR_INVALID_ARG,
                         "%s was saved from a session with %s %" PRId64 ", this one has %" PRId64,
                         in->name, what, file, session);
}

static r1_status r1_parse_header(const r1_session_file_in *in, const uint8_t *h,
                                 const r1_session_shape *want, r1_session_image *img,
                                 uint32_t *n_sections, uint64_t *dir_sum)
{
    if (memcmp(h, R1S_MAGIC, 8) != 0)
        return r1_error__set(R1_ERR_FORMAT, "%s is not a saved session (bad magic)", in->name);
    if (r1_le__u16(h + 8) != R1S_VERSION_MAJOR)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "%s is a session file of version %u.%u; this "
                             "libr1 reads major version %d",
                             in->name, r1_le__u16(h + 8), r1_le__u16(h + 10), R1S_VERSION_MAJOR);
    const uint64_t stored = r1_le__u64(h + 120), computed = r1_checksum__xxh64(h, 120);
    if (stored != computed)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "%s: header checksum mismatch (stored %016" PRIx64
                             ", computed %016" PRIx64 ")",
                             in->name, stored, computed);
    const uint64_t size = r1_le__u64(h + 16);
    if (r1_le__u32(h + 12) != R1_SESSION_FILE_HEADER)
        return r1_error__set(R1_ERR_FORMAT, "%s: header size %u, expected %d", in->name,
                             r1_le__u32(h + 12), R1_SESSION_FILE_HEADER);
    if (size != in->size)
        return r1_error__set(
            R1_ERR_FORMAT, "%s is %" PRIu64 " bytes but its header says %" PRIu64 " (%s)", in->name,
            in->size, size, in->size < size ? "truncated" : "trailing bytes");
    for (int i = 88; i < 120; i++)
        if (h[i] != 0)
            return r1_error__set(R1_ERR_FORMAT, "%s: header reserved byte %d is not zero", in->name,
                                 i);
    r1_session_shape *sh = &img->shape;
    sh->model_id = r1_le__u64(h + 24);
    sh->cache_kind = (int32_t)r1_le__u32(h + 32);
    sh->cache_dtype = (int32_t)r1_le__u32(h + 36);
    sh->n_ctx = (int64_t)r1_le__u64(h + 40);
    img->position = (int64_t)r1_le__u64(h + 48);
    sh->n_layers = (int32_t)r1_le__u32(h + 56);
    *n_sections = r1_le__u32(h + 60);
    sh->row_bytes = r1_le__u64(h + 64);
    sh->vocab = (int64_t)r1_le__u64(h + 72);
    *dir_sum = r1_le__u64(h + 80);
    if (want != NULL) {
        /* The model first: a file of another model differs in everything else too. */
        if (sh->model_id != want->model_id)
            return r1_error__set(
                R1_ERR_INVALID_ARG,
                "%s was saved from a session of another model (model id %016" PRIx64
                ", this session's is %016" PRIx64 ")",
                in->name, sh->model_id, want->model_id);
        if (sh->cache_kind != want->cache_kind)
            return r1_mismatch(in, "cache kind", sh->cache_kind, want->cache_kind);
        if (sh->cache_dtype != want->cache_dtype)
            return r1_mismatch(in, "cache type (R1_DTYPE_* code)", sh->cache_dtype,
                               want->cache_dtype);
        if (sh->n_ctx != want->n_ctx)
            return r1_mismatch(in, "context length", sh->n_ctx, want->n_ctx);
        if (sh->n_layers != want->n_layers)
            return r1_mismatch(in, "layer count", sh->n_layers, want->n_layers);
        if (sh->row_bytes != want->row_bytes)
            return r1_mismatch(in, "cache row size", (int64_t)sh->row_bytes,
                               (int64_t)want->row_bytes);
        if (sh->vocab != want->vocab)
            return r1_mismatch(in, "vocabulary", sh->vocab, want->vocab);
    }
    if ((sh->cache_kind != R1_SESSION_CACHE_LATENT && sh->cache_kind != R1_SESSION_CACHE_GQA) ||
        sh->n_ctx <= 0 || sh->n_layers <= 0 || sh->row_bytes == 0 || sh->vocab <= 0 ||
        sh->vocab > INT32_MAX)
        return r1_error__set(R1_ERR_FORMAT,
                             "%s: cache kind, context, layers, row size or "
                             "vocabulary is invalid",
                             in->name);
    if (img->position < 0 || img->position > sh->n_ctx)
        return r1_error__set(R1_ERR_FORMAT,
                             "%s: %" PRId64 " cached positions in a context of %" PRId64, in->name,
                             img->position, sh->n_ctx);
    if (*n_sections == 0 || *n_sections > R1_SESSION_FILE_MAX_SECTIONS ||
        in->size < R1_SESSION_FILE_HEADER + (uint64_t)*n_sections * R1_SESSION_FILE_DIR_ENTRY)
        return r1_error__set(R1_ERR_FORMAT, "%s: %u sections do not fit", in->name, *n_sections);
    return R1_OK;
}

/* Parses the payload of one known section (its checksum verified) into img. */
static r1_status r1_parse_section(const r1_session_file_in *in, int32_t which, const uint8_t *p,
                                  uint64_t n, r1_session_image *img)
{
    const r1_session_shape *sh = &img->shape;
    switch (which) {
    case SEC_TOKS:
        if (n != 4 * (uint64_t)img->position)
            return r1_error__set(R1_ERR_FORMAT,
                                 "%s: the token section has %" PRIu64 " bytes for "
                                 "%" PRId64 " positions",
                                 in->name, n, img->position);
        return r1_ids(p, (size_t)img->position, sh->vocab, "cached token", &img->tokens);
    case SEC_LOGT: {
        uint64_t rows = n >= 8 ? r1_le__u64(p) : UINT64_MAX, bytes;
        uint64_t total = 0;
        if (rows > (uint64_t)img->position || !r1_mul_ok(rows, (uint64_t)sh->vocab * 4, &bytes) ||
            !r1_add_ok(bytes, 8, &total) || total != n)
            return r1_error__set(R1_ERR_FORMAT,
                                 "%s: the logits section (%" PRIu64 " bytes) does "
                                 "not hold whole rows of %" PRId64
                                 " logits, at most one per position",
                                 in->name, n, sh->vocab);
        if ((img->logits = malloc(bytes ? (size_t)bytes : 1)) == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %" PRIu64 " logit rows", rows);
        memcpy(img->logits, p + 8, (size_t)bytes);
        img->logits_rows = (int64_t)rows;
        return R1_OK;
    }
    case SEC_GENR: return r1_gen_decode(p, n, sh, &img->gen);
    case SEC_DROP: {
        const uint64_t keep = n >= 16 ? r1_le__u64(p) : UINT64_MAX;
        const uint64_t count = n >= 16 ? r1_le__u64(p + 8) : 0;
        if (keep > (uint64_t)img->position || count > (n - 16) / 4 || 16 + 4 * count != n)
            return r1_error__set(R1_ERR_FORMAT,
                                 "%s: the shifted-tokens section (%" PRIu64
                                 " bytes) is malformed or keeps more than the %" PRId64
                                 " cached positions",
                                 in->name, n, img->position);
        img->dropped_keep = (int64_t)keep;
        img->n_dropped = (size_t)count;
        return r1_ids(p + 16, (size_t)count, sh->vocab, "shifted-out token", &img->dropped);
    }
    case SEC_SMPL:
        img->has_sampler = 1;
        return r1_session_file__sampler_decode(p, (size_t)n, "the sampler section", &img->sampler);
    }
    return R1_ERR_INTERNAL;
}

/* The checks across sections: what r1_session_step relies on. */
static r1_status r1_check_image(const r1_session_file_in *in, const r1_session_image *img,
                                const int32_t *seen)
{
    for (int32_t i = 0; i < SEC_N; i++)
        if (!seen[i] && i != SEC_SMPL)
            return r1_error__set(R1_ERR_FORMAT, "%s has no %s section", in->name, r1s_names[i]);
    const r1_gen_image *g = &img->gen;
    if (g->active != img->has_sampler)
        return r1_error__set(R1_ERR_FORMAT,
                             "%s: a sampler section must be there exactly when a "
                             "generation is in progress",
                             in->name);
    if ((int64_t)g->n_queue > img->shape.n_ctx - img->position)
        return r1_error__set(R1_ERR_FORMAT,
                             "%s: %zu queued tokens at position %" PRId64
                             " exceed the context of %" PRId64,
                             in->name, g->n_queue, img->position, img->shape.n_ctx);
    if (g->active && !g->finished && g->n_queue == 0 && g->last_token < 0 &&
        g->i_forced >= g->n_forced && img->logits_rows == 0)
        return r1_error__set(R1_ERR_FORMAT, "%s: the generation would sample without logits",
                             in->name);
    return R1_OK;
}

r1_status r1_session_file__parse(const r1_session_file_in *in, const r1_session_shape *want,
                                 r1_session_image *img)
{
    memset(img, 0, sizeof *img);
    if (in->size < R1_SESSION_FILE_HEADER)
        return r1_error__set(R1_ERR_FORMAT,
                             "%s is %" PRIu64 " bytes, shorter than the %d-byte "
                             "session header",
                             in->name, in->size, R1_SESSION_FILE_HEADER);
    uint8_t h[R1_SESSION_FILE_HEADER];
    uint32_t n_sections = 0;
    uint64_t dir_sum = 0;
    r1_status st = r1_in_read(in, 0, h, sizeof h);
    if (st == R1_OK)
        st = r1_parse_header(in, h, want, img, &n_sections, &dir_sum);
    if (st != R1_OK)
        return st;
    uint8_t dir[R1_SESSION_FILE_MAX_SECTIONS * R1_SESSION_FILE_DIR_ENTRY];
    const size_t dir_bytes = (size_t)n_sections * R1_SESSION_FILE_DIR_ENTRY;
    if ((st = r1_in_read(in, R1_SESSION_FILE_HEADER, dir, dir_bytes)) != R1_OK)
        return st;
    if (r1_checksum__xxh64(dir, dir_bytes) != dir_sum)
        return r1_error__set(R1_ERR_CHECKSUM, "%s: the section directory fails its checksum",
                             in->name);
    int32_t seen[SEC_N] = {0};
    uint64_t at = R1_SESSION_FILE_HEADER + dir_bytes, cache_bytes = 0;
    if (!r1_cache_bytes(&img->shape, img->position, &cache_bytes))
        return r1_error__set(R1_ERR_FORMAT, "%s: the cache of its shape overflows", in->name);
    for (uint32_t i = 0; i < n_sections && st == R1_OK; i++) {
        const uint8_t *e = dir + i * R1_SESSION_FILE_DIR_ENTRY;
        const uint32_t flags = r1_le__u32(e + 4);
        const uint64_t off = r1_le__u64(e + 8), size = r1_le__u64(e + 16), sum = r1_le__u64(e + 24);
        int32_t which = -1;
        for (int32_t k = 0; k < SEC_N; k++)
            if (memcmp(e, r1s_tags[k], 4) == 0)
                which = k;
        /* Sections follow the directory back to back, in its order, to the end of the file. */
        if (off != at || size > in->size - at || (flags & ~(uint32_t)R1S_FLAG_REQUIRED) != 0)
            st = r1_error__set(R1_ERR_FORMAT,
                               "%s: section %u (at %" PRIu64 ", %" PRIu64
                               " bytes, flags %u) is not where it should be",
                               in->name, i, off, size, flags);
        else if (which < 0 && (flags & R1S_FLAG_REQUIRED))
            st = r1_error__set(R1_ERR_UNSUPPORTED,
                               "%s needs a section %02x%02x%02x%02x that this "
                               "libr1 does not know",
                               in->name, e[0], e[1], e[2], e[3]);
        else if (which >= 0 && seen[which]++)
            st = r1_error__set(R1_ERR_FORMAT, "%s has two %s sections", in->name, r1s_names[which]);
        else if (which == SEC_KVCR && size != cache_bytes)
            st = r1_error__set(R1_ERR_FORMAT,
                               "%s: the cache section has %" PRIu64 " bytes, %" PRIu64 " expected",
                               in->name, size, cache_bytes);
        if (st != R1_OK)
            break;
        at = off + size;
        if (which == SEC_KVCR || which < 0) {
            /* The rows are only checked now; r1_session_file__read_rows copies them later. */
            uint64_t h64 = 0;
            st = r1_in_hash(in, off, size, &h64);
            if (st == R1_OK && h64 != sum)
                st = r1_error__set(R1_ERR_CHECKSUM, "%s: the %s section fails its checksum",
                                   in->name, which < 0 ? "unknown" : "cache");
            if (which < 0) {
                img->n_unknown++;
            } else {
                img->cache_offset = off;
                img->cache_size = size;
                img->cache_sum = sum;
            }
            continue;
        }
        const uint8_t *p = NULL;
        uint8_t *tmp = NULL;
        st = r1_in_view(in, off, size, &p, &tmp);
        if (st == R1_OK && r1_checksum__xxh64(p, (size_t)size) != sum)
            st = r1_error__set(R1_ERR_CHECKSUM, "%s: the %s section fails its checksum", in->name,
                               r1s_names[which]);
        if (st == R1_OK)
            st = r1_parse_section(in, which, p, size, img);
        free(tmp);
    }
    if (st == R1_OK && at != in->size)
        st = r1_error__set(R1_ERR_FORMAT, "%s has %" PRIu64 " bytes after its last section",
                           in->name, in->size - at);
    if (st == R1_OK)
        st = r1_check_image(in, img, seen);
    if (st != R1_OK)
        r1_session_file__free(img);
    return st;
}

r1_status r1_session_file__read_rows(const r1_session_file_in *in, const r1_session_image *img,
                                     const r1_session_rows *dst)
{
    const r1_session_shape *sh = &img->shape;
    const int32_t parts = r1_parts(sh);
    const size_t block = (size_t)img->position * (size_t)sh->row_bytes;
    r1_xxh64_state sum;
    r1_checksum__xxh64_init(&sum);
    uint64_t off = img->cache_offset;
    r1_status st = R1_OK;
    for (int32_t l = 0; l < sh->n_layers && st == R1_OK; l++)
        for (int32_t j = 0; j < parts && st == R1_OK; j++, off += block) {
            uint8_t *rows = dst->cache[j] + (uint64_t)l * dst->layer_stride;
            st = r1_in_read(in, off, rows, block);
            /* A buffer cannot change under the caller's own call; a file can. */
            if (in->buf == NULL)
                r1_checksum__xxh64_update(&sum, rows, block);
        }
    if (st == R1_OK && in->buf == NULL && r1_checksum__xxh64_digest(&sum) != img->cache_sum)
        st = r1_error__set(R1_ERR_IO, "%s changed while it was being read", in->name);
    return st;
}

void r1_session_file__free(r1_session_image *img)
{
    free(img->tokens);
    free(img->logits);
    free(img->dropped);
    r1_session_file__free_gen(&img->gen);
    r1_session_file__free_sampler(&img->sampler);
    memset(img, 0, sizeof *img);
}
