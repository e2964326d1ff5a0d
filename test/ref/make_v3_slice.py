"""Write a "V3 slice": DeepSeek-V3/R1's exact layer shapes, FP8 block-scaled as the real checkpoint
stores them, but only 1 dense + 2 MoE layers, random weights (for docs/performance.md's R1 671B
projection, test/bench/project_r1.py).

Shapes and config.json follow DeepSeek-V3 (docs/model.md §1.1, §5.2): hidden 7168, 128 heads, MLA
with q_lora 1536, kv_lora 512, qk_nope 128, qk_rope 64, v_head 128; layer 0 a dense MLP of 18432,
layers 1-2 MoE with 256 routed experts of 2048 (8 active, sigmoid + correction bias, 8 groups /
top-4 groups, scaled by 2.5) and 1 shared expert; no MTP layer. Every linear layer of attention and
of the feed-forwards is F8_E4M3 with a 128x128 F32 weight_scale_inv (docs/model.md §5.3); norms
(1.0), router, embedding and head are BF16, the correction bias F32. The vocabulary is small
(--vocab, default 1024: the tokenizer of test/ref/make_checkpoint.py's tiny-v3, ids past it never
occur), so the head is not V3's; project_r1.py accounts for the real head by its bytes.
About 23.6 GB at the default shape (two MoE layers are 22.5 GB of it).

FP8 codes are drawn directly, never through a float intermediate: each code is a draw from a
65536-entry table of e4m3 codes of sorted N(0, 1) samples scaled so that the largest reaches
about 448 (as a real block's amax does), and each 128x128 block's weight_scale_inv is
std / 107 times a log-normal factor (sigma 0.1), so the dequantised weights are about N(0, std^2)
with block scales that vary. Tensors are streamed to the shards in chunks, so memory stays at a
few hundred MB. Deterministic: tensor i of the fixed order gets numpy
Generator(PCG64(SeedSequence([seed, i]))) (for a fixed numpy version).

Usage: python3 make_v3_slice.py OUTDIR [--seed S] [--vocab V] [--shard-gb G] [--std S]
                                       [--set KEY=JSON]...
  --set overrides config fields, e.g. a small slice for tests:
        --set hidden_size=256 --set n_routed_experts=16 --set moe_intermediate_size=128 ...

The projection of docs/performance.md:
    python3 make_v3_slice.py DIR/v3slice-hf                                 # ~23.6 GB
    r1 convert DIR/v3slice-hf DIR/v3slice-q4_0.r1m --quant q4_0 --threads 2
    r1 bench -m DIR/v3slice-q4_0.r1m -p 0 -n 32 -t 2 --reps 3 --profile --json > slice.json
    python3 test/bench/project_r1.py slice.json
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_checkpoint  # noqa: E402
import quant  # noqa: E402

INDEX_NAME = "model.safetensors.index.json"

CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 3,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 0,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 1024,
}

CHUNK = 1 << 24  # elements per step: 16 MB of codes (take() widens the 16-bit draws to intp)
TABLE_BITS = 16
CODE_SIGMA = 107.0  # code-space std: the largest of 65536 N(0,1) samples (~4.3) lands near 448
FP8_BLOCK = quant.FP8_BLOCK


def tensor_list(cfg):
    """[(name, shape, kind)] in file order; kind: 'fp8' (codes; its scale follows as 'scale'),
    'bf16', 'norm' (BF16 ones) or 'bias' (F32)."""
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    rq, rkv = cfg["q_lora_rank"], cfg["kv_lora_rank"]
    V, E = cfg["vocab_size"], cfg["n_routed_experts"]
    Im = cfg["moe_intermediate_size"]
    Is = cfg["n_shared_experts"] * Im
    out = [("model.embed_tokens.weight", (V, D), "bf16")]

    def lin(name, rows, cols):
        out.append((name, (rows, cols), "fp8"))
        out.append((name + "_scale_inv", quant.fp8_scale_shape(rows, cols), "scale"))

    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        out.append((p + "input_layernorm.weight", (D,), "norm"))
        lin(p + "self_attn.q_a_proj.weight", rq, D)
        out.append((p + "self_attn.q_a_layernorm.weight", (rq,), "norm"))
        lin(p + "self_attn.q_b_proj.weight", H * (dn + dr), rq)
        lin(p + "self_attn.kv_a_proj_with_mqa.weight", rkv + dr, D)
        out.append((p + "self_attn.kv_a_layernorm.weight", (rkv,), "norm"))
        lin(p + "self_attn.kv_b_proj.weight", H * (dn + dv), rkv)
        lin(p + "self_attn.o_proj.weight", D, H * dv)
        out.append((p + "post_attention_layernorm.weight", (D,), "norm"))
        if l < cfg["first_k_dense_replace"]:
            I = cfg["intermediate_size"]
            lin(p + "mlp.gate_proj.weight", I, D)
            lin(p + "mlp.up_proj.weight", I, D)
            lin(p + "mlp.down_proj.weight", D, I)
        else:
            out.append((p + "mlp.gate.weight", (E, D), "bf16"))
            out.append((p + "mlp.gate.e_score_correction_bias", (E,), "bias"))
            for e in range(E):
                q = p + "mlp.experts.%d." % e
                lin(q + "gate_proj.weight", Im, D)
                lin(q + "up_proj.weight", Im, D)
                lin(q + "down_proj.weight", D, Im)
            lin(p + "mlp.shared_experts.gate_proj.weight", Is, D)
            lin(p + "mlp.shared_experts.up_proj.weight", Is, D)
            lin(p + "mlp.shared_experts.down_proj.weight", D, Is)
    out += [("model.norm.weight", (D,), "norm"), ("lm_head.weight", (V, D), "bf16")]
    return out


DTYPE = {"fp8": ("F8_E4M3", 1), "scale": ("F32", 4), "bias": ("F32", 4), "bf16": ("BF16", 2),
         "norm": ("BF16", 2)}


def nbytes(shape, kind):
    return int(np.prod(shape, dtype=np.int64)) * DTYPE[kind][1]


def code_table(seed):
    """65536 e4m3 codes whose uniform draw follows N(0, CODE_SIGMA^2) quantised to FP8."""
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x7AB1E])))
    z = np.sort(g.standard_normal(1 << TABLE_BITS))
    return quant.fp8_encode(z * CODE_SIGMA).astype(np.uint8)


def rng_for(seed, index):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))


def write_tensor(f, shape, kind, rng, table, std):
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "norm":
        f.write(np.full(n, 0x3F80, dtype="<u2").tobytes())  # 1.0 in BF16
    elif kind == "bias":
        f.write((0.1 * rng.standard_normal(n)).astype("<f4").tobytes())
    elif kind == "scale":
        s = std / CODE_SIGMA * np.exp(0.1 * rng.standard_normal(n))
        f.write(s.astype("<f4").tobytes())
    elif kind == "bf16":
        done = 0
        while done < n:
            k = min(CHUNK // 4, n - done)
            x = rng.standard_normal(k, dtype=np.float32)
            x *= np.float32(std)
            f.write(quant.bf16_encode(x).astype("<u2", copy=False).tobytes())
            done += k
    else:  # fp8 codes: a table draw per element, 16 random bits each
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            idx = np.frombuffer(rng.bytes(2 * k), dtype="<u2")
            f.write(table.take(idx).tobytes())
            done += k


def shard_plan(tensors, shard_bytes):
    """Tensors in order, cut into shards of about shard_bytes (a tensor is never split)."""
    shards, cur, size = [], [], 0
    for t in tensors:
        b = nbytes(t[1], t[2])
        if cur and size + b > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += b
    if cur:
        shards.append(cur)
    return shards


def parse_set(items, cfg):
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in cfg:
            sys.exit("--set %s: expected KEY=JSON with KEY a config field" % item)
        cfg[key] = json.loads(value)
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=671)
    ap.add_argument("--vocab", type=int, default=1024, help="vocab_size (>= 304)")
    ap.add_argument("--std", type=float, default=0.02, help="weight std (default 0.02)")
    ap.add_argument("--shard-gb", type=float, default=5.0, help="target shard size (GB)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config field (JSON value)")
    a = ap.parse_args()
    cfg = parse_set(a.set, dict(CONFIG, vocab_size=a.vocab))
    tok, n_ids = make_checkpoint.build_tokenizer(make_checkpoint.TOKENIZER_REGULAR["tiny-v3"])
    if cfg["vocab_size"] < n_ids:
        sys.exit("vocab_size %d is below the tokenizer's %d ids" % (cfg["vocab_size"], n_ids))
    if cfg["num_hidden_layers"] <= cfg["first_k_dense_replace"]:
        sys.exit("need at least one MoE layer (num_hidden_layers > first_k_dense_replace)")
    os.makedirs(a.outdir, exist_ok=True)
    for fn in os.listdir(a.outdir):  # stale shards of a previous run
        if fn.endswith(".safetensors") or fn == INDEX_NAME:
            os.remove(os.path.join(a.outdir, fn))
    tensors = tensor_list(cfg)
    order = {name: i + 1 for i, (name, _, _) in enumerate(tensors)}  # 0 is the code table's
    shards = shard_plan(tensors, int(a.shard_gb * 1e9))
    total = sum(nbytes(s, k) for _, s, k in tensors)
    n_fp8 = sum(int(np.prod(s, dtype=np.int64)) for _, s, k in tensors if k == "fp8")
    print("%d tensors, %.2f G FP8 weights, %.2f GB in %d shards"
          % (len(tensors), n_fp8 / 1e9, total / 1e9, len(shards)), flush=True)
    table = code_table(a.seed)
    weight_map = {}
    t0 = time.time()
    written = 0
    for si, part in enumerate(shards):
        fname = "model-%05d-of-%06d.safetensors" % (si + 1, len(shards))
        header = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shape, kind in part:
            b = nbytes(shape, kind)
            header[name] = {"dtype": DTYPE[kind][0], "shape": list(shape),
                            "data_offsets": [off, off + b]}
            off += b
            weight_map[name] = fname
        h = json.dumps(header, separators=(",", ":")).encode("utf-8")
        h += b" " * ((-len(h)) % 8)
        with open(os.path.join(a.outdir, fname), "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for name, shape, kind in part:
                write_tensor(f, shape, kind, rng_for(a.seed, order[name]), table, a.std)
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
    with open(os.path.join(a.outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(a.outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(make_checkpoint.tokenizer_config("tiny-v3"), f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
