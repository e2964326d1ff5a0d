/* session_state.c: saving a session's state (cache rows, tokens, logits, generation and the
 * sampler it draws from) to a file or a buffer and restoring it; a sampler's state alone. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compute.h"
#include "container.h"
#include "dtype.h"
#include "error.h"
#include "generate.h"
#include "model.h"
#include "r1.h"
#include "sampler.h"
#include "session.h"
#include "session_file.h"
#include "tokenizer.h"

/* ---- the session's parts as the format sees them ------------------------------------------ */

static void r1_shape_of(const r1_session *s, r1_session_shape *sh, r1_session_rows *rows)
{
    const r1_model_config *cfg = r1_model__config(s->model);
    const r1_kv_cache *kv = &s->kv;
    memset(sh, 0, sizeof *sh);
    memset(rows, 0, sizeof *rows);
    sh->model_id = r1_container__header_sum(r1_model__container(s->model));
    sh->n_ctx = s->n_ctx;
    sh->n_layers = (int32_t)cfg->num_hidden_layers;
    sh->vocab = cfg->vocab_size;
    if (kv->gqa != NULL) {
        sh->cache_kind = R1_SESSION_CACHE_GQA;
        sh->cache_dtype = kv->gqa->dtype;
        sh->row_bytes = kv->gqa->row_bytes;
        rows->cache[0] = kv->gqa->k;
        rows->cache[1] = kv->gqa->v;
    } else {
        sh->cache_kind = R1_SESSION_CACHE_LATENT;
        sh->cache_dtype = kv->lat_dtype;
        sh->row_bytes = kv->lat_row_bytes;
        rows->cache[0] = kv->lat_dtype == R1_DTYPE_Q8_0 ? kv->lat_q8 : (uint8_t *)kv->lat;
    }
    rows->layer_stride = (uint64_t)s->n_ctx * sh->row_bytes;
}

/* A copy of the sampler's state, its history ring unrolled oldest first. */
static r1_status r1_sampler_image_of(const r1_sampler *smp, r1_sampler_image *img)
{
    memset(img, 0, sizeof *img);
    img->seed = smp->seed;
    img->n_draws = smp->n_draws;
    img->temperature = smp->temperature;
    img->top_p = smp->top_p;
    img->min_p = smp->min_p;
    img->top_k = smp->top_k;
    img->last_n = smp->last_n;
    img->repeat = smp->repeat;
    img->frequency = smp->frequency;
    img->presence = smp->presence;
    img->n_bias = (uint32_t)smp->n_bias;
    img->n_hist = (uint32_t)smp->n_hist;
    img->bias_ids = malloc((smp->n_bias ? smp->n_bias : 1) * sizeof *img->bias_ids);
    img->bias = malloc((smp->n_bias ? smp->n_bias : 1) * sizeof *img->bias);
    img->hist = malloc((smp->n_hist ? smp->n_hist : 1) * sizeof *img->hist);
    if (img->bias_ids == NULL || img->bias == NULL || img->hist == NULL) {
        r1_session_file__free_sampler(img);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot copy a sampler's state");
    }
    for (size_t i = 0; i < smp->n_bias; i++) {
        img->bias_ids[i] = smp->bias[i].id;
        img->bias[i] = smp->bias[i].bias;
    }
    const size_t cap = (size_t)smp->last_n;
    for (size_t i = 0; i < smp->n_hist; i++)
        img->hist[i] = smp->hist[(smp->hist_next + cap - smp->n_hist + i) % cap];
    return R1_OK;
}

/* The writer's view of a session: borrowed pointers, but for the sampler's copy. */
typedef struct r1_save_view {
    r1_session_file_src src;
    r1_gen_image gen;
    r1_sampler_image smp;
} r1_save_view;

