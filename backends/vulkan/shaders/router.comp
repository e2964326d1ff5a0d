#version 450
// router.comp: R1_OP_ROUTER (lib/compute/backend.h), the algorithm of lib/model/router.c step by step so the
// same experts come out: scores in double (sigmoid, or softmax over the logits), the correction
// bias added for selection only, group scores (sum of the two largest, or the maximum) and the
// topk_group best groups, then top_k rounds of argmax over the experts not yet taken, ties to
// the lower index; the weights normalised over the chosen experts' scores (summed in index
// order) and times routed_scaling_factor. One workgroup per token. Needs shaderFloat64; GLSL
// has no double exp, so dexp below evaluates it to about one ulp.

#define MAX_GROUP 256
#define MAX_EXPERTS 1024
#define MAX_GROUPS 64
#define MAX_TOPK 64

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer U { float u[]; };
layout(std430, binding = 1) readonly buffer Bias { float bias[]; };
layout(std430, binding = 2) writeonly buffer Out { float out_w[]; };
layout(std430, binding = 3) writeonly buffer OutIds { int out_id[]; }; // the same buffer as Out

layout(push_constant) uniform Params {
    uint n_rows, n_experts, top_k, n_group, topk_group;
    uint topk_method, scoring_func, norm_topk_prob, use_bias;
    uint u_offset, bias_offset, out_offset; // floats
    uint groups_x;
    float pad;
    double routed_scaling_factor;
} p;

const uint GREEDY = 0u, NOAUX_TC = 2u, SIGMOID = 1u;

shared double score[MAX_EXPERTS];
shared uint taken[MAX_EXPERTS / 32];
shared double red_v[MAX_GROUP];
shared uint red_i[MAX_GROUP];
shared double gscore[MAX_GROUPS];
shared uint chosen[MAX_TOPK];

// exp(x) for x <= 0 (the only arguments here): x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its
// Taylor series to r^13 (truncation below 1e-17), ln2 split in two so k ln2 is exact.
double dexp(double x)
{
    if (x < -745.0LF)
        return 0.0LF;
    double k = floor(x * 1.4426950408889634LF + 0.5LF);
    double r = (x - k * 0.693147180369123816490LF) - k * 1.90821492927058770002e-10LF;
    double t = 1.0LF / 6227020800.0LF; // 1/13!
    t = t * r + 1.0LF / 479001600.0LF;
    t = t * r + 1.0LF / 39916800.0LF;
    t = t * r + 1.0LF / 3628800.0LF;
    t = t * r + 1.0LF / 362880.0LF;
    t = t * r + 1.0LF / 40320.0LF;
    t = t * r + 1.0LF / 5040.0LF;
    t = t * r + 1.0LF / 720.0LF;
    t = t * r + 1.0LF / 120.0LF;
    t = t * r + 1.0LF / 24.0LF;
    t = t * r + 1.0LF / 6.0LF;
    t = t * r + 0.5LF;
    t = t * r + 1.0LF;
    t = t * r + 1.0LF;
    return ldexp(t, int(k));
}

bool is_taken(uint i)
{
    return (taken[i >> 5] & (1u << (i & 31u))) != 0u;
}

double choice(uint i)
{
    return score[i] + (p.use_bias != 0u ? double(bias[p.bias_offset + i]) : 0.0LF);
}

// Index of the largest untaken choice, lowest index on ties (every thread calls it).
uint argmax_untaken()
{
    uint tid = gl_LocalInvocationID.x, group = gl_WorkGroupSize.x;
    uint best = 0xffffffffu;
    double bv = 0.0LF;
    for (uint i = tid; i < p.n_experts; i += group)
        if (!is_taken(i) && (best == 0xffffffffu || choice(i) > bv)) {
            best = i;
            bv = choice(i);
        }
    red_i[tid] = best;
    red_v[tid] = bv;
    barrier();
    for (uint h = group / 2u; h > 0u; h /= 2u) {
        if (tid < h) {
            uint j = red_i[tid + h];
            uint k = red_i[tid];
            if (j != 0xffffffffu &&
                (k == 0xffffffffu || red_v[tid + h] > red_v[tid] ||
                 (red_v[tid + h] == red_v[tid] && j < k))) {
                red_i[tid] = j;
                red_v[tid] = red_v[tid + h];
            }
        }
        barrier();
    }
    uint r = red_i[0];
    barrier();
    return r;
}

