/* bench_tokenizer.c: encode/decode throughput on a large mixed text (arg: data dir). */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "test/data/tokenizer";
    size_t jl, cl, rl;
    char *json = slurp(dir, "tokenizer.json", &jl);
    char *cfg = slurp(dir, "tokenizer_config.json", &cl);
    char *refs = slurp(dir, "broad-ids-r1.json", &rl);
    if (!json || !cfg || !refs) {
        fprintf(stderr, "cannot read data in %s\n", dir);
        return 1;
    }
    double t0 = now_s();
    r1_tokenizer_spec *spec;
    r1_tokenizer *tok;
    if (r1_tokenizer__spec_from_json(&spec, json, jl, cfg, cl) != R1_OK ||
        r1_tokenizer__create(&tok, spec) != R1_OK) {
        fprintf(stderr, "load failed\n");
        return 1;
    }
    double t1 = now_s();
    /* The broad reference set (scripts, code, whitespace, a 100 KB mix), repeated to 16 MB. */
    cJSON *root = cJSON_Parse(refs);
    size_t cap = 16u << 20, n = 0;
    char *text = malloc(cap);
    while (n < cap) {
        const cJSON *e;
        cJSON_ArrayForEach(e, root)
        {
            const char *s = cJSON_GetObjectItemCaseSensitive(e, "text")->valuestring;
            size_t l = strlen(s);
            if (n + l + 1 > cap)
                break;
            memcpy(text + n, s, l);
            n += l;
            text[n++] = '\n';
        }
        if (n + 200000 > cap)
            break;
    }
    size_t n_ids = 0, cap_ids = n;
    int32_t *ids = malloc(cap_ids * sizeof *ids);
    double t2 = now_s();
    if (r1_tokenizer__encode(tok, text, n, R1_TOKENIZE_PARSE_SPECIAL, ids, cap_ids, &n_ids) !=
        R1_OK)
        return 1;
    double t3 = now_s();
    char *out = malloc(n + 64);
    size_t out_len;
    if (r1_tokenizer__decode(tok, ids, n_ids, 0, out, n + 64, &out_len) != R1_OK)
        return 1;
    double t4 = now_s();
    /* Many short calls, as a chat front end makes them. */
    size_t calls = 0, done = 0;
    double t5 = now_s();
    while (done + 2000 < n && calls < 20000) {
        size_t got;
        size_t l = 200 + (calls * 37) % 1500;
        while (done + l < n && ((unsigned char)text[done + l] & 0xC0) == 0x80)
            l++;
        if (r1_tokenizer__encode(tok, text + done, l, 0, ids, cap_ids, &got) != R1_OK)
            return 1;
        done += l;
        calls++;
    }
    double t6 = now_s();
    printf("load %.3f s; text %.1f MB, %zu ids (%.2f bytes/id)\n", t1 - t0, n / 1e6, n_ids,
           (double)n / (double)n_ids);
    printf("encode %.1f MB/s (one call), %.1f MB/s (%zu calls of 0.2-1.7 KB); decode %.0f MB/s\n",
           n / 1e6 / (t3 - t2), done / 1e6 / (t6 - t5), calls, out_len / 1e6 / (t4 - t3));
    free(out);
    free(ids);
    free(text);
    cJSON_Delete(root);
    r1_tokenizer__destroy(tok);
    r1_tokenizer__spec_destroy(spec);
    free(json);
    free(cfg);
    free(refs);
    return 0;
}
