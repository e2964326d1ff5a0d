/* cli_args.c: argument helpers shared by the r1 subcommands. */
#include "cli_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_memory.h"

const char *r1_cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "r1: option %s needs a value, and none was given\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int r1_cli_parse_int(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "r1: %s takes a whole number from %lld to %lld, not '%s'\n", opt,
                (long long)min, (long long)max, text);
        return -1;
    }
    *out = v;
    return 0;
}

int r1_cli_parse_u64(const char *opt, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    /* strtoull accepts "-1" as 2^64 - 1: only digits are allowed */
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || errno != 0 || *end != '\0') {
        fprintf(stderr, "r1: %s takes a whole number from 0 to %llu, not '%s'\n", opt,
                (unsigned long long)UINT64_MAX, text);
        return -1;
    }
    *out = v;
    return 0;
}

char *r1_cli_read_all(const char *path, size_t *len)
{
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "r1: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *grown = cap <= SIZE_MAX / 2 - 1 ? realloc(buf, (cap *= 2) + 1) : NULL;
            if (grown == NULL)
                free(buf);
            buf = grown;
        }
    }
    if (buf == NULL) {
        fprintf(stderr, "r1: out of memory reading '%s'\n", path);
    } else if (ferror(f)) {
        fprintf(stderr, "r1: cannot read '%s': %s\n", is_stdin ? "standard input" : path,
                strerror(errno));
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0'; /* for callers that need a C string (they check for inner NULs) */
    }
    if (!is_stdin)
        fclose(f);
    *len = n;
    return buf;
}

int64_t r1_cli_parse_count(const char *opt, const char *text)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0) {
        fprintf(stderr, "r1: %s expects a non-negative integer, not '%s'\n", opt, text);
        return -1;
    }
    return v;
}

int64_t r1_cli_parse_ids(const char *text, int32_t **ids_out)
{
    int64_t n = 0, cap = 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    const char *p = text;
    while (ids != NULL) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno != 0 || end == p || v < INT32_MIN || v > INT32_MAX ||
            (*end != ',' && *end != '\0')) {
            fprintf(stderr, "r1: malformed token list at '%s' (expected ids like 1,2,3)\n", p);
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (grown == NULL)
                break;
            ids = grown;
        }
        ids[n++] = (int32_t)v;
        if (*end == '\0') {
            *ids_out = ids;
            return n;
        }
        p = end + 1;
    }
    free(ids);
    fprintf(stderr, "r1: out of memory reading the token list\n");
    return -1;
}

const char *r1_cli_default_model(void)
{
    const char *env = getenv("R1_MODEL");
    if (env != NULL && *env)
        return env;
    if (access(R1_INSTALLED_MODEL, R_OK) == 0)
        return R1_INSTALLED_MODEL;
    return R1_SOURCE_MODEL;
}

r1_model *r1_cli_load_model(const char *path, int32_t n_threads, const char *backend,
                            const char *device)
{
    if (path == NULL)
        path = r1_cli_default_model();
    r1_model_opts *o = NULL;
    r1_model *m = NULL;
    r1_status st = r1_model_opts_create(&o);
    if (st == R1_OK)
        st = r1_model_opts_set_threads(o, n_threads);
    if (st == R1_OK && backend != NULL)
        st = r1_model_opts_set_backend(o, backend);
    if (st == R1_OK && device != NULL)
        st = r1_model_opts_set_device(o, device);
    if (st == R1_OK)
        st = r1_cli_memory_apply(o);
    if (st == R1_OK)
        st = r1_model_load(&m, path, NULL, o);
    if (st != R1_OK)
        fprintf(stderr, "r1: cannot load model '%s': %s\n", path, r1_last_error());
    r1_model_opts_destroy(o);
    return m;
}
