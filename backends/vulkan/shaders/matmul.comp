#version 450
#extension GL_GOOGLE_include_directive : require
// matmul.comp: y(T, rows) = x(T, cols) . W(rows, cols)^T with W in its stored type, dequantised
// on the fly; every sum is accumulated in float32. Built once per weight type: WEIGHT_TYPE is
// the r1_dtype value (lib/core/dtype.h), set by glslc -D at build time.
//
// One workgroup computes one output row for TOKENS_PER_GROUP tokens: its threads walk the row's
// columns with a stride of the workgroup size (neighbouring threads read neighbouring weights),
// each dequantised weight is reused for all the group's tokens, and a tree reduction in shared
// memory sums the threads' partials. The workgroup size is a specialization constant that the
// backend sets from the device's subgroup size; it must be a power of two <= MAX_GROUP.

#define TOKENS_PER_GROUP 8
#define MAX_GROUP 256

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Weights { uint w[]; };
layout(std430, binding = 1) readonly buffer Scales { float s[]; };
layout(std430, binding = 2) readonly buffer Inputs { float x[]; };
layout(std430, binding = 3) writeonly buffer Outputs { float y[]; };

layout(push_constant) uniform Params {
    uint rows;
    uint cols;
    uint n_tokens;
    uint row_bytes;
    uint w_offset;   // bytes
    uint s_offset;   // floats
    uint scale_cols; // fp8: block-scale columns, ceil(cols / 128)
    uint x_offset;   // floats
    uint y_offset;   // floats
    uint groups_x;   // workgroups along x; row = x + y * groups_x
} p;

shared float partial[TOKENS_PER_GROUP][MAX_GROUP];

#include "weights.glsl"

void main()
{
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x;
    if (row >= p.rows)
        return; // the whole workgroup leaves together, before any barrier
    uint t0 = gl_WorkGroupID.z * TOKENS_PER_GROUP;
    uint nt = min(uint(TOKENS_PER_GROUP), p.n_tokens - t0);
    uint tid = gl_LocalInvocationID.x, group = gl_WorkGroupSize.x;
    uint base = p.w_offset + row * p.row_bytes;

    float acc[TOKENS_PER_GROUP];
    for (uint t = 0u; t < TOKENS_PER_GROUP; t++)
        acc[t] = 0.0;
    for (uint c = tid; c < p.cols; c += group) {
        float wv = weight(row, base, c);
        uint xi = p.x_offset + t0 * p.cols + c;
        for (uint t = 0u; t < nt; t++)
            acc[t] += wv * x[xi + t * p.cols];
    }
    for (uint t = 0u; t < TOKENS_PER_GROUP; t++)
        partial[t][tid] = acc[t];
    barrier();
    for (uint half_group = group / 2u; half_group > 0u; half_group /= 2u) {
        if (tid < half_group)
            for (uint t = 0u; t < nt; t++)
                partial[t][tid] += partial[t][tid + half_group];
        barrier();
    }
    if (tid < nt)
        y[p.y_offset + (t0 + tid) * p.rows + row] = partial[tid][0];
}
