/* drop_file_cache.c: evicts files from the page cache (posix_fadvise DONTNEED) and reports, with
 * mincore(), how many of their pages were resident before and after; for benchmarks that must
 * start cold where /proc/sys/vm/drop_caches is not writable (test/bench/beyond_ram.py).
 *
 * usage: drop_file_cache [--report-only] FILE...
 *
 * One line per file: "FILE: resident before R0 of N pages (MB), after R1 (MB)". Exit status 1
 * when a file cannot be read or when pages stay resident afterwards (a process still maps them,
 * or the file system ignores the advice), so a caller knows the run would not start cold. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* also set by the meson build */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Resident pages of the open file fd of size bytes (mapped without touching), or -1. */
static int64_t resident_pages(int fd, uint64_t size, uint64_t *n_pages_out)
{
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    const uint64_t n_pages = (size + page - 1) / page;
    *n_pages_out = n_pages;
    if (size == 0)
        return 0;
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return -1;
    unsigned char *vec = malloc(n_pages);
    int64_t resident = -1;
    if (vec != NULL && mincore(map, size, vec) == 0) {
        resident = 0;
        for (uint64_t i = 0; i < n_pages; i++)
            resident += vec[i] & 1;
    }
    free(vec);
    munmap(map, size);
    return resident;
}

int main(int argc, char **argv)
{
    int report_only = 0, rc = 0, n_files = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--report-only")) {
            report_only = 1;
            continue;
        }
        n_files++;
        const char *path = argv[i];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            fprintf(stderr, "drop_file_cache: %s: %s\n", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            rc = 1;
            continue;
        }
        const double page_mb = (double)sysconf(_SC_PAGESIZE) / 1e6;
        uint64_t n_pages = 0;
        int64_t before = resident_pages(fd, (uint64_t)st.st_size, &n_pages), after = before;
        if (!report_only) {
            /* Dirty pages are not dropped, so write them back first. */
            fdatasync(fd);
            int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            if (err != 0) {
                fprintf(stderr, "drop_file_cache: %s: posix_fadvise: %s\n", path, strerror(err));
                rc = 1;
            }
            after = resident_pages(fd, (uint64_t)st.st_size, &n_pages);
        }
        close(fd);
        if (before < 0 || after < 0) {
            fprintf(stderr, "drop_file_cache: %s: mincore failed\n", path);
            rc = 1;
            continue;
        }
        if (report_only)
            printf("%s: resident %lld of %llu pages (%.1f MB)\n", path, (long long)before,
                   (unsigned long long)n_pages, (double)before * page_mb);
        else
            printf("%s: resident before %lld of %llu pages (%.1f MB), after %lld (%.1f MB)\n", path,
                   (long long)before, (unsigned long long)n_pages, (double)before * page_mb,
                   (long long)after, (double)after * page_mb);
        if (!report_only && after > 0)
            rc = 1;
    }
    if (n_files == 0) {
        fprintf(stderr, "usage: drop_file_cache [--report-only] FILE...\n");
        return 2;
    }
    return rc;
}
