/* cmd_bench.c: `r1 bench`: prompt-processing and generation speed, the weight bytes a decoded
 * token reads, the machine's memory bandwidth measured in the same run, and how close decoding
 * comes to the floor those two numbers set. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_memory.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_bench_usage(FILE *to)
{
    fprintf(to,
            "usage: r1 bench -m MODEL [-p 512] [-n 128] [-d 0] [-t THREADS] [--reps 5] [--json]\n"
            "                [--profile] [--no-prefetch] [--cache-gb G] [--triad-mb M]\n"
            "                [--expert-ram B|auto] [--device-expert-ram B|auto] [--batch N]\n"
            "                [--backend NAME] [--device ID]\n\n"
            "Measures prompt processing (pp: one evaluation of -p tokens) and token generation\n"
            "(tg: -n tokens one at a time from an empty cache) in tokens/s, median of --reps\n"
            "repetitions after one untimed warm-up of each (each on tokens of its own, so that\n"
            "no cache is warmed with exactly what it is then asked). Also measures the memory\n"
            "bandwidth with a STREAM-triad kernel on the same number of threads, counts the\n"
            "weight bytes one decoded token reads (from the routing actually taken), and reports\n"
            "the share of the bandwidth floor (best triad bandwidth, measured before and again\n"
            "after the runs, / bytes per token) that tg reaches, and the per-layer expert load\n"
            "balance of the routing seen.\n\n"
            "  -m, --model PATH   the .r1m model\n"
            "  -p N               prompt tokens (default 512; 0 skips pp)\n"
            "  -n N               generated tokens (default 128; 0 skips tg)\n"
            "  -d, --depth N      tokens already in the cache when pp and tg start (default 0):\n"
            "                     one untimed prefill of N tokens, every repetition then starts\n"
            "                     from it (like llama-bench -d); the latent cache it adds is read\n"
            "                     by every decoded token but not counted in its weight bytes\n"
            "  -t, --threads N    CPU threads for the model and the triad (default: one per core)\n"
            "  --reps N           repetitions (default 5)\n"
            "  --json             one JSON object instead of the table\n"
            "  --profile          time per operation class, and the load balance of every layer\n"
            "  --no-prefetch      no router lookahead: experts are read only when a layer asks\n"
            "  --cache-gb G       expert cache budget in units of 10^9 bytes (0: unbounded, every\n"
            "                     expert stays in memory after the warm-up); --expert-ram is the\n"
            "                     same in bytes\n"
            "  --triad-mb M       size of each triad array in MB (default 512)\n"
            "  --backend NAME     compute backend (default cpu); the triad and its floor are the\n"
            "                     host's, so a GPU's floor is its own memory bandwidth over\n"
            "                     bytes_per_token (test/gpu/run_device_checks.sh)\n"
            "  --device ID        the backend's device: an index or part of its name\n"
            "  --batch N          also N sequences decoding -n tokens each together, one\n"
            "                     r1_session_step_many() per token of all of them, from an empty\n"
            "                     cache (greedy, end of sentence masked): their aggregate\n"
            "                     tokens/s beside tg's one sequence\n");
    r1_cli_memory_usage(to);
}

static double r1_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int r1_bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double r1_bench_median(const double *v, int n)
{
    double *c = malloc((size_t)n * sizeof *c);
    if (c == NULL || n == 0) {
        free(c);
        return 0;
    }
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, r1_bench_cmp);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* ---- memory bandwidth: a = b + s * c over arrays far larger than any cache ---------------- */

typedef struct r1_triad_job {
    double *a, *b, *c;
    size_t n;
    int init; /* first touch instead of the triad */
} r1_triad_job;

static void *r1_triad_thread(void *arg)
{
    r1_triad_job *j = arg;
    if (j->init) {
        for (size_t i = 0; i < j->n; i++) {
            j->a[i] = 0;
            j->b[i] = 1.0;
            j->c[i] = 2.0;
        }
        return NULL;
    }
    const double s = 3.0;
    for (size_t i = 0; i < j->n; i++)
        j->a[i] = j->b[i] + s * j->c[i];
    return NULL;
}

/* One pass over n elements split in n_threads slices (the caller runs the first); seconds
 * from before the threads start to the last one's end. Slices whose thread cannot be started
 * run on the caller, so the pass completes (slower) rather than fails. */
static double r1_triad_pass(double *a, double *b, double *c, size_t n, int n_threads, int init)
{
    pthread_t th[64];
    int started[64] = {0};
    r1_triad_job jobs[64];
    size_t per = (n + (size_t)n_threads - 1) / (size_t)n_threads;
    for (int i = 0; i < n_threads; i++) {
        size_t lo = (size_t)i * per < n ? (size_t)i * per : n, hi = lo + per < n ? lo + per : n;
        jobs[i] = (r1_triad_job){a + lo, b + lo, c + lo, hi - lo, init};
    }
    double t0 = r1_bench_now();
    for (int i = 1; i < n_threads; i++)
        started[i] = pthread_create(&th[i], NULL, r1_triad_thread, &jobs[i]) == 0;
    r1_triad_thread(&jobs[0]);
    for (int i = 1; i < n_threads; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            r1_triad_thread(&jobs[i]);
    }
    return r1_bench_now() - t0;
}

/* Median triad bandwidth in bytes/s (STREAM's convention: 3 x 8 bytes per element, the
 * write-allocate read of a not counted), the best in *best; 0 when out of memory. */
