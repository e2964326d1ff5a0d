#version 450
#extension GL_GOOGLE_include_directive : require
// softmax.comp: R1_OP_SOFTMAX (lib/compute/backend.h): row r of x, in place, becomes
// exp((x - max) * scale) / sum over its first n_valid(r) entries and 0 after them (the causal
// mask of prefill). One workgroup per row; max and sum are tree reductions.

#include "rows.glsl"

layout(std430, binding = 0) buffer X { float x[]; };

layout(push_constant) uniform Params {
    uint n_rows, n;
    uint causal_base, causal_period; // causal_period 0: no mask
    uint x_offset;                   // floats
    uint groups_x;
    float scale;
} p;

void main()
{
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x;
    if (row >= p.n_rows)
        return;
    uint tid = gl_LocalInvocationID.x, group = gl_WorkGroupSize.x;
    uint base = p.x_offset + row * p.n;
    uint valid = p.n;
    if (p.causal_period > 0u)
        valid = min(p.n, p.causal_base + row % p.causal_period + 1u);
    float mx = -1.0 / 0.0;
    for (uint c = tid; c < valid; c += group)
        mx = max(mx, x[base + c]);
    mx = group_max(mx);
    float sum = 0.0;
    for (uint c = tid; c < valid; c += group) {
        float e = exp((x[base + c] - mx) * p.scale);
        x[base + c] = e;
        sum += e;
    }
    float inv = 1.0 / group_sum(sum); // its barriers also order the writes above
    for (uint c = tid; c < p.n; c += group)
        x[base + c] = c < valid ? x[base + c] * inv : 0.0;
}
