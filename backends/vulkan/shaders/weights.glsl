// weights.glsl: one weight element in its stored type, dequantised to float32 (included by the
// shaders that read model weights; built once per weight type, WEIGHT_TYPE the r1_dtype value).
// The includer declares the buffers w[] (the weights as 32-bit words) and s[] (fp8 block
// scales) and push constants p with s_offset (floats) and scale_cols (ceil(cols / 128)).
//
// Weights are read as 32-bit words and bytes are extracted, so rows of 34-byte q8_0 or 18-byte
// q4_0 blocks need no 8- or 16-bit storage feature and no alignment.

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
