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

/* r1_session_step in two halves around its forward pass, so that several sessions' passes can be
 * one (batch.c). step_begin: the checks, then R1_OK with the n_eval ids at *eval (in the session,
 * valid until step_end; 0: no pass) the pass evaluates, or any other status, which ends the step
 * as r1_session_step's result. step_end: st is the pass's status (r1_session__eval's, R1_OK when
 * there was none), n_eval its ids; returns the step's result. */
r1_status r1_generate__step_begin(r1_session *s, int32_t *id_out, int32_t *kind_out,
                                  const int32_t **eval, size_t *n_eval);
r1_status r1_generate__step_end(r1_session *s, r1_status st, size_t n_eval, int32_t *id_out,
                                int32_t *kind_out);

#endif
