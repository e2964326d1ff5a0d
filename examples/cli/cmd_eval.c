/* cmd_eval.c: `r1 eval`: logits of every position of a token list, for comparison with any
 * reference implementation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_gen.h"
#include "cli_memory.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_eval_usage(FILE *to)
{
    fprintf(to, "usage: r1 eval -m MODEL (--tokens ID,ID,... | --tokens-file FILE)\n"
                "               --logits OUT.f32 [--decode]\n"
                "               [--backend NAME] [--device ID] [--threads N]\n"
                "               [--expert-ram B|auto] [--device-expert-ram B|auto]\n\n"
                "Evaluates the tokens and writes the logits of every position to OUT.f32 as\n"
                "little-endian float32, one row of vocab_size values per position.\n\n"
                "  -m, --model PATH   the .r1m model\n"
                "  --tokens LIST      comma-separated token ids\n"
                "  --tokens-file FILE the same list read from FILE (-: standard input), for\n"
                "                     lists longer than the command line allows\n"
                "  --logits PATH      output file, written whole or not at all\n"
                "  --decode           feed the tokens one at a time through the cache\n"
                "                     (default: one prefill call)\n"
                "  --backend NAME     compute backend (default cpu)\n"
                "  --device ID        the backend's device: an index or part of its name\n"
                "  --threads N        CPU threads (default: one per core)\n");
    r1_cli_memory_usage(to);
}

static int r1_eval_fail(const char *what)
{
    fprintf(stderr, "r1 eval: %s: %s\n", what, r1_last_error());
    return 1;
}

/* Where the logits go: a temporary file beside the target, renamed over it on success, so an
 * error leaves neither a partial file nor a damaged previous one (tmp_path set). A target that
 * exists and is not a regular file (a pipe, /dev/stdout) is written in place (tmp_path ""),
 * never replaced; a symbolic link is followed, so its target gets the result. */
