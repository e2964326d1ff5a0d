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

static volatile sig_atomic_t r1_chat_interrupt;

static void r1_chat_on_sigint(int sig)
{
    (void)sig;
    r1_chat_interrupt = 1;
}

void r1_cmd_chat_usage(FILE *to)
{
    fprintf(to, "usage: r1 chat [options]\n\n"
                "Reads one user message per line and streams each answer. Earlier turns are\n"
                "kept (their reasoning dropped, as the model's chat format requires).\n"
                "Ctrl-C cancels the current answer; Ctrl-D (end of input) quits.\n\n"
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
        if (!strcmp(argv[i], "--system") && i + 1 < argc) {
            system = argv[++i];
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
    int rc = 1;
    if (m == NULL || !(smp = r1_cli_make_sampler(&g)) || !(o = r1_cli_make_gen_opts(&g)))
        goto done;
    if ((s = r1_cli_make_session(&g, m)) == NULL)
        goto done;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = r1_chat_on_sigint;
    sigaction(SIGINT, &sa, NULL);
    if (system != NULL) {
        roles[n] = R1_ROLE_SYSTEM;
        contents[n++] = strdup(system);
    }
    const int tty = isatty(STDIN_FILENO);
    char line[8192];
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        r1_chat_interrupt = 0;
        if (fgets(line, sizeof line, stdin) == NULL) {
            if (r1_chat_interrupt) { /* Ctrl-C at the prompt: a fresh line, keep going */
                clearerr(stdin);
                fputc('\n', stdout);
                continue;
            }
            break;
        }
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (n + 2 > R1_CHAT_MAX_MESSAGES) {
            fprintf(stderr, "r1 chat: the conversation is full; start a new one\n");
            break;
        }
        roles[n] = R1_ROLE_USER;
        contents[n++] = strdup(line);
        char *answer = NULL;
        r1_status st = r1_cli_reply(&g, m, s, smp, o, roles, (const char *const *)contents, n,
                                    &answer, &r1_chat_interrupt);
        if (st != R1_DONE && st != R1_CANCELLED) {
            fprintf(stderr, "r1 chat: %s\n", r1_last_error());
            free(answer);
            free(contents[--n]); /* the turn failed: forget it */
            continue;
        }
        roles[n] = R1_ROLE_ASSISTANT;
        contents[n++] = answer ? answer : strdup("");
    }
    rc = 0;
done:
    for (size_t i = 0; i < n; i++)
        free(contents[i]);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
    return rc;
}
