/* fuzz_container.c: libFuzzer target for the .r1m reader and the expert store on untrusted bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "blob_codec.h"
#include "checksum.h"
#include "container.h"
#include "expert_cache.h"
#include "le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Recompute the header, metadata and index checksums so mutations reach the parsers behind
 * them (a random flip would otherwise almost always stop at a checksum). */
static void reseal(uint8_t *f, size_t n)
{
    if (n < R1M_HEADER_SIZE)
        return;
    uint64_t mo = r1_le__u64(f + R1M_H_META_OFF), ms = r1_le__u64(f + R1M_H_META_SIZE);
    uint64_t io = r1_le__u64(f + R1M_H_INDEX_OFF), is = r1_le__u64(f + R1M_H_INDEX_SIZE);
    if (mo <= n && ms <= n - mo)
        r1_le__put64(f + R1M_H_META_SUM, r1_checksum__xxh64(f + mo, (size_t)ms));
    if (io <= n && is <= n - io)
        r1_le__put64(f + R1M_H_INDEX_SUM, r1_checksum__xxh64(f + io, (size_t)is));
    r1_le__put64(f + R1M_H_FILE_SIZE, n);
    r1_le__put64(f + R1M_H_SUM, r1_checksum__xxh64(f, R1M_H_SUM));
}

/* A broken invariant: abort, so libFuzzer keeps the input as a crash. */
static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_container: invariant failed: %s\n", what);
        abort();
    }
}

/* Every blob the reader accepts either decodes or fails with a status, and in a 1.1 file a
 * direct reader's whole-block span of it stays inside the file. */
static void decode_blobs(const r1_container *c)
{
    r1_blob_decoder *dec = NULL;
    if (r1_blob_decoder__create(&dec) != R1_OK)
        return;
    for (int32_t i = 0; i < r1_container__n_expert_blobs(c) && i < 16; i++) {
        const r1_expert_blob *b = r1_container__expert_at(c, i);
        uint64_t size = r1_container__file_size(c);
        check(b->offset <= size && b->stored_size <= size - b->offset, "blob inside the file");
        if (r1_container__version_minor(c) >= R1M_VERSION_MINOR_ALIGNED)
            check(b->offset % R1M_BLOB_ALIGN == 0 && r1_container__blob_span(b) <= size - b->offset,
                  "1.1 blob span inside the file");
        if (b->raw_size > (UINT64_C(1) << 26))
            continue;
        uint8_t *stored = malloc((size_t)b->stored_size);
        uint8_t *raw = aligned_alloc(64, ((size_t)b->raw_size + 63) / 64 * 64);
        if (stored && raw &&
            pread(r1_container__fd(c), stored, (size_t)b->stored_size, (off_t)b->offset) ==
                (ssize_t)b->stored_size)
            r1_blob_decoder__decode(dec, b, stored, raw);
        free(stored);
        free(raw);
    }
    r1_blob_decoder__destroy(dec);
}

static void exercise(const char *path)
{
    r1_container *c = NULL;
    if (r1_container__open(&c, path) != R1_OK)
        return;
    r1_tensor t;
    const char *name;
    size_t len;
    for (int32_t i = 0; i < r1_container__n_tensors(c); i++) {
        r1_container__tensor_at(c, i, &name, &len, &t);
        r1_container__verify_tensor(c, i);
        volatile uint8_t sink = ((const uint8_t *)t.data)[t.nbytes - 1];
        if (t.scale)
            sink ^= *(const volatile uint8_t *)t.scale;
        (void)sink;
    }
    decode_blobs(c);
    r1_expert_cache *ec = NULL;
    uint64_t budget = 2 * (uint64_t)r1_container__config(c)->num_experts_per_tok *
                      r1_container__max_expert_bytes(c);
    if (budget < (UINT64_C(1) << 28) && r1_expert_cache__create(&ec, c, budget) == R1_OK) {
        for (int32_t i = 0; i < r1_container__n_expert_blobs(c) && i < 64; i++) {
            const r1_expert_blob *b = r1_container__expert_at(c, i);
            const r1_expert *ex;
            if (r1_expert_cache__acquire(ec, b->layer, b->expert, &ex) == R1_OK) {
                volatile uint8_t sink = ((const uint8_t *)ex->down_proj.data)[0];
                (void)sink;
                r1_expert_cache__release(ec, ex);
            }
        }
        r1_expert_cache__destroy(ec);
    }
    r1_container__close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-r1m", 0);
    if (fd < 0)
        return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    uint8_t *copy = malloc(size ? size : 1);
    for (int pass = 0; pass < 2 && copy; pass++) {
        memcpy(copy, data, size);
        if (pass == 1)
            reseal(copy, size);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, copy, size, 0) != (ssize_t)size)
            break;
        exercise(path);
    }
    free(copy);
    close(fd);
    return 0;
}
