#version 450
// combine.comp: R1_OP_MOE_COMBINE (lib/compute/backend.h): dst row rows[i] += w[i] * src row i (one
// routed expert's tokens, distinct rows, so no two threads write one element), or with
// scatter 0, dst row i += src row i. One thread per element; `precise` keeps the product and
// the sum apart, as the CPU computes them.

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer D { float dst[]; };
layout(std430, binding = 1) readonly buffer S { float src[]; };
layout(std430, binding = 2) readonly buffer W { float w[]; };
layout(std430, binding = 3) readonly buffer R { int rows[]; };

layout(push_constant) uniform Params {
    uint n_rows, n, n_dst_rows, scatter;
    uint dst_offset, src_offset, w_offset, rows_offset; // floats (rows: words)
    uint groups_x;
} p;

void main()
{
    uint i = (gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x) * gl_WorkGroupSize.x +
             gl_LocalInvocationID.x;
    if (i >= p.n_rows * p.n)
        return;
    uint r = i / p.n, c = i % p.n;
    float v = src[p.src_offset + i];
    uint to = r;
    if (p.scatter != 0u) {
        int d = rows[p.rows_offset + r];
        if (d < 0 || uint(d) >= p.n_dst_rows)
            return; // refused on the host; never write outside dst
        to = uint(d);
        precise float wv = w[p.w_offset + r] * v;
        v = wv;
    }
    precise float sum = dst[p.dst_offset + to * p.n + c] + v;
    dst[p.dst_offset + to * p.n + c] = sum;
}
