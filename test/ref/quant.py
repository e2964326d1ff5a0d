"""Reference (de)quantisers for libr1 tests.

Every function here defines the exact arithmetic the C code must reproduce
bit for bit.  All intermediate float32 steps are done with numpy float32
arithmetic (IEEE single precision, round-to-nearest-even), which is what a C
compiler produces for `float` expressions without -ffast-math / excess precision.

Formats
-------
* f16  : IEEE binary16, round-to-nearest-even from float32 (numpy astype does that).
* bf16 : upper 16 bits of float32, round-to-nearest-even, NaN -> quiet NaN.
* FP8 e4m3fn : 1 sign, 4 exponent (bias 7), 3 mantissa, subnormals, 0x7F/0xFF NaN,
  no infinities, max finite 448 (docs/model.md §5.3.1).  Block scaling 128x128 with
  `weight_scale_inv` of shape [ceil(R/128), ceil(C/128)], W = fp8 * scale_inv (§5.3.2).
* Q8_0 : blocks of 32 along a row; block = f16 d (LE) + 32 x int8.            (34 bytes)
* Q4_0 : blocks of 32 along a row; block = f16 d (LE) + 16 bytes of nibbles;
  element j (j<16) = low nibble of qs[j], element j+16 = high nibble of qs[j]. (18 bytes)
"""
import numpy as np

F32 = np.float32
QK = 32  # elements per Q8_0 / Q4_0 block

# --------------------------------------------------------------------------------------
# f16 / bf16
# --------------------------------------------------------------------------------------

