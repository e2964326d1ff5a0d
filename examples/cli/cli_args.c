/* cli_args.c: argument helpers shared by the r1 subcommands. */
#include "cli_args.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

const char *r1_cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "r1: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
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
        st = r1_model_load(&m, path, NULL, o);
    if (st != R1_OK)
        fprintf(stderr, "r1: cannot load model '%s': %s\n", path, r1_last_error());
    r1_model_opts_destroy(o);
    return m;
}
