"""Write a DeepSeek-V2-Lite-shaped random checkpoint in Hugging Face layout (for measurements).

Shapes and config.json follow DeepSeek-V2-Lite (docs/model.md §1.1): 27 layers,
hidden 2048, 16 heads, MLA with kv_lora 512 and a plain q_proj, layer 0 a dense MLP of 10944,
layers 1..26 MoE with 64 routed experts of 1408 (6 per token, softmax greedy routing) and 2
shared experts, vocab 102400, YaRN factor 40. About 15.7 G parameters, 31 GB of BF16 in
several safetensors shards plus model.safetensors.index.json.

Weights are N(0, 0.02^2) (norms 1.0), generated and written tensor by tensor in chunks, so
memory stays at a few hundred MB whatever the size. Deterministic: tensor i of the fixed
tensor order gets numpy Generator(PCG64(SeedSequence([seed, i]))), so a --layers N checkpoint
holds exactly the first tensors of the full one (for a fixed numpy version).

The tokenizer files are copied from test/data/tiny-v2lite (ids beyond its few hundred tokens
never occur; the model is for format and load measurements, not for text).

Usage: python3 make_v2lite_shaped.py OUTDIR [--layers N] [--seed S] [--shard-gb G]

The speed benchmark of docs/performance.md (about 5 min to generate, 1-1.5 min per conversion):
    python3 make_v2lite_shaped.py DIR/v2lite-hf
    r1 convert DIR/v2lite-hf DIR/v2lite-q8_0.r1m --quant q8_0 --threads 2
    r1 bench -m DIR/v2lite-q8_0.r1m -p 512 -n 128 -t 2 --reps 5 --profile
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_DIR = os.path.join(HERE, "..", "data", "tiny-v2lite")
INDEX_NAME = "model.safetensors.index.json"

CONFIG = {
    "architectures": ["DeepseekV2ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 100000,
    "eos_token_id": 100001,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 10944,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v2",
    "moe_intermediate_size": 1408,
    "moe_layer_freq": 1,
    "n_group": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "norm_topk_prob": False,
    "num_attention_heads": 16,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 27,
    "num_key_value_heads": 16,
    "pretraining_tp": 1,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 0.707,
        "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 1.0,
    "scoring_func": "softmax",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 1,
    "topk_method": "greedy",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 102400,
}

STD = 0.02
CHUNK = 1 << 24  # values generated per step (64 MB of float32)


def tensor_list(cfg):
    """[(name, shape, kind)] in file order; kind 'w' (random) or 'norm' (ones).
    Grouped per layer like the HF checkpoint: embed, layer 0..L-1, final norm, head."""
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    rkv = cfg["kv_lora_rank"]
    V, E = cfg["vocab_size"], cfg["n_routed_experts"]
    Im = cfg["moe_intermediate_size"]
    Is = cfg["n_shared_experts"] * Im
    out = [("model.embed_tokens.weight", (V, D), "w")]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        out += [
            (p + "input_layernorm.weight", (D,), "norm"),
            (p + "self_attn.q_proj.weight", (H * (dn + dr), D), "w"),
            (p + "self_attn.kv_a_proj_with_mqa.weight", (rkv + dr, D), "w"),
            (p + "self_attn.kv_a_layernorm.weight", (rkv,), "norm"),
            (p + "self_attn.kv_b_proj.weight", (H * (dn + dv), rkv), "w"),
            (p + "self_attn.o_proj.weight", (D, H * dv), "w"),
            (p + "post_attention_layernorm.weight", (D,), "norm"),
        ]
        if l < cfg["first_k_dense_replace"]:
            I = cfg["intermediate_size"]
            out += [(p + "mlp.gate_proj.weight", (I, D), "w"),
                    (p + "mlp.up_proj.weight", (I, D), "w"),
                    (p + "mlp.down_proj.weight", (D, I), "w")]
        else:
            out.append((p + "mlp.gate.weight", (E, D), "w"))
            for e in range(E):
                q = p + "mlp.experts.%d." % e
                out += [(q + "gate_proj.weight", (Im, D), "w"),
                        (q + "up_proj.weight", (Im, D), "w"),
                        (q + "down_proj.weight", (D, Im), "w")]
            out += [(p + "mlp.shared_experts.gate_proj.weight", (Is, D), "w"),
                    (p + "mlp.shared_experts.up_proj.weight", (Is, D), "w"),
                    (p + "mlp.shared_experts.down_proj.weight", (D, Is), "w")]
    out += [("model.norm.weight", (D,), "norm"), ("lm_head.weight", (V, D), "w")]
    return out


def nbytes(shape):
    return int(np.prod(shape, dtype=np.int64)) * 2


def to_bf16(x):
    """float32 array -> uint16 BF16 bits, round to nearest even (in place on x's buffer)."""
    u = x.view(np.uint32)
    u += np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))
    return (u >> 16).astype(np.uint16)