def f16_from_f32(x):
    """float32 -> IEEE half, round-to-nearest-even (numpy's cast is RNE)."""
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def bf16_encode(x):
    """float32 -> bf16 bit pattern (uint16), round-to-nearest-even, NaN -> 0x7FC0 (|sign)."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    u = a.view(np.uint32).astype(np.uint64)
    rounding = ((u >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
    out = ((u + rounding) >> np.uint64(16)).astype(np.uint16)
    nan = np.isnan(a)
    if np.any(nan):
        sign = ((u[nan] >> np.uint64(16)) & np.uint64(0x8000)).astype(np.uint16)
        out[nan] = sign | np.uint16(0x7FC0)
    return out


def bf16_decode(bits):
    """bf16 bit pattern (uint16) -> float32 (exact)."""
    b = np.asarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


# --------------------------------------------------------------------------------------
# FP8 e4m3fn
# --------------------------------------------------------------------------------------

def _fp8_table():
    t = np.zeros(256, dtype=np.float64)
    for b in range(256):
        s = -1.0 if (b & 0x80) else 1.0
        e = (b >> 3) & 0xF
        m = b & 7
        if e == 0xF and m == 7:
            t[b] = np.nan
        elif e == 0:
            t[b] = s * (2.0 ** -6) * (m / 8.0)      # subnormal (m=0: signed zero)
        else:
            t[b] = s * (2.0 ** (e - 7)) * (1.0 + m / 8.0)
    return t


FP8_TABLE = _fp8_table()          # float64, exact
FP8_TABLE_F32 = FP8_TABLE.astype(np.float32)  # exact as well (<= 4 significant bits)
FP8_MAX = 448.0


def fp8_decode(codes, dtype=np.float64):
    """uint8 e4m3fn codes -> float (exact)."""
    c = np.asarray(codes, dtype=np.uint8)
    return FP8_TABLE.astype(dtype)[c]


def fp8_encode(x):
    """float -> e4m3fn code: round to nearest, ties to even code, saturate to +-448, NaN->0x7F.

    The input is taken at its given precision (float32 or float64 values) and rounded once.
    """
    x = np.asarray(x, dtype=np.float64)
    pos = FP8_TABLE[:127]                      # codes 0x00..0x7E, strictly increasing
    ax = np.minimum(np.abs(x), FP8_MAX)
    ax = np.where(np.isnan(ax), 0.0, ax)
    hi = np.searchsorted(pos, ax, side="left")  # pos[hi] >= ax
    hi = np.minimum(hi, 126)
    lo = np.maximum(hi - 1, 0)
    dlo = ax - pos[lo]
    dhi = pos[hi] - ax
    pick_hi = (dhi < dlo) | ((dhi == dlo) & ((hi & 1) == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = code | np.where(np.signbit(x), np.uint8(0x80), np.uint8(0)).astype(np.uint8)
    code = np.where(np.isnan(x), np.uint8(0x7F), code).astype(np.uint8)
    return code


FP8_BLOCK = 128


def fp8_scale_shape(rows, cols, block=FP8_BLOCK):
    return (-(-rows // block), -(-cols // block))


def fp8_block_quantize(w, block=FP8_BLOCK):
    """float32 [R, C] -> (codes uint8 [R, C], weight_scale_inv float32 [ceil(R/128), ceil(C/128)]).

    Per 128x128 block (partial edge blocks behave as if zero padded, i.e. the amax is taken
    over the valid elements only):  s = float32(amax / 448) (1.0 if amax == 0),
    codes = fp8_encode(float32(w / s)).  Dequantisation: w' = fp8(codes) * s.
    """
    w = np.asarray(w, dtype=np.float32)
    R, C = w.shape
    sr, sc = fp8_scale_shape(R, C, block)
    scale = np.zeros((sr, sc), dtype=np.float32)
    codes = np.zeros((R, C), dtype=np.uint8)
    for i in range(sr):
        for j in range(sc):
            blk = w[i * block:(i + 1) * block, j * block:(j + 1) * block]
            amax = np.max(np.abs(blk)).astype(np.float32)
            s = F32(amax / F32(FP8_MAX)) if amax != 0 else F32(1.0)
            scale[i, j] = s
            codes[i * block:(i + 1) * block, j * block:(j + 1) * block] = \
                fp8_encode((blk / s).astype(np.float32))
    return codes, scale


def _expand_scale(scale_inv, rows, cols, block=FP8_BLOCK):
    s = np.asarray(scale_inv)
    return np.repeat(np.repeat(s, block, axis=0), block, axis=1)[:rows, :cols]


def fp8_block_dequant(codes, scale_inv, block=FP8_BLOCK):
    """Exact dequantisation in float64: W[r,c] = fp8(Q[r,c]) * Sinv[r//128, c//128]."""
    codes = np.asarray(codes, dtype=np.uint8)
    R, C = codes.shape
    sr, sc = fp8_scale_shape(R, C, block)
    s = np.asarray(scale_inv, dtype=np.float32)
    assert s.shape == (sr, sc), (s.shape, (sr, sc))
    return fp8_decode(codes) * _expand_scale(s.astype(np.float64), R, C, block)


def fp8_block_dequant_f32(codes, scale_inv, block=FP8_BLOCK):
    """What the C code computes: float32(fp8_to_f32(q) * scale) (one float32 rounding)."""
    return fp8_block_dequant(codes, scale_inv, block).astype(np.float32)


# --------------------------------------------------------------------------------------
# Q8_0
# --------------------------------------------------------------------------------------

def _blocks(x):
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    assert x.shape[-1] % QK == 0, "last dimension must be a multiple of 32"
    return x.reshape(-1, QK)


def q8_0_quantize(x):
    """float32 [..., n] -> (d f16 [nblocks], q int8 [nblocks, 32]); blocks in row-major order."""
    b = _blocks(x)
    amax = np.max(np.abs(b), axis=1).astype(np.float32)
    d = (amax / F32(127.0)).astype(np.float32)
    inv = np.zeros_like(d)
    nz = d != 0
    inv[nz] = (F32(1.0) / d[nz]).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float32)
    v64 = v.astype(np.float64)
    q = np.sign(v64) * np.floor(np.abs(v64) + 0.5)     # round half away from zero, exact
    q = np.clip(q, -127, 127).astype(np.int8)
    return f16_from_f32(d), q


def q8_0_dequantize(d, q, shape=None):
    out = (np.asarray(d, np.float16).astype(np.float32)[:, None] *
           np.asarray(q, np.int8).astype(np.float32)).astype(np.float32)
    return out.reshape(shape) if shape is not None else out.reshape(-1)


def q8_0_pack(d, q):
    """-> bytes: per block 2 bytes f16 d (LE) + 32 int8."""
    d = np.asarray(d, dtype="<f2")
    q = np.asarray(q, dtype=np.int8)
    rec = np.zeros(len(d), dtype=[("d", "<f2"), ("qs", "i1", (QK,))])
    rec["d"] = d
    rec["qs"] = q
    return rec.tobytes()


def q8_0_unpack(buf):
    rec = np.frombuffer(buf, dtype=[("d", "<f2"), ("qs", "i1", (QK,))])
    return rec["d"].astype(np.float16), rec["qs"].astype(np.int8)


