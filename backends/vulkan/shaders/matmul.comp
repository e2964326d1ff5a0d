#version 450
// matmul.comp: y(T, rows) = x(T, cols) . W(rows, cols)^T with W in its stored type, dequantised
// on the fly; every sum is accumulated in float32. Built once per weight type: WEIGHT_TYPE is
// the r1_dtype value (lib/dtype.h), set by glslc -D at build time.
//
// One workgroup computes one output row for TOKENS_PER_GROUP tokens: its threads walk the row's
// columns with a stride of the workgroup size (neighbouring threads read neighbouring weights),
// each dequantised weight is reused for all the group's tokens, and a tree reduction in shared
// memory sums the threads' partials. The workgroup size is a specialization constant that the
// backend sets from the device's subgroup size; it must be a power of two <= MAX_GROUP.

#define TOKENS_PER_GROUP 8
#define MAX_GROUP 256

layout(local_size_x_id = 0) in;

// Weights are read as 32-bit words and bytes are extracted, so rows of 34-byte q8_0 or 18-byte
// q4_0 blocks need no 8- or 16-bit storage feature and no alignment.
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

uint byte_at(uint b)
{
    return (w[b >> 2] >> ((b & 3u) * 8u)) & 0xffu;
}

// b is even, so the 16 bits never straddle two words.
uint half_at(uint b)
{
    return (w[b >> 2] >> ((b & 2u) * 8u)) & 0xffffu;
}

float f16_at(uint b)
{
    return unpackHalf2x16(half_at(b)).x;
}

float fp8_e4m3(uint v)
{
    uint e = (v >> 3) & 15u, m = v & 7u;
    float mag;
    if (e == 0u)
        mag = float(m) * (1.0 / 512.0); // subnormal: m * 2^-3 * 2^-6
    else if (e == 15u && m == 7u)
        mag = uintBitsToFloat(0x7fc00000u); // e4m3fn has NaN and no infinity
    else
        mag = uintBitsToFloat(((e + 120u) << 23) | (m << 20));
    return (v & 0x80u) != 0u ? -mag : mag;
}

// Element c of the row whose first byte is at byte offset base.
float weight(uint row, uint base, uint c)
{
#if WEIGHT_TYPE == 0 // f32
    return uintBitsToFloat(w[(base >> 2) + c]);
#elif WEIGHT_TYPE == 1 // f16
    return f16_at(base + 2u * c);
#elif WEIGHT_TYPE == 2 // bf16
    return uintBitsToFloat(half_at(base + 2u * c) << 16);
#elif WEIGHT_TYPE == 3 // fp8 e4m3 with 128x128 float32 block scales
    return fp8_e4m3(byte_at(base + c)) * s[p.s_offset + (row / 128u) * p.scale_cols + c / 128u];
#elif WEIGHT_TYPE == 4 // q8_0: f16 scale then 32 signed bytes
    uint blk = base + (c / 32u) * 34u;
    int q = int(byte_at(blk + 2u + c % 32u) << 24) >> 24;
    return f16_at(blk) * float(q);
#elif WEIGHT_TYPE == 5 // q4_0: f16 scale then 16 bytes; element j in the low nibble, j+16 high
    uint blk = base + (c / 32u) * 18u;
    uint j = c % 32u;
    uint q = (byte_at(blk + 2u + (j & 15u)) >> ((j >> 4) * 4u)) & 15u;
    return f16_at(blk) * (float(q) - 8.0);
#else
#error unknown WEIGHT_TYPE
#endif
}

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
