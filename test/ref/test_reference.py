"""Self-checks of the float64 reference, the quantisers and the committed test data.

Run:  /usr/bin/python3 -m pytest -q -p no:cacheprovider test/ref/test_reference.py
  or  /usr/bin/python3 test/ref/test_reference.py
"""
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_checkpoint as mc  # noqa: E402
import make_goldens as mg  # noqa: E402
import quant  # noqa: E402
import reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402

DATA = os.path.normpath(os.path.join(HERE, "..", "data"))


def _ckpt(arch):
    """Committed checkpoint if present, else a freshly generated one in a temp dir."""
    d = os.path.join(DATA, arch)
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    t = tempfile.mkdtemp()
    mc.write_checkpoint(arch, t, mg.SEEDS[arch])
    return t


# ------------------------------------------------------------------ YaRN / scale (App. A)

def test_yarn_r1_appendix_a():
    assert ref.r1_selftest(verbose=False)
    thp, low, high, ramp, theta = ref.yarn_inv_freq(ref.R1_ROPE_CFG)
    assert (low, high) == (10, 23)
    assert abs(ref.rope_cos_sin_factor(ref.R1_ROPE_CFG) - 1.0) < 1e-15
    assert abs(ref.rope_cos_sin_factor(ref.V2LITE_ROPE_CFG) - 1.0) < 1e-15


def test_softmax_scales():
    assert abs(ref.softmax_scale(ref.R1_ROPE_CFG) - 0.1352337789) < 1e-10
    assert abs(ref.softmax_scale(ref.V2LITE_ROPE_CFG) - 0.1147213868) < 1e-10
    distill = {"qk_nope_head_dim": 128, "qk_rope_head_dim": 0, "rope_theta": 1e4}
    assert abs(ref.softmax_scale(distill) - 0.0883883476) < 1e-10


# ------------------------------------------------------------------ FP8 / bf16 / f16

def test_fp8_decode_appendix_a():
    t = quant.FP8_TABLE
    assert t[0x38] == 1.0 and t[0x40] == 2.0 and t[0x7E] == 448.0
    assert t[0x01] == 2.0 ** -9 and t[0x08] == 2.0 ** -6
    assert t[0x80] == 0.0 and np.signbit(t[0x80])
    assert np.isnan(t[0x7F]) and np.isnan(t[0xFF])
    assert np.sum(np.isnan(t)) == 2 and not np.any(np.isinf(t))
    assert t[0xFE] == -448.0


def test_fp8_encode():
    codes = np.arange(256, dtype=np.uint8)
    finite = ~np.isnan(quant.FP8_TABLE)
    # every finite value encodes to itself (0x80 = -0 keeps its sign)
    assert np.array_equal(quant.fp8_encode(quant.FP8_TABLE[finite]), codes[finite])
    assert quant.fp8_encode(np.array([1e9]))[0] == 0x7E       # saturate
    assert quant.fp8_encode(np.array([-500.0]))[0] == 0xFE
    assert quant.fp8_encode(np.array([np.nan]))[0] == 0x7F
    # ties to even: 1.0625 is halfway between 1.0 (0x38) and 1.125 (0x39) -> 0x38
    assert quant.fp8_encode(np.array([1.0625]))[0] == 0x38
    assert quant.fp8_encode(np.array([1.1875]))[0] == 0x3A   # between 0x39 and 0x3A -> even
    assert quant.fp8_encode(np.array([2.0 ** -10]))[0] == 0x00  # half of min subnormal -> 0
    assert quant.fp8_encode(np.array([3 * 2.0 ** -10]))[0] == 0x02
    # nearest: random values round to the closest representable value
    x = np.random.RandomState(0).uniform(-460, 460, 10000)
    dec = quant.fp8_decode(quant.fp8_encode(x))
    pos = quant.FP8_TABLE[:127]
    best = np.min(np.abs(np.abs(np.clip(x, -448, 448))[:, None] - pos[None, :]), axis=1)
    assert np.allclose(np.abs(np.abs(dec) - np.abs(np.clip(x, -448, 448))), best)


def test_fp8_block_scales_partial():
    rs = np.random.RandomState(1)
    w = (rs.standard_normal((200, 150)) * np.exp(rs.standard_normal((200, 1)))).astype(np.float32)
    codes, s = quant.fp8_block_quantize(w)
    assert s.shape == (2, 2) and codes.shape == w.shape
    deq = quant.fp8_block_dequant(codes, s)
    # each block's max maps to 448 exactly
    for i in range(2):
        for j in range(2):
            blk = codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            assert np.max(quant.FP8_TABLE[blk & 0x7F]) == 448.0
    err = np.abs(deq - w) / np.repeat(np.repeat(s * 448, 128, 0), 128, 1)[:200, :150]
    assert err.max() <= 2.0 ** -4 + 1e-7    # half an ulp at the top binade (3 mantissa bits)
    assert quant.fp8_scale_shape(576, 7168) == (5, 56)


