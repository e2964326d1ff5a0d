/* model.h: the model object behind r1_model: container, expert store, tokenizer, references
 * (internal). */
#ifndef R1_MODEL_H
#define R1_MODEL_H

#include "compute.h"
#include "container.h"
#include "expert_cache.h"
#include "forward.h"
#include "r1.h"
#include "tokenizer.h"

/* Borrowed parts, valid while the caller holds a reference. */
r1_container *r1_model__container(const r1_model *m);
r1_expert_cache *r1_model__experts(const r1_model *m);
const r1_tokenizer *r1_model__tokenizer(const r1_model *m);
const r1_model_config *r1_model__config(const r1_model *m);
/* The device the model's ops run on (shared by its sessions; the backends lock internally). */
r1_compute *r1_model__compute(r1_model *m);
/* 1 unless the options turned the router lookahead off (r1_model_opts_set_expert_prefetch). */
int32_t r1_model__expert_prefetch(const r1_model *m);

/* The forward pass bound once for this model (r1_forward__bind: weight views, norm and W_UK
 * copies, rope), which its sessions share through r1_forward__share. Bound by the first caller,
 * under the model's lock (a failure is returned to that caller and the next one tries again),
 * then read-only until the model is freed; thread-safe. */
r1_status r1_model__forward(r1_model *m, const r1_forward **out);

/* Reference counting: a session retains its model and releases it when destroyed; the model is
 * freed when the last reference goes (r1_model_destroy drops the creator's reference).
 * Thread-safe. retain returns m. */
r1_model *r1_model__retain(r1_model *m);
void r1_model__release(r1_model *m);

#endif
