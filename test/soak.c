/* soak.c: generates many tokens on one model and session (resetting or truncating the context
 * when it fills) and samples the resident set every 1,000 tokens: memory must not grow. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "r1.h"

enum { SAMPLE_EVERY = 1000, CONTEXT = 256 };

static const char usage[] =
    "usage: soak MODEL.r1m [--tokens N] [--max-growth-pct P] [--check-heap | --report-only]\n"
    "Generates N tokens (default 100000) on MODEL, answering one arithmetic question after\n"
    "another in a %d-token context (reset or truncated by turns when it fills), and\n"
    "prints the resident set size every %d tokens. Exits 1 when the RSS after the last sample\n"
    "exceeds the RSS after the first by more than P percent (default 1). --check-heap judges\n"
    "the bytes malloc'd and not freed instead (glibc): exact where the RSS of a short run moves\n"
    "with pages first touched late (code, OpenBLAS's per-thread buffers); --report-only judges\n"
    "nothing (sanitizer builds, whose allocators quarantine freed memory).\n";

/* The resident set, and its part that is not file-backed (shared library code, the model's
 * mapping): the memory the process itself holds. */
static uint64_t rss_bytes(uint64_t *anon_bytes)
{
    unsigned long long size = 0, resident = 0, shared = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu %llu", &size, &resident, &shared) != 3)
        resident = shared = 0;
    fclose(f);
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    *anon_bytes = (uint64_t)(resident - shared) * page;
    return (uint64_t)resident * page;
}

/* Bytes the process has allocated and not freed (glibc), to tell a leak from page faults; and
 * the heap malloc has taken from the system, whose high-water mark stays resident. */
static double heap_in_use_mib(void)
{
#ifdef __GLIBC__
    struct mallinfo2 mi = mallinfo2();
    return (double)(mi.uordblks + mi.hblkhd) / 1048576.0;
#else
    return -1.0;
#endif
}

static double heap_arena_mib(void)
{
#ifdef __GLIBC__
    struct mallinfo2 mi = mallinfo2();
    return (double)(mi.arena + mi.hblkhd) / 1048576.0;
#else
    return -1.0;
#endif
}

static int fail(const char *what, r1_status st)
{
    fprintf(stderr, "soak: %s: %s (%s)\n", what, r1_last_error(), r1_status_name(st));
    return 2;
}

