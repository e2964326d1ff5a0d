/* chat.h: native rendering of the DeepSeek chat templates (internal API of lib/text/chat.c). */
#ifndef R1_CHAT_H
#define R1_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

/* Template flavours. R1 strips earlier answers' reasoning and opens `<think>\n` in the
 * generation prompt; V3 does neither (docs/model.md §6.4). */
enum { R1_CHAT__FLAVOUR_R1 = 0, R1_CHAT__FLAVOUR_V3 = 1 };

/* Message roles: the values of the planned public R1_ROLE_* constants (docs/api.md §6). */
enum { R1_CHAT__ROLE_SYSTEM = 0, R1_CHAT__ROLE_USER = 1, R1_CHAT__ROLE_ASSISTANT = 2 };

/* Render n messages (roles[i], NUL-terminated UTF-8 contents[i]) as the model's chat template
 * would, after the BOS string bos ("" for none). add_generation_prompt is 0 or 1. The text and a
 * NUL go to buf (cap bytes, the NUL included); *len_out receives the length without the NUL, or
 * the length needed on R1_ERR_BUFFER_TOO_SMALL. Errors: R1_ERR_INVALID_ARG (NULL argument,
 * unknown flavour, unsupported role: tool calls and results are not rendered),
 * R1_ERR_INVALID_UTF8 (naming the message and byte offset), R1_ERR_BUFFER_TOO_SMALL. */
r1_status r1_chat__render(int32_t flavour, const char *bos, const int32_t *roles,
                          const char *const *contents, size_t n, int32_t add_generation_prompt,
                          char *buf, size_t cap, size_t *len_out);

#endif