# --------------------------------------------------------------------------------------
# Q4_0
# --------------------------------------------------------------------------------------

def q4_0_quantize(x):
    """float32 [..., n] -> (d f16 [nblocks], q uint8 [nblocks, 32] in 0..15)."""
    b = _blocks(x)
    idx = np.argmax(np.abs(b), axis=1)                 # first occurrence on ties
    m = b[np.arange(b.shape[0]), idx].astype(np.float32)
    d = (m / F32(-8.0)).astype(np.float32)
    inv = np.zeros_like(d)
    nz = d != 0
    inv[nz] = (F32(1.0) / d[nz]).astype(np.float32)
    t = ((b * inv[:, None]).astype(np.float32) + F32(8.5)).astype(np.float32)
    assert np.all(t >= 0)
    q = np.minimum(15, t.astype(np.int32)).astype(np.uint8)   # truncation (t >= 0)
    return f16_from_f32(d), q


def q4_0_dequantize(d, q, shape=None):
    out = (np.asarray(d, np.float16).astype(np.float32)[:, None] *
           (np.asarray(q, np.int32) - 8).astype(np.float32)).astype(np.float32)
    return out.reshape(shape) if shape is not None else out.reshape(-1)


def q4_0_pack(d, q):
    """-> bytes: per block 2 bytes f16 d (LE) + 16 bytes; qs[j] = q[j] | q[j+16] << 4."""
    d = np.asarray(d, dtype="<f2")
    q = np.asarray(q, dtype=np.uint8)
    qs = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    rec = np.zeros(len(d), dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    rec["d"] = d
    rec["qs"] = qs
    return rec.tobytes()


def q4_0_unpack(buf):
    rec = np.frombuffer(buf, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    qs = rec["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.uint8)
    return rec["d"].astype(np.float16), q


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------

def roundtrip(x, kind):
    """float32 array -> float32 array after quantise -> dequantise ('q8_0' or 'q4_0')."""
    x = np.asarray(x, dtype=np.float32)
    if kind == "q8_0":
        d, q = q8_0_quantize(x)
        return q8_0_dequantize(d, q, x.shape)
    if kind == "q4_0":
        d, q = q4_0_quantize(x)
        return q4_0_dequantize(d, q, x.shape)
    raise ValueError(kind)


def act_q8_quantise(x):
    """act_q8_roundtrip's parts: (d float32 [nblocks], v = float32(x * float32(1 / d)) as
    float64 [nblocks, 32], q = round-half-away(v) clipped to +-127, float64 [nblocks, 32])."""
    x32 = np.asarray(x, dtype=np.float32)
    b = x32.reshape(-1, 32)
    amax = np.max(np.abs(b), axis=1).astype(np.float32)
    d = (amax / F32(127.0)).astype(np.float32)
    inv = np.zeros_like(d)
    nz = d != 0
    inv[nz] = (F32(1.0) / d[nz]).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float32).astype(np.float64)
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -127, 127)
    return d, v, q


def act_q8_roundtrip(x):
    """Activations [..., n] (n % 32 == 0) -> float64, as the CPU decode kernels see them with
    8-bit activations on Q8_0/Q4_0 weights (backends/cpu r1_cpu__quantize_x): float32 x in
    blocks of 32, d = float32(amax / 127), q = round-half-away(float32(x * float32(1 / d)))
    clipped to +-127, value d * q (exact in float64). Unlike the weights, d stays float32."""
    d, _, q = act_q8_quantise(x)
    return (d.astype(np.float64)[:, None] * q).reshape(np.shape(x))


def should_quantize(name, ndim):
    """The tensors the converter quantises to Q8_0/Q4_0 (and the reference round-trips).

    Every 2-D '*.weight' under 'model.layers.' (attention projections, dense MLP, shared and
    routed experts; also MTP-layer linears such as eh_proj / shared_head.head) and
    'lm_head.weight' -- but never embed_tokens, norm weights, the router 'mlp.gate.weight',
    e_score_correction_bias or weight_scale_inv tensors.
    """
    if ndim != 2:
        return False
    if name == "lm_head.weight":
        return True
    if not (name.startswith("model.layers.") and name.endswith(".weight")):
        return False
    if "embed_tokens" in name or "norm" in name.split(".")[-2]:
        return False
    if name.endswith(".mlp.gate.weight"):
        return False
    return True