static double r1_triad_bandwidth(size_t bytes_per_array, int n_threads, int reps, double *best)
{
    size_t n = bytes_per_array / sizeof(double);
    double *a = NULL, *b = NULL, *c = NULL, *bw = malloc((size_t)reps * sizeof *bw), med = 0;
    *best = 0;
    if (bw != NULL && !posix_memalign((void **)&a, 64, n * sizeof *a) &&
        !posix_memalign((void **)&b, 64, n * sizeof *b) &&
        !posix_memalign((void **)&c, 64, n * sizeof *c)) {
        /* Each thread first touches its own slice, so its pages sit where it runs. */
        r1_triad_pass(a, b, c, n, n_threads, 1);
        r1_triad_pass(a, b, c, n, n_threads, 0); /* warm-up */
        for (int r = 0; r < reps; r++) {
            bw[r] = 3.0 * 8.0 * (double)n / r1_triad_pass(a, b, c, n, n_threads, 0);
            *best = bw[r] > *best ? bw[r] : *best;
        }
        med = r1_bench_median(bw, reps);
    }
    free(bw);
    free(a);
    free(b);
    free(c);
    return med;
}

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct r1_bench_result {
    double tps_median, tps_min, tps_max;
    int ran;
    r1_session_profile prof;     /* summed over the timed repetitions */
    uint64_t misses;             /* expert-store misses during the timed repetitions */
    r1_expert_cache_stats store; /* what the expert store's counters gained during them */
} r1_bench_result;

/* The kernels OpenBLAS chose (see r1.c), for the record; "none" without OpenBLAS. */
static const char *r1_bench_blas_core(void)
{
    const char *(*corename)(void) = NULL;
    *(void **)&corename = dlsym(RTLD_DEFAULT, "openblas_get_corename");
    const char *name = corename ? corename() : NULL;
    return name ? name : "none";
}

static int r1_bench_fail(const char *what)
{
    fprintf(stderr, "r1 bench: %s: %s\n", what, r1_last_error());
    return 1;
}

static uint64_t r1_bench_misses(const r1_model *m)
{
    r1_expert_cache_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    return r1_model_get_expert_cache_stats(m, &st) == R1_OK ? st.misses : 0;
}

/* The expert store's counters (zeros where the library predates a field). */
static r1_expert_cache_stats r1_bench_store(const r1_model *m)
{
    r1_expert_cache_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    if (r1_model_get_expert_cache_stats(m, &st) != R1_OK)
        memset(&st, 0, sizeof st);
    return st;
}

/* Prefetch by router lookahead over a phase: recall is the share of the experts a layer
 * demanded that were not in memory beforehand (misses, plus prefetched experts that turned a
 * miss into a hit or a shorter wait) which a prefetch had read or started; waste is the share
 * of the prefetched experts that were read and then evicted unused, among those read whose fate
 * is known (used or evicted; each expert at the model's largest size). Prefetches the store
 * dropped unread for want of room cost nothing and count in neither. */
static double r1_bench_recall(const r1_expert_cache_stats *d)
{
    const double would_miss =
        (double)d->misses - (double)d->misses_prefetched + (double)d->prefetch_used;
    return would_miss > 0 ? (double)d->prefetch_used / would_miss : 0;
}

static double r1_bench_waste(const r1_expert_cache_stats *d, const r1_model_info *info)
{
    const double used = (double)d->prefetch_used * (double)info->max_expert_bytes;
    const double wasted = (double)d->prefetch_wasted_bytes;
    return used + wasted > 0 ? wasted / (used + wasted) : 0;
}

static int32_t r1_bench_argmax(const r1_session *s)
{
    const float *row = NULL;
    size_t n = 0;
    if (r1_session_logits(s, -1, &row, &n) != R1_OK || n == 0)
        return 0;
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (row[i] > row[best])
            best = i;
    return (int32_t)best;
}

/* One repetition of pp (all ids in one call) or tg (n ids, each the argmax of the last), from
 * the first depth positions of the cache (filled once by the caller). */
static int r1_bench_once(r1_session *s, const int32_t *ids, int64_t n, int decode, int64_t depth,
                         double *sec)
{
    if ((depth > 0 ? r1_session_truncate(s, (int32_t)depth) : r1_session_reset(s)) != R1_OK)
        return r1_bench_fail("reset");
    double t0 = r1_bench_now();
    if (!decode) {
        if (r1_session_eval(s, ids, (size_t)n) != R1_OK)
            return r1_bench_fail("prompt");
    } else {
        int32_t id = ids[0];
        for (int64_t i = 0; i < n; i++) {
            if (r1_session_eval(s, &id, 1) != R1_OK)
                return r1_bench_fail("decode");
            id = r1_bench_argmax(s);
        }
    }
    *sec = r1_bench_now() - t0;
    return 0;
}

/* warm_ids: the warm-up's tokens; repetition r's are ids + r * stride. Each has its own: the
 * same tokens again would find exactly the experts they route to in a budget above their
 * working set, and every timed token would hit. */
