/* router.h: MoE expert selection and combination weights for one token (docs/model.md §2.8)
 * (internal). */
#ifndef R1_ROUTER_H
#define R1_ROUTER_H

#include <stdint.h>

#include "model_config.h"

enum { R1_ROUTER_MAX_EXPERTS = 1024, R1_ROUTER_MAX_GROUPS = 64, R1_ROUTER_MAX_TOPK = 64 };

/* Checks that cfg's routing fits the fixed tables above (done once at model load). */
r1_status r1_router__check(const r1_model_config *cfg);

/* From the gate logits u (n_routed_experts floats, fp32-accumulated) and the correction bias
 * (V3 noaux_tc; NULL otherwise) picks num_experts_per_tok experts and their combination weights.
 * The experts are written in increasing index order so that every caller accumulates expert
 * outputs in one fixed order. Ties break toward the lower index (groups and experts). */
void r1_router__select(const r1_model_config *cfg, const float *u, const float *bias,
                       int32_t *experts_out, float *weights_out);

#endif