def test_bf16_f16():
    x = np.array([1.0, 1.00390625, 1.005859375, -2.5, 3.0e38, np.inf, 1e-40], np.float32)
    b = quant.bf16_encode(x)
    assert b[0] == 0x3F80
    assert b[1] == 0x3F80            # 1 + 2^-8 is a tie -> even (1.0)
    assert b[2] == 0x3F81            # above the tie
    assert quant.bf16_decode(b)[3] == -2.5
    assert quant.bf16_encode(np.array([np.nan], np.float32))[0] & 0x7FC0 == 0x7FC0
    assert np.isinf(quant.bf16_decode(b)[5])
    assert quant.f16_from_f32(np.float32(1.0 + 2 ** -11))[()] == np.float16(1.0)   # tie -> even


# ------------------------------------------------------------------ Q8_0 / Q4_0

def _test_data():
    rs = np.random.RandomState(7)
    x = (rs.standard_normal((64, 256)) * np.exp(rs.standard_normal((64, 1)))).astype(np.float32)
    x[0, :32] = 0.0          # all-zero block
    x[1, :32] = 5.0          # constant block
    x[2, 3] = -40.0          # dominant negative element
    return x


def test_q8_0_roundtrip():
    x = _test_data()
    d, q = quant.q8_0_quantize(x)
    y = quant.q8_0_dequantize(d, q, x.shape)
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    err = np.abs(y - x).reshape(-1, 32).max(axis=1)
    # half a step plus the f16 rounding of d (relative 2^-11 of up to 127 steps)
    assert np.all(err <= amax / 127 * (0.5 + 127 * 2.0 ** -11) + 1e-30)
    assert np.all(y[0, :32] == 0)
    assert np.all(np.abs(q) <= 127)
    # packing
    buf = quant.q8_0_pack(d, q)
    assert len(buf) == 34 * d.size
    d2, q2 = quant.q8_0_unpack(buf)
    assert np.array_equal(d2.view(np.uint16), d.view(np.uint16)) and np.array_equal(q2, q)
    # round half away from zero on an exactly representable case: d = 1 -> v = x
    xb = np.zeros(32, np.float32)
    xb[0], xb[1], xb[2] = 127.0, 2.5, -2.5
    d3, q3 = quant.q8_0_quantize(xb)
    assert float(d3[0]) == 1.0 and q3[0, 1] == 3 and q3[0, 2] == -3


def test_act_q8_roundtrip():
    """The 8-bit activation blocks of the CPU decode kernels: Q8_0's integers, float32 d."""
    x = _test_data()
    y = quant.act_q8_roundtrip(x)
    blocks = x.reshape(-1, 32).astype(np.float64)
    amax = np.abs(blocks).max(axis=1)
    d = (amax.astype(np.float32) / np.float32(127)).astype(np.float64)
    step = np.where(d > 0, d, 1.0)
    q = y.reshape(-1, 32) / step[:, None]
    assert np.array_equal(q, np.round(q)) and np.all(np.abs(q) <= 127)
    assert np.all(np.abs(y.reshape(-1, 32) - blocks) <= 0.5 * d[:, None] * (1 + 1e-6) + 1e-30)
    # where f16(d) == d the integers are Q8_0's exactly
    dw, qw = quant.q8_0_quantize(x)
    same = dw.astype(np.float64) == d
    assert np.any(same) and np.array_equal(q[same], qw[same].astype(np.float64))
    # round half away from zero, as the weights: d = 1 -> v = x
    xb = np.zeros(32, np.float32)
    xb[0], xb[1], xb[2] = 127.0, 2.5, -2.5
    yb = quant.act_q8_roundtrip(xb)
    assert yb[1] == 3.0 and yb[2] == -3.0