static int r1_bench_phase(r1_session *s, const r1_model *m, const int32_t *warm_ids,
                          const int32_t *ids, int64_t stride, int64_t n, int decode, int64_t depth,
                          int reps, uint64_t *counts, size_t n_counts, r1_bench_result *out)
{
    double sec;
    if (r1_bench_once(s, warm_ids, n, decode, depth, &sec)) /* warm-up: loads its experts */
        return 1;
    double *tps = malloc((size_t)reps * sizeof *tps);
    if (tps == NULL)
        return r1_bench_fail("out of memory");
    if (r1_session_set_profiling(s, 1) != R1_OK) {
        free(tps);
        return r1_bench_fail("profiling");
    }
    uint64_t miss0 = r1_bench_misses(m);
    const r1_expert_cache_stats st0 = r1_bench_store(m);
    for (int r = 0; r < reps; r++) {
        if (r1_bench_once(s, ids + r * stride, n, decode, depth, &sec)) {
            free(tps);
            return 1;
        }
        tps[r] = (double)n / sec;
    }
    out->misses = r1_bench_misses(m) - miss0;
    out->store = r1_bench_store(m);
    out->store.hits -= st0.hits;
    out->store.misses -= st0.misses;
    out->store.prefetch_issued -= st0.prefetch_issued;
    out->store.prefetch_used -= st0.prefetch_used;
    out->store.prefetch_wasted_bytes -= st0.prefetch_wasted_bytes;
    out->store.misses_prefetched -= st0.misses_prefetched;
    out->store.bytes_read -= st0.bytes_read;
    out->store.stall_ns -= st0.stall_ns;
    memset(&out->prof, 0, sizeof out->prof);
    out->prof.struct_size = sizeof out->prof;
    if (r1_session_get_profile(s, &out->prof) != R1_OK ||
        (n_counts && r1_session_get_expert_counts(s, counts, n_counts) != R1_OK)) {
        free(tps);
        return r1_bench_fail("profile");
    }
    r1_session_set_profiling(s, 0);
    out->tps_median = r1_bench_median(tps, reps);
    out->tps_min = out->tps_max = tps[0];
    for (int r = 1; r < reps; r++) {
        out->tps_min = tps[r] < out->tps_min ? tps[r] : out->tps_min;
        out->tps_max = tps[r] > out->tps_max ? tps[r] : out->tps_max;
    }
    out->ran = 1;
    free(tps);
    return 0;
}

/* ---- several sequences together (--batch) ------------------------------------------------- */

/* One repetition: every session reset, fed its own first token, then n_gen steps of all of them
 * through r1_session_step_many (the first evaluates the fed tokens, each later one the tokens the
 * last produced). Greedy, with the end of sentence masked so that every sequence runs the full
 * n_gen. */
static int r1_bench_batch_once(r1_session **s, r1_sampler **smp, int64_t n_seq, const int32_t *ids,
                               int64_t n_gen, double *sec)
{
    int32_t *tok = malloc((size_t)n_seq * sizeof *tok);
    r1_status *sts = malloc((size_t)n_seq * sizeof *sts);
    r1_gen_opts *go = NULL;
    int rc = 1;
    if (tok == NULL || sts == NULL || r1_gen_opts_create(&go) != R1_OK ||
        r1_gen_opts_set_max_tokens(go, (int32_t)n_gen) != R1_OK) {
        rc = r1_bench_fail("batch options");
        goto out;
    }
    for (int64_t i = 0; i < n_seq; i++)
        if (r1_session_reset(s[i]) != R1_OK || r1_sampler_reset(smp[i]) != R1_OK ||
            r1_session_feed(s[i], ids + i, 1) != R1_OK ||
            r1_session_begin(s[i], smp[i], go) != R1_OK) {
            rc = r1_bench_fail("batch begin");
            goto out;
        }
    double t0 = r1_bench_now();
    for (int64_t k = 0; k < n_gen; k++) {
        if (r1_session_step_many(s, (size_t)n_seq, tok, NULL, sts) != R1_OK) {
            rc = r1_bench_fail("batch step");
            goto out;
        }
        for (int64_t i = 0; i < n_seq; i++)
            if (sts[i] != R1_OK) {
                fprintf(stderr, "r1 bench: sequence %lld of the batch ended after %lld steps: %s\n",
                        (long long)i, (long long)k, r1_status_name(sts[i]));
                goto out;
            }
    }
    *sec = r1_bench_now() - t0;
    rc = 0;
out:
    for (int64_t i = 0; i < n_seq; i++)
        if (s[i] != NULL)
            r1_session_reset(s[i]); /* ends the generations */
    r1_gen_opts_destroy(go);
    free(tok);
    free(sts);
    return rc;
}

