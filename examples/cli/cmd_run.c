/* cmd_run.c: `r1 run`: answer one prompt, streaming the reply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_gen.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_run_usage(FILE *to)
{
    fprintf(to, "usage: r1 run [options] -p PROMPT\n\n"
                "Answers PROMPT as the user turn of a chat and streams the answer.\n\n"
                "  -p, --prompt TEXT     the question\n");
    r1_cli_gen_usage(to);
}

int r1_cmd_run(int argc, char **argv)
{
    r1_cli_gen g;
    r1_cli_gen_defaults(&g);
    const char *prompt = NULL;
    for (int i = 1; i < argc; i++) {
        int used = r1_cli_gen_option(&g, argc, argv, &i);
        if (used < 0)
            return 2;
        if (used)
            continue;
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) {
            if (!(prompt = r1_cli_value(argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "r1 run: unknown option '%s'\n\n", argv[i]);
            r1_cmd_run_usage(stderr);
            return 2;
        }
    }
    if (prompt == NULL) {
        r1_cmd_run_usage(stderr);
        return 2;
    }
    int rc = 1;
    r1_model *m = r1_cli_load_model(g.model_path, g.threads, g.backend, g.device);
    r1_session *s = NULL;
    r1_sampler *smp = NULL;
    r1_gen_opts *o = NULL;
    char *answer = NULL;
    if (m == NULL || !(smp = r1_cli_make_sampler(&g)) || !(o = r1_cli_make_gen_opts(&g)))
        goto done;
    if ((s = r1_cli_make_session(&g, m)) == NULL)
        goto done;
    const int32_t role = R1_ROLE_USER;
    r1_status st = r1_cli_reply(&g, m, s, smp, o, &role, &prompt, 1, &answer, NULL);
    if (st != R1_DONE && st != R1_CANCELLED) {
        fprintf(stderr, "r1 run: %s\n", r1_last_error());
        goto done;
    }
    rc = 0;
done:
    free(answer);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
    return rc;
}
