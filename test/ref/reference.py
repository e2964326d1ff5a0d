"""Plain float64 numpy reference forward pass for DeepSeek-V3/R1 and V2/V2-Lite (MLA + MoE).

Follows docs/model.md §2, §3 (with the choices of its §9.2):
  * RMSNorm y = g * x / sqrt(mean(x^2) + eps), eps from config (all in float64).
  * MLA naive form (§2.3) with both query paths (q LoRA or plain q_proj); absorbed form (§2.6)
    as a second implementation used only for validation.
  * RoPE: interleaved pairs (r[2m], r[2m+1]) (§2.4, checkpoint/official layout), YaRN
    frequencies (§3) computed in float64 and ALWAYS applied when rope_scaling is yarn (§1.4);
    softmax scale d_qk^-1/2 * yarn_mscale(factor, mscale_all_dim)^2 (§2.5); cos/sin multiplied
    by yarn_mscale(mscale)/yarn_mscale(mscale_all_dim) (= 1 for all shipped configs).
  * MoE (§2.8): sigmoid + e_score_correction_bias for selection only (noaux_tc, group score =
    sum of the two largest biased scores, excluded groups -inf), softmax greedy /
    group_limited_greedy (group score = max) for V2; ties -> lower index; weights normalised
    iff norm_topk_prob, then multiplied by routed_scaling_factor; shared experts added unscaled.
  * Logits for all positions, no masking of padding rows.
  * The MTP layer (index num_hidden_layers, V3 only) is NOT part of the main forward pass
    and is ignored for the logits.

Weights are dequantised to float64 first (FP8 * weight_scale_inv exactly, BF16 exactly).
Variants 'q8_0' / 'q4_0' first round-trip the converter-quantised tensors (quant.should_quantize)
through quantise -> dequantise, starting from the float32 dequantised source values.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402
import safetensors_io as st  # noqa: E402


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------

class ActQ8Weight(np.ndarray):
    """A Q8_0/Q4_0 weight whose products see 8-bit activations (act_q8 mode, see linear())."""


def dequantize_tensors(raw, variant="src", act_q8=False):
    """raw: dict name -> (dtype, array) as stored.  -> dict name -> float64 array.

    FP8 weights are combined with their '<name>_scale_inv'; scale tensors are consumed.
    variant 'src': exact float64 values.  'q8_0'/'q4_0': tensors selected by
    quant.should_quantize are taken as float32 (FP8: float32(fp8*scale)), round-tripped,
    and widened to float64."""
    out = {}
    for name, (dt, arr) in raw.items():
        if name.endswith("_scale_inv"):
            continue
        if dt == "F8_E4M3":
            sname = name + "_scale_inv"
            if sname not in raw:
                raise KeyError("missing " + sname)
            w64 = quant.fp8_block_dequant(arr, raw[sname][1])
        else:
            w64 = st.to_float(dt, arr, np.float64)
        if variant != "src" and quant.should_quantize(name, w64.ndim):
            w32 = w64.astype(np.float32)  # exact for BF16/F32; one RNE rounding for FP8
            w64 = quant.roundtrip(w32, variant).astype(np.float64)
            if act_q8 and w64.shape[-1] % 32 == 0:
                w64 = w64.view(ActQ8Weight)
        out[name] = w64
    return out


class Model:
    def __init__(self, ckpt_dir, variant="src", act_q8=False):
        """act_q8: Q8_0/Q4_0 weights multiply 8-bit block-quantised activations, as the CPU
        decode kernels do (quant.act_q8_roundtrip); each token row is quantised on its own, so
        prefill and decode stay the same computation."""
        with open(os.path.join(ckpt_dir, "config.json")) as f:
            self.cfg = json.load(f)
        self.variant = variant
        self.w = dequantize_tensors(st.load_dir(ckpt_dir), variant, act_q8)
        c = self.cfg
        self.inv_freq = yarn_inv_freq(c)[0]
        self.sm_scale = softmax_scale(c)
        self.rope_mul = rope_cos_sin_factor(c)
        self.route_log = []   # (layer, token, selected, selected without bias, decision margin)
        # act_q8 near-ties (act_q8()): values whose v = x/d lies within q8_tau of a half-integer,
        # where float32 evaluation in another summation order may round the other way
        self.q8_tau = 0.0
        self.q8_ties = {}               # (site, token, column) -> v, for the last forward
        self.q8_blocks = {}             # q of each block with a near-tie -> near-tie bit mask
        self.q8_all = set()             # q of every block quantised (with q8_tau set)
        self.q8_flip = frozenset()      # near-ties to round to the other neighbour

    def act_q8(self, x, site, t0=0):
        """quant.act_q8_roundtrip of x [T, n] (row i is token t0 + i), recording the near-ties
        under the key (site, token, column) and rounding those in q8_flip the other way.
        A site is one activation vector (all weights reading it see the same integers, as in
        the engine, which quantises the same float32 values with the same rules)."""
        if self.q8_tau <= 0:
            return quant.act_q8_roundtrip(x)
        d, v, q = quant.act_q8_quantise(x)
        n = x.shape[-1]
        a = np.abs(v)
        near = np.abs(a - np.floor(a) - 0.5) < self.q8_tau
        for blk, j in np.argwhere(near):
            row, col = divmod(int(blk) * 32 + int(j), n)
            key = (site, t0 + row, col)
            self.q8_ties[key] = float(v[blk, j])
            if key in self.q8_flip:   # the other integer next to the half-step
                lo = np.floor(a[blk, j])
                q[blk, j] = np.sign(v[blk, j]) * min(127.0, lo if abs(q[blk, j]) > lo else lo + 1)
        for blk in range(q.shape[0]):
            qt = tuple(int(e) for e in q[blk])
            self.q8_all.add(qt)
            if near[blk].any():
                mask = int(sum(1 << int(j) for j in np.flatnonzero(near[blk])))
                self.q8_blocks[qt] = self.q8_blocks.get(qt, 0) | mask
        return (d.astype(np.float64)[:, None] * q).reshape(np.shape(x))


# ---------------------------------------------------------------------------------------
# YaRN / rope / softmax scale
# ---------------------------------------------------------------------------------------

def _yarn(cfg):
    rs = cfg.get("rope_scaling")
    if not rs:
        return None
    kind = rs.get("type", rs.get("rope_type"))
    if kind != "yarn":
        raise NotImplementedError("rope_scaling type %r" % kind)
    return rs


def yarn_mscale(s, m):
    if s <= 1:
        return 1.0
    return 0.1 * m * math.log(s) + 1.0


def yarn_inv_freq(cfg):
    """-> (theta' [d/2] float64, low, high, ramp [d/2], theta [d/2])  (docs/model.md §3.1-3.3)."""
    d = cfg["qk_rope_head_dim"]
    base = float(cfg["rope_theta"])
    theta = 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    rs = _yarn(cfg)
    if rs is None:
        return theta, None, None, np.zeros(d // 2), theta
    s = float(rs["factor"])
    L = float(rs["original_max_position_embeddings"])
    bf, bs = float(rs.get("beta_fast", 32)), float(rs.get("beta_slow", 1))

    def corr(n):
        return d * math.log(L / (n * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr(bf)), 0)
    high = min(math.ceil(corr(bs)), d - 1)
    hi = high + 0.001 if low == high else high
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (hi - low), 0.0, 1.0)
    thp = theta * (1.0 - ramp) + (theta / s) * ramp
    return thp, low, high, ramp, theta


def softmax_scale(cfg):
    """sigma = (d_nope + d_rope)^-1/2 * yarn_mscale(factor, mscale_all_dim)^2  (§2.5)."""
    dqk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    sc = dqk ** -0.5
    rs = _yarn(cfg)
    if rs is not None:
        mad = rs.get("mscale_all_dim", 0) or 0
        if mad:
            m = yarn_mscale(float(rs["factor"]), float(mad))
            sc = sc * m * m
    return sc


def rope_cos_sin_factor(cfg):
    """HF: cos/sin multiplied by yarn_mscale(s, mscale) / yarn_mscale(s, mscale_all_dim)
    (defaults mscale 1, mscale_all_dim 0 -> factor 1).  Exactly 1.0 for every DeepSeek config."""
    rs = _yarn(cfg)
    if rs is None:
        return 1.0
    s = float(rs["factor"])
    return yarn_mscale(s, float(rs.get("mscale", 1) or 0)) / \
        yarn_mscale(s, float(rs.get("mscale_all_dim", 0) or 0))


def rope_interleaved(x, pos, inv_freq, mul=1.0):
    """x [..., T, d] (T matching pos), pairs (x[2m], x[2m+1]) rotated by pos*inv_freq[m]."""
    ang = np.asarray(pos, np.float64)[:, None] * inv_freq[None, :]      # [T, d/2]
    c, s = np.cos(ang) * mul, np.sin(ang) * mul
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


# ---------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------

def rmsnorm(x, g, eps):
    return g * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def linear(x, w, m=None, site=None, t0=0):
    """x @ w^T; a Q8_0/Q4_0 weight in act_q8 mode multiplies x's 8-bit blocks (m.act_q8 at
    site when a model is given, recording near-ties)."""
    if isinstance(w, ActQ8Weight):
        xq = m.act_q8(x, site, t0) if m is not None else quant.act_q8_roundtrip(x)
        return np.asarray(xq @ np.asarray(w).T)
    return x @ np.asarray(w).T


def silu(z):
    return z / (1.0 + np.exp(-z))


def mlp(m, prefix, x, site=None, t0=0):
    """site: x's act_q8 site (rows tokens t0..); the hidden activation is prefix's own."""
    w = m.w
    hid = silu(linear(x, w[prefix + "gate_proj.weight"], m, site, t0)) * \
        linear(x, w[prefix + "up_proj.weight"], m, site, t0)
    return linear(hid, w[prefix + "down_proj.weight"], m, prefix + "hidden", t0)


def _mla_inputs(m, l, a, pos):
    """Shared part of both MLA forms: q_nope [H,T,dn], q_pe [H,T,dr] (roped),
    c_kv' [T,r_kv], k_pe [T,dr] (roped)."""
    c, w = m.cfg, m.w
    p = "model.layers.%d.self_attn." % l
    eps = c["rms_norm_eps"]
    H, dn, dr = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"]
    rkv = c["kv_lora_rank"]
    T = a.shape[0]
    if c.get("q_lora_rank"):
        cq = rmsnorm(linear(a, w[p + "q_a_proj.weight"], m, p + "in"),
                     w[p + "q_a_layernorm.weight"], eps)
        q = linear(cq, w[p + "q_b_proj.weight"], m, p + "cq")
    else:
        q = linear(a, w[p + "q_proj.weight"], m, p + "in")
    q = q.reshape(T, H, dn + dr).transpose(1, 0, 2)           # [H, T, dqk]
    q_nope = q[..., :dn]
    q_pe = rope_interleaved(q[..., dn:], pos, m.inv_freq, m.rope_mul)
    kv_a = linear(a, w[p + "kv_a_proj_with_mqa.weight"], m, p + "in")
    ckv = rmsnorm(kv_a[:, :rkv], w[p + "kv_a_layernorm.weight"], eps)
    k_pe = rope_interleaved(kv_a[:, rkv:], pos, m.inv_freq, m.rope_mul)
    return q_nope, q_pe, ckv, k_pe


def _causal_softmax(s, pos):
    pos = np.asarray(pos)
    mask = pos[None, :] > pos[:, None]                        # key j after query i
    s = np.where(mask[None], -np.inf, s)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def mla_naive(m, l, a, pos):
    """Naive MLA (§2.3): materialise per-head keys/values. a [T, D] -> [T, D]."""
    c, w = m.cfg, m.w
    p = "model.layers.%d.self_attn." % l
    H, dn, dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["v_head_dim"]
    T = a.shape[0]
    q_nope, q_pe, ckv, k_pe = _mla_inputs(m, l, a, pos)
    kv = linear(ckv, w[p + "kv_b_proj.weight"], m, p + "ckv").reshape(T, H, dn + dv).transpose(1, 0, 2)
    k_nope, v = kv[..., :dn], kv[..., dn:]                     # [H, T, dn], [H, T, dv]
    qf = np.concatenate([q_nope, q_pe], axis=-1)               # [H, T, dqk]
    kf = np.concatenate([k_nope, np.broadcast_to(k_pe, (H,) + k_pe.shape)], axis=-1)
    s = m.sm_scale * (qf @ kf.transpose(0, 2, 1))              # [H, T, T]
    P = _causal_softmax(s, pos)
    o = P @ v                                                  # [H, T, dv]
    o = o.transpose(1, 0, 2).reshape(T, H * dv)
    return linear(o, w[p + "o_proj.weight"], m, p + "o")


def mla_absorbed(m, l, a, pos):
    """Weight-absorbed MLA (§2.6): attend over the latent cache [c_kv'; k_pe] directly."""
    c, w = m.cfg, m.w
    p = "model.layers.%d.self_attn." % l
    H, dn, dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["v_head_dim"]
    rkv = c["kv_lora_rank"]
    T = a.shape[0]
    q_nope, q_pe, ckv, k_pe = _mla_inputs(m, l, a, pos)
    wkvb = w[p + "kv_b_proj.weight"].reshape(H, dn + dv, rkv)
    W_UK, W_UV = wkvb[:, :dn, :], wkvb[:, dn:, :]             # [H, dn, rkv], [H, dv, rkv]
    q_lat = np.einsum("htd,hdr->htr", q_nope, W_UK)            # W_UK^T q_nope  [H, T, rkv]
    s = m.sm_scale * (np.einsum("htr,sr->hts", q_lat, ckv) +
                      np.einsum("htd,sd->hts", q_pe, k_pe))
    P = _causal_softmax(s, pos)
    o_lat = np.einsum("hts,sr->htr", P, ckv)                    # [H, T, rkv]
    if isinstance(wkvb, ActQ8Weight):
        # act_q8: W_UV multiplies the quantised o_lat rows as the engine's kernels do; W_UK
        # above stays float (the engine keeps it as a float32 transposed copy)
        o_lat = np.stack([m.act_q8(o_lat[h], p + "o_lat.%d" % h) for h in range(H)])
    o = np.einsum("htr,hvr->htv", o_lat, W_UV)                 # [H, T, dv]
    o = o.transpose(1, 0, 2).reshape(T, H * dv)
    return linear(o, w[p + "o_proj.weight"], m, p + "o")


def _topk_stable(x, k):
    """Indices of the k largest values; ties -> lower index."""
    return np.argsort(-x, kind="stable")[:k]


def route(cfg, u, bias):
    """u: router logits [E] (float64).  -> (selected experts [K], weights [K],
    selected-without-bias [K] for diagnostics)."""
    E = cfg["n_routed_experts"]
    K = cfg["num_experts_per_tok"]
    G = cfg.get("n_group") or 1
    Gt = cfg.get("topk_group") or G
    method = cfg.get("topk_method", "greedy")
    if cfg.get("scoring_func", "softmax") == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-u))
    else:
        e = np.exp(u - u.max())
        s = e / e.sum()

    margins = []

    def gap(x, k):
        """distance between the k-th and (k+1)-th largest finite values (inf if none)."""
        v = np.sort(x[np.isfinite(x)])[::-1]
        return float(v[k - 1] - v[k]) if len(v) > k else np.inf

    def select(cs):
        if G > 1 and method in ("noaux_tc", "group_limited_greedy"):
            grp = cs.reshape(G, E // G)
            if method == "noaux_tc":
                gs = np.sort(grp, axis=1)[:, -2:].sum(axis=1)
            else:
                gs = grp.max(axis=1)
            margins.append(gap(gs, Gt))
            keep = np.zeros(G, bool)
            keep[_topk_stable(gs, Gt)] = True
            cs = np.where(np.repeat(keep, E // G), cs, -np.inf)
        margins.append(gap(cs, K))
        return _topk_stable(cs, K)

    c = s + bias if (method == "noaux_tc" and bias is not None) else s
    sel = select(c)
    route.last_margin = min(margins)   # decision margin of the real (biased) selection
    sel_nobias = select(s)
    wgt = s[sel]
    if cfg.get("norm_topk_prob") and K > 1:
        wgt = wgt / wgt.sum()
    wgt = wgt * cfg.get("routed_scaling_factor", 1.0)
    return sel, wgt, sel_nobias


def moe(m, l, x):
    c, w = m.cfg, m.w
    p = "model.layers.%d.mlp." % l
    u = linear(x, w[p + "gate.weight"])                         # [T, E]
    bias = w.get(p + "gate.e_score_correction_bias")
    out = mlp(m, p + "shared_experts.", x, p + "in")
    for t in range(x.shape[0]):
        sel, wgt, sel_nb = route(c, u[t], bias)
        m.route_log.append((l, t, tuple(int(e) for e in sel), tuple(int(e) for e in sel_nb),
                            route.last_margin))
        for e, we in zip(sel, wgt):
            out[t] += we * mlp(m, p + "experts.%d." % e, x[t:t + 1], p + "in", t)[0]
    return out


def is_moe_layer(cfg, l):
    return (cfg.get("n_routed_experts") is not None and l >= cfg.get("first_k_dense_replace", 0)
            and l % cfg.get("moe_layer_freq", 1) == 0)


def forward(m, tokens, attn="naive", return_hidden=False):
    """tokens: list of ids (positions 0..T-1). -> logits [T, vocab_size] float64.
    Only the main layers 0..num_hidden_layers-1 run; the MTP layer is ignored."""
    c, w = m.cfg, m.w
    eps = c["rms_norm_eps"]
    tokens = np.asarray(tokens, dtype=np.int64)
    pos = np.arange(len(tokens))
    h = w["model.embed_tokens.weight"][tokens]
    m.q8_ties, m.q8_blocks, m.q8_all = {}, {}, set()
    att = mla_naive if attn == "naive" else mla_absorbed
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        a = rmsnorm(h, w[p + "input_layernorm.weight"], eps)
        h = h + att(m, l, a, pos)
        b = rmsnorm(h, w[p + "post_attention_layernorm.weight"], eps)
        h = h + (moe(m, l, b) if is_moe_layer(c, l) else mlp(m, p + "mlp.", b, p + "mlp.in"))
    hf = rmsnorm(h, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or c.get("tie_word_embeddings"):
        head = w["model.embed_tokens.weight"]
    logits = linear(hf, head, m, "model.norm")
    return (logits, hf) if return_hidden else logits


# ---------------------------------------------------------------------------------------
# self-test against spec Appendix A (R1 / V2-Lite real configs)
# ---------------------------------------------------------------------------------------

R1_ROPE_CFG = {
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rope_theta": 10000,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                     "type": "yarn"},
}
V2LITE_ROPE_CFG = dict(R1_ROPE_CFG, rope_scaling=dict(R1_ROPE_CFG["rope_scaling"],
                                                       mscale=0.707, mscale_all_dim=0.707))


def r1_selftest(verbose=True):
    thp, low, high, ramp, theta = yarn_inv_freq(R1_ROPE_CFG)
    ratio = thp / theta
    m = np.arange(32)
    expect = np.where(m <= 10, 1.0, np.where(m >= 23, 0.025, 1.0 - 0.075 * (m - 10)))
    sc = softmax_scale(R1_ROPE_CFG)
    sc2 = softmax_scale(V2LITE_ROPE_CFG)
    if verbose:
        print("R1 YaRN: low=%d high=%d  softmax scale=%.10f  (V2-Lite %.10f)" %
              (low, high, sc, sc2))
        print(" m   theta            ramp      ratio     theta'")
        for i in range(32):
            print("%2d  %.9e  %.6f  %.6f  %.9e" % (i, theta[i], ramp[i], ratio[i], thp[i]))
    assert low == 10 and high == 23
    assert np.max(np.abs(ratio - expect)) < 1e-12
    assert abs(sc - 0.1352337789) < 1e-10
    assert abs(sc2 - 0.1147213868) < 1e-10
    assert abs(yarn_mscale(40, 1.0) - 1.3688879454) < 1e-10
    assert abs(thp[11] - 3.900692657e-02) < 1e-11 and abs(thp[31] - 3.333803580e-06) < 1e-15
    return True


if __name__ == "__main__":
    r1_selftest()
    if len(sys.argv) > 1:
        mdl = Model(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "src")
        toks = [int(t) for t in sys.argv[3].split(",")] if len(sys.argv) > 3 else [0, 5, 17]
        lg = forward(mdl, toks)
        np.set_printoptions(precision=5, suppress=True, linewidth=150)
        print("logits", lg.shape, "std %.4f" % lg.std())
        print(lg[:, :10])