/* Aggregate decode tokens/s of n_seq sequences together: median of reps after one warm-up. */
static int r1_bench_batch(r1_model *m, const r1_model_info *info, int64_t n_seq, int64_t n_gen,
                          const int32_t *ids, int reps, r1_bench_result *out)
{
    r1_session **s = calloc((size_t)n_seq, sizeof *s);
    r1_sampler **smp = calloc((size_t)n_seq, sizeof *smp);
    double *tps = malloc((size_t)reps * sizeof *tps), sec = 0;
    r1_session_opts *so = NULL;
    int rc = 1;
    if (s == NULL || smp == NULL || tps == NULL || r1_session_opts_create(&so) != R1_OK ||
        r1_session_opts_set_context(so, (int32_t)(n_gen + 1)) != R1_OK) {
        rc = r1_bench_fail("batch sessions");
        goto out;
    }
    for (int64_t i = 0; i < n_seq; i++)
        if (r1_session_create(&s[i], m, so) != R1_OK || r1_sampler_create(&smp[i], 1) != R1_OK ||
            r1_sampler_set_temperature(smp[i], 0.0f) != R1_OK ||
            (info->eos_token_id >= 0 && info->eos_token_id < info->vocab_size &&
             r1_sampler_set_logit_bias(smp[i], info->eos_token_id, -1e30f) != R1_OK)) {
            rc = r1_bench_fail("batch sessions");
            goto out;
        }
    /* Each repetition (and the warm-up) on first tokens of its own. */
    if (r1_bench_batch_once(s, smp, n_seq, ids + reps * n_seq, n_gen, &sec))
        goto out;
    /* The first session is charged for every shared pass (r1_session_step_many): its profile
     * holds the weight bytes all the sequences' tokens read together. */
    if (r1_session_set_profiling(s[0], 1) != R1_OK) {
        rc = r1_bench_fail("profiling");
        goto out;
    }
    for (int r = 0; r < reps; r++) {
        if (r1_bench_batch_once(s, smp, n_seq, ids + r * n_seq, n_gen, &sec))
            goto out;
        tps[r] = (double)(n_seq * n_gen) / sec;
    }
    memset(&out->prof, 0, sizeof out->prof);
    out->prof.struct_size = sizeof out->prof;
    if (r1_session_get_profile(s[0], &out->prof) != R1_OK) {
        rc = r1_bench_fail("profile");
        goto out;
    }
    out->tps_median = r1_bench_median(tps, reps);
    out->tps_min = out->tps_max = tps[0];
    for (int r = 1; r < reps; r++) {
        out->tps_min = tps[r] < out->tps_min ? tps[r] : out->tps_min;
        out->tps_max = tps[r] > out->tps_max ? tps[r] : out->tps_max;
    }
    out->ran = 1;
    rc = 0;
out:
    for (int64_t i = 0; s != NULL && i < n_seq; i++)
        r1_session_destroy(s[i]);
    for (int64_t i = 0; smp != NULL && i < n_seq; i++)
        r1_sampler_destroy(smp[i]);
    r1_session_opts_destroy(so);
    free(s);
    free(smp);
    free(tps);
    return rc;
}

/* ---- load balance ------------------------------------------------------------------------- */

typedef struct r1_balance {
    double max_over_mean, min_over_mean, cv;
    int64_t unused;
    uint64_t total;
} r1_balance;

static r1_balance r1_layer_balance(const uint64_t *c, int64_t E)
{
    r1_balance b = {0, 0, 0, 0, 0};
    uint64_t mx = 0, mn = UINT64_MAX;
    for (int64_t e = 0; e < E; e++) {
        b.total += c[e];
        mx = c[e] > mx ? c[e] : mx;
        mn = c[e] < mn ? c[e] : mn;
        b.unused += c[e] == 0;
    }
    if (b.total == 0 || E == 0)
        return b;
    double mean = (double)b.total / (double)E, var = 0;
    for (int64_t e = 0; e < E; e++)
        var += ((double)c[e] - mean) * ((double)c[e] - mean);
    b.max_over_mean = (double)mx / mean;
    b.min_over_mean = (double)mn / mean;
    b.cv = sqrt(var / (double)E) / mean;
    return b;
}

static const char *const r1_bench_class_names[R1_PROFILE_N_CLASSES] = {
    "attention", "router", "experts", "shared", "dense_mlp", "head", "expert_loading", "other"};

static void r1_bench_print_profile(const char *name, const r1_bench_result *r)
{
    if (!r->ran || r->prof.n_tokens == 0)
        return;
    printf("\nprofile %s: ms per token (%% of the time in forward passes)\n", name);
    double per = 1.0 / (double)r->prof.n_tokens;
    for (int c = 0; c < R1_PROFILE_N_CLASSES; c++)
        printf("  %-15s %9.3f  (%5.1f%%)\n", r1_bench_class_names[c], r->prof.ms[c] * per,
               r->prof.total_ms > 0 ? 100.0 * r->prof.ms[c] / r->prof.total_ms : 0);
    printf("  %-15s %9.3f\n", "total", r->prof.total_ms * per);
}

static void r1_bench_json_profile(const char *name, const r1_bench_result *r, int last)
{
    double per = r->prof.n_tokens ? 1.0 / (double)r->prof.n_tokens : 0;
    printf("    \"%s\": {", name);
    for (int c = 0; c < R1_PROFILE_N_CLASSES; c++)
        printf("\"%s\": %.4f, ", r1_bench_class_names[c], r->prof.ms[c] * per);
    printf("\"total\": %.4f}%s\n", r->prof.total_ms * per, last ? "" : ",");
}

