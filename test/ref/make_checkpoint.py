"""Generate tiny random Hugging-Face-format DeepSeek checkpoints (deterministic per seed).

  tiny-v3     : DeepSeek-V3/R1 layout: FP8 e4m3 + 128x128 weight_scale_inv, q LoRA, sigmoid
                routing with e_score_correction_bias (noaux_tc, 4 groups / top-2 groups),
                1 shared expert, 3 main layers + 1 MTP layer, 3 safetensors shards + index.
  tiny-v2lite : DeepSeek-V2-Lite layout: BF16, plain q_proj, softmax greedy routing,
                2 shared experts, no MTP, single model.safetensors.

Usage: python3 make_checkpoint.py {tiny-v3|tiny-v2lite} OUTDIR [--seed N] [--tokenizer PATH]
Randomness: numpy RandomState (stream guaranteed stable across numpy versions).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402
import safetensors_io as st  # noqa: E402

# The DeepSeek-R1 tokenizer.json, committed for the tokenizer tests.
R1_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tokenizer", "tokenizer.json")

BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
USER = "<\uff5cUser\uff5c>"
ASSISTANT = "<\uff5cAssistant\uff5c>"
THINK = "<think>"
ENDTHINK = "</think>"

# ---------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------

CONFIG_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 160,
    "initializer_range": 0.02,
    "intermediate_size": 224,
    "kv_lora_rank": 64,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 32,
    "moe_layer_freq": 1,
    "n_group": 4,
    "n_routed_experts": 16,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 4,
    "num_experts_per_tok": 4,
    "num_hidden_layers": 3,
    "num_key_value_heads": 4,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 96,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
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
    "topk_group": 2,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3",
    "use_cache": True,
    "v_head_dim": 32,
    "vocab_size": 320,
}

CONFIG_V2LITE = {
    "architectures": ["DeepseekV2ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 192,
    "kv_lora_rank": 64,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v2",
    "moe_intermediate_size": 32,
    "moe_layer_freq": 1,
    "n_group": 1,
    "n_routed_experts": 8,
    "n_shared_experts": 2,
    "norm_topk_prob": False,
    "num_attention_heads": 3,
    "num_experts_per_tok": 3,
    "num_hidden_layers": 3,
    "num_key_value_heads": 3,
    "q_lora_rank": None,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
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
    "transformers_version": "4.39.3",
    "use_cache": True,
    "v_head_dim": 32,
    "vocab_size": 288,
}

# number of regular (non-added) vocabulary entries taken from the R1 tokenizer
TOKENIZER_REGULAR = {"tiny-v3": 300, "tiny-v2lite": 300}

ARCHS = {"tiny-v3": CONFIG_V3, "tiny-v2lite": CONFIG_V2LITE}


# ---------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------

# Own simplified Jinja chat template following the R1 logic of docs/model.md §6.4 (system prompt
# after BOS, <｜User｜>, <｜Assistant｜> + text after the last </think> + EOS, generation
# prompt "<｜Assistant｜><think>\n").  Tool calls are not covered.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for m in messages %}{%- if m['role'] == 'system' %}{{ m['content'] }}{%- endif %}{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'user' %}{{ '<\uff5cUser\uff5c>' + m['content'] }}"
    "{%- elif m['role'] == 'assistant' %}"
    "{%- set c = m['content'] %}{%- if '</think>' in c %}{%- set c = c.split('</think>')[-1] %}{%- endif %}"
    "{{ '<\uff5cAssistant\uff5c>' + c + '<\uff5cend\u2581of\u2581sentence\uff5c>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<\uff5cAssistant\uff5c><think>\\n' }}{%- endif %}"
)


def build_tokenizer(n_regular, src_path=R1_TOKENIZER):
    """Small byte-level BPE tokenizer.json cut from the real R1 one.

    Regular vocabulary: R1 ids 0 .. n_regular-1 (ids 0-2 are <｜begin▁of▁sentence｜>,
    <｜end▁of▁sentence｜>, <｜▁pad▁｜>, ids 3-258 the 256 byte-level symbols, then the first
    merge results).  Merges: those R1 merges (in rank order) whose two parts and result all
    have id < n_regular.  Added tokens: R1's ids 0, 1, 2 plus <｜User｜>, <｜Assistant｜>,
    <think>, </think> renumbered to n_regular .. n_regular+3 (flags copied from R1).
    Pre-tokenizer, normalizer, post-processor and decoder are copied verbatim.
    -> (tokenizer dict, total id count)
    """
    with open(src_path, encoding="utf-8") as f:
        src = json.load(f)
    vocab = src["model"]["vocab"]
    inv = {i: s for s, i in vocab.items()}
    new_vocab = {inv[i]: i for i in range(n_regular)}
    merges = []
    for m in src["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in new_vocab and b in new_vocab and (a + b) in new_vocab:
            merges.append(m)
    by_content = {t["content"]: t for t in src["added_tokens"]}
    added = [dict(t) for t in src["added_tokens"] if t["id"] in (0, 1, 2)]
    for k, content in enumerate([USER, ASSISTANT, THINK, ENDTHINK]):
        t = dict(by_content[content])
        t["id"] = n_regular + k
        added.append(t)
    model = {}
    for k, v in src["model"].items():
        if k == "vocab":
            model[k] = new_vocab
        elif k == "merges":
            model[k] = merges
        else:
            model[k] = v
    tok = {}
    for k, v in src.items():
        if k == "added_tokens":
            tok[k] = added
        elif k == "model":
            tok[k] = model
        else:
            tok[k] = v
    return tok, n_regular + 4


def tokenizer_config(arch):
    if arch == "tiny-v3":
        # V3-style: special tokens given as AddedToken objects
        def at(c):
            return {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True,
                    "rstrip": False, "single_word": False}
        bos, eos = at(BOS), at(EOS)
    else:
        bos, eos = BOS, EOS   # plain-string form
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": bos,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "legacy": True,
        "model_max_length": 131072,
        "pad_token": eos,
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


# ---------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------

class Gen:
    def __init__(self, seed):
        self.rs = np.random.RandomState(seed)

    def normal(self, *shape):
        return self.rs.standard_normal(shape)

    def linear(self, out_f, in_f, gain=1.0):
        """N(0, gain^2/in) with a per-row log-normal magnitude so block scales vary."""
        w = self.normal(out_f, in_f) * (gain / np.sqrt(in_f))
        w *= np.exp(0.35 * self.normal(out_f, 1))
        return w.astype(np.float32)

    def norm(self, n):
        return (1.0 + 0.15 * self.normal(n)).astype(np.float32)


def bf16(x):
    return ("BF16", quant.bf16_encode(np.asarray(x, np.float32)))


def make_tensors(cfg, seed, fp8):
    g = Gen(seed)
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    rq, rkv = cfg["q_lora_rank"], cfg["kv_lora_rank"]
    V = cfg["vocab_size"]
    E = cfg["n_routed_experts"]
    Im = cfg["moe_intermediate_size"]
    Is = cfg["n_shared_experts"] * Im
    Idense = cfg["intermediate_size"]
    L = cfg["num_hidden_layers"]
    n_mtp = cfg.get("num_nextn_predict_layers", 0) or 0
    T = {}

    def lin(name, out_f, in_f, gain=1.0):
        w = g.linear(out_f, in_f, gain)
        if fp8:
            codes, scale = quant.fp8_block_quantize(w)
            T[name] = ("F8_E4M3", codes)
            T[name + "_scale_inv"] = ("F32", scale)
        else:
            T[name] = bf16(w)

    embed = g.normal(V, D).astype(np.float32)
    T["model.embed_tokens.weight"] = bf16(embed)
    for l in range(L + n_mtp):
        p = "model.layers.%d." % l
        T[p + "input_layernorm.weight"] = bf16(g.norm(D))
        T[p + "post_attention_layernorm.weight"] = bf16(g.norm(D))
        if rq:
            lin(p + "self_attn.q_a_proj.weight", rq, D)
            T[p + "self_attn.q_a_layernorm.weight"] = bf16(g.norm(rq))
            lin(p + "self_attn.q_b_proj.weight", H * (dn + dr), rq)
        else:
            lin(p + "self_attn.q_proj.weight", H * (dn + dr), D)
        lin(p + "self_attn.kv_a_proj_with_mqa.weight", rkv + dr, D)
        T[p + "self_attn.kv_a_layernorm.weight"] = bf16(g.norm(rkv))
        lin(p + "self_attn.kv_b_proj.weight", H * (dn + dv), rkv)
        lin(p + "self_attn.o_proj.weight", D, H * dv)
        if l < cfg["first_k_dense_replace"]:
            lin(p + "mlp.gate_proj.weight", Idense, D)
            lin(p + "mlp.up_proj.weight", Idense, D)
            lin(p + "mlp.down_proj.weight", D, Idense)
        else:
            # router: bf16 in every checkpoint; logits ~ N(0, 1.5^2)
            T[p + "mlp.gate.weight"] = bf16(g.normal(E, D) * (1.5 / np.sqrt(D)))
            if cfg["topk_method"] == "noaux_tc":
                # varied correction bias (fp32): comparable to the spread of sigmoid scores,
                # so it changes the selection for a good fraction of tokens
                b = 0.1 * g.normal(E)
                T[p + "mlp.gate.e_score_correction_bias"] = ("F32", b.astype(np.float32))
            for e in range(E):
                q = p + "mlp.experts.%d." % e
                lin(q + "gate_proj.weight", Im, D)
                lin(q + "up_proj.weight", Im, D)
                lin(q + "down_proj.weight", D, Im)
            lin(p + "mlp.shared_experts.gate_proj.weight", Is, D)
            lin(p + "mlp.shared_experts.up_proj.weight", Is, D)
            lin(p + "mlp.shared_experts.down_proj.weight", D, Is)
    head = g.normal(V, D) * (2.0 / np.sqrt(D))
    T["model.norm.weight"] = bf16(g.norm(D))
    T["lm_head.weight"] = bf16(head)
    for k in range(n_mtp):
        p = "model.layers.%d." % (L + k)
        # MTP extras (docs/model.md §4.1): embed / head are copies of the main ones
        T[p + "embed_tokens.weight"] = T["model.embed_tokens.weight"]
        T[p + "enorm.weight"] = bf16(g.norm(D))
        T[p + "hnorm.weight"] = bf16(g.norm(D))
        T[p + "eh_proj.weight"] = bf16(g.linear(D, 2 * D))
        T[p + "shared_head.norm.weight"] = bf16(g.norm(D))
        T[p + "shared_head.head.weight"] = T["lm_head.weight"]
    return T


def shard_assignment(names, cfg, nshards=3):
    """Layer-wise split like R1 (global embed with layer 0 first, MTP + head last); one
    weight_scale_inv is deliberately put in a different shard from its weight."""
    L = cfg["num_hidden_layers"]
    out = {}
    for n in names:
        if n.startswith("model.layers."):
            l = int(n.split(".")[2])
            out[n] = 0 if l == 0 else (1 if l < L else 2)
        elif n == "model.embed_tokens.weight":
            out[n] = 0
        else:
            out[n] = 2  # model.norm, lm_head
    odd = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight_scale_inv"
    if odd in out:
        out[odd] = 0
    return out


def write_checkpoint(arch, outdir, seed, tokenizer_src=R1_TOKENIZER):
    cfg = ARCHS[arch]
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):      # remove stale weights from a previous run
        if f.endswith(".safetensors") or f == st.INDEX_NAME:
            os.remove(os.path.join(outdir, f))
    fp8 = "quantization_config" in cfg
    T = make_tensors(cfg, seed, fp8)
    meta = {"format": "pt"}
    if arch == "tiny-v3":
        st.write_sharded(outdir, T, shard_assignment(T, cfg), 3, meta)
    else:
        st.write_file(os.path.join(outdir, st.SINGLE_NAME), T, meta)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tok, n_ids = build_tokenizer(TOKENIZER_REGULAR[arch], tokenizer_src)
    with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(arch), f, indent=2, ensure_ascii=False)
        f.write("\n")
    return cfg, n_ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=sorted(ARCHS))
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tokenizer", default=R1_TOKENIZER)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else {"tiny-v3": 3, "tiny-v2lite": 2}[a.arch]
    write_checkpoint(a.arch, a.outdir, seed, a.tokenizer)


if __name__ == "__main__":
    main()
