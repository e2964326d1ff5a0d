/* bench_open.c: time and memory of r1_model_load() + r1_model_get_info() + r1_model_destroy()
 * on .r1m files (built, run by hand; numbers in docs/performance.md).
 *
 * Usage: bench_open [--reps N] [--cold] MODEL.r1m...
 *   --reps N  loads per model (default 5); the median, min and max wall times are printed
 *   --cold    before every load: sync and write 3 to /proc/sys/vm/drop_caches (needs root),
 *             so the header, metadata and index come from the disk, not the page cache
 * Per model it prints the file size, the load times, and the growth of the process's resident
 * memory (VmRSS, split into anonymous and file-backed) measured right after the first load. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "r1.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* kB of "key:" in /proc/self/status, or -1. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = atol(line + n + 1);
            break;
        }
    fclose(f);
    return v;
}

static int drop_caches(void)
{
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (!f || fputs("3\n", f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "bench_open: cannot write /proc/sys/vm/drop_caches (root needed)\n");
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int reps = 5, cold = 0, first = 1;
    while (first < argc && argv[first][0] == '-') {
        if (!strcmp(argv[first], "--reps") && first + 1 < argc) {
            reps = atoi(argv[first + 1]);
            first += 2;
        } else if (!strcmp(argv[first], "--cold")) {
            cold = 1;
            first++;
        } else {
            break;
        }
    }
    if (first >= argc || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: bench_open [--reps N] [--cold] MODEL.r1m...\n");
        return 2;
    }
    printf("%-28s %10s %10s %9s %9s %9s %9s %9s %6s %s\n", "model", "file_MB", "dense_MB", "med_ms",
           "min_ms", "max_ms", "dRSS_kB", "anon_kB", "blobs", "expert_dtype");
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!t)
        return 1;
    for (int m = first; m < argc; m++) {
        r1_model_info info;
        long d_rss = 0, d_anon = 0;
        for (int r = 0; r < reps; r++) {
            if (cold && drop_caches() != 0)
                return 1;
            long rss0 = status_kb("VmRSS"), anon0 = status_kb("RssAnon");
            r1_model *model = NULL;
            double t0 = now_ms();
            r1_status st = r1_model_load(&model, argv[m], NULL, NULL);
            if (st == R1_OK) {
                memset(&info, 0, sizeof info);
                info.struct_size = sizeof info;
                st = r1_model_get_info(model, &info);
            }
            double t1 = now_ms();
            if (st != R1_OK) {
                fprintf(stderr, "bench_open: %s: %s: %s\n", argv[m], r1_status_name(st),
                        r1_last_error());
                return 1;
            }
            if (r == 0) {
                d_rss = status_kb("VmRSS") - rss0;
                d_anon = status_kb("RssAnon") - anon0;
            }
            r1_model_destroy(model);
            t[r] = now_ms() - t0; /* load + get_info + destroy */
            (void)t1;
        }
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        const char *base = strrchr(argv[m], '/');
        base = base ? base + 1 : argv[m];
        printf("%-28s %10.1f %10.1f %9.3f %9.3f %9.3f %9ld %9ld %6llu %s\n", base,
               (double)info.file_bytes / 1e6, (double)info.dense_bytes / 1e6, t[reps / 2], t[0],
               t[reps - 1], d_rss, d_anon, (unsigned long long)info.n_expert_blobs,
               info.expert_dtype);
        fflush(stdout);
    }
    free(t);
    return 0;
}