static FILE *r1_eval_open_output(const char *out_path, char *tmp_path, char *final_path, size_t cap)
{
    struct stat sb;
    char *real = NULL;
    if (stat(out_path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        FILE *f = fopen(out_path, "wb");
        if (f == NULL)
            fprintf(stderr, "r1 eval: cannot open '%s': %s\n", out_path, strerror(errno));
        return f;
    }
    const char *target = out_path;
    if (lstat(out_path, &sb) == 0 && S_ISLNK(sb.st_mode) &&
        (real = realpath(out_path, NULL)) != NULL)
        target = real;
    FILE *f = NULL;
    if (snprintf(tmp_path, cap, "%s.tmp-XXXXXX", target) >= (int)cap) {
        fprintf(stderr, "r1 eval: the path '%s' is too long\n", target);
    } else {
        int fd = mkstemp(tmp_path);
        if (fd < 0) {
            fprintf(stderr, "r1 eval: cannot create '%s': %s\n", tmp_path, strerror(errno));
        } else {
            mode_t mask = umask(0); /* mkstemp made it 0600: give it fopen's permissions */
            umask(mask);
            fchmod(fd, 0666 & ~mask);
            if ((f = fdopen(fd, "wb")) == NULL) {
                fprintf(stderr, "r1 eval: %s\n", strerror(errno));
                close(fd);
                unlink(tmp_path);
            }
        }
    }
    if (f == NULL)
        tmp_path[0] = '\0';
    snprintf(final_path, cap, "%s", target); /* a link's target: the link itself stays */
    free(real);
    return f;
}

int r1_cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *tokens = NULL, *tokens_file = NULL, *out_path = NULL,
               *backend = NULL, *device = NULL;
    int decode = 0, mem;
    int64_t threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--tokens")) {
            if (!(tokens = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--tokens-file")) {
            if (!(tokens_file = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--logits")) {
            if (!(out_path = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--backend")) {
            if (!(backend = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--device")) {
            if (!(device = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--threads")) {
            const char *v = r1_cli_value(argc, argv, &i);
            if (!v || r1_cli_parse_int(a, v, 0, 1024, &threads) != 0)
                return 2;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if ((mem = r1_cli_memory_option(argc, argv, &i)) != 0) {
            if (mem < 0)
                return 2;
        } else {
            fprintf(stderr, "r1 eval: unknown option '%s'\n\n", a);
            r1_cmd_eval_usage(stderr);
            return 2;
        }
    }
    if (!model_path || (tokens == NULL) == (tokens_file == NULL) || !out_path) {
        r1_cmd_eval_usage(stderr);
        return 2;
    }
    char *owned = NULL;
    if (tokens_file != NULL) {
        size_t len;
        if ((owned = r1_cli_read_all(tokens_file, &len)) == NULL)
            return 1;
        while (len > 0 &&
               (owned[len - 1] == '\n' || owned[len - 1] == '\r' || owned[len - 1] == ' '))
            owned[--len] = '\0'; /* a file usually ends with a newline */
        tokens = owned;
    }
    int32_t *ids = NULL;
    int64_t n = r1_cli_parse_ids(tokens, &ids);
    free(owned);
    if (n <= 0)
        return 2;
    if (n > INT32_MAX) {
        fprintf(stderr, "r1 eval: %lld tokens are more than a context can hold\n", (long long)n);
        free(ids);
        return 2;
    }

    int rc = 1;
    r1_model_opts *mo = NULL;
    r1_model *model = NULL;
    r1_session_opts *so = NULL;
    r1_session *s = NULL;
    FILE *out = NULL;
    char tmp_path[4200] = "", final_path[4200];
    r1_cli_catch_interrupts(1);
    r1_cli_mem.context = (int32_t)n; /* the session's context: auto leaves KV room for it */
    if (r1_model_opts_create(&mo) != R1_OK ||
        r1_model_opts_set_threads(mo, (int32_t)threads) != R1_OK ||
        (backend && r1_model_opts_set_backend(mo, backend) != R1_OK) ||
        (device && r1_model_opts_set_device(mo, device) != R1_OK) ||
        r1_cli_memory_apply(mo) != R1_OK) {
        rc = r1_eval_fail("options");
        goto done;
    }
    if (r1_model_load(&model, model_path, NULL, mo) != R1_OK) {
        rc = r1_eval_fail(model_path);
        goto done;
    }
    if (r1_session_opts_create(&so) != R1_OK ||
        r1_session_opts_set_context(so, (int32_t)n) != R1_OK ||
        r1_session_opts_set_logits_all(so, !decode) != R1_OK ||
        r1_session_create(&s, model, so) != R1_OK) {
        rc = r1_eval_fail("session");
        goto done;
    }
    if ((out = r1_eval_open_output(out_path, tmp_path, final_path, sizeof tmp_path)) == NULL)
        goto done;
    const float *row = NULL;
    size_t vocab = 0;
    if (!decode) {
        if (r1_session_eval(s, ids, (size_t)n) != R1_OK) {
            rc = r1_eval_fail("eval");
            goto done;
        }
    }
    for (int64_t t = 0; t < n; t++) {
        if (r1_cli_interrupted) { /* Ctrl-C: stop here and remove the temporary file */
            fprintf(stderr, "r1 eval: interrupted\n");
            goto done;
        }
        if (decode && r1_session_eval(s, ids + t, 1) != R1_OK) {
            rc = r1_eval_fail("eval");
            goto done;
        }
        if (r1_session_logits(s, decode ? -1 : (int32_t)t, &row, &vocab) != R1_OK) {
            rc = r1_eval_fail("logits");
            goto done;
        }
        /* x86-64 and every platform libr1 builds for are little-endian. */
        if (fwrite(row, sizeof(float), vocab, out) != vocab) {
            perror(out_path);
            goto done;
        }
    }
    if (fflush(out) != 0 || (tmp_path[0] && fsync(fileno(out)) != 0)) {
        perror(out_path);
        goto done;
    }
    int closed = fclose(out);
    out = NULL;
    if (closed != 0) {
        perror(out_path);
        goto done;
    }
    if (tmp_path[0] && rename(tmp_path, final_path) != 0) {
        fprintf(stderr, "r1 eval: cannot rename '%s' to '%s': %s\n", tmp_path, out_path,
                strerror(errno));
        goto done;
    }
    tmp_path[0] = '\0';
    fprintf(stderr, "r1 eval: %lld positions x %zu logits -> %s\n", (long long)n, vocab, out_path);
    rc = 0;
done:
    if (out != NULL)
        fclose(out);
    if (tmp_path[0]) /* failed: no partial logits file, and the previous one (if any) stays */
        unlink(tmp_path);
    r1_session_destroy(s);
    r1_session_opts_destroy(so);
    r1_model_destroy(model);
    r1_model_opts_destroy(mo);
    free(ids);
    return r1_cli_last_signal ? 128 + r1_cli_last_signal : rc;
}
