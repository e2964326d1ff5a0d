"""Write R1-Distill-Qwen-7B- or R1-Distill-Llama-8B-shaped random weights as a Hugging Face folder
and/or as a llama.cpp GGUF of the same numbers (for the side-by-side speed measurements).

Shapes from the spec (docs/model.md §1.3, §7.4): qwen7b = Qwen2, hidden 3584, 28 layers,
intermediate 18944, 28 heads on 4 kv heads, q/k/v biases, vocab 152064, rope_theta 1e4,
eps 1e-6; llama8b = Llama-3, hidden 4096, 32 layers, intermediate 14336, 32 heads on 8 kv heads,
no biases, vocab 128256, rope_theta 5e5 with llama3 frequency scaling, eps 1e-5. The other
config fields are test/ref/make_dense.py's (the real distills' field set). --layers N keeps
every per-layer shape and writes only the first N layers (for a disk that cannot hold the whole
model; the per-layer cost and bytes are unchanged).

Weights: N(0, std^2) (std 0.02, as the peer tools' random DeepSeek models), norms 1, biases
N(0, std^2), rounded to BF16. Tensor NAME draws from numpy Generator(PCG64(SeedSequence([seed,
crc32(NAME)]))) in chunks of rows, so the HF folder and the GGUF hold the same numbers whichever
is written first, and the HF folder can be deleted after `r1 convert` and the GGUF written later
from the same seed. Memory stays at a few hundred MB (a chunk plus one quantised tensor).

  --hf DIR    config.json, BF16 safetensors shards + index, the distill tokenizer.json and
              tokenizer_config.json (test/data/tokenizer/distill-qwen or distill-llama);
  --gguf F    llama.cpp's layout (tensor names, q/k rows permuted for Llama's rope as
              convert_hf_to_gguf.py does, rope_freqs for llama3 scaling, gpt2-style BPE
              tokenizer metadata with pre-tokenizer "qwen2" / "llama-bpe") written with llama.cpp's
              own gguf-py (--gguf-py, default ../peer/llama.cpp/gguf-py next to the checkout),
              every matrix in --gguf-type (q8_0, q4_0, bf16: gguf-py's quants module), norms,
              biases and rope_freqs in F32. llama-quantize on a bf16 GGUF gives llama.cpp's usual
              mix instead (its Q4_0 keeps the head in Q6_K).

Usage: python3 test/ref/make_dense_shaped.py {qwen7b|llama8b} [--hf DIR] [--gguf FILE]
           [--gguf-type q8_0|q4_0|bf16] [--layers N] [--seed S] [--std S] [--gguf-py DIR]
           [--set KEY=JSON ...]
The measurement (docs/performance.md, "Dense distill shapes") runs it twice per model: --hf,
then r1 convert and rm -r of the folder, then --gguf.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_dense as md  # noqa: E402
import make_v2lite_shaped as mv  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
TOKDIR = os.path.join(ROOT, "test", "data", "tokenizer")

# The spec's numbers (docs/model.md §1.3) over make_dense's field sets of the same architecture.
MODELS = {
    "qwen7b": dict(md.CONFIGS["tiny-qwen2"], hidden_size=3584, intermediate_size=18944,
                   num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                   vocab_size=152064, rope_theta=10000.0, rms_norm_eps=1e-6,
                   max_position_embeddings=131072, sliding_window=4096, max_window_layers=28,
                   bos_token_id=151643, eos_token_id=151643),
    "llama8b": dict(md.CONFIGS["tiny-llama"], hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5,
                    max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128001),
}
TOKENIZER = {"qwen7b": "distill-qwen", "llama8b": "distill-llama"}
PRE = {"qwen7b": "qwen2", "llama8b": "llama-bpe"}
ARCH = {"qwen7b": "qwen2", "llama8b": "llama"}
CHUNK = 1 << 24  # values per generation step (64 MB of float32)


def tensor_list(cfg):
    """[(hf name, shape, kind)] in checkpoint order; kind 'w' (random), 'b' (random vector),
    'norm' (ones)."""
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, I, V = D // H, cfg["intermediate_size"], cfg["vocab_size"]
    bias = cfg["model_type"] == "qwen2"
    out = [("model.embed_tokens.weight", (V, D), "w")]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        out.append((p + "input_layernorm.weight", (D,), "norm"))
        for name, n in (("q_proj", H * d), ("k_proj", KV * d), ("v_proj", KV * d)):
            out.append((p + "self_attn.%s.weight" % name, (n, D), "w"))
            if bias:
                out.append((p + "self_attn.%s.bias" % name, (n,), "b"))
        out += [(p + "self_attn.o_proj.weight", (D, H * d), "w"),
                (p + "post_attention_layernorm.weight", (D,), "norm"),
                (p + "mlp.gate_proj.weight", (I, D), "w"),
                (p + "mlp.up_proj.weight", (I, D), "w"),
                (p + "mlp.down_proj.weight", (D, I), "w")]
    out += [("model.norm.weight", (D,), "norm"), ("lm_head.weight", (V, D), "w")]
    return out


def bf16_to_f32(u):
    return (u.astype(np.uint32) << np.uint32(16)).view(np.float32)


def chunks(name, shape, kind, seed, std):
    """Yields the tensor's values as (bf16 bits, the same as float32) in blocks of whole rows;
    the same blocks for every writer."""
    rows = shape[0] if len(shape) > 1 else 1
    cols = shape[-1]
    if kind == "norm":
        u = np.full((rows, cols), 0x3F80, dtype=np.uint16)  # 1.0
        yield u, bf16_to_f32(u)
        return
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))
    step = max(1, CHUNK // cols)
    for r0 in range(0, rows, step):
        x = g.standard_normal((min(step, rows - r0), cols), dtype=np.float32)
        x *= np.float32(std)
        u = mv.to_bf16(x)
        yield u, bf16_to_f32(u)


def tokenizer_json(model):
    src = os.path.join(TOKDIR, TOKENIZER[model])
    raw = subprocess.run(["zstd", "-dc", os.path.join(src, "tokenizer.json.zst")], check=True,
                         stdout=subprocess.PIPE).stdout
    with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as f:
        tc = json.load(f)
    return raw, tc


def write_hf(model, cfg, outdir, seed, std):
    os.makedirs(outdir, exist_ok=True)
    for fn in os.listdir(outdir):  # stale shards of a previous run
        if fn.endswith(".safetensors") or fn == mv.INDEX_NAME:
            os.remove(os.path.join(outdir, fn))
    tensors = tensor_list(cfg)
    shards = mv.shard_plan(tensors, int(5e9))
    total = sum(mv.nbytes(s) for _, s, _ in tensors)
    print("%s: %d tensors, %.3f G parameters, %.2f GB of BF16 in %d shards"
          % (model, len(tensors), total / 2e9, total / 1e9, len(shards)), flush=True)
    weight_map, t0 = {}, time.time()
    for si, part in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (si + 1, len(shards))
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _ in part:
            header[name] = {"dtype": "BF16", "shape": list(shape),
                            "data_offsets": [off, off + mv.nbytes(shape)]}
            off += mv.nbytes(shape)
            weight_map[name] = fname
        h = json.dumps(header, separators=(",", ":")).encode("utf-8")
        h += b" " * ((-len(h)) % 8)
        with open(os.path.join(outdir, fname), "wb") as f:
            f.write(len(h).to_bytes(8, "little"))
            f.write(h)
            for name, shape, kind in part:
                for u, _ in chunks(name, shape, kind, seed, std):
                    f.write(u.astype("<u2", copy=False).tobytes())
        print("  %s: %.2f GB (%.0f s)" % (fname, off / 1e9, time.time() - t0), flush=True)
    with open(os.path.join(outdir, mv.INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}, f, indent=2)
        f.write("\n")
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    raw, tc = tokenizer_json(model)
    with open(os.path.join(outdir, "tokenizer.json"), "wb") as f:
        f.write(raw)
    with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(outdir, "RANDOM_WEIGHTS.txt"), "w") as f:
        f.write("Random %s-shaped weights (normal std %g, norms 1, seed %d, %d layers) written by "
                "test/ref/make_dense_shaped.py; not a trained model.\n"
                % (model, std, seed, cfg["num_hidden_layers"]))


def gguf_vocab(model, V):
    """tokens, token types, merges and special ids as llama.cpp's converter writes a gpt2-style
    BPE vocabulary (ids without a token padded as UNUSED up to the embedding's rows)."""
    raw, tc = tokenizer_json(model)
    tj = json.loads(raw)
    rev = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    for i, a in added.items():
        rev[i] = a["content"]
    tokens, types = [], []
    for i in range(V):
        if i not in rev:
            tokens.append("[PAD%d]" % i)
            types.append(5)  # UNUSED
        elif i in added:
            tokens.append(rev[i])
            types.append(3 if added[i].get("special") else 4)  # CONTROL / USER_DEFINED
        else:
            tokens.append(rev[i])
            types.append(1)  # NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    ids = {t: i for i, t in rev.items()}

    def tid(key):
        v = tc.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        return ids.get(v) if v is not None else None

    return tokens, types, merges, tid("bos_token"), tid("eos_token"), tc.get("add_bos_token")


def permute_rope(w, n_head):
    """HF half-split rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg):
    rs, d = cfg["rope_scaling"], cfg["hidden_size"] // cfg["num_attention_heads"]
    f, lo, hi, L = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], \
        rs["original_max_position_embeddings"]
    out = []
    for i in range(0, d, 2):
        wl = 2 * np.pi / (1.0 / cfg["rope_theta"] ** (i / d))
        if wl < L / hi:
            out.append(1.0)
        elif wl > L / lo:
            out.append(f)
        else:
            s = (L / wl - lo) / (hi - lo)
            out.append(1.0 / ((1 - s) / f + s))
    return np.array(out, dtype=np.float32)


def gguf_name(hf):
    m = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight"}
    if hf in m:
        return m[hf]
    parts = hf.split(".")
    l, rest = parts[2], ".".join(parts[3:])
    sub = {"input_layernorm.weight": "attn_norm.weight",
           "post_attention_layernorm.weight": "ffn_norm.weight",
           "self_attn.o_proj.weight": "attn_output.weight",
           "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
           "mlp.down_proj.weight": "ffn_down.weight"}
    for x in ("q", "k", "v"):
        for s in ("weight", "bias"):
            sub["self_attn.%s_proj.%s" % (x, s)] = "attn_%s.%s" % (x, s)
    return "blk.%s.%s" % (l, sub[rest])


def write_gguf(model, cfg, path, gtype, seed, std, gguf_py):
    sys.path.insert(0, gguf_py)
    import gguf  # noqa: PLC0415 (llama.cpp's own gguf-py, found through --gguf-py)

    QT = gguf.GGMLQuantizationType
    qt = {"q8_0": QT.Q8_0, "q4_0": QT.Q4_0, "bf16": QT.BF16}[gtype]
    ftype = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16}[gtype]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, V = cfg["hidden_size"], cfg["vocab_size"]
    w = gguf.GGUFWriter(path, ARCH[model])
    w.add_name("R1-Distill-%s-shaped random" % ("Qwen-7B" if model == "qwen7b" else "Llama-8B"))
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(D)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if model == "llama8b":
        w.add_vocab_size(V)
        w.add_rope_dimension_count(D // H)
    tokens, types, merges, bos, eos, add_bos = gguf_vocab(model, V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(PRE[model])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    if add_bos is not None:
        w.add_add_bos_token(bool(add_bos))

    plan = []  # (gguf name, hf tensor or None, shape, type)
    if model == "llama8b":
        plan.append(("rope_freqs.weight", None, (D // H // 2,), QT.F32))
    for name, shape, kind in tensor_list(cfg):
        plan.append((gguf_name(name), (name, shape, kind), shape, qt if kind == "w" else QT.F32))
    for gname, _, shape, t in plan:
        if t == QT.F32:
            w.add_tensor_info(gname, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
        else:
            bshape = gguf.quant_shape_to_byte_shape(shape, t)
            w.add_tensor_info(gname, bshape, np.dtype(np.uint8), int(np.prod(bshape)), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    t0 = time.time()
    for gname, src, shape, t in plan:
        if src is None:
            w.write_tensor_data(llama3_rope_factors(cfg))
            continue
        name, _, kind = src
        if t == QT.F32:
            w.write_tensor_data(np.concatenate([f for _, f in chunks(name, shape, kind, seed, std)])
                                .reshape(shape))
            continue
        perm = None
        if model == "llama8b" and name.endswith("q_proj.weight"):
            perm = H
        elif model == "llama8b" and name.endswith("k_proj.weight"):
            perm = KV
        parts = []
        if perm is not None:  # one block (these matrices are small): permute whole rows first
            f = np.concatenate([f for _, f in chunks(name, shape, kind, seed, std)])
            src_blocks = [permute_rope(f, perm)]
        else:
            src_blocks = (f for _, f in chunks(name, shape, kind, seed, std))
        for f in src_blocks:
            parts.append(gguf.quants.quantize(f, t))
        w.write_tensor_data(np.concatenate(parts))
        del parts
        if gname.endswith("ffn_down.weight") or gname == "output.weight":
            print("  %s (%.0f s)" % (gname, time.time() - t0), flush=True)
    w.close()
    print("%s: %.2f GB (%.0f s)" % (path, os.path.getsize(path) / 1e9, time.time() - t0), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--hf", help="write the Hugging Face folder here")
    ap.add_argument("--gguf", help="write the GGUF here")
    ap.add_argument("--gguf-type", default="q8_0", choices=["q8_0", "q4_0", "bf16"])
    ap.add_argument("--gguf-py", default=os.path.join(ROOT, "..", "peer", "llama.cpp", "gguf-py"))
    ap.add_argument("--layers", type=int, help="write only the first N layers (shapes exact)")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config field (small shapes for the tools' test)")
    a = ap.parse_args()
    if not (a.hf or a.gguf):
        sys.exit("make_dense_shaped.py: nothing to write (give --hf and/or --gguf)")
    cfg = dict(MODELS[a.model])
    for kv in a.set:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    if a.layers is not None:
        if not 1 <= a.layers <= cfg["num_hidden_layers"]:
            sys.exit("--layers must be 1..%d" % cfg["num_hidden_layers"])
        cfg["num_hidden_layers"] = a.layers
        if "max_window_layers" in cfg:
            cfg["max_window_layers"] = a.layers
    if a.hf:
        write_hf(a.model, cfg, a.hf, a.seed, a.std)
    if a.gguf:
        write_gguf(a.model, cfg, a.gguf, a.gguf_type, a.seed, a.std, a.gguf_py)


if __name__ == "__main__":
    main()