static r1_status r1_view_of(const r1_session *s, r1_save_view *v)
{
    memset(v, 0, sizeof *v);
    r1_session_file_src *src = &v->src;
    r1_shape_of(s, &src->shape, &src->rows);
    src->position = s->position;
    src->tokens = s->tokens;
    src->logits = s->logits;
    src->logits_rows = s->logits_rows;
    src->dropped = s->dropped;
    src->n_dropped = s->n_dropped;
    src->dropped_keep = s->n_dropped > 0 ? s->dropped_keep : 0;
    const r1_generation *g = &s->gen;
    r1_gen_image *gi = &v->gen;
    gi->active = g->active;
    gi->finished = g->finished;
    gi->in_reasoning = g->in_reasoning;
    gi->max_tokens = g->max_tokens;
    gi->think_budget = g->think_budget;
    /* Never read outside a generation (r1_session_begin sets it), and 0 in a new session. */
    gi->last_token = g->active ? g->last_token : -1;
    gi->n_prompt = g->n_prompt;
    gi->n_reasoning = g->n_reasoning;
    gi->n_answer = g->n_answer;
    gi->held_kind = g->held_kind;
    gi->queue = g->queue;
    gi->n_queue = g->n_queue;
    src->gen = gi;
    if (!g->active)
        return R1_OK; /* what an ended generation leaves behind, its next begin resets */
    gi->forced = g->forced;
    gi->n_forced = g->n_forced;
    gi->i_forced = g->i_forced;
    gi->bridge = g->bridge;
    gi->n_bridge = strlen(g->bridge);
    gi->stops = g->stops;
    gi->n_stops = g->n_stops;
    gi->n_stream_held = (uint32_t)r1_tokenizer__stream_held(g->stream, gi->stream_held);
    gi->held = g->held;
    gi->n_held = g->n_held;
    r1_status st = r1_sampler_image_of(g->sampler, &v->smp);
    src->sampler = &v->smp;
    return st;
}

/* ---- saving ------------------------------------------------------------------------------- */

