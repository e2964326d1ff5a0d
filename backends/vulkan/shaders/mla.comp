#version 450
#extension GL_GOOGLE_include_directive : require
// mla.comp: R1_OP_MLA_DECODE and R1_OP_MLA_PREFILL (lib/compute/backend.h), the absorbed MLA of
// docs/model.md §2.6 for one head of one query per workgroup (x: the head, y: the query): the query moved into
// the latent space through W_UK (the head's first qk_nope rows of kv_b_proj, read in its stored
// type), scores against the latent cache rows up to the query's own position (the causal mask:
// query t of n_tokens sees n_keys - n_tokens + t + 1 rows), softmax, the value sum over the
// latents, and W_UV. Decode is the case n_tokens = 1. Built once per kv_b weight type
// (WEIGHT_TYPE, as matmul.comp).
//
// The keys go through shared memory in chunks of CHUNK with a running maximum and sum (the
// online softmax), so the context length is bounded by the buffers only; with n_keys <= CHUNK
// this is the CPU's order of operations, up to the normalisation being applied to the value
// sum instead of to each probability.

#include "rows.glsl"

#define MAX_LATENT 1024 // kv_lora_rank + qk_rope_dim (576 for DeepSeek-V3)
#define CHUNK 512

layout(std430, binding = 0) readonly buffer Weights { uint w[]; };
layout(std430, binding = 1) readonly buffer Scales { float s[]; };
layout(std430, binding = 2) readonly buffer Q { float q[]; };
layout(std430, binding = 3) readonly buffer Lat { float lat[]; };
layout(std430, binding = 4) writeonly buffer Out { float o[]; };

layout(push_constant) uniform Params {
    uint n_heads, dn, dr, dv, rkv;
    uint n_keys, n_tokens; // n_keys: the rows the last query sees
    uint row_bytes, w_offset; // kv_b rows; w_offset in bytes
    uint s_offset, scale_cols;
    uint q_offset, lat_offset, o_offset; // floats
    float scale;
} p;

#include "weights.glsl"

shared float qlat[MAX_LATENT];
shared float olat[MAX_LATENT];
shared float prob[CHUNK];

void main()
{
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y;
    uint tid = gl_LocalInvocationID.x, group = gl_WorkGroupSize.x;
    uint dl = p.rkv + p.dr, row0 = h * (p.dn + p.dv);
    uint qb = p.q_offset + (t * p.n_heads + h) * (p.dn + p.dr);
    uint n_keys = p.n_keys - p.n_tokens + t + 1u;

    // The query in the latent space: W_UK^h^T q_nope, then the rope dims as they are.
    for (uint r = tid; r < p.rkv; r += group) {
        float acc = 0.0;
        for (uint i = 0u; i < p.dn; i++) {
            uint row = row0 + i;
            acc += q[qb + i] * weight(row, p.w_offset + row * p.row_bytes, r);
        }
        qlat[r] = acc;
        olat[r] = 0.0;
    }
    for (uint r = tid; r < p.dr; r += group)
        qlat[p.rkv + r] = q[qb + p.dn + r];
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    for (uint j0 = 0u; j0 < n_keys; j0 += CHUNK) {
        uint nc = min(uint(CHUNK), n_keys - j0);
        float cmax = -1.0 / 0.0;
        for (uint j = tid; j < nc; j += group) {
            uint kb = p.lat_offset + (j0 + j) * dl;
            float sc = 0.0;
            for (uint r = 0u; r < dl; r++)
                sc += qlat[r] * lat[kb + r];
            prob[j] = sc;
            cmax = max(cmax, sc);
        }
        float m_new = max(m, group_max(cmax));
        float alpha = exp((m - m_new) * p.scale); // 0 on the first chunk
        float part = 0.0;
        for (uint j = tid; j < nc; j += group) {
            float e = exp((prob[j] - m_new) * p.scale);
            prob[j] = e;
            part += e;
        }
        l = l * alpha + group_sum(part); // its barriers publish prob
        for (uint r = tid; r < p.rkv; r += group) {
            float acc = 0.0;
            for (uint j = 0u; j < nc; j++)
                acc += prob[j] * lat[p.lat_offset + (j0 + j) * dl + r];
            olat[r] = olat[r] * alpha + acc;
        }
        m = m_new;
        barrier(); // prob is rewritten by the next chunk
    }
    float inv = 1.0 / l;
    for (uint r = tid; r < p.rkv; r += group)
        olat[r] *= inv;
    barrier();

    // W_UV^h o_lat: one output per thread.
    for (uint c = tid; c < p.dv; c += group) {
        uint row = row0 + p.dn + c;
        uint base = p.w_offset + row * p.row_bytes;
        float acc = 0.0;
        for (uint r = 0u; r < p.rkv; r++)
            acc += weight(row, base, r) * olat[r];
        o[p.o_offset + (t * p.n_heads + h) * p.dv + c] = acc;
    }
}
