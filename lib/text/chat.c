/* chat.c: native rendering of the DeepSeek-R1 and V3 chat templates, without a Jinja engine. */
#include <string.h>

#include "chat.h"
#include "error.h"
#include "utf8.h"
#include "r1.h"

/*
 * What the shipped chat_template strings produce for system, user and assistant text messages
 * (docs/model.md §6.4; test/ref/chat/render_template.js renders the real templates for the tests):
 *
 *   BOS + system prompt + for each turn: "<｜User｜>" + content
 *                                      | "<｜Assistant｜>" + answer + "<｜end▁of▁sentence｜>"
 *       + generation prompt: "<｜Assistant｜><think>\n" (R1) or "<｜Assistant｜>" (V3)
 *
 * The system prompt is every system message, wherever it appears, joined with "\n\n" and placed
 * right after BOS (Variant A of the spec: what V3 and the revised R1 tokenizer_config.json ship;
 * the older "last one wins" variant silently drops instructions). For R1 an assistant answer is
 * the text after its last "</think>", untrimmed, because the template drops earlier reasoning
 * with split('</think>')[-1]; V3 keeps the text whole.
 */

/* The special tokens' text; octal escapes keep the source ASCII ("\357\275\234" is U+FF5C "｜",
 * "\342\226\201" is U+2581 "▁"). */
#define R1_CHAT_USER        "<\357\275\234User\357\275\234>"
#define R1_CHAT_ASSISTANT   "<\357\275\234Assistant\357\275\234>"
#define R1_CHAT_EOS         "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>"
#define R1_CHAT_THINK_OPEN  "<think>\n"
#define R1_CHAT_THINK_CLOSE "</think>"

/* Output that counts every byte but stores only what fits, so one pass sizes and writes. */
typedef struct r1_chat_out {
    char *buf;
    size_t cap; /* bytes that may hold text (the NUL's byte excluded) */
    size_t len;
} r1_chat_out;

static void r1_chat_put(r1_chat_out *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

static void r1_chat_puts(r1_chat_out *o, const char *s)
{
    r1_chat_put(o, s, strlen(s));
}

/* The part of an R1 answer the template keeps: everything after the last "</think>". */
static const char *r1_chat_after_think(const char *content)
{
    const char *kept = content;
    for (const char *p = strstr(content, R1_CHAT_THINK_CLOSE); p != NULL;
         p = strstr(p + 1, R1_CHAT_THINK_CLOSE))
        kept = p + strlen(R1_CHAT_THINK_CLOSE);
    return kept;
}

static r1_status r1_chat_validate(int32_t flavour, const char *bos, const int32_t *roles,
                                  const char *const *contents, size_t n,
                                  int32_t add_generation_prompt, const char *buf, size_t cap,
                                  const size_t *len_out)
{
    const char *fn = "r1_chat_render";
    if (len_out == NULL || bos == NULL || (buf == NULL && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                             len_out == NULL ? "len_out"
                             : bos == NULL   ? "bos"
                                             : "buf");
    if (n > 0 && (roles == NULL || contents == NULL))
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: %s is NULL for %zu messages", fn,
                             roles == NULL ? "roles" : "contents", n);
    if (flavour != R1_CHAT__FLAVOUR_R1 && flavour != R1_CHAT__FLAVOUR_V3)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: unknown template flavour %d", fn,
                             (int)flavour);
    if (add_generation_prompt != 0 && add_generation_prompt != 1)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: add_generation_prompt %d is not 0 or 1", fn,
                             (int)add_generation_prompt);
    for (size_t i = 0; i < n; i++) {
        if (roles[i] != R1_CHAT__ROLE_SYSTEM && roles[i] != R1_CHAT__ROLE_USER &&
            roles[i] != R1_CHAT__ROLE_ASSISTANT)
            return r1_error__set(R1_ERR_INVALID_ARG,
                                 "%s: message %zu has role %d; supported are system (0), user "
                                 "(1) and assistant (2)",
                                 fn, i, (int)roles[i]);
        if (contents[i] == NULL)
            return r1_error__set(R1_ERR_INVALID_ARG, "%s: contents[%zu] is NULL", fn, i);
        size_t len = strlen(contents[i]);
        size_t valid = r1_utf8__valid_prefix((const unsigned char *)contents[i], len);
        if (valid != len)
            return r1_error__set(R1_ERR_INVALID_UTF8,
                                 "%s: message %zu is not valid UTF-8 at byte %zu", fn, i, valid);
    }
    return R1_OK;
}

r1_status r1_chat__render(int32_t flavour, const char *bos, const int32_t *roles,
                          const char *const *contents, size_t n, int32_t add_generation_prompt,
                          char *buf, size_t cap, size_t *len_out)
{
    r1_status st = r1_chat_validate(flavour, bos, roles, contents, n, add_generation_prompt, buf,
                                    cap, len_out);
    if (st != R1_OK)
        return st;
    r1_chat_out o = {buf, cap > 0 ? cap - 1 : 0, 0};
    r1_chat_puts(&o, bos);
    int first_system = 1;
    for (size_t i = 0; i < n; i++) {
        if (roles[i] != R1_CHAT__ROLE_SYSTEM)
            continue;
        if (!first_system)
            r1_chat_puts(&o, "\n\n");
        r1_chat_puts(&o, contents[i]);
        first_system = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (roles[i] == R1_CHAT__ROLE_USER) {
            r1_chat_puts(&o, R1_CHAT_USER);
            r1_chat_puts(&o, contents[i]);
        } else if (roles[i] == R1_CHAT__ROLE_ASSISTANT) {
            r1_chat_puts(&o, R1_CHAT_ASSISTANT);
            r1_chat_puts(&o, flavour == R1_CHAT__FLAVOUR_R1 ? r1_chat_after_think(contents[i])
                                                            : contents[i]);
            r1_chat_puts(&o, R1_CHAT_EOS);
        }
    }
    if (add_generation_prompt) {
        r1_chat_puts(&o, R1_CHAT_ASSISTANT);
        if (flavour == R1_CHAT__FLAVOUR_R1)
            r1_chat_puts(&o, R1_CHAT_THINK_OPEN);
    }
    *len_out = o.len;
    if (cap == 0 || o.len > cap - 1) {
        if (cap > 0)
            buf[0] = '\0'; /* never leave a truncated prompt that looks complete */
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "r1_chat_render: %zu bytes needed",
                             o.len + 1);
    }
    buf[o.len] = '\0';
    return R1_OK;
}