def test_actq8_goldens_match_reference():
    for arch in ("tiny-v3", "tiny-v2lite"):
        d = os.path.join(DATA, arch)
        man = os.path.join(d, "goldens_actq8.json")
        if not os.path.exists(man):
            continue
        with open(man) as f:
            g = json.load(f)
        models = {}
        for e in g["goldens"]:
            v = e["weights_variant"]
            if v not in models:
                models[v] = ref.Model(d, v, act_q8=True)
            lg = ref.forward(models[v], e["tokens"], attn="absorbed")
            gold = np.fromfile(os.path.join(d, e["file"]), dtype="<f4").reshape(e["shape"])
            assert np.max(np.abs(lg - gold)) <= 1e-6 * np.max(np.abs(gold))
            # 8-bit activations do move the logits (the float goldens of the same prompt)
            flt = np.fromfile(os.path.join(d, e["file"].replace("_actq8", "")), "<f4")
            assert np.max(np.abs(flt - gold.reshape(-1))) > 1e-3 * np.max(np.abs(flt))


def test_actq8_near_ties():
    """The near-tie blocks of goldens_actq8.json are the reference's, and rounding one near-tie
    the other way (as a float32 engine in another summation order may) moves the logits far
    beyond the 1e-4 bound: test_forward has to make the engine take the reference's rounding."""
    d = os.path.join(DATA, "tiny-v3")
    with open(os.path.join(d, "goldens_actq8.json")) as f:
        g = json.load(f)
    assert g["near_tie_tau"] == mg.Q8_TAU
    e = [e for e in g["goldens"] if e["name"] == "tiny-v3_q4_0_actq8_t7"][0]
    m = ref.Model(d, "q4_0", act_q8=True)
    m.q8_tau = 2 * mg.Q8_TAU
    base = ref.forward(m, e["tokens"], attn="absorbed")
    assert mg.near_tie_blocks(m) == e["near_tie_blocks"]
    assert 20 < len(e["near_tie_blocks"]) < 200
    # the closest one: the engine rounded it the other way with OpenBLAS's SkylakeX sgemm
    key = min(m.q8_ties, key=lambda k: abs(abs(m.q8_ties[k]) % 1 - 0.5))
    assert abs(abs(m.q8_ties[key]) % 1 - 0.5) < 1e-5
    m.q8_flip = frozenset([key])
    flipped = ref.forward(m, e["tokens"], attn="absorbed")
    assert np.max(np.abs(flipped - base)) > 1e-3 * np.max(np.abs(base))


def test_q4_0_roundtrip():
    x = _test_data()
    d, q = quant.q4_0_quantize(x)
    y = quant.q4_0_dequantize(d, q, x.shape)
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    err = np.abs(y - x).reshape(-1, 32).max(axis=1)
    # step amax/8; error <= half a step (+ one step at the clamped +8 end) + f16 rounding of d
    assert np.all(err <= amax / 8 * (1.0 + 8 * 2.0 ** -11) + 1e-30)
    assert np.all(q <= 15)
    # the max-|x| element is reproduced up to f16 rounding of d (it maps to q = 0 -> -8*d = m)
    i = np.argmax(np.abs(blocks), axis=1)
    m = blocks[np.arange(len(i)), i]
    ym = y.reshape(-1, 32)[np.arange(len(i)), i]
    assert np.all(np.abs(ym - m) <= np.abs(m) * 2.0 ** -11 + 1e-30)
    assert np.all(y[0, :32] == 0)
    buf = quant.q4_0_pack(d, q)
    assert len(buf) == 18 * d.size
    d2, q2 = quant.q4_0_unpack(buf)
    assert np.array_equal(d2.view(np.uint16), d.view(np.uint16)) and np.array_equal(q2, q)
    # nibble layout: element j low nibble of qs[j], element j+16 high nibble
    raw = np.frombuffer(buf[:18], np.uint8)
    assert raw[2] == (q[0, 0] | (q[0, 16] << 4))


def test_should_quantize():
    sq = quant.should_quantize
    assert sq("lm_head.weight", 2)
    assert sq("model.layers.0.self_attn.q_a_proj.weight", 2)
    assert sq("model.layers.2.mlp.experts.3.down_proj.weight", 2)
    assert sq("model.layers.2.mlp.shared_experts.up_proj.weight", 2)
    assert not sq("model.embed_tokens.weight", 2)
    assert not sq("model.layers.3.embed_tokens.weight", 2)
    assert not sq("model.layers.2.mlp.gate.weight", 2)
    assert not sq("model.layers.2.mlp.gate.e_score_correction_bias", 1)
    assert not sq("model.layers.0.self_attn.kv_a_layernorm.weight", 1)
    assert not sq("model.layers.0.self_attn.q_a_proj.weight_scale_inv", 2)
    assert not sq("model.norm.weight", 1)


# ------------------------------------------------------------------ safetensors

