/* cli_gen.c: sampling flags, chat rendering and streamed output for `r1 run` and `r1 chat`. */
#include "cli_gen.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_memory.h"

void r1_cli_gen_defaults(r1_cli_gen *g)
{
    memset(g, 0, sizeof *g);
    g->context = 0; /* 0: the smaller of 4096 and the model's maximum */
    g->max_tokens = -1;
    g->think_budget = -1;
    g->seed = 0x5EED;
    g->temperature = 0.6f; /* DeepSeek-R1's recommended settings (model card) */
    g->top_p = 0.95f;
    g->repeat_penalty = 1.0f;
    g->overflow = R1_OVERFLOW_FAIL;
    g->keep = -1;
}

void r1_cli_gen_usage(FILE *to)
{
    fprintf(
        to,
        "  -m, --model PATH      the .r1m model (default: the built-in tiny-r1)\n"
        "  --backend NAME        compute backend (default cpu)\n"
        "  --device ID           the backend's device: an index or part of its name\n"
        "  --threads N           CPU threads (default: one per core)\n"
        "  --show-thinking       stream the reasoning too (dimmed on a terminal)\n"
        "  --think-budget N      close the reasoning after N tokens\n"
        "  --max-tokens N        stop after N generated tokens\n"
        "  --ctx N               context length (default: 4096, or the model's maximum if less)\n"
        "  --overflow POLICY     when the context is full: fail (default) or shift (drop the\n"
        "                        oldest turns, keeping the system prompt)\n"
        "  --keep N              positions a shift keeps (default: up to the first user turn)\n"
        "  --temp T              temperature (default 0.6; 0 = greedy)\n"
        "  --top-p P             nucleus sampling (default 0.95)\n"
        "  --top-k K             keep the K most likely tokens (default off)\n"
        "  --min-p P             drop tokens below P x the best (default off)\n"
        "  --repeat-penalty R    penalise repeated tokens (default 1.0 = off)\n"
        "  --seed N              random seed (default 24301)\n"
        "  --quiet               no token counts and speed on stderr\n");
    r1_cli_memory_usage(to);
}

static int r1_float_opt(const char *opt, const char *v, float *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    /* NaN would pass the library's range checks (every comparison is false) */
    if (errno || end == v || *end || !isfinite((float)d)) {
        fprintf(stderr, "r1: %s expects a finite number, not '%s'\n", opt, v);
        return -1;
    }
    *out = (float)d;
    return 1;
}

int r1_cli_gen_option(r1_cli_gen *g, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--show-thinking")) {
        g->show_thinking = 1;
        return 1;
    }
    if (!strcmp(a, "--quiet")) {
        g->quiet = 1;
        return 1;
    }
    int mem = r1_cli_memory_option(argc, argv, i);
    if (mem != 0)
        return mem;
    static const char *const takes_value[] = {
        "-m",        "--model",          "--backend",    "--device",
        "--threads", "--think-budget",   "--max-tokens", "--ctx",
        "--temp",    "--top-p",          "--top-k",      "--min-p",
        "--seed",    "--repeat-penalty", "--overflow",   "--keep"};
    int known = 0;
    for (size_t k = 0; k < sizeof takes_value / sizeof takes_value[0]; k++)
        known |= !strcmp(a, takes_value[k]);
    if (!known)
        return 0;
    const char *v = r1_cli_value(argc, argv, i);
    if (v == NULL)
        return -1;
    int64_t n = 0;
    if (!strcmp(a, "-m") || !strcmp(a, "--model"))
        g->model_path = v;
    else if (!strcmp(a, "--backend"))
        g->backend = v;
    else if (!strcmp(a, "--device"))
        g->device = v;
    else if (!strcmp(a, "--overflow")) {
        if (strcmp(v, "fail") != 0 && strcmp(v, "shift") != 0) {
            fprintf(stderr, "r1: --overflow expects fail or shift, not '%s'\n", v);
            return -1;
        }
        g->overflow = !strcmp(v, "shift") ? R1_OVERFLOW_SHIFT : R1_OVERFLOW_FAIL;
    } else if (!strcmp(a, "--temp"))
        return r1_float_opt(a, v, &g->temperature);
    else if (!strcmp(a, "--top-p"))
        return r1_float_opt(a, v, &g->top_p);
    else if (!strcmp(a, "--min-p"))
        return r1_float_opt(a, v, &g->min_p);
    else if (!strcmp(a, "--repeat-penalty"))
        return r1_float_opt(a, v, &g->repeat_penalty);
    else if (!strcmp(a, "--seed"))
        return r1_cli_parse_u64(a, v, &g->seed) == 0 ? 1 : -1;
    else if (r1_cli_parse_int(a, v, !strcmp(a, "--ctx") ? 1 : 0,
                              !strcmp(a, "--threads") ? 1024 : INT32_MAX, &n) != 0)
        return -1; /* every count becomes an int32_t: out of range is an error, never a wrap */
    else if (!strcmp(a, "--threads"))
        g->threads = (int32_t)n;
    else if (!strcmp(a, "--think-budget"))
        g->think_budget = (int32_t)n;
    else if (!strcmp(a, "--max-tokens"))
        g->max_tokens = (int32_t)n;
    else if (!strcmp(a, "--ctx"))
        r1_cli_mem.context = g->context = (int32_t)n; /* auto leaves KV room for it */
    else if (!strcmp(a, "--keep"))
        g->keep = (int32_t)n;
    else
        g->top_k = (int32_t)n;
    return 1;
}

