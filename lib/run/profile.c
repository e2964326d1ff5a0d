/* profile.c: per-session operation timing and weight traffic (the counters live in forward.c). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "r1.h"
#include "session.h"

R1_API r1_status r1_session_set_profiling(r1_session *s, int32_t on)
{
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_set_profiling: session is NULL");
    if (!on) {
        s->forward.prof = NULL;
        return R1_OK;
    }
    const r1_model_config *cfg = s->forward.cfg;
    const size_t n = (size_t)cfg->num_hidden_layers * (size_t)cfg->n_routed_experts;
    if (s->prof == NULL) {
        r1_forward_profile *p = calloc(1, sizeof *p);
        uint64_t *counts = calloc(n > 0 ? n : 1, sizeof *counts);
        if (p == NULL || counts == NULL) {
            free(p);
            free(counts);
            return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate profiling counters");
        }
        p->expert_tokens = counts;
        s->prof = p;
    }
    uint64_t *counts = s->prof->expert_tokens;
    memset(s->prof, 0, sizeof *s->prof);
    memset(counts, 0, (n > 0 ? n : 1) * sizeof *counts);
    s->prof->expert_tokens = counts;
    s->forward.prof = s->prof;
    return R1_OK;
}

R1_API r1_status r1_session_get_profile(const r1_session *s, r1_session_profile *out)
{
    r1_error__clear();
    if (s == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_get_profile: %s is NULL",
                             s == NULL ? "session" : "profile");
    if (out->struct_size < offsetof(r1_session_profile, reserved) + sizeof out->reserved)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_session_get_profile: struct_size %u is too small; set it to "
                             "sizeof(r1_session_profile)",
                             (unsigned)out->struct_size);
    r1_session_profile p;
    memset(&p, 0, sizeof p);
    p.struct_size = out->struct_size < sizeof p ? out->struct_size : (uint32_t)sizeof p;
    const r1_forward_profile *k = s->prof;
    if (k != NULL) {
        p.n_tokens = k->n_tokens;
        p.n_passes = k->n_chunks;
        p.weight_bytes = k->weight_bytes;
        p.expert_bytes = k->expert_bytes;
        p.expert_uses = k->expert_uses;
        p.total_ms = (double)k->total_ns / 1e6;
        for (int i = 0; i < R1_PROFILE_N_CLASSES; i++) {
            p.ms[i] = (double)k->ns[i] / 1e6;
            p.class_weight_bytes[i] = k->class_bytes[i];
        }
        p.embed_bytes = k->embed_bytes;
    }
    memcpy(out, &p, p.struct_size);
    return R1_OK;
}

R1_API r1_status r1_session_get_expert_counts(const r1_session *s, uint64_t *counts, size_t n)
{
    r1_error__clear();
    if (s == NULL || counts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_get_expert_counts: %s is NULL",
                             s == NULL ? "session" : "counts");
    const r1_model_config *cfg = s->forward.cfg;
    const size_t want = (size_t)cfg->num_hidden_layers * (size_t)cfg->n_routed_experts;
    if (n != want)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_session_get_expert_counts: n is %zu, the model has %zu "
                             "(layers x routed experts)",
                             n, want);
    if (s->prof == NULL)
        memset(counts, 0, n * sizeof *counts);
    else
        memcpy(counts, s->prof->expert_tokens, n * sizeof *counts);
    return R1_OK;
}
