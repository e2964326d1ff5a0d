/* rope.c: YaRN frequencies (docs/model.md §3), the MLA softmax scale (§2.5) and the interleaved
 * rotation. */
#include "rope.h"

#include <math.h>

#include "error.h"

double r1_rope__mscale(double factor, double m)
{
    return factor <= 1.0 ? 1.0 : 0.1 * m * log(factor) + 1.0;
}

/* The rope pair index at which a frequency completes n_rot rotations over the original
 * context (docs/model.md §3.2). */
static double r1_rope_corr_dim(double n_rot, int32_t dim, double base, double orig_ctx)
{
    return dim * log(orig_ctx / (n_rot * 2.0 * M_PI)) / (2.0 * log(base));
}

r1_status r1_rope__init(r1_rope *r, const r1_model_config *cfg)
{
    int32_t dim = (int32_t)cfg->qk_rope_head_dim;
    if (dim <= 0 || dim % 2 != 0 || dim / 2 > R1_ROPE_MAX_PAIRS)
        return r1_error__set(R1_ERR_UNSUPPORTED, "qk_rope_head_dim %d is not an even number <= %d",
                             dim, 2 * R1_ROPE_MAX_PAIRS);
    r->n_pairs = dim / 2;
    double base = cfg->rope_theta;
    int yarn = cfg->rope_scaling == R1_ROPE_YARN && cfg->rope_factor > 1.0;
    double factor = yarn ? cfg->rope_factor : 1.0;
    r->corr_low = 0;
    r->corr_high = 0;
    if (yarn) {
        double orig = (double)cfg->rope_original_max_position_embeddings;
        double low = floor(r1_rope_corr_dim(cfg->rope_beta_fast, dim, base, orig));
        double high = ceil(r1_rope_corr_dim(cfg->rope_beta_slow, dim, base, orig));
        if (low < 0)
            low = 0;
        if (high > dim - 1)
            high = dim - 1;
        r->corr_low = (int32_t)low;
        r->corr_high = (int32_t)high;
        if (low == high)
            high += 0.001; /* the references' guard against a zero-width ramp */
        for (int32_t m = 0; m < r->n_pairs; m++) {
            double theta = 1.0 / pow(base, (2.0 * m) / dim);
            double ramp = (m - low) / (high - low);
            ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
            r->inv_freq[m] = theta * (1.0 - ramp) + theta / factor * ramp;
        }
    } else {
        for (int32_t m = 0; m < r->n_pairs; m++)
            r->inv_freq[m] = 1.0 / pow(base, (2.0 * m) / dim);
    }
    double d_qk = (double)(cfg->qk_nope_head_dim + cfg->qk_rope_head_dim);
    double ms_all = yarn ? r1_rope__mscale(factor, cfg->rope_mscale_all_dim) : 1.0;
    r->softmax_scale = ms_all * ms_all / sqrt(d_qk);
    r->rope_scale = yarn ? r1_rope__mscale(factor, cfg->rope_mscale) /
                               r1_rope__mscale(factor, cfg->rope_mscale_all_dim)
                         : 1.0;
    return R1_OK;
}

void r1_rope__table(const r1_rope *r, int64_t position, float *cs)
{
    for (int32_t m = 0; m < r->n_pairs; m++) {
        double angle = (double)position * r->inv_freq[m];
        cs[2 * m] = (float)(cos(angle) * r->rope_scale);
        cs[2 * m + 1] = (float)(sin(angle) * r->rope_scale);
    }
}

void r1_rope__apply(const r1_rope *r, const float *cs, float *x)
{
    for (int32_t m = 0; m < r->n_pairs; m++) {
        float c = cs[2 * m], s = cs[2 * m + 1];
        float a = x[2 * m], b = x[2 * m + 1];
        x[2 * m] = a * c - b * s;
        x[2 * m + 1] = a * s + b * c;
    }
}