r1_sampler *r1_cli_make_sampler(const r1_cli_gen *g)
{
    r1_sampler *smp = NULL;
    r1_status st = r1_sampler_create(&smp, g->seed);
    if (st == R1_OK)
        st = r1_sampler_set_temperature(smp, g->temperature);
    if (st == R1_OK)
        st = r1_sampler_set_top_p(smp, g->top_p);
    if (st == R1_OK)
        st = r1_sampler_set_top_k(smp, g->top_k);
    if (st == R1_OK)
        st = r1_sampler_set_min_p(smp, g->min_p);
    if (st == R1_OK && g->repeat_penalty != 1.0f)
        st = r1_sampler_set_penalties(smp, 64, g->repeat_penalty, 0.0f, 0.0f);
    if (st != R1_OK) {
        fprintf(stderr, "r1: sampling options: %s\n", r1_last_error());
        r1_sampler_destroy(smp);
        return NULL;
    }
    return smp;
}

r1_gen_opts *r1_cli_make_gen_opts(const r1_cli_gen *g)
{
    r1_gen_opts *o = NULL;
    r1_status st = r1_gen_opts_create(&o);
    if (st == R1_OK)
        st = r1_gen_opts_set_max_tokens(o, g->max_tokens);
    if (st == R1_OK)
        st = r1_gen_opts_set_think_budget(o, g->think_budget);
    if (st != R1_OK) {
        fprintf(stderr, "r1: generation options: %s\n", r1_last_error());
        r1_gen_opts_destroy(o);
        return NULL;
    }
    return o;
}

r1_session *r1_cli_make_session(const r1_cli_gen *g, r1_model *m)
{
    r1_session_opts *so = NULL;
    r1_session *s = NULL;
    r1_status st = r1_session_opts_create(&so);
    /* Without --ctx the library's default applies: 4096, or the model's maximum if less. */
    if (st == R1_OK && g->context != 0)
        st = r1_session_opts_set_context(so, g->context);
    if (st == R1_OK)
        st = r1_session_opts_set_overflow(so, g->overflow, g->keep);
    if (st == R1_OK)
        st = r1_session_create(&s, m, so);
    if (st != R1_OK)
        fprintf(stderr, "r1: cannot create a session: %s\n", r1_last_error());
    r1_session_opts_destroy(so);
    return s;
}

static double r1_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

volatile sig_atomic_t r1_cli_interrupted, r1_cli_last_signal;
static int r1_cli_stdout_tty;

