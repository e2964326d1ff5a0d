/* fuzz_session_state.c: libFuzzer target for the session file parser (lib/run/session_file.c,
 * docs/format.md "Session files") and the sampler blob, which r1_session_load and
 * r1_sampler_load_from_buffer read from untrusted files and buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "checksum.h"
#include "fuzz_util.h"
#include "le.h"
#include "session_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Control byte bit 0: reseal every checksum the input's own directory names (header, directory,
 * sections; the sampler blob's), so mutations reach the section parsers. */
static void reseal(uint8_t *p, size_t n, int sampler_blob)
{
    if (sampler_blob) {
        if (n >= 16)
            r1_le__put64(p + n - 8, r1_checksum__xxh64(p, n - 8));
        return;
    }
    if (n < R1_SESSION_FILE_HEADER)
        return;
    const uint32_t n_sections = r1_le__u32(p + 60);
    if (n_sections <= R1_SESSION_FILE_MAX_SECTIONS &&
        R1_SESSION_FILE_HEADER + (uint64_t)n_sections * R1_SESSION_FILE_DIR_ENTRY <= n) {
        uint8_t *dir = p + R1_SESSION_FILE_HEADER;
        for (uint32_t i = 0; i < n_sections; i++) {
            uint8_t *e = dir + i * R1_SESSION_FILE_DIR_ENTRY;
            const uint64_t off = r1_le__u64(e + 8), len = r1_le__u64(e + 16);
            if (off <= n && len <= n - off)
                r1_le__put64(e + 24, r1_checksum__xxh64(p + off, (size_t)len));
        }
        r1_le__put64(p + 80, r1_checksum__xxh64(dir, n_sections * R1_SESSION_FILE_DIR_ENTRY));
    }
    r1_le__put64(p + 120, r1_checksum__xxh64(p, 120));
}

/* Whether the file is in the writer's own form: version 1.0, the sections in the writer's
 * order, each flagged required (the parser also takes later minors, other orders and optional
 * flags, which the writer does not produce). */
static int canonical(const uint8_t *p, size_t n, const r1_session_image *img)
{
    static const char *const tags[] = {"TOKS", "KVCR", "LOGT", "GENR", "DROP", "SMPL"};
    const uint32_t n_sections = r1_le__u32(p + 60);
    if (img->n_unknown != 0 || r1_le__u16(p + 10) != 0 ||
        n_sections != (img->has_sampler ? 6u : 5u) ||
        R1_SESSION_FILE_HEADER + n_sections * R1_SESSION_FILE_DIR_ENTRY > n)
        return 0;
    for (uint32_t i = 0; i < n_sections; i++) {
        const uint8_t *e = p + R1_SESSION_FILE_HEADER + i * R1_SESSION_FILE_DIR_ENTRY;
        if (memcmp(e, tags[i], 4) != 0 || r1_le__u32(e + 4) != 1)
            return 0;
    }
    return 1;
}

static void fuzz_sampler(const uint8_t *p, size_t n)
{
    r1_sampler_image smp;
    r1_status st = r1_session_file__sampler_decode(p, n, "the input", &smp);
    if (st != R1_OK) {
        FUZZ_CHECK(st == R1_ERR_FORMAT || st == R1_ERR_CHECKSUM || st == R1_ERR_UNSUPPORTED ||
                   st == R1_ERR_NO_MEMORY);
        return;
    }
    /* An accepted blob of version 1.0 (a later minor is read too) re-encodes to its bytes. */
    const size_t size = r1_session_file__sampler_size(&smp);
    FUZZ_CHECK(size == n && smp.n_hist <= (uint32_t)smp.last_n);
    uint8_t *out = malloc(size);
    FUZZ_CHECK(out != NULL);
    r1_session_file__sampler_encode(&smp, out);
    FUZZ_CHECK(r1_le__u16(p + 10) != 0 || memcmp(out, p, n) == 0);
    free(out);
    r1_session_file__free_sampler(&smp);
}

