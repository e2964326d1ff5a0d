#version 450
// swiglu.comp: R1_OP_SWIGLU (lib/compute/backend.h): y = silu(a) * b elementwise over strided rows,
// with the sigmoid written so that exp never overflows (docs/model.md §8.10). One thread per element.

layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Params {
    uint n_rows, n, a_stride, b_stride, y_stride; // strides in floats
    uint a_offset, b_offset, y_offset;            // floats
    uint groups_x;
} p;

void main()
{
    uint i = (gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x) * gl_WorkGroupSize.x +
             gl_LocalInvocationID.x;
    if (i >= p.n_rows * p.n)
        return;
    uint r = i / p.n, c = i % p.n;
    float z = a[p.a_offset + r * p.a_stride + c];
    precise float silu;
    if (z >= 0.0) {
        silu = z / (1.0 + exp(-z));
    } else {
        float e = exp(z);
        silu = z * e / (1.0 + e);
    }
    precise float v = silu * b[p.b_offset + r * p.b_stride + c];
    y[p.y_offset + r * p.y_stride + c] = v;
}
