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
    fprintf(to, "usage: r1 run [options] (-p PROMPT | -f FILE)\n\n"
                "Answers PROMPT as the user turn of a chat and streams the answer.\n"
                "Ctrl-C stops the answer (exit status 130).\n\n"
                "  -p, --prompt TEXT     the question\n"
                "  -f, --file FILE       read the question from FILE (-: standard input), for\n"
                "                        prompts longer than the command line allows\n");
    r1_cli_gen_usage(to);
}

int r1_cmd_run(int argc, char **argv)
{
    r1_cli_gen g;
    r1_cli_gen_defaults(&g);
    const char *prompt = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        int used = r1_cli_gen_option(&g, argc, argv, &i);
        if (used < 0)
            return 2;
        if (used)
            continue;
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) {
            if (!(prompt = r1_cli_value(argc, argv, &i)))
                return 2;
        } else if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) {
            if (!(file = r1_cli_value(argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "r1 run: unknown option '%s'\n\n", argv[i]);
            r1_cmd_run_usage(stderr);
            return 2;
        }
    }
    if ((prompt == NULL) == (file == NULL)) {
        if (prompt != NULL)
            fprintf(stderr, "r1 run: give the prompt with -p or with -f, not both\n\n");
        r1_cmd_run_usage(stderr);
        return 2;
    }
    char *owned = NULL;
    if (file != NULL) {
        size_t len;
        if ((owned = r1_cli_read_all(file, &len)) == NULL)
            return 1;
        if (strlen(owned) != len) { /* the chat renderer takes C strings */
            fprintf(stderr, "r1 run: '%s' contains a NUL byte; the prompt must be text\n", file);
            free(owned);
            return 1;
        }
        prompt = owned;
    }
    r1_cli_catch_interrupts(1);
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
    if (r1_cli_interrupted) /* during loading: nothing was written yet */
        goto done;
    const int32_t role = R1_ROLE_USER;
    char why[1100];
    r1_status st = r1_cli_reply(&g, m, s, smp, o, &role, &prompt, 1, &answer, &r1_cli_interrupted,
                                why, sizeof why);
    if (st != R1_DONE && st != R1_CANCELLED) {
        fprintf(stderr, "r1 run: %s\n", why);
        goto done;
    }
    rc = 0;
done:
    if (r1_cli_last_signal) /* stopped by a signal: say so, as the shell would */
        rc = 128 + r1_cli_last_signal;
    free(owned);
    free(answer);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
    return rc;
}