def test_safetensors_roundtrip():
    t = tempfile.mkdtemp()
    rs = np.random.RandomState(3)
    T = {"a": ("F32", rs.standard_normal((3, 5)).astype(np.float32)),
         "b": ("BF16", quant.bf16_encode(rs.standard_normal(7).astype(np.float32))),
         "c": ("F8_E4M3", rs.randint(0, 256, (4, 3)).astype(np.uint8)),
         "d": ("F16", rs.standard_normal((2, 2)).astype(np.float16))}
    p = os.path.join(t, "x.safetensors")
    st.write_file(p, T, {"format": "pt"})
    back, meta = st.read_file(p)
    assert meta == {"format": "pt"}
    for n, (dt, a) in T.items():
        assert back[n][0] == dt and np.array_equal(back[n][1].view(np.uint8), a.view(np.uint8))
    with open(p, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    assert n % 8 == 0


# ------------------------------------------------------------------ model checks

def test_absorbed_equals_naive_v3():
    for arch in ("tiny-v3", "tiny-v2lite"):
        m = ref.Model(_ckpt(arch))
        rs = np.random.RandomState(5)
        a = rs.standard_normal((13, m.cfg["hidden_size"]))
        pos = np.arange(13)
        for l in range(m.cfg["num_hidden_layers"]):
            o1 = ref.mla_naive(m, l, a, pos)
            o2 = ref.mla_absorbed(m, l, a, pos)
            assert np.max(np.abs(o1 - o2)) < 1e-10 * max(1.0, np.max(np.abs(o1)))
        toks = mg.prompts(m.cfg["vocab_size"], 1)[1]
        l1 = ref.forward(m, toks, "naive")
        l2 = ref.forward(m, toks, "absorbed")
        assert np.max(np.abs(l1 - l2)) < 1e-10


def test_rope_interleaved_vs_halfsplit_scores():
    """HF de-interleave + rotate_half gives the same dot products (docs/model.md §2.4)."""
    rs = np.random.RandomState(9)
    inv = ref.yarn_inv_freq(ref.R1_ROPE_CFG)[0]
    pos = np.arange(20) * 37
    q = rs.standard_normal((20, 64))
    k = rs.standard_normal((20, 64))
    qi, ki = ref.rope_interleaved(q, pos, inv), ref.rope_interleaved(k, pos, inv)
    perm = np.concatenate([np.arange(0, 64, 2), np.arange(1, 64, 2)])

    def half(x):
        ang = pos[:, None] * np.concatenate([inv, inv])[None]
        rot = np.concatenate([-x[:, 32:], x[:, :32]], axis=1)
        return x * np.cos(ang) + rot * np.sin(ang)

    qh, kh = half(q[:, perm]), half(k[:, perm])
    assert np.allclose(qi @ ki.T, qh @ kh.T, atol=1e-12)
    assert np.allclose(qi[:, perm], qh, atol=1e-12)


def test_routing_rules():
    cfg = {"n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
           "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
           "routed_scaling_factor": 2.5}
    u = np.array([0.0, 0.0, 3.0, -3.0, 1.0, 1.0, 0.5, 0.5])
    b = np.zeros(8)
    sel, w, _ = ref.route(cfg, u, b)
    # group sums of top-2: g0=1.0, g1=0.998, g2=1.462, g3=1.245 -> groups 2,3 kept
    assert list(sel) == [4, 5] and abs(w.sum() - 2.5) < 1e-12      # tie 4/5 -> lower first
    b = np.array([0, 0, 0, 0, 0, 0, 0, 0.3])
    sel, w, nb = ref.route(cfg, u, b)
    assert list(sel) == [7, 4] and list(nb) == [4, 5]
    s = 1 / (1 + np.exp(-u))
    assert np.allclose(w, 2.5 * s[[7, 4]] / s[[7, 4]].sum())       # bias not in the weights
    # excluded groups are -inf (official), not 0.0 (HF): with kept candidates negative,
    # a 0-filled expert of an excluded group would win the 3rd slot under the HF rule
    b = np.array([5, 5, -4, -4, -6, -6, -6, -6.0])
    cfg1 = dict(cfg, num_experts_per_tok=3)
    sel, _, _ = ref.route(cfg1, np.zeros(8), b)
    assert list(sel) == [0, 1, 2]
    # softmax greedy (V2-Lite): weights are plain softmax probabilities, not renormalised
    cfg2 = {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
            "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False,
            "routed_scaling_factor": 1.0}
    u = np.array([0.1, 2.0, 1.0, 2.0])
    sel, w, _ = ref.route(cfg2, u, None)
    p = np.exp(u) / np.exp(u).sum()
    assert list(sel) == [1, 3] and np.allclose(w, p[[1, 3]])


def test_goldens_match_reference():
    for arch in ("tiny-v3", "tiny-v2lite"):
        d = os.path.join(DATA, arch)
        man = os.path.join(d, "goldens.json")
        if not os.path.exists(man):
            continue
        with open(man) as f:
            g = json.load(f)
        models = {}
        for e in g["goldens"]:
            v = e["weights_variant"]
            if v not in models:
                models[v] = ref.Model(d, v)
            lg = ref.forward(models[v], e["tokens"])
            gold = np.fromfile(os.path.join(d, e["file"]), dtype="<f4").reshape(e["shape"])
            assert np.max(np.abs(lg - gold)) <= 1e-6 * np.max(np.abs(gold))
            assert gold.std() > 0.5 and np.all(np.isfinite(gold))
        # the quantised variants really differ from src (routing can flip between variants,
        # so the difference is not small -- goldens are per variant)
        src = np.fromfile(os.path.join(d, "goldens/logits_src_t45.f32"), "<f4")
        q4 = np.fromfile(os.path.join(d, "goldens/logits_q4_0_t45.f32"), "<f4")
        q8 = np.fromfile(os.path.join(d, "goldens/logits_q8_0_t45.f32"), "<f4")
        e8 = np.max(np.abs(q8 - src)) / np.max(np.abs(src))
        e4 = np.max(np.abs(q4 - src)) / np.max(np.abs(src))
        assert 0 < e8 and 0 < e4


def test_fp32_engine_emulation_within_tolerance():
    """The reference run with float32 weights/activations (what the C engine does) stays
    within the documented 1e-4 bound of the float64 goldens (routing margins are safe)."""
    for arch in ("tiny-v3", "tiny-v2lite"):
        d = os.path.join(DATA, arch)
        if not os.path.exists(os.path.join(d, "goldens.json")):
            continue
        with open(os.path.join(d, "goldens.json")) as f:
            g = json.load(f)
        models = {}
        for e in g["goldens"]:
            v = e["weights_variant"]
            if v not in models:
                m = ref.Model(d, v)
                m.w = {k: x.astype(np.float32) for k, x in m.w.items()}
                m.inv_freq = m.inv_freq.astype(np.float32)
                m.sm_scale = np.float32(m.sm_scale)
                models[v] = m
            lg = ref.forward(models[v], e["tokens"])
            assert lg.dtype == np.float32
            gold = np.fromfile(os.path.join(d, e["file"]), dtype="<f4").reshape(e["shape"])
            assert np.max(np.abs(lg - gold)) <= 2e-5 * np.max(np.abs(gold)), e["name"]


def test_checkpoint_layout_v3():
    d = _ckpt("tiny-v3")
    raw = st.load_dir(d)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    L = cfg["num_hidden_layers"]
    n_fp8 = 0
    for n, (dt, a) in raw.items():
        if dt == "F8_E4M3":
            n_fp8 += 1
            sdt, s = raw[n + "_scale_inv"]
            assert sdt == "F32" and s.shape == quant.fp8_scale_shape(*a.shape)
            assert quant.should_quantize(n, 2)
        elif n.endswith(".weight") and a.ndim == 2 and "embed" not in n:
            assert n.endswith("mlp.gate.weight") or n in ("lm_head.weight",) or \
                n.startswith("model.layers.%d." % L), n     # bf16 router / head / MTP extras
    assert n_fp8 > 0
    assert "model.layers.%d.eh_proj.weight" % L in raw
    assert raw["model.layers.1.mlp.gate.e_score_correction_bias"][0] == "F32"
    tok = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    n_ids = len(tok["model"]["vocab"]) + sum(1 for t in tok["added_tokens"]
                                            if t["id"] >= len(tok["model"]["vocab"]))
    assert n_ids < cfg["vocab_size"]
    d2 = _ckpt("tiny-v2lite")
    cfg2 = json.load(open(os.path.join(d2, "config.json")))
    tok2 = json.load(open(os.path.join(d2, "tokenizer.json"), encoding="utf-8"))
    assert max(t["id"] for t in tok2["added_tokens"]) + 1 > cfg2["vocab_size"]


if __name__ == "__main__":
    fails = 0
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print("ok   ", name)
            except Exception as ex:  # noqa: BLE001
                fails += 1
                print("FAIL ", name, repr(ex))
    sys.exit(1 if fails else 0)