int r1_cmd_bench(int argc, char **argv)
{
    const char *model_path = NULL;
    int64_t n_prompt = 512, n_gen = 128, threads = 0, reps = 5, triad_mb = 512, depth = 0;
    int64_t batch = 0;
    double cache_gb = 0;
    int json = 0, profile = 0, no_prefetch = 0;
    const char *backend = NULL, *device = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--profile")) {
            profile = 1;
            continue;
        }
        if (!strcmp(a, "--no-prefetch")) {
            no_prefetch = 1;
            continue;
        }
        int mem = r1_cli_memory_option(argc, argv, &i);
        if (mem < 0)
            return 2;
        if (mem)
            continue;
        static const char *const takes_value[] = {
            "-m",         "--model",    "-p", "-n",      "-t",      "--threads", "--reps",
            "--triad-mb", "--cache-gb", "-d", "--depth", "--batch", "--backend", "--device"};
        int known = 0;
        for (size_t k = 0; k < sizeof takes_value / sizeof takes_value[0]; k++)
            known |= !strcmp(a, takes_value[k]);
        if (!known) { /* before taking a value, so a last unknown option is called unknown */
            fprintf(stderr, "r1 bench: unknown option '%s'\n\n", a);
            r1_cmd_bench_usage(stderr);
            return 2;
        }
        if (!(v = r1_cli_value(argc, argv, &i)))
            return 2;
        int64_t *count = NULL;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "-p"))
            count = &n_prompt;
        else if (!strcmp(a, "-n"))
            count = &n_gen;
        else if (!strcmp(a, "-d") || !strcmp(a, "--depth"))
            count = &depth;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            count = &threads;
        else if (!strcmp(a, "--reps"))
            count = &reps;
        else if (!strcmp(a, "--triad-mb"))
            count = &triad_mb;
        else if (!strcmp(a, "--batch"))
            count = &batch;
        else if (!strcmp(a, "--backend"))
            backend = v;
        else if (!strcmp(a, "--device"))
            device = v;
        else if (!strcmp(a, "--cache-gb")) {
            char *end;
            cache_gb = strtod(v, &end);
            if (*end != 0 || !(cache_gb >= 0) || cache_gb > 1e6) {
                fprintf(stderr, "r1 bench: --cache-gb takes a number of GB >= 0\n");
                return 2;
            }
            r1_cli_mem.expert_auto = 0; /* the older spelling of --expert-ram, in 10^9 bytes */
            r1_cli_mem.expert_bytes = (uint64_t)(cache_gb * 1e9);
        } else {
            fprintf(stderr, "r1 bench: unknown option '%s'\n\n", a);
            r1_cmd_bench_usage(stderr);
            return 2;
        }
        if (count != NULL && (*count = r1_cli_parse_count(a, v)) < 0)
            return 2;
    }
    if (model_path == NULL) {
        r1_cmd_bench_usage(stderr);
        return 2;
    }
    if (reps < 1 || reps > 1000 || threads > 64 || triad_mb < 1 || triad_mb > 65536 ||
        n_prompt > 1 << 20 || n_gen > 1 << 20 || depth > 1 << 24 || (n_prompt == 0 && n_gen == 0)) {
        fprintf(stderr, "r1 bench: need 1 <= --reps <= 1000, -t <= 64, 1 <= --triad-mb <= 65536 "
                        "and -p or -n > 0\n");
        return 2;
    }
    if (batch > 256 || (batch > 0 && n_gen == 0)) {
        fprintf(stderr, "r1 bench: --batch takes 0 to 256 sequences and needs -n > 0\n");
        return 2;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = threads > 0 ? (int)threads : (cores > 0 && cores <= 64 ? (int)cores : 1);

    int rc = 1;
    r1_model_opts *mo = NULL;
    r1_model *model = NULL;
    r1_session_opts *so = NULL;
    r1_session *s = NULL;
    int32_t *ids = NULL;
    uint64_t *pp_counts = NULL, *tg_counts = NULL;
    r1_bench_result pp = {0}, tg = {0}, bt = {0};
    r1_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    /* auto leaves KV room for the context the session below asks for */
    int64_t need_ctx = depth + (n_prompt > n_gen ? n_prompt : n_gen);
    r1_cli_mem.context = need_ctx < INT32_MAX ? (int32_t)need_ctx : INT32_MAX;
    if (r1_model_opts_create(&mo) != R1_OK || r1_model_opts_set_threads(mo, n_threads) != R1_OK ||
        r1_cli_memory_apply(mo) != R1_OK ||
        (no_prefetch && r1_model_opts_set_expert_prefetch(mo, 0) != R1_OK) ||
        (backend != NULL && r1_model_opts_set_backend(mo, backend) != R1_OK) ||
        (device != NULL && r1_model_opts_set_device(mo, device) != R1_OK)) {
        rc = r1_bench_fail("options");
        goto done;
    }
    if (r1_model_load(&model, model_path, NULL, mo) != R1_OK ||
        r1_model_get_info(model, &info) != R1_OK) {
        rc = r1_bench_fail(model_path);
        goto done;
    }
    /* The cache holds the depth and the longer phase after it; say so rather than let the
     * session fail with a bare range error. */
    int64_t n_ctx = depth + (n_prompt > n_gen ? n_prompt : n_gen);
    if (n_ctx > info.max_position_embeddings || n_ctx > INT32_MAX) {
        fprintf(stderr,
                "r1 bench: -d %lld plus the longer of -p and -n needs a context of %lld "
                "positions; the model allows %lld\n",
                (long long)depth, (long long)n_ctx, (long long)info.max_position_embeddings);
        goto done;
    }
    if (r1_session_opts_create(&so) != R1_OK ||
        r1_session_opts_set_context(so, (int32_t)n_ctx) != R1_OK ||
        r1_session_create(&s, model, so) != R1_OK) {
        rc = r1_bench_fail("session");
        goto done;
    }
    const size_t n_counts = (size_t)info.n_layers * (size_t)info.n_routed_experts;
    /* the depth's tokens, then n_run for each repetition and n_run for the warm-up */
    const int64_t n_run = n_ctx - depth;
    int64_t n_ids = depth + (reps + 1) * n_run;
    if (n_ids < (reps + 1) * batch) /* --batch: a first token per sequence and repetition */
        n_ids = (reps + 1) * batch;
    ids = malloc((size_t)(n_ids > 0 ? n_ids : 1) * sizeof *ids);
    pp_counts = calloc(n_counts ? n_counts : 1, sizeof *pp_counts);
    tg_counts = calloc(n_counts ? n_counts : 1, sizeof *tg_counts);
    if (ids == NULL || pp_counts == NULL || tg_counts == NULL) {
        fprintf(stderr, "r1 bench: out of memory\n");
        goto done;
    }
    /* Random ids (a fixed LCG), like llama-bench: the speed does not depend on the text. */
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int64_t i = 0; i < n_ids; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)info.vocab_size);
    }

    double bw_best = 0;
    double bw = r1_triad_bandwidth((size_t)triad_mb << 20, n_threads, (int)reps, &bw_best);
    /* Depth: one untimed prefill that every repetition then starts from (r1_bench_once
     * truncates back to it), so pp and tg run with depth tokens already in the cache. */
    double fill_sec = 0;
    if (depth > 0) {
        double t0 = r1_bench_now();
        if (r1_session_reset(s) != R1_OK || r1_session_eval(s, ids, (size_t)depth) != R1_OK) {
            rc = r1_bench_fail("depth prefill");
            goto done;
        }
        fill_sec = r1_bench_now() - t0;
    }
    const int32_t *run_ids = ids + depth, *warm_ids = ids + depth + reps * n_run;
    if (n_prompt > 0 && r1_bench_phase(s, model, warm_ids, run_ids, n_run, n_prompt, 0, depth,
                                       (int)reps, pp_counts, n_counts, &pp))
        goto done;
    if (n_gen > 0 && r1_bench_phase(s, model, warm_ids, run_ids, n_run, n_gen, 1, depth, (int)reps,
                                    tg_counts, n_counts, &tg))
        goto done;
    if (batch > 0 && r1_bench_batch(model, &info, batch, n_gen, ids, (int)reps, &bt))
        goto done;
    /* Measured again after the runs: on a shared machine the bandwidth moves by minutes, and
     * the floor takes the best of both, so a dip before the runs cannot flatter the fraction. */
    double bw_best_after = 0;
    (void)r1_triad_bandwidth((size_t)triad_mb << 20, n_threads, (int)reps, &bw_best_after);
    const double bw_best_before = bw_best;
    bw_best = bw_best_after > bw_best ? bw_best_after : bw_best;

    /* Decoded tokens: weight bytes per token from what the passes actually read. */
    const double tok_bytes =
        tg.ran && tg.prof.n_tokens ? (double)tg.prof.weight_bytes / (double)tg.prof.n_tokens : 0;
    const double tok_expert_bytes =
        tg.ran && tg.prof.n_tokens ? (double)tg.prof.expert_bytes / (double)tg.prof.n_tokens : 0;
    /* The same bytes by part, so that another engine's bytes per token (which may keep the
     * head or the embedding in another type) compare part by part. */
    double tok_part[R1_PROFILE_N_CLASSES], tok_embed = 0;
    for (int c = 0; c < R1_PROFILE_N_CLASSES; c++)
        tok_part[c] =
            tok_bytes > 0 ? (double)tg.prof.class_weight_bytes[c] / (double)tg.prof.n_tokens : 0;
    if (tok_bytes > 0)
        tok_embed = (double)tg.prof.embed_bytes / (double)tg.prof.n_tokens;
    /* The best triad pass (before or after) sets the floor: contention only ever lowers a pass,
     * so the best is the closest to what the memory can do, and the fraction is not flattered
     * by noise. */
    const double floor_tps = tok_bytes > 0 ? bw_best / tok_bytes : 0;
    const double fraction = floor_tps > 0 ? tg.tps_median / floor_tps : 0;
    /* Routing seen over pp and tg together: the more tokens, the clearer the balance. */
    int64_t n_moe = 0;
    double worst = 0, mean_max = 0, mean_cv = 0;
    for (int64_t l = 0; l < info.n_layers && info.n_routed_experts > 0; l++) {
        uint64_t *c = pp_counts + l * info.n_routed_experts;
        for (int64_t e = 0; e < info.n_routed_experts; e++)
            c[e] += tg_counts[l * info.n_routed_experts + e];
        r1_balance b = r1_layer_balance(c, info.n_routed_experts);
        if (b.total == 0)
            continue;
        n_moe++;
        worst = b.max_over_mean > worst ? b.max_over_mean : worst;
        mean_max += b.max_over_mean;
        mean_cv += b.cv;
    }
    if (n_moe) {
        mean_max /= (double)n_moe;
        mean_cv /= (double)n_moe;
    }

    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    if (json) {
        printf("{\n  \"model\": \"%s\",\n  \"architecture\": \"%s\",\n  \"expert_dtype\": \"%s\",\n"
               "  \"file_bytes\": %llu,\n  \"threads\": %d,\n  \"reps\": %lld,\n"
               "  \"blas_core\": \"%s\",\n  \"backend\": \"%s\",\n",
               base, info.architecture_name, info.expert_dtype, (unsigned long long)info.file_bytes,
               n_threads, (long long)reps, r1_bench_blas_core(), backend ? backend : "cpu");
        printf("  \"bandwidth_gbs\": %.3f,\n  \"bandwidth_best_gbs\": %.3f,\n"
               "  \"bandwidth_best_before_gbs\": %.3f,\n  \"bandwidth_best_after_gbs\": %.3f,\n",
               bw / 1e9, bw_best / 1e9, bw_best_before / 1e9, bw_best_after / 1e9);
        printf("  \"depth\": %lld,\n  \"depth_fill_s\": %.3f,\n", (long long)depth, fill_sec);
        printf("  \"pp\": {\"tokens\": %lld, \"depth\": %lld, \"tps_median\": %.3f, "
               "\"tps_min\": %.3f, \"tps_max\": %.3f, \"expert_misses\": %llu},\n",
               (long long)(pp.ran ? n_prompt : 0), (long long)depth, pp.tps_median, pp.tps_min,
               pp.tps_max, (unsigned long long)pp.misses);
        printf("  \"tg\": {\"tokens\": %lld, \"depth\": %lld, \"tps_median\": %.3f, "
               "\"tps_min\": %.3f, \"tps_max\": %.3f, \"expert_misses\": %llu},\n",
               (long long)(tg.ran ? n_gen : 0), (long long)depth, tg.tps_median, tg.tps_min,
               tg.tps_max, (unsigned long long)tg.misses);
        if (bt.ran)
            printf("  \"tg_batch\": {\"sequences\": %lld, \"tokens\": %lld, \"tps_median\": %.3f, "
                   "\"tps_min\": %.3f, \"tps_max\": %.3f, \"speedup_over_tg\": %.3f, "
                   "\"bytes_per_token\": %.0f, \"expert_bytes_per_token\": %.0f},\n",
                   (long long)batch, (long long)n_gen, bt.tps_median, bt.tps_min, bt.tps_max,
                   tg.tps_median > 0 ? bt.tps_median / tg.tps_median : 0,
                   bt.prof.n_tokens ? (double)bt.prof.weight_bytes / (double)bt.prof.n_tokens : 0,
                   bt.prof.n_tokens ? (double)bt.prof.expert_bytes / (double)bt.prof.n_tokens : 0);
        printf("  \"expert_stream\": {");
        for (int ph = 0; ph < 2; ph++) {
            const r1_bench_result *r = ph ? &tg : &pp;
            const double per = r->prof.n_tokens ? 1.0 / (double)r->prof.n_tokens : 0;
            printf("%s\"%s\": {\"hits\": %llu, \"misses\": %llu, \"stall_ms_per_token\": %.4f, "
                   "\"prefetch_issued\": %llu, \"prefetch_used\": %llu, "
                   "\"misses_prefetched\": %llu, \"prefetch_wasted_bytes\": %llu, "
                   "\"prefetch_recall\": %.4f, \"prefetch_waste\": %.4f, "
                   "\"bytes_read_per_token\": %.0f}",
                   ph ? ", " : "", ph ? "tg" : "pp", (unsigned long long)r->store.hits,
                   (unsigned long long)r->store.misses, (double)r->store.stall_ns * per / 1e6,
                   (unsigned long long)r->store.prefetch_issued,
                   (unsigned long long)r->store.prefetch_used,
                   (unsigned long long)r->store.misses_prefetched,
                   (unsigned long long)r->store.prefetch_wasted_bytes, r1_bench_recall(&r->store),
                   r1_bench_waste(&r->store, &info), (double)r->store.bytes_read * per);
        }
        printf("},\n");
        printf("  \"bytes_per_token\": %.0f,\n  \"expert_bytes_per_token\": %.0f,\n"
               "  \"floor_tps\": %.3f,\n  \"floor_fraction\": %.4f,\n",
               tok_bytes, tok_expert_bytes, floor_tps, fraction);
        printf("  \"bytes_per_token_parts\": {\"embedding\": %.0f", tok_embed);
        for (int c = 0; c < R1_PROFILE_N_CLASSES; c++)
            printf(", \"%s\": %.0f", r1_bench_class_names[c], tok_part[c]);
        printf("},\n");
        printf("  \"load_balance\": {\"moe_layers\": %lld, \"mean_max_over_mean\": %.3f, "
               "\"worst_max_over_mean\": %.3f, \"mean_cv\": %.3f, \"per_layer\": [",
               (long long)n_moe, mean_max, worst, mean_cv);
        int first = 1;
        for (int64_t l = 0; l < info.n_layers && info.n_routed_experts > 0; l++) {
            r1_balance b =
                r1_layer_balance(pp_counts + l * info.n_routed_experts, info.n_routed_experts);
            if (b.total == 0)
                continue;
            printf("%s{\"layer\": %lld, \"max_over_mean\": %.3f, \"min_over_mean\": %.3f, "
                   "\"cv\": %.3f, \"unused\": %lld}",
                   first ? "" : ", ", (long long)l, b.max_over_mean, b.min_over_mean, b.cv,
                   (long long)b.unused);
            first = 0;
        }
        printf("]},\n  \"profile_ms_per_token\": {\n");
        r1_bench_json_profile("pp", &pp, 0);
        r1_bench_json_profile("tg", &tg, 1);
        printf("  }\n}\n");
    } else {
        printf("model: %s (%s, %lld layers, experts %s, %.2f GB), %d thread%s, %lld reps\n", base,
               info.architecture_name, (long long)info.n_layers, info.expert_dtype,
               (double)info.file_bytes / 1e9, n_threads, n_threads == 1 ? "" : "s",
               (long long)reps);
        printf("memory bandwidth (triad, %d thread%s): %.2f GB/s median, %.2f best before the "
               "runs, %.2f best after\n",
               n_threads, n_threads == 1 ? "" : "s", bw / 1e9, bw_best_before / 1e9,
               bw_best_after / 1e9);
        printf("OpenBLAS kernels: %s\n\n", r1_bench_blas_core());
        printf("| test     | tokens/s (median) |      min |      max |\n");
        printf("|----------|-------------------|----------|----------|\n");
        char label[48];
        if (pp.ran) {
            snprintf(label, sizeof label, depth ? "pp%lld @ d%lld" : "pp%lld", (long long)n_prompt,
                     (long long)depth);
            printf("| %-8s | %17.2f | %8.2f | %8.2f |\n", label, pp.tps_median, pp.tps_min,
                   pp.tps_max);
        }
        if (tg.ran) {
            snprintf(label, sizeof label, depth ? "tg%lld @ d%lld" : "tg%lld", (long long)n_gen,
                     (long long)depth);
            printf("| %-8s | %17.2f | %8.2f | %8.2f |\n", label, tg.tps_median, tg.tps_min,
                   tg.tps_max);
        }
        if (bt.ran) {
            snprintf(label, sizeof label, "tg%lld x%lld", (long long)n_gen, (long long)batch);
            printf("| %-8s | %17.2f | %8.2f | %8.2f |\n", label, bt.tps_median, bt.tps_min,
                   bt.tps_max);
            printf("\n%lld sequences together: %.2f tokens/s in all, %.2f each; %.2fx one "
                   "sequence's tg\n",
                   (long long)batch, bt.tps_median, bt.tps_median / (double)batch,
                   tg.tps_median > 0 ? bt.tps_median / tg.tps_median : 0);
            if (bt.prof.n_tokens)
                printf("weights read per decoded token with %lld together: %.1f MB (routed "
                       "experts %.1f MB)\n",
                       (long long)batch,
                       (double)bt.prof.weight_bytes / (double)bt.prof.n_tokens / 1e6,
                       (double)bt.prof.expert_bytes / (double)bt.prof.n_tokens / 1e6);
        }
        if (depth > 0)
            printf("\ndepth: %lld tokens in the cache before each repetition (filled once in "
                   "%.1f s, untimed)\n",
                   (long long)depth, fill_sec);
        if (tg.ran) {
            printf("\nweights read per decoded token: %.1f MB (routed experts %.1f MB)\n",
                   tok_bytes / 1e6, tok_expert_bytes / 1e6);
            printf("  by part, MB: embedding row %.3f, attention %.1f, dense MLP %.1f, router "
                   "%.1f, shared experts %.1f, routed experts %.1f, head %.1f, other %.1f\n",
                   tok_embed / 1e6, tok_part[R1_PROFILE_ATTENTION] / 1e6,
                   tok_part[R1_PROFILE_DENSE_MLP] / 1e6, tok_part[R1_PROFILE_ROUTER] / 1e6,
                   tok_part[R1_PROFILE_SHARED] / 1e6, tok_part[R1_PROFILE_EXPERTS] / 1e6,
                   tok_part[R1_PROFILE_HEAD] / 1e6, tok_part[R1_PROFILE_OTHER] / 1e6);
            printf("bandwidth floor: %.2f tokens/s; tg reaches %.1f%% of it\n", floor_tps,
                   100.0 * fraction);
        }
        if (pp.misses + tg.misses)
            printf("expert-store misses during timed runs: pp %llu, tg %llu\n",
                   (unsigned long long)pp.misses, (unsigned long long)tg.misses);
        for (int ph = 0; ph < 2; ph++) {
            const r1_bench_result *r = ph ? &tg : &pp;
            if (!r->ran || r->prof.n_tokens == 0 || r->store.misses + r->store.prefetch_issued == 0)
                continue;
            const double per = 1.0 / (double)r->prof.n_tokens;
            printf("expert streaming, %s: waiting for expert data %.3f ms per token; prefetch "
                   "%llu issued, %llu used, recall %.1f%%, waste %.1f%% (%.2f MB per token)\n",
                   ph ? "tg" : "pp", (double)r->store.stall_ns * per / 1e6,
                   (unsigned long long)r->store.prefetch_issued,
                   (unsigned long long)r->store.prefetch_used, 100.0 * r1_bench_recall(&r->store),
                   100.0 * r1_bench_waste(&r->store, &info),
                   (double)r->store.prefetch_wasted_bytes * per / 1e6);
        }
        if (n_moe)
            printf("expert load balance over %lld MoE layers (tokens per expert, max/mean): "
                   "mean %.2f, worst %.2f; mean coefficient of variation %.2f\n",
                   (long long)n_moe, mean_max, worst, mean_cv);
        if (profile) {
            r1_bench_print_profile("pp", &pp);
            r1_bench_print_profile("tg", &tg);
            if (n_moe) {
                printf("\nload balance per layer (pp + tg): max/mean min/mean cv unused\n");
                for (int64_t l = 0; l < info.n_layers; l++) {
                    r1_balance b = r1_layer_balance(pp_counts + l * info.n_routed_experts,
                                                    info.n_routed_experts);
                    if (b.total)
                        printf("  layer %2lld  %5.2f  %5.2f  %5.2f  %lld\n", (long long)l,
                               b.max_over_mean, b.min_over_mean, b.cv, (long long)b.unused);
                }
            }
        }
    }
    rc = 0;
done:
    r1_session_destroy(s);
    r1_session_opts_destroy(so);
    r1_model_destroy(model);
    r1_model_opts_destroy(mo);
    free(ids);
    free(pp_counts);
    free(tg_counts);
    return rc;
}
