/* ballast.c: holds memory that the kernel cannot take back, so a benchmark sees a machine with
 * less memory than it has (test/bench/beyond_ram.py, docs/performance.md "Beyond RAM").
 *
 * usage: ballast --leave BYTES | --bytes BYTES
 *
 * --leave grows the ballast until /proc/meminfo's MemAvailable is about BYTES; --bytes holds
 * exactly BYTES. Each chunk is mlock()ed when RLIMIT_MEMLOCK allows it; otherwise every page is
 * written, which on a machine without swap pins it just as well (anonymous memory that has
 * been written has nowhere else to go). Prints one "ballast: ready ..." line once the memory is
 * held, then sleeps until SIGTERM or SIGINT. Its oom_score_adj is raised to 1000 so that, if
 * something else on the machine needs the memory, the kernel kills the ballast first rather
 * than the benchmark or a neighbour. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* also set by the meson build */
#endif
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define CHUNK_BYTES ((uint64_t)256 << 20)
#define SLACK_BYTES ((uint64_t)32 << 20)
#define MAX_CHUNKS  4096

/* A /proc/meminfo field in bytes, or -1. */
static int64_t meminfo_bytes(const char *field)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    int64_t v = -1;
    size_t n = strlen(field);
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtoll(line + n + 1, NULL, 10) * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* "8G", "512M", "1048576": bytes (K/M/G/T are powers of 1024), or -1. */
static int64_t parse_bytes(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K': shift = 10; break;
    case 'm':
    case 'M': shift = 20; break;
    case 'g':
    case 'G': shift = 30; break;
    case 't':
    case 'T': shift = 40; break;
    case 0: break;
    default: return -1;
    }
    if (*end && end[1] != 0 && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
        return -1;
    if (!(v >= 0) || v * (double)((uint64_t)1 << shift) > 9e18)
        return -1;
    return (int64_t)(v * (double)((uint64_t)1 << shift));
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: ballast --leave BYTES | --bytes BYTES   (BYTES: 123, 64M, 8G)\n");
}

int main(int argc, char **argv)
{
    int64_t leave = -1, fixed = -1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--leave"))
            leave = parse_bytes(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--bytes"))
            fixed = parse_bytes(argv[++i]);
        else {
            usage();
            return 2;
        }
        if (leave == -1 && fixed == -1) {
            fprintf(stderr, "ballast: bad size '%s'\n", argv[i]);
            return 2;
        }
    }
    if ((leave < 0) == (fixed < 0)) {
        usage();
        return 2;
    }
    if (leave >= 0 && leave < ((int64_t)256 << 20)) {
        fprintf(stderr, "ballast: --leave below 256 MiB would starve the machine\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* Killed first by the OOM killer: the ballast is the one process here nobody needs. */
    FILE *adj = fopen("/proc/self/oom_score_adj", "w");
    int adj_ok = adj != NULL && fputs("1000\n", adj) >= 0;
    if (adj != NULL)
        adj_ok &= fclose(adj) == 0;

    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    const int64_t swap = meminfo_bytes("SwapTotal");
    const int64_t avail0 = meminfo_bytes("MemAvailable");
    if (avail0 < 0) {
        fprintf(stderr, "ballast: cannot read MemAvailable from /proc/meminfo\n");
        return 1;
    }

    static void *chunks[MAX_CHUNKS];
    static uint64_t chunk_bytes[MAX_CHUNKS];
    int n_chunks = 0, mlock_errno = 0;
    uint64_t held = 0, locked = 0, written = 0;
    const long page = sysconf(_SC_PAGESIZE);
    while (!stop && n_chunks < MAX_CHUNKS) {
        uint64_t want;
        if (fixed >= 0) {
            if (held >= (uint64_t)fixed)
                break;
            want = (uint64_t)fixed - held;
        } else {
            /* MemAvailable counts reclaimable page cache, so it already shows what the
             * kernel would give up; re-read after each chunk since that moves. */
            int64_t avail = meminfo_bytes("MemAvailable");
            if (avail < 0 || (uint64_t)avail <= (uint64_t)leave + SLACK_BYTES)
                break;
            want = (uint64_t)avail - (uint64_t)leave;
        }
        want = want < CHUNK_BYTES ? want : CHUNK_BYTES;
        want = (want + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
        void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "ballast: mmap of %llu bytes: %s\n", (unsigned long long)want,
                    strerror(errno));
            break;
        }
        /* Written in every case: mlock() of fresh anonymous memory would fault it in as
         * the shared zero page on some kernels, and a write makes each page its own. */
        for (uint64_t off = 0; off < want; off += (uint64_t)page)
            ((volatile unsigned char *)p)[off] = 0xA5;
        written += want;
        if (mlock_errno == 0) {
            if (mlock(p, want) == 0)
                locked += want;
            else
                mlock_errno = errno;
        }
        chunk_bytes[n_chunks] = want;
        chunks[n_chunks++] = p;
        held += want;
    }

    const int64_t avail1 = meminfo_bytes("MemAvailable");
    if (locked == held)
        printf("ballast: mlock: all %llu bytes locked\n", (unsigned long long)held);
    else
        printf("ballast: mlock: %s after %llu bytes (RLIMIT_MEMLOCK %llu bytes); the rest "
               "is pinned by having written every page%s\n",
               strerror(mlock_errno), (unsigned long long)locked, (unsigned long long)rl.rlim_cur,
               swap > 0 ? " -- BUT this machine has swap, so written pages can be swapped out"
                        : " (no swap: written anonymous pages cannot be reclaimed)");
    printf("ballast: oom_score_adj 1000: %s\n", adj_ok ? "set" : "not set");
    printf("ballast: ready: held %llu bytes (%.2f GiB; mlocked %llu, written %llu), "
           "MemAvailable %lld -> %lld bytes (%.2f GiB), SwapTotal %lld, pid %ld\n",
           (unsigned long long)held, (double)held / (1 << 30), (unsigned long long)locked,
           (unsigned long long)written, (long long)avail0, (long long)avail1,
           (double)avail1 / (1 << 30), (long long)swap, (long)getpid());
    fflush(stdout);
    /* Signals blocked between the test and the wait, so one arriving in between is not lost. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    while (!stop)
        sigsuspend(&old);
    for (int i = 0; i < n_chunks; i++)
        munmap(chunks[i], chunk_bytes[i]);
    return 0;
}
