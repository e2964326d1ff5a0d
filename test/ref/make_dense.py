"""Regenerate the tiny dense checkpoints (R1-Distill-Qwen and -Llama style) and their goldens.

    /usr/bin/python3 test/ref/make_dense.py [--data DIR] [--tokenizer PATH]

For each model (tiny-qwen2, tiny-llama):
  test/data/<model>/             config.json (the real distills' fields), model.safetensors (BF16),
                                 tokenizer.json / tokenizer_config.json (make_checkpoint's cut)
  test/data/<model>/goldens/     logits_<variant>_kv<kv>_t<T>.f32, raw little-endian float32 [T, V]
  test/data/<model>/goldens.json manifest (as make_goldens.py's, each entry with its "kv")
Variants 'src', 'q8_0', 'q4_0' with the engine's default f16 cache for prompts of 1, 7 and 45
ids, 'src' for 200 ids, and 'src' with a q8_0 cache (7, 45 ids) and an f32 cache (45 ids).
Both models have grouped-query attention with the distills' kind of group sizes (tiny-qwen2: 6
heads on 2 kv heads; tiny-llama: 4 heads on 1) and 32-wide heads (one Q8_0 block), 2 layers;
tiny-qwen2 has q/k/v biases (rope_theta 1e4, eps 1e-6), tiny-llama none and llama3 rope scaling
with Llama-3.1's parameters (rope_theta 5e5, eps 1e-5). Each golden of an f16 or q8_0 cache
lists the cache's near-ties (reference_dense.py: near_tie_values, near_tie_blocks,
near_tie_scales; test/ref/README.md). goldens_actq8.json: the q8_0/q4_0 goldens with the CPU's
8-bit activations (1 and 7 ids). Deterministic (fixed seeds).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_checkpoint as mc  # noqa: E402
import make_goldens as mg  # noqa: E402
import reference_dense as rd  # noqa: E402
import safetensors_io as st  # noqa: E402

CONFIGS = {
    "tiny-qwen2": {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "hidden_act": "silu",
        "hidden_size": 192,
        "initializer_range": 0.02,
        "intermediate_size": 224,
        "max_position_embeddings": 4096,
        "max_window_layers": 2,
        "model_type": "qwen2",
        "num_attention_heads": 6,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 10000,
        "sliding_window": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0",
        "use_cache": True,
        "use_mrope": False,
        "use_sliding_window": False,
        "vocab_size": 320,
    },
    "tiny-llama": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "hidden_act": "silu",
        "hidden_size": 128,
        "initializer_range": 0.02,
        "intermediate_size": 256,
        "max_position_embeddings": 4096,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 1,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0",
        "use_cache": True,
        "vocab_size": 320,
    },
}
SEEDS = {"tiny-qwen2": 21, "tiny-llama": 22}
N_REGULAR = 300  # tokenizer: 300 regular ids + 4 added (make_checkpoint.build_tokenizer)
LENGTHS = [1, 7, 45, 200]


def make_tensors(cfg, seed):
    g = mc.Gen(seed)
    D, H, KVH = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = D // H
    I, V, L = cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    bias = cfg["model_type"] == "qwen2"
    T = {"model.embed_tokens.weight": mc.bf16(g.normal(V, D).astype(np.float32))}
    for l in range(L):
        p = "model.layers.%d." % l
        T[p + "input_layernorm.weight"] = mc.bf16(g.norm(D))
        for name, n in (("q_proj", H * d), ("k_proj", KVH * d), ("v_proj", KVH * d)):
            T[p + "self_attn.%s.weight" % name] = mc.bf16(g.linear(n, D))
            if bias:
                # Qwen2's biases are large next to the products (its k bias especially)
                T[p + "self_attn.%s.bias" % name] = mc.bf16(0.5 * g.normal(n))
        T[p + "self_attn.o_proj.weight"] = mc.bf16(g.linear(D, H * d))
        T[p + "post_attention_layernorm.weight"] = mc.bf16(g.norm(D))
        T[p + "mlp.gate_proj.weight"] = mc.bf16(g.linear(I, D))
        T[p + "mlp.up_proj.weight"] = mc.bf16(g.linear(I, D))
        T[p + "mlp.down_proj.weight"] = mc.bf16(g.linear(D, I))
    T["model.norm.weight"] = mc.bf16(g.norm(D))
    T["lm_head.weight"] = mc.bf16(g.normal(V, D) * (2.0 / np.sqrt(D)))
    return T


def write_checkpoint(arch, outdir, tokenizer_src):
    cfg = CONFIGS[arch]
    os.makedirs(outdir, exist_ok=True)
    st.write_file(os.path.join(outdir, st.SINGLE_NAME), make_tensors(cfg, SEEDS[arch]),
                  {"format": "pt"})
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tok, n_ids = mc.build_tokenizer(N_REGULAR, tokenizer_src)
    with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(mc.tokenizer_config(arch), f, indent=2, ensure_ascii=False)
        f.write("\n")
    return cfg, n_ids


def prompts(vocab_size, seed):
    """Prompts of LENGTHS ids starting with BOS (0); the longer ones hold the last embedding
    row and a repeated id."""
    rs = np.random.RandomState(seed)
    out = []
    for T in LENGTHS:
        ids = [0] + [int(x) for x in rs.randint(3, vocab_size, size=T - 1)]
        if T >= 45:
            ids[20] = vocab_size - 1
            ids[30] = ids[10]
        out.append(ids)
    return out


def check_near_ties(blocks):
    """Each listed block must be told apart from every other by its integers outside its mask
    (the test finds an engine block's entry that way)."""
    for i, a in enumerate(blocks):
        for j, b in enumerate(blocks):
            if i != j and all(a[1 + k] == b[1 + k] for k in range(32) if not (a[0] >> k) & 1):
                raise SystemExit("near-tie blocks %d and %d are ambiguous" % (i, j))


def goldens_plan():
    """(variant, kv, T) of every golden."""
    plan = [(v, "f16", T) for v in ("src", "q8_0", "q4_0") for T in (1, 7, 45)]
    plan += [("src", "f16", 200), ("src", "q8_0", 7), ("src", "q8_0", 45), ("src", "f32", 45)]
    return plan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data"))
    ap.add_argument("--tokenizer", default=mc.R1_TOKENIZER)
    a = ap.parse_args()
    for arch in CONFIGS:
        d = os.path.normpath(os.path.join(a.data, arch))
        cfg, n_ids = write_checkpoint(arch, d, a.tokenizer)
        V = cfg["vocab_size"]
        gdir = os.path.join(d, "goldens")
        os.makedirs(gdir, exist_ok=True)
        for f in os.listdir(gdir):
            if f.endswith(".f32"):
                os.remove(os.path.join(gdir, f))
        pseed = 1000 + SEEDS[arch]
        ps = {len(p): p for p in prompts(V, pseed)}
        entries = []
        models = {}
        for variant, kv, T in goldens_plan():
            m = models.setdefault((variant, kv), rd.Model(d, variant, kv))
            toks = ps[T]
            m.near, m.near_d = [], []
            lg = rd.forward(m, toks)
            assert np.all(np.isfinite(lg))
            fname = "goldens/logits_%s_kv%s_t%d.f32" % (variant, kv, T)
            lg.astype("<f4").tofile(os.path.join(d, fname))
            e = {"name": "%s_%s_kv%s_t%d" % (arch, variant, kv, T), "weights_variant": variant,
                 "kv": kv, "tokens": toks, "file": fname, "shape": [T, V]}
            if kv == "f16":
                e["near_tie_values"] = m.near
            if kv == "q8_0":
                # layer 0's values of a repeated id are the same block: listed once
                blocks = [list(b) for b in sorted(set(tuple(b) for b in m.near))]
                check_near_ties(blocks)
                e["near_tie_blocks"] = blocks
                scales = [list(b) for b in sorted(set(tuple(b) for b in m.near_d))]
                for i, sa in enumerate(scales):   # told apart by their integers
                    assert all(sa[1:] != sb[1:] for sb in scales[:i]), "ambiguous near-tie scales"
                e["near_tie_scales"] = scales
            entries.append(e)
            print("%-10s %-5s kv %-4s T=%-3d logits std %.3f max|.| %.3f argmax(last) %d" %
                  (arch, variant, kv, T, lg.std(), np.abs(lg).max(), lg[-1].argmax()))
        # The same checkpoint read with tie_word_embeddings true: the embedding is the head and
        # lm_head.weight, still in the file, is ignored (test_forward_dense converts a copy of
        # the directory whose config.json says so).
        m = rd.Model(d, "src", "f16")
        m.cfg = dict(m.cfg, tie_word_embeddings=True)
        lg = rd.forward(m, ps[7])
        tied_near = m.near
        fname = "goldens/logits_src_tied_kvf16_t7.f32"
        lg.astype("<f4").tofile(os.path.join(d, fname))
        entries.append({"name": "%s_src_tied_kvf16_t7" % arch, "weights_variant": "src",
                        "kv": "f16", "tied": True, "tokens": ps[7], "file": fname,
                        "shape": [7, V], "near_tie_values": tied_near})
        manifest = {
            "model": arch,
            "format": "raw little-endian float32, row-major [T, vocab_size], all positions, "
                      "positions 0..T-1, no padding-row masking",
            "vocab_size": V,
            "tokenizer_ids": n_ids,
            "prompt_seed": pseed,
            "tolerance": {"metric": "max|logits - golden| / max|golden|", "bound": 1e-4},
            "goldens": entries,
        }
        text = json.dumps(manifest, indent=1)
        body = ",\n".join("  " + json.dumps(e) for e in entries)
        text = text[:text.index('"goldens": [') + len('"goldens": [')] + "\n" + body + "\n ]\n}"
        json.loads(text)
        with open(os.path.join(d, "goldens.json"), "w") as f:
            f.write(text + "\n")
        write_actq8_goldens(d, arch, ps, V)


def write_actq8_goldens(d, arch, ps, V):
    """The q8_0/q4_0 goldens again with 8-bit activations (the CPU backend's kernels; the
    reference's act_q8 mode), 1 and 7 ids, each with its activation near-tie blocks
    (make_goldens.near_tie_blocks, pinned by test_forward_dense as by test_forward) and its
    f16 cache's near-tie values."""
    entries = []
    for variant in ("q8_0", "q4_0"):
        for T in (1, 7):
            m = rd.Model(d, variant, "f16", act_q8=True)
            m.q8_tau = 2 * mg.Q8_TAU
            lg = rd.forward(m, ps[T])
            assert np.all(np.isfinite(lg))
            fname = "goldens/logits_%s_actq8_kvf16_t%d.f32" % (variant, T)
            lg.astype("<f4").tofile(os.path.join(d, fname))
            entries.append({"name": "%s_%s_actq8_kvf16_t%d" % (arch, variant, T),
                            "weights_variant": variant, "kv": "f16", "tokens": ps[T],
                            "file": fname, "shape": [T, V],
                            "near_tie_blocks": mg.near_tie_blocks(m), "near_tie_values": m.near})
            print("%-10s %-5s act_q8 T=%d near-tie blocks %d" %
                  (arch, variant, T, len(entries[-1]["near_tie_blocks"])))
    manifest = {"model": arch, "activations": "q8 blocks of 32 (quant.act_q8_roundtrip)",
                "near_tie_tau": mg.Q8_TAU, "goldens": entries}
    text = json.dumps(manifest, indent=1)
    body = ",\n".join("  " + json.dumps(e) for e in entries)
    text = text[:text.index('"goldens": [') + len('"goldens": [')] + "\n" + body + "\n ]\n}"
    assert json.loads(text) == manifest
    with open(os.path.join(d, "goldens_actq8.json"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
