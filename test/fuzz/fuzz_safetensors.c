/* fuzz_safetensors.c: libFuzzer target for the converter's checkpoint reader: safetensors
 * headers and model.safetensors.index.json, written to a private directory and opened the way
 * r1_convert opens a checkpoint. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void put_file(const char *name, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(n == 0 || fwrite(p, 1, n, f) == n);
    FUZZ_CHECK(fclose(f) == 0);
}

static void drop_file(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    unlink(path);
}

/* The private directory goes when the fuzzer exits (its files are removed after each input). */
static void remove_dir(void)
{
    rmdir(g_dir);
}

/* Touch every tensor's first and last byte: the reader promised they lie inside the file. */
static void exercise(const r1_safetensors *st)
{
    volatile uint8_t sink = 0;
    for (int32_t i = 0; i < st->n_tensors; i++) {
        const r1_st_tensor *t = &st->tensors[i];
        FUZZ_CHECK(t->name != NULL && t->file >= 0 && t->file < st->n_files);
        FUZZ_CHECK(r1_safetensors__find(st, t->name) == t);
        if (t->nbytes) {
            sink ^= t->data[0];
            sink ^= t->data[t->nbytes - 1];
        }
    }
    (void)sink;
}

/* Input parts (FUZZ_SEP between them): the first byte of part one picks the layout: even opens
 * part one (after that byte) as model.safetensors; odd takes part one as
 * model.safetensors.index.json and the next parts as the shards model-0000N.safetensors. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%.40s/r1fuzz-st-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        FUZZ_CHECK(mkdtemp(g_dir) != NULL);
        atexit(remove_dir);
    }
    if (size < 1)
        return 0;
    int sharded = data[0] & 1;
    const uint8_t *p = data + 1, *part;
    size_t len;
    char names[4][32];
    int n_shards = 0;
    fuzz_next_part(&p, data + size, &part, &len);
    if (sharded) {
        put_file("model.safetensors.index.json", part, len);
        while (n_shards < 4 && fuzz_next_part(&p, data + size, &part, &len)) {
            snprintf(names[n_shards], sizeof names[0], "model-0000%d.safetensors", n_shards + 1);
            put_file(names[n_shards++], part, len);
        }
    } else {
        put_file("model.safetensors", part, len);
    }
    r1_safetensors *st = NULL;
    if (r1_safetensors__open_dir(&st, g_dir) == R1_OK) {
        exercise(st);
        r1_safetensors__close(st);
    } else {
        FUZZ_CHECK(st == NULL);
    }
    if (!sharded) {
        char path[128];
        snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
        if (r1_safetensors__open_file(&st, path) == R1_OK) {
            exercise(st);
            r1_safetensors__close(st);
        }
        drop_file("model.safetensors");
    } else {
        drop_file("model.safetensors.index.json");
        for (int i = 0; i < n_shards; i++)
            drop_file(names[i]);
    }
    return 0;
}