void main()
{
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x;
    if (row >= p.n_rows)
        return;
    uint tid = gl_LocalInvocationID.x, group = gl_WorkGroupSize.x;
    uint ub = p.u_offset + row * p.n_experts;
    const uint n = p.n_experts;

    if (p.scoring_func == SIGMOID) {
        for (uint i = tid; i < n; i += group) {
            double z = double(u[ub + i]);
            score[i] = z >= 0.0LF ? 1.0LF / (1.0LF + dexp(-z)) : dexp(z) / (1.0LF + dexp(z));
        }
    } else {
        float mx = u[ub];
        for (uint i = 1u; i < n; i++)
            mx = max(mx, u[ub + i]);
        for (uint i = tid; i < n; i += group)
            score[i] = dexp(double(u[ub + i]) - double(mx));
    }
    for (uint i = tid; i < MAX_EXPERTS / 32u; i += group)
        taken[i] = 0u;
    barrier();
    if (p.scoring_func != SIGMOID && tid == 0u) {
        double sum = 0.0LF; // in index order, as the CPU adds them
        for (uint i = 0u; i < n; i++)
            sum += score[i];
        for (uint i = 0u; i < n; i++)
            score[i] /= sum;
    }
    barrier();

    uint g = max(p.n_group, 1u);
    if (g > 1u && p.topk_method != GREEDY) {
        uint per = n / g;
        for (uint j = tid; j < g; j += group) {
            double a = -1.0LF / 0.0LF, b = -1.0LF / 0.0LF;
            for (uint i = 0u; i < per; i++) {
                double c = choice(j * per + i);
                if (p.topk_method == NOAUX_TC) { // sum of the two largest
                    if (c > a) {
                        b = a;
                        a = c;
                    } else if (c > b) {
                        b = c;
                    }
                } else { // group_limited_greedy: the maximum
                    a = c > a ? c : a;
                }
            }
            gscore[j] = p.topk_method == NOAUX_TC && per > 1u ? a + b : a;
        }
        barrier();
        if (tid == 0u) {
            uint kept = 0u; // bit j: group j kept (g <= 64)
            uint kept_hi = 0u;
            for (uint s = 0u; s < p.topk_group; s++) {
                uint best = 0xffffffffu;
                for (uint j = 0u; j < g; j++) {
                    bool is_kept = j < 32u ? (kept & (1u << j)) != 0u
                                           : (kept_hi & (1u << (j - 32u))) != 0u;
                    if (!is_kept && (best == 0xffffffffu || gscore[j] > gscore[best]))
                        best = j;
                }
                if (best < 32u)
                    kept |= 1u << best;
                else
                    kept_hi |= 1u << (best - 32u);
            }
            for (uint j = 0u; j < g; j++) {
                bool is_kept =
                    j < 32u ? (kept & (1u << j)) != 0u : (kept_hi & (1u << (j - 32u))) != 0u;
                if (!is_kept) // excluded groups can never be chosen
                    for (uint i = j * per; i < (j + 1u) * per; i++)
                        taken[i >> 5] |= 1u << (i & 31u);
            }
        }
        barrier();
    }

    for (uint s = 0u; s < p.top_k; s++) {
        uint best = argmax_untaken();
        if (tid == 0u) {
            taken[best >> 5] |= 1u << (best & 31u);
            chosen[s] = best;
        }
        barrier();
    }

    if (tid == 0u) {
        uint k = p.top_k;
        for (uint a = 1u; a < k; a++) { // increasing expert order
            uint v = chosen[a], b = a;
            while (b > 0u && chosen[b - 1u] > v) {
                chosen[b] = chosen[b - 1u];
                b--;
            }
            chosen[b] = v;
        }
        double sum = 0.0LF;
        for (uint a = 0u; a < k; a++)
            sum += score[chosen[a]];
        bool normalise = p.norm_topk_prob != 0u && k > 1u;
        uint ob = p.out_offset + row * 2u * k;
        for (uint a = 0u; a < k; a++) {
            double w = normalise ? score[chosen[a]] / sum : score[chosen[a]];
            out_w[ob + a] = float(w * p.routed_scaling_factor);
            out_id[ob + k + a] = int(chosen[a]);
        }
    }
}