static void r1_cli_on_signal(int sig)
{
    if (r1_cli_interrupted) {
        /* a second signal before the first was acted on: stop now, but leave the terminal's
         * attributes as they were before the dimmed reasoning (write() is signal-safe) */
        if (r1_cli_stdout_tty)
            (void)!write(STDOUT_FILENO, "\033[0m", 4);
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    r1_cli_interrupted = sig;
    r1_cli_last_signal = sig;
}

void r1_cli_catch_interrupts(int restart)
{
    r1_cli_stdout_tty = isatty(STDOUT_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = r1_cli_on_signal;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

r1_status r1_cli_reply(const r1_cli_gen *g, r1_model *m, r1_session *s, r1_sampler *smp,
                       const r1_gen_opts *o, const int32_t *roles, const char *const *contents,
                       size_t n, char **answer, volatile sig_atomic_t *interrupt, char *why,
                       size_t why_cap)
{
    why[0] = '\0';
    size_t len = 0;
    r1_status st = r1_chat_render(m, roles, contents, n, 1, NULL, 0, &len);
    char *prompt = NULL;
    if (st == R1_ERR_BUFFER_TOO_SMALL) {
        if ((prompt = malloc(len + 1)) == NULL) {
            snprintf(why, why_cap, "out of memory for a prompt of %zu bytes", len);
            return R1_ERR_NO_MEMORY;
        }
        st = r1_chat_render(m, roles, contents, n, 1, prompt, len + 1, &len);
    }
    /* The session keeps the conversation: only what follows the longest prefix it holds is
     * evaluated (from the last answer on, as the format drops earlier reasoning). */
    if (st == R1_OK)
        st = r1_session_sync_text(s, prompt, len, R1_TOKENIZE_PARSE_SPECIAL);
    free(prompt);
    if (st == R1_OK)
        st = r1_session_begin(s, smp, o);
    if (st != R1_OK) {
        snprintf(why, why_cap, "%s: %s", r1_status_name(st), r1_last_error());
        return st;
    }
    const int tty = isatty(STDOUT_FILENO);
    int32_t shown = R1_PIECE_NONE, kind, id;
    size_t answer_len = *answer ? strlen(*answer) : 0;
    double t0 = r1_now(), t_first = 0;
    while ((st = r1_session_step(s, &id, &kind)) == R1_OK || st == R1_DONE) {
        if (id >= 0 && t_first == 0)
            t_first = r1_now();
        const char *piece;
        size_t plen;
        r1_session_piece(s, &piece, &plen);
        if (plen > 0 && (kind == R1_PIECE_ANSWER || g->show_thinking)) {
            if (kind != shown && tty)
                fputs(kind == R1_PIECE_REASONING ? "\033[2m" : "\033[0m", stdout);
            if (kind != shown && kind == R1_PIECE_REASONING && !tty)
                fputs("<think>", stdout); /* mark the section when colour is unavailable */
            if (kind == R1_PIECE_ANSWER && shown == R1_PIECE_REASONING && !tty)
                fputs("</think>", stdout);
            shown = kind;
            fwrite(piece, 1, plen, stdout);
            fflush(stdout);
        }
        if (plen > 0 && kind == R1_PIECE_ANSWER) {
            char *grown = realloc(*answer, answer_len + plen + 1);
            if (grown != NULL) {
                memcpy(grown + answer_len, piece, plen);
                answer_len += plen;
                grown[answer_len] = '\0';
                *answer = grown;
            }
        }
        if (st == R1_DONE)
            break;
        if (interrupt != NULL && *interrupt) {
            *interrupt = 0;
            r1_session_cancel(s);
        }
    }
    /* the calls below clear the thread's last error: keep the reason for the caller */
    if (st != R1_DONE && st != R1_CANCELLED)
        snprintf(why, why_cap, "%s: %s", r1_status_name(st), r1_last_error());
    if (tty && shown == R1_PIECE_REASONING)
        fputs("\033[0m", stdout);
    fputs(st == R1_CANCELLED ? " [cancelled]\n" : "\n", stdout);
    fflush(stdout);
    if (!g->quiet) {
        int32_t np, nr, na;
        r1_session_counts(s, &np, &nr, &na);
        double t1 = r1_now(), gen_s = t_first > 0 ? t1 - t_first : 0;
        fprintf(stderr, "[prompt %d tokens, reasoning %d, answer %d; %.1f tokens/s]\n", np, nr, na,
                gen_s > 0 ? (nr + na - 1) / gen_s : 0.0);
        (void)t0;
    }
    return st;
}
