/* router.c: sigmoid/softmax scoring, group-limited top-k and weight normalisation (docs/model.md
 * §2.8). */
#include "router.h"

#include <math.h>

#include "error.h"

r1_status r1_router__check(const r1_model_config *cfg)
{
    int64_t e = cfg->n_routed_experts, g = cfg->n_group > 0 ? cfg->n_group : 1;
    if (e <= 0 || e > R1_ROUTER_MAX_EXPERTS)
        return r1_error__set(R1_ERR_UNSUPPORTED, "n_routed_experts %lld is outside 1..%d",
                             (long long)e, R1_ROUTER_MAX_EXPERTS);
    if (g > R1_ROUTER_MAX_GROUPS || e % g != 0)
        return r1_error__set(R1_ERR_UNSUPPORTED, "n_group %lld does not divide %lld experts",
                             (long long)g, (long long)e);
    if (cfg->num_experts_per_tok <= 0 || cfg->num_experts_per_tok > R1_ROUTER_MAX_TOPK ||
        cfg->num_experts_per_tok > e)
        return r1_error__set(R1_ERR_UNSUPPORTED, "num_experts_per_tok %lld is out of range",
                             (long long)cfg->num_experts_per_tok);
    if (cfg->topk_group < 1 || cfg->topk_group > g)
        return r1_error__set(R1_ERR_UNSUPPORTED, "topk_group %lld is outside 1..n_group",
                             (long long)cfg->topk_group);
    if (cfg->topk_method != R1_TOPK_GREEDY && g > 1 &&
        cfg->topk_group * (e / g) < cfg->num_experts_per_tok)
        return r1_error__set(
            R1_ERR_UNSUPPORTED, "topk_group %lld groups of %lld experts cannot supply %lld experts",
            (long long)cfg->topk_group, (long long)(e / g), (long long)cfg->num_experts_per_tok);
    return R1_OK;
}

/* Index of the largest value among n not yet taken; lowest index on ties. */
static int64_t r1_argmax_untaken(const double *v, const uint8_t *taken, int64_t n)
{
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best]))
            best = i;
    return best;
}

void r1_router__select(const r1_model_config *cfg, const float *u, const float *bias,
                       int32_t *experts_out, float *weights_out)
{
    const int64_t n = cfg->n_routed_experts, k = cfg->num_experts_per_tok;
    double score[R1_ROUTER_MAX_EXPERTS], choice[R1_ROUTER_MAX_EXPERTS];
    uint8_t taken[R1_ROUTER_MAX_EXPERTS] = {0};

    /* Scores in double: selection is a discrete decision, and rounding creates ties. */
    if (cfg->scoring_func == R1_SCORING_SIGMOID) {
        for (int64_t i = 0; i < n; i++) {
            double z = u[i];
            score[i] = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
        }
    } else {
        double mx = u[0], sum = 0;
        for (int64_t i = 1; i < n; i++)
            mx = u[i] > mx ? u[i] : mx;
        for (int64_t i = 0; i < n; i++)
            sum += (score[i] = exp((double)u[i] - mx));
        for (int64_t i = 0; i < n; i++)
            score[i] /= sum;
    }
    /* The correction bias steers selection only, never the weights. */
    int use_bias = cfg->topk_method == R1_TOPK_NOAUX_TC && bias != NULL;
    for (int64_t i = 0; i < n; i++)
        choice[i] = score[i] + (use_bias ? (double)bias[i] : 0.0);

    const int64_t g = cfg->n_group > 0 ? cfg->n_group : 1;
    if (g > 1 && cfg->topk_method != R1_TOPK_GREEDY) {
        const int64_t per = n / g;
        double gscore[R1_ROUTER_MAX_GROUPS];
        uint8_t gtaken[R1_ROUTER_MAX_GROUPS] = {0};
        for (int64_t j = 0; j < g; j++) {
            const double *c = choice + j * per;
            if (cfg->topk_method == R1_TOPK_NOAUX_TC) { /* sum of the two largest */
                double a = -INFINITY, b = -INFINITY;
                for (int64_t i = 0; i < per; i++) {
                    if (c[i] > a) {
                        b = a;
                        a = c[i];
                    } else if (c[i] > b) {
                        b = c[i];
                    }
                }
                gscore[j] = per > 1 ? a + b : a;
            } else { /* group_limited_greedy: the maximum */
                double a = -INFINITY;
                for (int64_t i = 0; i < per; i++)
                    a = c[i] > a ? c[i] : a;
                gscore[j] = a;
            }
        }
        for (int64_t kept = 0; kept < cfg->topk_group; kept++)
            gtaken[r1_argmax_untaken(gscore, gtaken, g)] = 1;
        /* Excluded groups can never be chosen (the official -inf mask, docs/model.md §2.8). */
        for (int64_t j = 0; j < g; j++)
            if (!gtaken[j])
                for (int64_t i = 0; i < per; i++)
                    taken[j * per + i] = 1;
    }

    uint8_t chosen[R1_ROUTER_MAX_EXPERTS] = {0};
    for (int64_t s = 0; s < k; s++) {
        int64_t best = r1_argmax_untaken(choice, taken, n);
        taken[best] = 1;
        chosen[best] = 1;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (chosen[i])
            sum += score[i];
    int normalise = cfg->norm_topk_prob && k > 1;
    int32_t out = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!chosen[i])
            continue;
        double w = normalise ? score[i] / sum : score[i];
        experts_out[out] = (int32_t)i;
        weights_out[out] = (float)(w * cfg->routed_scaling_factor);
        out++;
    }
}
