/* cli_gen.h: sampling and generation options shared by `r1 run` and `r1 chat`. */
#ifndef R1_CLI_GEN_H
#define R1_CLI_GEN_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "r1.h"

typedef struct r1_cli_gen {
    const char *model_path;
    const char *backend;
    const char *device; /* NULL: the backend's default */
    int32_t threads;
    int32_t show_thinking;
    int32_t context;
    int32_t max_tokens;
    int32_t think_budget;
    uint64_t seed;
    float temperature, top_p, min_p;
    int32_t top_k;
    float repeat_penalty;
    int32_t quiet;    /* no statistics on stderr */
    int32_t overflow; /* R1_OVERFLOW_* (--overflow) */
    int32_t keep;     /* --keep: positions a shift keeps; -1 up to the first user turn */
} r1_cli_gen;

void r1_cli_gen_defaults(r1_cli_gen *g);
/* Consumes argv[*i] (and its value) when it is a generation option: 1 consumed, 0 not one of
 * ours, -1 malformed (message printed). */
int r1_cli_gen_option(r1_cli_gen *g, int argc, char **argv, int *i);
void r1_cli_gen_usage(FILE *to);

/* The sampler and options the flags describe; NULL/R1 error printed on failure. */
r1_sampler *r1_cli_make_sampler(const r1_cli_gen *g);
r1_gen_opts *r1_cli_make_gen_opts(const r1_cli_gen *g);
/* The session the flags describe on m (context clamped to the model's maximum by default);
 * NULL with the reason printed on failure. */
r1_session *r1_cli_make_session(const r1_cli_gen *g, r1_model *m);

/* Renders messages with the model's chat template (generation prompt added), gives them to the
 * session with r1_session_sync (only what follows the cached prefix is evaluated) and streams
 * the reply: reasoning dimmed on a terminal (or hidden unless show_thinking), the
 * answer plain. The answer text is appended to *answer (malloc'ed, may be NULL). Stops when
 * *interrupt becomes non-zero (cancelling the session). Returns the final status. */
r1_status r1_cli_reply(const r1_cli_gen *g, r1_model *m, r1_session *s, r1_sampler *smp,
                       const r1_gen_opts *o, const int32_t *roles, const char *const *contents,
                       size_t n, char **answer, volatile sig_atomic_t *interrupt, char *why,
                       size_t why_cap);
/* On failure the reason is in why (the library's own message is cleared by the calls that
 * print the statistics). */

/* Set to the signal's number by SIGINT, SIGTERM or SIGHUP once r1_cli_catch_interrupts() ran;
 * the streaming loop cancels the session on it, so the terminal's attributes are reset and
 * temporary files removed on the way out. A second signal before the first is acted on ends
 * the program at once (attributes reset). */
extern volatile sig_atomic_t r1_cli_interrupted;
/* The last such signal, never cleared (the loop clears r1_cli_interrupted when it acts). */
extern volatile sig_atomic_t r1_cli_last_signal;
/* restart: interrupted reads and writes resume (SA_RESTART), so no output is lost; without it
 * a read waiting for input returns, as `r1 chat` wants at its prompt. */
void r1_cli_catch_interrupts(int restart);

#endif
