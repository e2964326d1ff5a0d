#version 450
#extension GL_GOOGLE_include_directive : require
// rmsnorm.comp: R1_OP_RMSNORM (lib/compute/backend.h): y row = x row / sqrt(mean(x row ^ 2) + eps) * g.
// One workgroup per row; its threads stride over the row, and the sum of squares is a float32
// tree reduction (the CPU keeps it in double; the difference is far below the parity bound).

#include "rows.glsl"

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer G { float g[]; };
layout(std430, binding = 2) buffer Y { float y[]; };

layout(push_constant) uniform Params {
    uint n_rows, n, x_stride, y_stride; // strides in floats
    uint x_offset, g_offset, y_offset;  // floats
    uint groups_x;                      // row = x + y * groups_x
    float eps;
} p;

void main()
{
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * p.groups_x;
    if (row >= p.n_rows)
        return; // the whole workgroup leaves together, before any barrier
    uint tid = gl_LocalInvocationID.x, group = gl_WorkGroupSize.x;
    uint xi = p.x_offset + row * p.x_stride, yi = p.y_offset + row * p.y_stride;
    float ss = 0.0;
    for (uint c = tid; c < p.n; c += group)
        ss += x[xi + c] * x[xi + c];
    float mean = group_sum(ss) / float(p.n);
    float inv = 1.0 / sqrt(mean + p.eps);
    for (uint c = tid; c < p.n; c += group) {
        precise float v = x[xi + c] * inv;
        y[yi + c] = v * g[p.g_offset + c];
    }
}
