#version 450
// rope.comp: R1_OP_ROPE (lib/compute/backend.h): pairs (x[2m], x[2m+1]) of every vector of every row
// rotated in place by the row's cos/sin table (lib/model/rope.c's interleaved layout). One thread per
// pair; `precise` keeps the products unfused, as the CPU computes them.

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer CS { float cs[]; };

layout(push_constant) uniform Params {
    uint n_rows, n_vecs, row_stride, vec_stride, n_pairs; // strides in floats
    uint x_offset, cs_offset;                             // floats
    uint groups_x;
} p;

void main()
{
    uint i = (gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x) * gl_WorkGroupSize.x +
             gl_LocalInvocationID.x;
    if (i >= p.n_rows * p.n_vecs * p.n_pairs)
        return;
    uint m = i % p.n_pairs, v = (i / p.n_pairs) % p.n_vecs, r = i / (p.n_pairs * p.n_vecs);
    uint at = p.x_offset + r * p.row_stride + v * p.vec_stride + 2u * m;
    float c = cs[p.cs_offset + r * 2u * p.n_pairs + 2u * m];
    float s = cs[p.cs_offset + r * 2u * p.n_pairs + 2u * m + 1u];
    float a = x[at], b = x[at + 1u];
    precise float ac = a * c, bs = b * s, as_ = a * s, bc = b * c;
    precise float ra = ac - bs, rb = as_ + bc;
    x[at] = ra;
    x[at + 1u] = rb;
}