static void fuzz_session(const uint8_t *p, size_t n, int from_fd)
{
    r1_session_file_in in = {.buf = p, .fd = -1, .size = n, .name = "the input"};
    int fd = -1;
    if (from_fd) {
        /* The file path: pread in chunks instead of the buffer. */
        fd = memfd_create("fuzz_session_state", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
        in.buf = NULL;
        in.fd = fd;
        in.name = "'memfd'";
    }
    r1_session_image img;
    r1_status st = r1_session_file__parse(&in, NULL, &img);
    if (st != R1_OK) {
        FUZZ_CHECK(st == R1_ERR_FORMAT || st == R1_ERR_CHECKSUM || st == R1_ERR_UNSUPPORTED ||
                   st == R1_ERR_NO_MEMORY);
        if (fd >= 0)
            close(fd);
        return;
    }
    /* What the parse promises: the cache rows' section lies inside the input, token ids are in
     * the vocabulary, the queue fits the context. */
    const r1_session_shape *sh = &img.shape;
    const int32_t parts = sh->cache_kind == R1_SESSION_CACHE_GQA ? 2 : 1;
    const uint64_t block = (uint64_t)img.position * sh->row_bytes;
    FUZZ_CHECK(img.cache_offset <= n && img.cache_size <= n - img.cache_offset);
    FUZZ_CHECK(img.cache_size == block * (uint64_t)parts * (uint64_t)sh->n_layers);
    FUZZ_CHECK(img.position >= 0 && img.position <= sh->n_ctx);
    FUZZ_CHECK(img.logits_rows >= 0 && img.logits_rows <= img.position);
    for (int64_t i = 0; i < img.position; i++)
        FUZZ_CHECK(img.tokens[i] >= 0 && img.tokens[i] < sh->vocab);
    FUZZ_CHECK((int64_t)img.gen.n_queue <= sh->n_ctx - img.position);
    FUZZ_CHECK(img.gen.active == img.has_sampler);
    uint8_t *rows = malloc(img.cache_size ? (size_t)img.cache_size : 1);
    FUZZ_CHECK(rows != NULL);
    const r1_session_rows dst = {.cache = {rows, rows + block}, .layer_stride = block * parts};
    FUZZ_CHECK(r1_session_file__read_rows(&in, &img, &dst) == R1_OK);
    FUZZ_CHECK(img.cache_size == 0 || memcmp(rows, p + img.cache_offset, img.cache_size) == 0);
    /* Written back, it is the same file when it was in the writer's form. */
    const r1_session_file_src src = {
        .shape = img.shape,
        .position = img.position,
        .tokens = img.tokens,
        .logits = img.logits,
        .logits_rows = img.logits_rows,
        .gen = &img.gen,
        .sampler = img.has_sampler ? &img.sampler : NULL,
        .rows = dst,
        .dropped = img.dropped,
        .n_dropped = img.n_dropped,
        .dropped_keep = img.dropped_keep,
    };
    uint64_t out_size = 0;
    FUZZ_CHECK(r1_session_file__size(&src, &out_size) == R1_OK);
    if (canonical(p, n, &img)) {
        FUZZ_CHECK(out_size == n);
        uint8_t *out = malloc(n);
        FUZZ_CHECK(out != NULL);
        FUZZ_CHECK(r1_session_file__write(&src, out, n, -1) == R1_OK);
        FUZZ_CHECK(memcmp(out, p, n) == 0);
        free(out);
    }
    free(rows);
    r1_session_file__free(&img);
    if (fd >= 0)
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* Control byte: bit 0 reseal checksums, bit 1 read through a file, bit 2 a sampler blob. */
    const uint8_t ctl = data[0];
    const size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data + 1, n);
    if (ctl & 1)
        reseal(p, n, ctl & 4);
    if (ctl & 4)
        fuzz_sampler(p, n);
    else
        fuzz_session(p, n, ctl & 2);
    free(p);
    return 0;
}
