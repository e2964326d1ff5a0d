/* cmd_eval.c: `r1 eval`: logits of every position of a token list, for comparison with any
 * reference implementation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_eval_usage(FILE *to)
{
    fprintf(to, "usage: r1 eval -m MODEL --tokens ID,ID,... --logits OUT.f32 [--decode]\n"
                "               [--backend NAME] [--device ID] [--threads N]\n\n"
                "Evaluates the tokens and writes the logits of every position to OUT.f32 as\n"
                "little-endian float32, one row of vocab_size values per position.\n\n"
                "  -m, --model PATH   the .r1m model\n"
                "  --tokens LIST      comma-separated token ids\n"
                "  --logits PATH      output file\n"
                "  --decode           feed the tokens one at a time through the cache\n"
                "                     (default: one prefill call)\n"
                "  --backend NAME     compute backend (default cpu)\n"
                "  --device ID        the backend's device: an index or part of its name\n"
                "  --threads N        CPU threads (default: one per core)\n");
}

static int r1_eval_fail(const char *what)
{
    fprintf(stderr, "r1 eval: %s: %s\n", what, r1_last_error());
    return 1;
}

int r1_cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *tokens = NULL, *out_path = NULL, *backend = NULL,
               *device = NULL;
    int decode = 0;
    int64_t threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--tokens")) {
            if (!(tokens = r1_cli_value(argc, argv, &i)))
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
            if (!v || (threads = r1_cli_parse_count(a, v)) < 0)
                return 2;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else {
            fprintf(stderr, "r1 eval: unknown option '%s'\n\n", a);
            r1_cmd_eval_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !tokens || !out_path) {
        r1_cmd_eval_usage(stderr);
        return 2;
    }
    int32_t *ids = NULL;
    int64_t n = r1_cli_parse_ids(tokens, &ids);
    if (n <= 0)
        return 2;

    int rc = 1;
    r1_model_opts *mo = NULL;
    r1_model *model = NULL;
    r1_session_opts *so = NULL;
    r1_session *s = NULL;
    FILE *out = NULL;
    if (r1_model_opts_create(&mo) != R1_OK ||
        r1_model_opts_set_threads(mo, (int32_t)threads) != R1_OK ||
        (backend && r1_model_opts_set_backend(mo, backend) != R1_OK) ||
        (device && r1_model_opts_set_device(mo, device) != R1_OK)) {
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
    if ((out = fopen(out_path, "wb")) == NULL) {
        perror(out_path);
        goto done;
    }
    const float *row = NULL;
    size_t vocab = 0;
    if (!decode) {
        if (r1_session_eval(s, ids, (size_t)n) != R1_OK) {
            rc = r1_eval_fail("eval");
            goto done;
        }
    }
    for (int64_t t = 0; t < n; t++) {
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
    if (fclose(out) != 0) {
        out = NULL;
        perror(out_path);
        goto done;
    }
    out = NULL;
    fprintf(stderr, "r1 eval: %lld positions x %zu logits -> %s\n", (long long)n, vocab, out_path);
    rc = 0;
done:
    if (out != NULL)
        fclose(out);
    r1_session_destroy(s);
    r1_session_opts_destroy(so);
    r1_model_destroy(model);
    r1_model_opts_destroy(mo);
    free(ids);
    return rc;
}