def write_tensor(f, shape, kind, seed, index):
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "norm":
        f.write(np.full(n, 0x3F80, dtype="<u2").tobytes())  # 1.0 in BF16
        return
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))
    done = 0
    while done < n:
        k = min(CHUNK, n - done)
        x = g.standard_normal(k, dtype=np.float32)
        x *= np.float32(STD)
        f.write(to_bf16(x).astype("<u2", copy=False).tobytes())
        done += k


def shard_plan(tensors, shard_bytes):
    """Split tensors (in order) into shards of about shard_bytes, never splitting a layer."""
    groups = []
    for t in tensors:
        key = t[0].split(".")[2] if t[0].startswith("model.layers.") else t[0]
        if groups and groups[-1][0] == key:
            groups[-1][1].append(t)
        else:
            groups.append((key, [t]))
    shards, cur, size = [], [], 0
    for _, ts in groups:
        gb = sum(nbytes(s) for _, s, _ in ts)
        if cur and size + gb > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur += ts
        size += gb
    if cur:
        shards.append(cur)
    return shards


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, default=27, help="num_hidden_layers (default 27)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--shard-gb", type=float, default=5.0, help="target shard size (GB)")
    a = ap.parse_args()
    if a.layers < 1:
        sys.exit("--layers must be >= 1")
    cfg = dict(CONFIG, num_hidden_layers=a.layers)
    os.makedirs(a.outdir, exist_ok=True)
    for fn in os.listdir(a.outdir):  # stale shards of a previous run
        if fn.endswith(".safetensors") or fn == INDEX_NAME:
            os.remove(os.path.join(a.outdir, fn))
    tensors = tensor_list(cfg)
    order = {name: i for i, (name, _, _) in enumerate(tensors)}
    shards = shard_plan(tensors, int(a.shard_gb * 1e9))
    total = sum(nbytes(s) for _, s, _ in tensors)
    print("%d tensors, %.2f G parameters, %.2f GB in %d shards"
          % (len(tensors), total / 2e9, total / 1e9, len(shards)), flush=True)
    weight_map = {}
    t0 = time.time()
    written = 0
    for si, part in enumerate(shards):
        fname = "model-%05d-of-%06d.safetensors" % (si + 1, len(shards))
        header = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shape, _ in part:
            header[name] = {"dtype": "BF16", "shape": list(shape),
                            "data_offsets": [off, off + nbytes(shape)]}
            off += nbytes(shape)
            weight_map[name] = fname
        h = json.dumps(header, separators=(",", ":")).encode("utf-8")
        h += b" " * ((-len(h)) % 8)
        with open(os.path.join(a.outdir, fname), "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for name, shape, kind in part:
                write_tensor(f, shape, kind, a.seed, order[name])
        written += off
        print("  %s: %.2f GB (%.0f%% done, %.0f s)" % (fname, off / 1e9, 100.0 * written / total,
                                                     time.time() - t0), flush=True)
    with open(os.path.join(a.outdir, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, fn), os.path.join(a.outdir, fn))


if __name__ == "__main__":
    main()