int main(int argc, char **argv)
{
    long long total = 100000;
    double max_growth_pct = 1.0;
    int report_only = 0, check_heap = 0;
    const char *model_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc)
            total = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--max-growth-pct") == 0 && i + 1 < argc)
            max_growth_pct = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--report-only") == 0)
            report_only = 1;
        else if (strcmp(argv[i], "--check-heap") == 0)
            check_heap = 1;
        else if (argv[i][0] != '-' && model_path == NULL)
            model_path = argv[i];
        else {
            fprintf(stderr, usage, CONTEXT, SAMPLE_EVERY);
            return 2;
        }
    }
    if (model_path == NULL || total < 2 * SAMPLE_EVERY) {
        fprintf(stderr, usage, CONTEXT, SAMPLE_EVERY);
        return 2;
    }
    r1_model *m = NULL;
    r1_session *s = NULL;
    r1_session_opts *so = NULL;
    r1_sampler *smp = NULL;
    r1_status st;
    if ((st = r1_model_load(&m, model_path, NULL, NULL)) != R1_OK)
        return fail("load", st);
    if ((st = r1_session_opts_create(&so)) != R1_OK ||
        (st = r1_session_opts_set_context(so, CONTEXT)) != R1_OK ||
        (st = r1_session_create(&s, m, so)) != R1_OK)
        return fail("session", st);
    r1_session_opts_destroy(so);
    if ((st = r1_sampler_create(&smp, 7)) != R1_OK)
        return fail("sampler", st);

    uint64_t first_rss = 0, last_rss = 0, first_anon = 0, last_anon = 0;
    double first_heap = 0;
    int full = 0;
    long long generated = 0, questions = 0, resets = 0, truncations = 0;
    while (generated < total) {
        /* a new question each time, so that the router picks other experts */
        char prompt[128];
        int len =
            snprintf(prompt, sizeof prompt, "<|User|>What is %lld + %lld?<|Assistant|><think>\n",
                     100 + (questions * 37) % 900, 10 + (questions * 53) % 990);
        /* One conversation goes on question after question until the context is nearly full;
         * then it starts afresh (reset) or keeps only its first half (truncation), by turns. */
        const int32_t pos = r1_session_position(s);
        if (pos >= CONTEXT - CONTEXT / 4 || full) {
            if ((resets + truncations) % 2 == 0) {
                st = r1_session_reset(s);
                resets++;
            } else {
                st = r1_session_truncate(s, pos / 2);
                truncations++;
            }
            if (st != R1_OK)
                return fail("make room", st);
            full = 0;
        }
        const int32_t prompt_start = r1_session_position(s);
        questions++;
        if ((st = r1_session_feed_text(s, prompt, (size_t)len, R1_TOKENIZE_PARSE_SPECIAL)) !=
                R1_OK ||
            (st = r1_session_begin(s, smp, NULL)) != R1_OK)
            return fail("begin", st);
        int32_t id, kind;
        while (generated < total && (st = r1_session_step(s, &id, &kind)) == R1_OK) {
            if (id < 0)
                continue; /* prompt progress */
            generated++;
            if (generated % SAMPLE_EVERY == 0) {
                last_rss = rss_bytes(&last_anon);
                if (first_rss == 0) {
                    first_rss = last_rss;
                    first_anon = last_anon;
                    first_heap = heap_in_use_mib();
                }
                r1_expert_cache_stats ec = {.struct_size = sizeof ec};
                r1_model_get_expert_cache_stats(m, &ec);
                printf("tokens %7lld  rss %8.3f MiB (anonymous %8.3f)  heap in use %8.3f MiB of "
                       "%8.3f  expert cache %8.3f MiB (%" PRIu64 " misses)\n",
                       generated, (double)last_rss / 1048576.0, (double)last_anon / 1048576.0,
                       heap_in_use_mib(), heap_arena_mib(), (double)ec.current_bytes / 1048576.0,
                       ec.misses);
                fflush(stdout);
            }
        }
        if (st == R1_ERR_CONTEXT_FULL) {
            /* an answer that did not fit: dropped, back to where its question began */
            if ((st = r1_session_truncate(s, prompt_start)) != R1_OK)
                return fail("truncate", st);
            truncations++;
            full = 1;
        } else if (st != R1_OK && st != R1_DONE) {
            return fail("step", st);
        }
    }
    double growth = 100.0 * ((double)last_rss - (double)first_rss) / (double)first_rss;
    const double heap_last = heap_in_use_mib();
    const double anon_growth =
        100.0 * ((double)last_anon - (double)first_anon) / (double)first_anon;
    printf("%lld tokens, %lld questions, %lld resets, %lld truncations: rss after %d tokens "
           "%.3f MiB, after %lld %.3f MiB (%+.3f %%); anonymous %.3f -> %.3f MiB (%+.3f %%); "
           "heap in use %.3f -> %.3f MiB\n",
           generated, questions, resets, truncations, SAMPLE_EVERY, (double)first_rss / 1048576.0,
           generated, (double)last_rss / 1048576.0, growth, (double)first_anon / 1048576.0,
           (double)last_anon / 1048576.0, anon_growth, first_heap, heap_last);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
    const double heap_growth = 100.0 * (heap_last - first_heap) / first_heap;
    if (!report_only && !check_heap && growth > max_growth_pct) {
        fprintf(stderr, "soak: the resident set grew by %.3f %% (limit %.3f %%)\n", growth,
                max_growth_pct);
        return 1;
    }
    if (!report_only && check_heap && !(heap_growth <= max_growth_pct)) {
        fprintf(stderr, "soak: the heap in use grew by %.3f %% (limit %.3f %%)\n", heap_growth,
                max_growth_pct);
        return 1;
    }
    return 0;
}