R1_API r1_status r1_session_save_to_buffer(const r1_session *session, void *buf, size_t cap,
                                           size_t *size_out)
{
    r1_error__clear();
    if (session == NULL || size_out == NULL || (buf == NULL && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_save_to_buffer: %s is NULL",
                             session == NULL    ? "session"
                             : size_out == NULL ? "size_out"
                                                : "buf");
    r1_save_view v;
    uint64_t size = 0;
    r1_status st = r1_view_of(session, &v);
    if (st == R1_OK)
        st = r1_session_file__size(&v.src, &size);
    if (st == R1_OK && size > SIZE_MAX)
        st = r1_error__set(R1_ERR_NO_MEMORY,
                           "a session of %" PRIu64 " bytes does not fit in "
                           "memory",
                           size);
    if (st == R1_OK) {
        *size_out = (size_t)size;
        st = cap < size ? r1_error__set(R1_ERR_BUFFER_TOO_SMALL,
                                        "the session's state needs %" PRIu64 " bytes, the buffer "
                                        "has %zu",
                                        size, cap)
                        : r1_session_file__write(&v.src, buf, cap, -1);
    }
    r1_session_file__free_sampler(&v.smp);
    return st;
}

/* fsync of the directory holding path, so that the rename is durable too; best effort (some
 * file systems refuse it, and the file itself is whole either way). */
static void r1_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL ? NULL : malloc((size_t)(slash - path) + 2);
    if (slash != NULL && dir == NULL)
        return;
    if (dir != NULL) {
        const size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

R1_API r1_status r1_session_save(const r1_session *session, const char *path_utf8)
{
    r1_error__clear();
    if (session == NULL || path_utf8 == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_save: %s is NULL",
                             session == NULL ? "session" : "path");
    if (path_utf8[0] == '\0')
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_save: the path is empty");
    r1_save_view v;
    r1_status st = r1_view_of(session, &v);
    const size_t n = strlen(path_utf8);
    char *tmp = st == R1_OK ? malloc(n + sizeof ".tmp-XXXXXX") : NULL;
    if (st == R1_OK && tmp == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a temporary path");
    int fd = -1;
    if (st == R1_OK) {
        /* A temporary file beside the target, renamed over it once whole and synced: a failure
         * at any point leaves an existing file as it was. */
        memcpy(tmp, path_utf8, n);
        memcpy(tmp + n, ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");
        if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
            st = r1_error__set(R1_ERR_IO, "cannot create a temporary file beside '%s': %s",
                               path_utf8, strerror(errno));
    }
    if (st == R1_OK)
        st = r1_session_file__write(&v.src, NULL, 0, fd);
    if (st == R1_OK && fsync(fd) != 0)
        st = r1_error__set(R1_ERR_IO, "cannot sync '%s': %s", tmp, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && st == R1_OK)
        st = r1_error__set(R1_ERR_IO, "cannot close '%s': %s", tmp, strerror(errno));
    if (st == R1_OK && rename(tmp, path_utf8) != 0)
        st = r1_error__set(R1_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path_utf8,
                           strerror(errno));
    if (st == R1_OK)
        r1_sync_dir(path_utf8);
    else if (fd >= 0)
        unlink(tmp);
    if (st != R1_OK && strstr(r1_error__message(), path_utf8) == NULL)
        st = r1_error__set(st, "saving '%s': %s", path_utf8, r1_error__message());
    free(tmp);
    r1_session_file__free_sampler(&v.smp);
    return st;
}

/* ---- restoring ---------------------------------------------------------------------------- */

/* What a load allocates before it changes anything, so that only reading the rows can fail
 * once the session is being changed. */
typedef struct r1_load_plan {
    r1_session_image img;
    r1_tokenizer_stream *stream;
    r1_bias *bias;
    int32_t *hist, *counted;
} r1_load_plan;

static void r1_plan_free(r1_load_plan *p)
{
    r1_session_file__free(&p->img);
    r1_tokenizer__stream_destroy(p->stream);
    free(p->bias);
    free(p->hist);
    free(p->counted);
    memset(p, 0, sizeof *p);
}

/* Room for the sampler's parsed state, taken by r1_commit_sampler. */
static r1_status r1_plan_sampler(r1_load_plan *p)
{
    const r1_sampler_image *si = &p->img.sampler;
    const size_t last_n = (size_t)si->last_n;
    p->bias = malloc((si->n_bias ? si->n_bias : 1) * sizeof *p->bias);
    p->hist = last_n > 0 ? malloc(last_n * sizeof *p->hist) : NULL;
    p->counted = last_n > 0 ? malloc(last_n * sizeof *p->counted) : NULL;
    if (p->bias == NULL || (last_n > 0 && (p->hist == NULL || p->counted == NULL)))
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the sampler's state");
    return R1_OK;
}

static r1_status r1_plan_allocate(r1_session *s, r1_load_plan *p)
{
    const r1_session_image *img = &p->img;
    if (img->gen.active) {
        r1_status st = r1_tokenizer__stream_create(&p->stream, r1_model__tokenizer(s->model),
                                                   R1_DETOKENIZE_SKIP_SPECIAL);
        if (st != R1_OK)
            return st;
        r1_tokenizer__stream_set_held(p->stream, img->gen.stream_held, img->gen.n_stream_held);
    }
    return img->has_sampler ? r1_plan_sampler(p) : R1_OK;
}

/* The session forgets its state: what a failed copy of the rows leaves (r1_session_reset). */
static void r1_session_empty(r1_session *s)
{
    r1_generate__end(s);
    s->position = 0;
    s->logits_rows = 0;
    s->think_open = 0;
    s->n_dropped = 0;
}

static void r1_commit_sampler(r1_sampler *smp, r1_load_plan *p)
{
    const r1_sampler_image *si = &p->img.sampler;
    smp->seed = si->seed;
    smp->n_draws = si->n_draws;
    smp->temperature = si->temperature;
    smp->top_p = si->top_p;
    smp->min_p = si->min_p;
    smp->top_k = si->top_k;
    smp->last_n = si->last_n;
    smp->repeat = si->repeat;
    smp->frequency = si->frequency;
    smp->presence = si->presence;
    for (uint32_t i = 0; i < si->n_bias; i++) {
        p->bias[i].id = si->bias_ids[i];
        p->bias[i].bias = si->bias[i];
    }
    free(smp->bias);
    smp->bias = p->bias;
    smp->n_bias = si->n_bias;
    smp->cap_bias = si->n_bias ? si->n_bias : 1;
    if (si->n_hist > 0)
        memcpy(p->hist, si->hist, si->n_hist * sizeof *p->hist);
    free(smp->hist);
    free(smp->counted);
    smp->hist = p->hist;
    smp->counted = p->counted;
    smp->n_hist = si->n_hist;
    /* Oldest first from index 0: the next accepted id goes after the newest, or over the
     * oldest when the window is full. */
    smp->hist_next = si->last_n > 0 ? si->n_hist % (uint32_t)si->last_n : 0;
    p->bias = NULL;
    p->hist = p->counted = NULL;
}

static void r1_commit_generation(r1_session *s, r1_sampler *smp, r1_load_plan *p)
{
    r1_gen_image *gi = &p->img.gen;
    r1_generation *g = &s->gen;
    r1_generate__end(s);
    free(g->queue);
    g->queue = gi->queue;
    g->n_queue = gi->n_queue;
    g->cap_queue = gi->n_queue ? gi->n_queue : 1;
    free(g->held);
    g->held = gi->held;
    g->n_held = gi->n_held;
    g->cap_held = gi->n_held + 1;
    g->held_kind = gi->held_kind;
    g->max_tokens = gi->max_tokens;
    g->think_budget = gi->think_budget;
    g->in_reasoning = gi->in_reasoning;
    g->n_prompt = gi->n_prompt;
    g->n_reasoning = gi->n_reasoning;
    g->n_answer = gi->n_answer;
    g->last_token = gi->last_token;
    if (gi->active) {
        g->active = 1;
        g->finished = gi->finished;
        g->sampler = smp;
        g->bridge = gi->bridge;
        g->stops = gi->stops;
        g->n_stops = gi->n_stops;
        g->max_stop_len = 0;
        for (int32_t i = 0; i < gi->n_stops; i++) {
            const size_t len = strlen(gi->stops[i]);
            g->max_stop_len = len > g->max_stop_len ? len : g->max_stop_len;
        }
        g->forced = gi->forced;
        g->n_forced = gi->n_forced;
        g->i_forced = gi->i_forced;
        g->stream = p->stream;
        p->stream = NULL;
        gi->bridge = NULL;
        gi->stops = NULL;
        gi->n_stops = 0;
        gi->forced = NULL;
    }
    gi->queue = NULL;
    gi->held = NULL;
}

static r1_status r1_session_load_from(r1_session *s, const r1_session_file_in *in, r1_sampler *smp)
{
    r1_session_shape want;
    r1_session_rows rows;
    r1_shape_of(s, &want, &rows);
    r1_load_plan p;
    memset(&p, 0, sizeof p);
    r1_status st = r1_session_file__parse(in, &want, &p.img);
    if (st != R1_OK)
        return st;
    if (p.img.has_sampler && smp == NULL)
        st = r1_error__set(R1_ERR_INVALID_ARG,
                           "%s holds a generation in progress: pass the sampler it is to "
                           "continue with",
                           in->name);
    if (st == R1_OK)
        st = r1_plan_allocate(s, &p);
    if (st == R1_OK) {
        /* Everything is checked and allocated: from here on the session changes. */
        st = r1_session_file__read_rows(in, &p.img, &rows);
        /* The device's copy of the rows is stale either way. */
        r1_compute__drop_latent(r1_model__compute(s->model), s->kv.id);
        if (st != R1_OK) {
            r1_session_empty(s);
            r1_plan_free(&p);
            return st;
        }
    } else {
        r1_plan_free(&p);
        return st;
    }
    r1_session_image *img = &p.img;
    memcpy(s->tokens, img->tokens, (size_t)img->position * sizeof *s->tokens);
    s->position = img->position;
    const int64_t vocab = img->shape.vocab;
    if (img->logits_rows > s->logits_cap) {
        free(s->logits);
        s->logits = img->logits;
        s->logits_cap = img->logits_rows;
        img->logits = NULL;
    } else if (img->logits_rows > 0) {
        memcpy(s->logits, img->logits, (size_t)(img->logits_rows * vocab) * sizeof(float));
    }
    s->logits_rows = img->logits_rows;
    s->think_open = 0;
    r1_generate__track_think(s, s->tokens, (size_t)s->position);
    r1_commit_generation(s, smp, &p);
    if (img->has_sampler)
        r1_commit_sampler(smp, &p);
    free(s->dropped);
    s->dropped = img->dropped;
    s->n_dropped = img->n_dropped;
    s->cap_dropped = img->n_dropped;
    s->dropped_keep = img->dropped_keep;
    img->dropped = NULL;
    atomic_store(&s->cancel, 0);
    r1_plan_free(&p);
    return R1_OK;
}

R1_API r1_status r1_session_load_from_buffer(r1_session *session, const void *buf, size_t size,
                                             r1_sampler *sampler)
{
    r1_error__clear();
    if (session == NULL || (buf == NULL && size > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_load_from_buffer: %s is NULL",
                             session == NULL ? "session" : "buf");
    const r1_session_file_in in = {.buf = buf != NULL ? buf : (const uint8_t *)"",
                                   .fd = -1,
                                   .size = size,
                                   .name = "the buffer"};
    return r1_session_load_from(session, &in, sampler);
}

R1_API r1_status r1_session_load(r1_session *session, const char *path_utf8, r1_sampler *sampler)
{
    r1_error__clear();
    if (session == NULL || path_utf8 == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_load: %s is NULL",
                             session == NULL ? "session" : "path");
    /* O_NONBLOCK: a FIFO opens at once and fails the regular-file check instead of waiting. */
    int fd = open(path_utf8, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return r1_error__set(errno == ENOENT ? R1_ERR_NOT_FOUND : R1_ERR_IO, "cannot open '%s': %s",
                             path_utf8, strerror(errno));
    struct stat sb;
    r1_status st = R1_OK;
    if (fstat(fd, &sb) != 0)
        st = r1_error__set(R1_ERR_IO, "cannot stat '%s': %s", path_utf8, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = r1_error__set(R1_ERR_IO, "'%s' is not a regular file", path_utf8);
    char *name = st == R1_OK ? malloc(strlen(path_utf8) + 3) : NULL;
    if (st == R1_OK && name == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a path");
    if (st == R1_OK) {
        sprintf(name, "'%s'", path_utf8);
        const r1_session_file_in in = {
            .buf = NULL, .fd = fd, .size = (uint64_t)sb.st_size, .name = name};
        st = r1_session_load_from(session, &in, sampler);
    }
    free(name);
    close(fd);
    return st;
}

/* ---- a sampler alone ---------------------------------------------------------------------- */

R1_API r1_status r1_sampler_save_to_buffer(const r1_sampler *smp, void *buf, size_t cap,
                                           size_t *size_out)
{
    r1_error__clear();
    if (smp == NULL || size_out == NULL || (buf == NULL && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_save_to_buffer: %s is NULL",
                             smp == NULL        ? "sampler"
                             : size_out == NULL ? "size_out"
                                                : "buf");
    r1_sampler_image img;
    r1_status st = r1_sampler_image_of(smp, &img);
    if (st != R1_OK)
        return st;
    const size_t size = r1_session_file__sampler_size(&img);
    *size_out = size;
    if (cap < size)
        st = r1_error__set(R1_ERR_BUFFER_TOO_SMALL,
                           "the sampler's state needs %zu bytes, the buffer has %zu", size, cap);
    else
        r1_session_file__sampler_encode(&img, buf);
    r1_session_file__free_sampler(&img);
    return st;
}

R1_API r1_status r1_sampler_load_from_buffer(r1_sampler *smp, const void *buf, size_t size)
{
    r1_error__clear();
    if (smp == NULL || (buf == NULL && size > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_load_from_buffer: %s is NULL",
                             smp == NULL ? "sampler" : "buf");
    r1_load_plan p;
    memset(&p, 0, sizeof p);
    r1_status st = r1_session_file__sampler_decode(buf != NULL ? buf : (const uint8_t *)"", size,
                                                   "the buffer", &p.img.sampler);
    if (st != R1_OK)
        return st;
    p.img.has_sampler = 1;
    if ((st = r1_plan_sampler(&p)) == R1_OK)
        r1_commit_sampler(smp, &p);
    r1_plan_free(&p);
    return st;
}
