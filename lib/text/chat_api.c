/* chat_api.c: r1_chat_render(): the model's chat format, chosen from its tokenizer. */
#include <string.h>

#include "chat.h"
#include "error.h"
#include "model.h"
#include "r1.h"
#include "tokenizer.h"

R1_API r1_status r1_chat_render(const r1_model *model, const int32_t *roles,
                                const char *const *contents, size_t n_messages,
                                int32_t add_generation_prompt, char *buf, size_t cap,
                                size_t *len_out)
{
    r1_error__clear();
    if (model == NULL || len_out == NULL || (n_messages > 0 && (roles == NULL || contents == NULL)))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_chat_render: %s is NULL",
                             model == NULL     ? "model"
                             : len_out == NULL ? "len_out"
                             : roles == NULL   ? "roles"
                                               : "contents");
    const r1_tokenizer *tok = r1_model__tokenizer(model);
    /* R1 models have a real </think> token; V3 has a placeholder in its place. */
    int32_t flavour = r1_tokenizer__token_to_id(tok, "</think>", 8) >= 0 ? R1_CHAT__FLAVOUR_R1
                                                                         : R1_CHAT__FLAVOUR_V3;
    size_t bos_len = 0;
    int32_t bos = r1_tokenizer__bos_id(tok);
    const char *bos_bytes = bos >= 0 ? r1_tokenizer__token_bytes(tok, bos, &bos_len) : NULL;
    char bos_text[256] = "";
    if (bos_bytes != NULL && bos_len < sizeof bos_text)
        memcpy(bos_text, bos_bytes, bos_len), bos_text[bos_len] = '\0';
    return r1_chat__render(flavour, bos_text, roles, contents, n_messages, add_generation_prompt,
                           buf, cap, len_out);
}
