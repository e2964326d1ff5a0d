/* generate.c: the smallest complete libr1 program: load, render a chat prompt, stream the answer.
 * usage: generate MODEL PROMPT [--max-tokens N] [--seed N] [--print-ids]
 * (--print-ids prints every generated token id, reasoning included, one per line.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <r1.h>

int main(int argc, char **argv)
{
    int32_t max_tokens = 64, print_ids = 0, role = R1_ROLE_USER, id, kind;
    uint64_t seed = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--print-ids"))
            print_ids = 1;
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc)
            max_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else
            argc = 0; /* unknown option: show the usage below */
    }
    if (argc < 3) {
        fprintf(stderr, "usage: generate MODEL PROMPT [--max-tokens N] [--seed N] [--print-ids]\n");
        return 2;
    }
    r1_model *m = NULL;
    r1_session *s = NULL;
    r1_sampler *smp = NULL;
    r1_gen_opts *o = NULL;
    char prompt[4096];
    const char *contents[1] = {argv[2]};
    size_t len = 0;
    r1_status st = r1_model_load(&m, argv[1], NULL, NULL);
    if (st == R1_OK) /* a prompt longer than the buffer fails with R1_ERR_BUFFER_TOO_SMALL */
        st = r1_chat_render(m, &role, contents, 1, 1, prompt, sizeof prompt, &len);
    if (st == R1_OK)
        st = r1_session_create(&s, m, NULL);
    if (st == R1_OK)
        st = r1_session_feed_text(s, prompt, len, R1_TOKENIZE_PARSE_SPECIAL);
    if (st == R1_OK)
        st = r1_sampler_create(&smp, seed); /* DeepSeek-R1's defaults: T 0.6, top-p 0.95 */
    if (st == R1_OK)
        st = r1_gen_opts_create(&o);
    if (st == R1_OK)
        st = r1_gen_opts_set_max_tokens(o, max_tokens);
    if (st == R1_OK)
        st = r1_session_begin(s, smp, o);
    while (st == R1_OK && (st = r1_session_step(s, &id, &kind)) >= R1_OK) {
        const char *piece;
        size_t n;
        r1_status got = r1_session_piece(s, &piece, &n);
        if (got != R1_OK) {
            st = got;
            break;
        }
        if (print_ids && st == R1_OK && id >= 0)
            printf("%d\n", id);
        else if (!print_ids && kind == R1_PIECE_ANSWER)
            fwrite(piece, 1, n, stdout);
    }
    if (st < 0)
        fprintf(stderr, "generate: %s: %s\n", r1_status_name(st), r1_last_error());
    else if (!print_ids)
        putchar('\n');
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
    return st < 0;
}
