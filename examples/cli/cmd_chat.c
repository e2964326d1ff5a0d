/* cmd_chat.c: `r1 chat`: an interactive multi-turn conversation; Ctrl-C cancels the answer
 * being written, not the program. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_gen.h"
#include "commands.h"
#include "r1.h"

void r1_cmd_chat_usage(FILE *to)
{
    fprintf(to, "usage: r1 chat [options]\n\n"
                "Reads one user message per line and streams each answer. Earlier turns are\n"
                "kept (their reasoning dropped, as the model's chat format requires) in one\n"
                "session, so each turn evaluates only its new tokens. Ctrl-C cancels the\n"
                "current answer; Ctrl-D (end of input) quits. The exit status is 1 when a\n"
                "turn failed (for instance when the conversation outgrew the context: raise\n"
                "--ctx, use --overflow shift, or start a new conversation).\n\n"
                "  --system TEXT         a system prompt\n");
    r1_cli_gen_usage(to);
}

enum { R1_CHAT_MAX_MESSAGES = 256 };

int r1_cmd_chat(int argc, char **argv)
{
    r1_cli_gen g;
    r1_cli_gen_defaults(&g);
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        int used = r1_cli_gen_option(&g, argc, argv, &i);
        if (used < 0)
            return 2;
        if (used)
            continue;
        if (!strcmp(argv[i], "--system")) {
            if (!(system = r1_cli_value(argc, argv, &i)))
                return 2;
        } else {
            fprintf(stderr, "r1 chat: unknown option '%s'\n\n", argv[i]);
            r1_cmd_chat_usage(stderr);
            return 2;
        }
    }
    r1_model *m = r1_cli_load_model(g.model_path, g.threads, g.backend, g.device);
    r1_session *s = NULL;
    r1_sampler *smp = NULL;
    r1_gen_opts *o = NULL;
    int32_t roles[R1_CHAT_MAX_MESSAGES];
    char *contents[R1_CHAT_MAX_MESSAGES];
    size_t n = 0;
    int rc = 1, failed_turns = 0;
    char *line = NULL;
    size_t line_cap = 0;
    if (m == NULL || !(smp = r1_cli_make_sampler(&g)) || !(o = r1_cli_make_gen_opts(&g)))
        goto done;
    if ((s = r1_cli_make_session(&g, m)) == NULL)
        goto done;
    r1_cli_catch_interrupts(0);
    if (system != NULL) {
        roles[n] = R1_ROLE_SYSTEM;
        if ((contents[n++] = strdup(system)) == NULL)
            goto done;
    }
    const int tty = isatty(STDIN_FILENO);
    for (;;) {
        if (r1_cli_last_signal == SIGTERM || r1_cli_last_signal == SIGHUP)
            break; /* asked to quit, not just to stop one answer */
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        r1_cli_interrupted = 0;
        /* one message per line, whatever its length */
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) {
            if (r1_cli_interrupted == SIGINT) { /* Ctrl-C at the prompt: a fresh line */
                clearerr(stdin);
                fputc('\n', stdout);
                continue;
            }
            break;
        }
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strlen(line) != len) {
            fprintf(stderr, "r1 chat: the message contains a NUL byte; skipped\n");
            failed_turns++;
            continue;
        }
        if (line[0] == '\0')
            continue;
        if (n + 2 > R1_CHAT_MAX_MESSAGES) {
            fprintf(stderr, "r1 chat: the conversation is full; start a new one\n");
            failed_turns++;
            break;
        }
        roles[n] = R1_ROLE_USER;
        if ((contents[n] = strdup(line)) == NULL)
            goto done;
        n++;
        char *answer = NULL, why[1100];
        r1_status st = r1_cli_reply(&g, m, s, smp, o, roles, (const char *const *)contents, n,
                                    &answer, &r1_cli_interrupted, why, sizeof why);
        if (st != R1_DONE && st != R1_CANCELLED) {
            fprintf(stderr, "r1 chat: %s\n", why);
            if (st == R1_ERR_CONTEXT_FULL)
                fprintf(stderr, "r1 chat: the conversation no longer fits the context (--ctx); "
                                "this turn is dropped, and a shorter message, a larger --ctx, "
                                "--overflow shift or a new conversation is needed\n");
            free(answer);
            free(contents[--n]); /* the turn failed: forget it */
            failed_turns++;
            continue;
        }
        roles[n] = R1_ROLE_ASSISTANT;
        if ((contents[n] = answer ? answer : strdup("")) == NULL)
            goto done;
        n++;
    }
    /* a failed turn must not look like success to a script driving the chat */
    rc = failed_turns ? 1 : 0;
    if (r1_cli_last_signal == SIGTERM || r1_cli_last_signal == SIGHUP)
        rc = 128 + r1_cli_last_signal;
done:
    free(line);
    for (size_t i = 0; i < n; i++)
        free(contents[i]);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
    return rc;
}
