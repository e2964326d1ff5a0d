"""Plain float64 numpy reference forward pass for the dense R1 distills (Qwen2 and Llama-3).

Follows docs/model.md §7:
  * RMSNorm y = g * x / sqrt(mean(x^2) + eps), eps from config, float64 throughout.
  * Grouped-query attention: query head j reads key/value head j // (n_heads / n_kv_heads);
    q, k, v projections with biases for Qwen2 (q_proj.bias, k_proj.bias, v_proj.bias), none for
    Llama; no bias on o_proj or the MLP.
  * RoPE in the half-split layout (x[m], x[m + d/2]) over the whole head (§7.2), theta_m =
    rope_theta^(-2m/d), with Llama-3.1's "llama3" frequency scaling when the config names it
    (§7.3); softmax scale d^-1/2.
  * SwiGLU MLP, final norm, untied lm_head (or the embedding when tie_word_embeddings is set or
    lm_head.weight is absent).
  * Logits for all positions, no masking of padding rows.

The key/value cache precision is part of the engine's definition, so the reference models it:
kv='f32' keeps k and v as computed (the bound then covers arithmetic only), kv='f16' (the
engine's default) rounds every cached k (after rope) and v value to binary16, kv='q8_0'
round-trips each head's values through Q8_0 blocks of 32 (quant.py), taken in the order the
engine stores keys: each head's dims pairwise interleaved, (x[0], x[d/2], x[1], x[d/2 + 1], ...),
the order in which its rope op rotates pairs. Queries attend to the cached (rounded) keys and
values of every position up to their own, their own included.

Weights are dequantised to float64 as reference.py does (variants 'q8_0'/'q4_0' round-trip the
tensors quant.should_quantize selects: every 2-D weight under model.layers.* and lm_head).
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402
import reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402


def inv_freq(cfg):
    """theta'_m for m < head_dim/2 (docs/model.md §7.2, §7.3), float64."""
    d = head_dim(cfg)
    theta = float(cfg["rope_theta"]) ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    rs = cfg.get("rope_scaling")
    if not rs:
        return theta
    kind = rs.get("rope_type", rs.get("type"))
    if kind != "llama3":
        raise NotImplementedError("rope_scaling %r" % kind)
    f = float(rs["factor"])
    lo, hi = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    L = float(rs["original_max_position_embeddings"])
    out = np.empty_like(theta)
    for m, t in enumerate(theta):
        wavelen = 2 * math.pi / t
        if wavelen < L / hi:
            out[m] = t
        elif wavelen > L / lo:
            out[m] = t / f
        else:
            s = (L / wavelen - lo) / (hi - lo)
            out[m] = (1 - s) * t / f + s * t
    return out


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def rope_half(x, pos, inv):
    """x [..., T, d]: pairs (x[m], x[m + d/2]) rotated by pos * inv[m]."""
    ang = np.asarray(pos, np.float64)[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return np.concatenate([x0 * c - x1 * s, x1 * c + x0 * s], axis=-1)


def interleave(x):
    """Half-split order -> (x[0], x[d/2], x[1], x[d/2 + 1], ...) along the last axis."""
    h = x.shape[-1] // 2
    out = np.empty_like(x)
    out[..., 0::2] = x[..., :h]
    out[..., 1::2] = x[..., h:]
    return out


def deinterleave(x):
    return np.concatenate([x[..., 0::2], x[..., 1::2]], axis=-1)


# A float32 engine computes k and v in its own summation order, so its v = x / d of a Q8_0 block
# may lie on the other side of a half-step where the reference's lies within Q8_TAU of one (as
# for 8-bit activations, make_goldens.py). Such blocks are listed with the goldens
# (near_tie_blocks: [mask, q0 .. q31], mask bit j set where value j is that close) and the test
# takes the reference's integers there.
Q8_TAU = 1e-3
# The same for the block scale d = max|x| / 127, which the cache keeps as binary16: where d lies
# within a relative D_TAU of a rounding midpoint (near_tie_scales: [d16 bits, q0 .. q31]).
D_TAU = 1e-5
# And for the f16 cache, where every value is rounded to binary16: a value within F16_TAU
# (absolute) of a rounding midpoint may round the other way in the engine (near_tie_values:
# [layer, 0 keys / 1 values, position, index in the cache row, binary16 bits]). Values below
# F16_MIN are left out: a unit of theirs (<= 2^-13) moves the logits by ~1e-6 at most.
F16_TAU = 6e-6
F16_MIN = 2.0 ** -3


def f16_midpoint_distance(d):
    """Relative distance of float32 values d > 0 to the nearest binary16 rounding midpoint."""
    h = d.astype(np.float16)
    up = np.nextafter(h, np.float16(np.inf)).astype(np.float64)
    dn = np.nextafter(h, np.float16(-np.inf)).astype(np.float64)
    c = h.astype(np.float64)
    dd = d.astype(np.float64)
    return np.minimum(np.abs(dd - (c + up) / 2), np.abs(dd - (c + dn) / 2)) / np.maximum(dd, 1e-30)


def f16_midpoint_abs(x):
    """Absolute distance of float32 values x to the nearest binary16 rounding midpoint."""
    h = x.astype(np.float16)
    c = h.astype(np.float64)
    up = np.nextafter(h, np.float16(np.inf)).astype(np.float64)
    dn = np.nextafter(h, np.float16(-np.inf)).astype(np.float64)
    xx = x.astype(np.float64)
    return np.minimum(np.abs(xx - (c + up) / 2), np.abs(xx - (c + dn) / 2))


def cache_round(x, kv, keys, near=None, near_d=None, where=None):
    """x [n_kv, T, d] as the cache of type kv stores it (see the module docstring); near and
    near_d (lists) receive the near-tie blocks and scales of a q8_0 cache, or near the near-tie
    values of an f16 cache, where = (layer, 0 keys / 1 values, positions) naming them."""
    if kv == "f32":
        return x
    x32 = x.astype(np.float32)
    if kv == "f16":
        h = x32.astype(np.float16)
        if near is not None:
            y = interleave(x32) if keys else x32        # the engine's order in a cache row
            yh = y.astype(np.float16)
            close = (np.abs(y) >= F16_MIN) & (f16_midpoint_abs(y) < 2 * F16_TAU)
            n_kv, _, d = y.shape
            layer, is_value, pos = where
            for g, t, j in np.argwhere(close):
                near.append([layer, is_value, int(pos[t]), int(g * d + j),
                             int(yh[g, t, j].view(np.uint16))])
        return h.astype(np.float64)
    if kv != "q8_0":
        raise ValueError(kv)
    y = interleave(x32) if keys else x32
    d, q = quant.q8_0_quantize(y.reshape(-1, y.shape[-1]))
    if near is not None:
        b = y.reshape(-1, 32)
        amax = np.max(np.abs(b), axis=1).astype(np.float32)
        dd = (amax / np.float32(127.0)).astype(np.float32)
        inv = np.where(dd != 0, np.float32(1.0) / np.where(dd != 0, dd, 1), 0).astype(np.float32)
        a = np.abs((b * inv[:, None]).astype(np.float32).astype(np.float64))
        close = np.abs(a - np.floor(a) - 0.5) < 2 * Q8_TAU
        for i in np.flatnonzero(close.any(axis=1)):
            mask = int(sum(1 << int(j) for j in np.flatnonzero(close[i])))
            near.append([mask] + [int(e) for e in q[i]])
    if near_d is not None:
        b = y.reshape(-1, 32)
        amax = np.max(np.abs(b), axis=1).astype(np.float32)
        dd = (amax / np.float32(127.0)).astype(np.float32)
        for i in np.flatnonzero((dd > 0) & (f16_midpoint_distance(dd) < 2 * D_TAU)):
            near_d.append([int(np.asarray(d[i], np.float16).view(np.uint16))] +
                          [int(e) for e in q[i]])
    y = quant.q8_0_dequantize(d, q, y.shape).astype(np.float64)
    return deinterleave(y) if keys else y


class Model:
    """act_q8: Q8_0/Q4_0 weights multiply 8-bit block-quantised activations, as the CPU
    backend's kernels do (reference.py's act_q8 mode; sites name the activation vectors: a
    layer's attention input, shared by q, k and v; the heads' output into o_proj; the MLP's
    input and hidden activation; the final norm's output into the head)."""

    act_q8 = ref.Model.act_q8   # the same rounding and near-tie bookkeeping as reference.py

    def __init__(self, ckpt_dir, variant="src", kv="f16", act_q8=False):
        self.near = []   # the cache's near-ties of every forward so far (cache_round)
        self.near_d = []  # ... and a q8_0 cache's near-tie scales
        with open(os.path.join(ckpt_dir, "config.json")) as f:
            self.cfg = json.load(f)
        self.variant = variant
        self.kv = kv
        self.w = ref.dequantize_tensors(st.load_dir(ckpt_dir), variant, act_q8)
        self.inv = inv_freq(self.cfg)
        self.q8_tau = 0.0
        self.q8_ties = {}
        self.q8_blocks = {}
        self.q8_all = set()
        self.q8_flip = frozenset()


def attention(m, l, a, pos):
    c, w = m.cfg, m.w
    p = "model.layers.%d.self_attn." % l
    H, KVH, d = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    T = a.shape[0]

    def proj(name, n):
        y = ref.linear(a, w[p + name + ".weight"], m, p + "in")
        b = w.get(p + name + ".bias")
        return (y if b is None else y + b).reshape(T, n, d).transpose(1, 0, 2)

    q = rope_half(proj("q_proj", H), pos, m.inv)        # [H, T, d]
    k = rope_half(proj("k_proj", KVH), pos, m.inv)      # [KVH, T, d]
    v = proj("v_proj", KVH)
    k = cache_round(k, m.kv, True, m.near, m.near_d, (l, 0, pos))
    v = cache_round(v, m.kv, False, m.near, m.near_d, (l, 1, pos))
    G = H // KVH
    kk = np.repeat(k, G, axis=0)                        # head j reads kv head j // G
    vv = np.repeat(v, G, axis=0)
    s = np.einsum("htd,hsd->hts", q, kk) / math.sqrt(d)
    pr = ref._causal_softmax(s, pos)
    o = np.einsum("hts,hsd->htd", pr, vv)               # [H, T, d]
    return ref.linear(o.transpose(1, 0, 2).reshape(T, H * d), w[p + "o_proj.weight"], m, p + "o")


def forward(m, tokens):
    """tokens at positions 0..T-1 -> logits [T, vocab_size] (float64)."""
    c, w = m.cfg, m.w
    eps = c["rms_norm_eps"]
    pos = np.arange(len(tokens))
    h = w["model.embed_tokens.weight"][np.asarray(tokens)]
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = h + attention(m, l, ref.rmsnorm(h, w[p + "input_layernorm.weight"], eps), pos)
        b = ref.rmsnorm(h, w[p + "post_attention_layernorm.weight"], eps)
        h = h + ref.mlp(m, p + "mlp.", b, p + "post")
    hf = ref.rmsnorm(h, w["model.norm.weight"], eps)
    tied = c.get("tie_word_embeddings") or "lm_head.weight" not in w
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    return ref.linear(hf, head, m, "final")


def selftest():
    """docs/model.md §7.3: Llama-3.1 (head dim 128): pairs 0-28 kept, 29-34 blended with
    s = 0.8036, 0.5928, 0.4212, 0.2813, 0.1673, 0.0745, 35-63 divided by 8."""
    cfg = {"hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 500000.0,
           "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
    th = 500000.0 ** (-np.arange(0, 128, 2, dtype=np.float64) / 128)
    got = inv_freq(cfg)
    assert np.all(got[:29] == th[:29])
    assert np.allclose(got[35:], th[35:] / 8, rtol=0, atol=0)
    s = (got[29:35] - th[29:35] / 8) / (th[29:35] - th[29:35] / 8)
    assert np.allclose(s, [0.8036, 0.5928, 0.4212, 0.2813, 0.1673, 0.0745], atol=5e-5), s
    x = np.random.RandomState(0).standard_normal((3, 5, 8))
    assert np.array_equal(deinterleave(interleave(x)), x)
    print("reference_dense self-test ok")


if __name__ == "__main__":
    selftest()
