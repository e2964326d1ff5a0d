/* bench_session_state.c: size and speed of saved sessions (r1_session_save/load and the buffer
 * forms) at several cached lengths, and a check that the restored session continues bit for
 * bit. Run by hand: bench_session_state MODEL.r1m [--tokens 512,4096] [--dir DIR] [--reps N]
 * [--threads N] [--expert-ram BYTES] (the expert store's budget; default: sized at load). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "r1.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, r1_status st)
{
    fprintf(stderr, "bench_session_state: %s: %s: %s\n", what, r1_status_name(st), r1_last_error());
    exit(1);
}

#define CHECK(what, call)                                                                          \
    do {                                                                                           \
        r1_status st_ = (call);                                                                    \
        if (st_ < 0)                                                                               \
            die(what, st_);                                                                        \
    } while (0)

static int same_logits(const r1_session *a, const r1_session *b)
{
    const float *ra, *rb;
    size_t na, nb;
    CHECK("logits", r1_session_logits(a, -1, &ra, &na));
    CHECK("logits", r1_session_logits(b, -1, &rb, &nb));
    return na == nb && memcmp(ra, rb, na * sizeof(float)) == 0;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *dir = "/tmp";
    char tokens_arg[256] = "512,4096";
    int reps = 3, threads = 0;
    long long expert_ram = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc)
            snprintf(tokens_arg, sizeof tokens_arg, "%s", argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--expert-ram") == 0 && i + 1 < argc)
            expert_ram = atoll(argv[++i]);
        else if (argv[i][0] != '-' && model_path == NULL)
            model_path = argv[i];
        else {
            fprintf(stderr,
                    "usage: %s MODEL.r1m [--tokens 512,4096] [--dir DIR] [--reps N] "
                    "[--threads N] [--expert-ram BYTES]\n",
                    argv[0]);
            return 2;
        }
    }
    if (model_path == NULL || reps < 1) {
        fprintf(stderr, "usage: %s MODEL.r1m [--tokens 512,4096] [--dir DIR] [--reps N]\n",
                argv[0]);
        return 2;
    }
    int32_t lengths[16];
    int n_lengths = 0;
    for (char *tok = strtok(tokens_arg, ","); tok != NULL && n_lengths < 16;
         tok = strtok(NULL, ","))
        lengths[n_lengths++] = atoi(tok);
    int32_t max_len = 0;
    for (int i = 0; i < n_lengths; i++) {
        if (lengths[i] <= 0 || (i > 0 && lengths[i] <= lengths[i - 1])) {
            fprintf(stderr, "--tokens: ascending positive lengths\n");
            return 2;
        }
        max_len = lengths[i];
    }

    r1_model_opts *mo = NULL;
    CHECK("model options", r1_model_opts_create(&mo));
    if (threads > 0)
        CHECK("threads", r1_model_opts_set_threads(mo, threads));
    if (expert_ram >= 0)
        CHECK("expert budget", r1_model_opts_set_expert_cache_bytes(mo, (uint64_t)expert_ram));
    r1_model *m = NULL;
    double t0 = now_ms();
    CHECK("load model", r1_model_load(&m, model_path, NULL, mo));
    r1_model_opts_destroy(mo);
    fprintf(stderr, "model loaded in %.0f ms\n", now_ms() - t0);
    r1_session_opts *so = NULL;
    CHECK("session options", r1_session_opts_create(&so));
    CHECK("context", r1_session_opts_set_context(so, max_len + 1));
    r1_session *a = NULL, *b = NULL;
    CHECK("session", r1_session_create(&a, m, so));
    CHECK("session", r1_session_create(&b, m, so));
    r1_session_opts_destroy(so);
    const int32_t n_vocab = r1_token_count(m);
    char path[1024];
    snprintf(path, sizeof path, "%s/bench_session_state.r1s", dir);

    printf("| cached tokens | state bytes | bytes / token | prefill s (from the row above) | save "
           "buffer ms | save file "
           "ms (fsync) | load buffer ms | load file ms | load GB/s | continues bit-identically "
           "|\n|---|---|---|---|---|---|---|---|---|---|\n");
    int32_t done = 0;
    uint64_t rng = 0x9E3779B97F4A7C15u;
    for (int li = 0; li < n_lengths; li++) {
        /* Random ids up to the length, in chunks (the session chunks them again). */
        t0 = now_ms();
        while (done < lengths[li]) {
            int32_t ids[512];
            int32_t n = lengths[li] - done < 512 ? lengths[li] - done : 512;
            for (int32_t k = 0; k < n; k++) {
                rng = rng * 6364136223846793005u + 1442695040888963407u;
                ids[k] = (int32_t)((rng >> 33) % (uint64_t)(n_vocab > 1 ? n_vocab - 1 : 1));
            }
            CHECK("eval", r1_session_eval(a, ids, (size_t)n));
            done += n;
        }
        const double prefill_s = (now_ms() - t0) / 1e3;
        size_t size = 0;
        if (r1_session_save_to_buffer(a, NULL, 0, &size) != R1_ERR_BUFFER_TOO_SMALL)
            die("size query", R1_ERR_INTERNAL);
        uint8_t *buf = malloc(size);
        if (buf == NULL)
            die("buffer", R1_ERR_NO_MEMORY);
        double save_buf = 1e30, save_file = 1e30, load_buf = 1e30, load_file = 1e30;
        for (int r = 0; r < reps; r++) {
            t0 = now_ms();
            CHECK("save to buffer", r1_session_save_to_buffer(a, buf, size, &size));
            double t = now_ms() - t0;
            save_buf = t < save_buf ? t : save_buf;
            t0 = now_ms();
            CHECK("save", r1_session_save(a, path));
            t = now_ms() - t0;
            save_file = t < save_file ? t : save_file;
            t0 = now_ms();
            CHECK("load from buffer", r1_session_load_from_buffer(b, buf, size, NULL));
            t = now_ms() - t0;
            load_buf = t < load_buf ? t : load_buf;
            CHECK("reset", r1_session_reset(b));
            t0 = now_ms();
            CHECK("load", r1_session_load(b, path, NULL));
            t = now_ms() - t0;
            load_file = t < load_file ? t : load_file;
        }
        /* The restored session: same logits now and after one more token, and the original
         * restored from the buffer goes on from where it was. */
        int same = same_logits(a, b);
        const int32_t next = 1;
        CHECK("eval", r1_session_eval(a, &next, 1));
        CHECK("eval", r1_session_eval(b, &next, 1));
        same = same && same_logits(a, b);
        CHECK("restore", r1_session_load_from_buffer(a, buf, size, NULL));
        same = same && r1_session_position(a) == done;
        printf("| %d | %zu | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %s |\n", (int)done,
               size, (double)size / done, prefill_s, save_buf, save_file, load_buf, load_file,
               (double)size / (load_file * 1e6), same ? "yes" : "NO");
        fflush(stdout);
        free(buf);
        if (!same)
            return 1;
    }
    remove(path);
    r1_session_destroy(a);
    r1_session_destroy(b);
    r1_model_destroy(m);
    return 0;
}
