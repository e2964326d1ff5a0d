/* generate.h: what session.c needs from the generation state machine (generate.c) (internal). */
#ifndef R1_GENERATE_H
#define R1_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

/* Updates the session's "inside <think>" flag from ids that entered the cache. */
void r1_generate__track_think(r1_session *s, const int32_t *ids, size_t n);
/* Ends any generation in progress and frees its state (reset, truncate, destroy). */
void r1_generate__end(r1_session *s);
/* Ends any generation and frees every generation buffer (destroy). */
void r1_generate__free(r1_session *s);

#endif
