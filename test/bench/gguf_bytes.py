#!/usr/bin/env python3
"""gguf_bytes.py: the weight bytes one decoded token reads in llama.cpp, by part, from a GGUF's tensor types.

Usage: gguf_bytes.py [--gguf-py DIR] MODEL.gguf   (prints one JSON object)

The parts are those `r1 bench --json` reports under "bytes_per_token_parts", counted the same
way, so that the two engines compare part by part even where their files keep a part in
different types (llama-quantize's Q4_0 keeps the output head in Q6_K):

* embedding: one row of token_embd per token;
* attention: every matrix of the layer's MLA block once (attn_k_b/attn_v_b in place of
  attn_kv_b when the file has them, as llama.cpp then reads only those), or of a dense model's
  grouped-query block (attn_q/k/v/output: Qwen2, Llama);
* dense_mlp: ffn_gate/up/down of the leading dense layers, or of every layer of a dense model;
* router: ffn_gate_inp;
* shared: the *_shexp matrices;
* experts: the routed experts a token selects: expert_used_count of expert_count of each
  *_exps tensor (a decode pass reads each selected expert once);
* head: output (or token_embd again when the file ties them).

One-dimensional tensors (norms, the router's bias, Qwen2's q/k/v biases, Llama-3's rope_freqs)
are left out of the total, as libr1 leaves them out; their bytes are reported as "vectors".
Layers past block_count - nextn_predict_layers (multi-token prediction) are not run by decode
and are left out too.
"""

import argparse
import json
import os
import re
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf")
    ap.add_argument("--gguf-py", help="the gguf-py folder of a llama.cpp checkout")
    a = ap.parse_args()
    if a.gguf_py:
        sys.path.insert(0, a.gguf_py)
    try:
        import gguf  # noqa: PLC0415 (found only once --gguf-py is on the path)
    except ImportError as e:
        sys.exit(f"gguf_bytes.py: cannot import gguf ({e}); pass --gguf-py LLAMA_CPP/gguf-py")

    r = gguf.GGUFReader(a.gguf)
    arch = r.fields["general.architecture"].contents()

    def kv(key, default=None):
        f = r.fields.get(f"{arch}.{key}")
        return f.contents() if f is not None else default

    n_layers = int(kv("block_count"))
    n_mtp = int(kv("nextn_predict_layers", 0) or 0)
    n_expert = int(kv("expert_count", 0) or 0)
    n_used = int(kv("expert_used_count", 0) or 0)
    names = {t.name for t in r.tensors}

    parts = dict.fromkeys(
        ["embedding", "attention", "dense_mlp", "router", "shared", "experts", "head"], 0.0
    )
    vectors = 0
    types = {}
    for t in r.tensors:
        name, nbytes = t.name, int(t.n_bytes)
        m = re.match(r"blk\.(\d+)\.(.+)\.(weight|bias)$", name)
        if m and int(m.group(1)) >= n_layers - n_mtp:
            continue
        if len([d for d in t.shape if d > 1]) <= 1:
            vectors += nbytes
            continue
        key = re.sub(r"blk\.\d+\.", "blk.N.", name)
        types.setdefault(key, t.tensor_type.name)
        if name == "token_embd.weight":
            rows = int(t.shape[-1])  # gguf lists the fastest dimension first
            parts["embedding"] += nbytes / rows
            if "output.weight" not in names:
                parts["head"] += nbytes
        elif name == "output.weight":
            parts["head"] += nbytes
        elif m is None:
            continue
        elif re.match(r"attn_", m.group(2)):
            if m.group(2) == "attn_kv_b" and f"blk.{m.group(1)}.attn_k_b.weight" in names:
                continue
            parts["attention"] += nbytes
        elif m.group(2) == "ffn_gate_inp":
            parts["router"] += nbytes
        elif m.group(2).endswith("_shexp"):
            parts["shared"] += nbytes
        elif m.group(2).endswith("_exps"):
            parts["experts"] += nbytes * n_used / n_expert
        elif m.group(2) in ("ffn_gate", "ffn_up", "ffn_down"):
            parts["dense_mlp"] += nbytes
        else:
            sys.exit(f"gguf_bytes.py: tensor {name} fits no part; teach this script about it")
    out = {
        "model": os.path.basename(a.gguf),
        "architecture": arch,
        "file_bytes": os.path.getsize(a.gguf),
        "layers": n_layers - n_mtp,
        "experts_used": n_used,
        "expert_count": n_expert,
        "bytes_per_token": sum(parts.values()),
        "bytes_per_token_parts": parts,
        "vectors_bytes_not_counted": vectors,
        "tensor_types": types,
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
