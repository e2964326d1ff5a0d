#!/usr/bin/env python3
"""check_vs_llama_cpp.py: the side-by-side tools end to end: gguf_bytes.py on a small GGUF of known parts, vs_llama_cpp.py's rounds, medians, ratios and load records, and the dense generator's HF/GGUF pair (test/ref/make_dense_shaped.py) at small widths.

Usage: check_vs_llama_cpp.py BENCH_SRC_DIR R1 MODEL.r1m

gguf_bytes.py needs llama.cpp's gguf-py (from $LLAMA_CPP, or ../peer/llama.cpp next to the
checkout); without it the test is skipped (77). vs_llama_cpp.py runs the real `r1 bench` on the
tiny model and, in place of llama-bench, a stand-in that prints llama-bench's JSON with known
samples, so its arithmetic can be checked exactly.
"""

import json
import os
import subprocess
import sys
import tempfile

SKIP = 77


def find_gguf_py(src):
    root = os.path.abspath(os.path.join(src, "..", ".."))
    for d in [os.environ.get("LLAMA_CPP", ""), os.path.join(root, "..", "peer", "llama.cpp"),
              os.path.join(root, "..", "..", "peer", "llama.cpp")]:
        if d and os.path.isdir(os.path.join(d, "gguf-py", "gguf")):
            return os.path.join(d, "gguf-py")
    return None


def write_gguf(gguf, np, path):
    """Three blocks (the last a multi-token-prediction layer): dense, MoE, MTP; 4 experts, 2
    used. Returns the bytes per decoded token by part that gguf_bytes.py must find."""
    w = gguf.GGUFWriter(path, "deepseek2")
    w.add_uint32("deepseek2.block_count", 3)
    w.add_uint32("deepseek2.nextn_predict_layers", 1)
    w.add_uint32("deepseek2.expert_count", 4)
    w.add_uint32("deepseek2.expert_used_count", 2)
    rng = np.random.default_rng(1)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    q8 = gguf.quantize(f32(64, 32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("token_embd.weight", q8,
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # 64 rows of 34 bytes
    w.add_tensor("output.weight", f32(64, 32).astype(np.float16))  # 4096
    w.add_tensor("output_norm.weight", f32(32))
    w.add_tensor("blk.0.attn_norm.weight", f32(32))  # a vector: not counted
    for b in ("0", "1", "2"):
        w.add_tensor(f"blk.{b}.attn_q_a.weight", f32(16, 32))  # 2048 each
    w.add_tensor("blk.0.attn_kv_b.weight", f32(32, 16))  # replaced by k_b/v_b: not counted
    w.add_tensor("blk.0.attn_k_b.weight", f32(2, 16, 8))  # 1024
    w.add_tensor("blk.0.attn_v_b.weight", f32(2, 8, 16))  # 1024
    w.add_tensor("blk.0.attn_output.weight", f32(32, 16))  # 2048
    for n in ("gate", "up", "down"):
        w.add_tensor(f"blk.0.ffn_{n}.weight", f32(48, 32).astype(np.float16))  # 3072 each
        w.add_tensor(f"blk.1.ffn_{n}_shexp.weight", f32(16, 32).astype(np.float16))  # 1024
        w.add_tensor(f"blk.1.ffn_{n}_exps.weight", f32(4, 16, 32).astype(np.float16))  # 4096
        w.add_tensor(f"blk.2.ffn_{n}_exps.weight", f32(4, 16, 32).astype(np.float16))  # MTP
    w.add_tensor("blk.1.ffn_gate_inp.weight", f32(4, 32))  # 512
    w.add_tensor("blk.1.exp_probs_b.bias", f32(4))  # a vector
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"embedding": 34, "attention": 2 * 2048 + 2 * 1024 + 2048,
            "dense_mlp": 3 * 3072, "router": 512, "shared": 3 * 1024, "experts": 3 * 4096 / 2,
            "head": 4096}


STAND_IN = r'''#!/usr/bin/env python3
import json, sys
a = sys.argv[1:]
v = {a[i]: a[i + 1] for i in range(0, len(a) - 1) if a[i].startswith("-")}
p, n, d, r = int(v["-p"]), int(v["-n"]), int(v.get("-d", 0)), int(v["-r"])
assert v["-o"] == "json" and (d == 0 or v["-fa"] == "1")
out = []
if p:
    out.append({"n_prompt": p, "n_gen": 0, "n_depth": d, "avg_ts": 50.0,
                "samples_ts": [40.0 + 10 * i for i in range(r)]})
if n:
    out.append({"n_prompt": 0, "n_gen": n, "n_depth": d, "avg_ts": 5.0,
                "samples_ts": [4.0 + i for i in range(r)]})
print(json.dumps(out))
'''


# make_dense_shaped.py at small widths (the real vocabularies, so the tokenizers fit): 1 layer,
# 64 wide, 2 query heads of 32 on 1 kv head, MLP 96.
TINY = ["--layers", "1", "--set", "hidden_size=64", "--set", "num_attention_heads=2",
        "--set", "num_key_value_heads=1", "--set", "intermediate_size=96"]


def check_dense(gguf, np, src, r1, gguf_py, tmp):
    """make_dense_shaped.py writes the same numbers into its HF folder and its GGUF (Q8_0 of the
    BF16 values, Llama's q/k rows permuted as convert_hf_to_gguf.py does, llama3 rope factors,
    the distill vocabularies), r1 converts the folder, and the bytes per decoded token agree part
    by part between `r1 bench --json` and gguf_bytes.py (the embedding row aside: libr1 keeps
    it in BF16)."""
    root = os.path.abspath(os.path.join(src, "..", ".."))
    gen = os.path.join(root, "test", "ref", "make_dense_shaped.py")
    sys.path.insert(0, os.path.join(root, "test", "ref"))
    import safetensors_io as st  # noqa: PLC0415

    for model, bos, pre in (("qwen7b", 151646, "qwen2"), ("llama8b", 128000, "llama-bpe")):
        hf, gf = os.path.join(tmp, model + "-hf"), os.path.join(tmp, model + ".gguf")
        subprocess.run([sys.executable, gen, model, "--hf", hf, "--gguf", gf, "--gguf-py",
                        gguf_py] + TINY, check=True, stdout=subprocess.DEVNULL)
        hft = st.load_dir(hf)
        cfg = json.load(open(os.path.join(hf, "config.json")))
        assert cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 1
        r = gguf.GGUFReader(gf)
        gt = {t.name: t for t in r.tensors}
        arch = r.fields["general.architecture"].contents()
        assert arch == ("qwen2" if model == "qwen7b" else "llama"), arch
        assert r.fields["tokenizer.ggml.pre"].contents() == pre
        assert r.fields["tokenizer.ggml.bos_token_id"].contents() == bos
        assert len(r.fields["tokenizer.ggml.tokens"].contents()) == cfg["vocab_size"]
        names = {"model.embed_tokens.weight": "token_embd.weight",
                 "lm_head.weight": "output.weight", "model.norm.weight": "output_norm.weight",
                 "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
                 "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
                 "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
                 "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
                 "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight"}
        if model == "qwen7b":
            names["model.layers.0.self_attn.k_proj.bias"] = "blk.0.attn_k.bias"
        else:
            assert not any(n.endswith(".bias") for n in hft)
        for hn, gn in names.items():
            dt, arr = hft[hn]
            f = st.to_float(dt, arr, np.float32)
            t = gt[gn]
            if f.ndim == 1:
                assert t.tensor_type.name == "F32" and np.array_equal(np.asarray(t.data), f), gn
                continue
            if model == "llama8b" and gn in ("blk.0.attn_q.weight", "blk.0.attn_k.weight"):
                nh = 2 if gn == "blk.0.attn_q.weight" else 1  # HF half split -> pairs
                f = f.reshape(nh, 2, f.shape[0] // nh // 2, f.shape[1]).swapaxes(1, 2).reshape(
                    f.shape)
            want = gguf.quantize(f, gguf.GGMLQuantizationType.Q8_0)
            assert t.tensor_type.name == "Q8_0" and np.array_equal(
                np.asarray(t.data).reshape(want.shape), want), gn
        if model == "llama8b":
            rf = np.asarray(gt["rope_freqs.weight"].data)  # docs/model.md §7.3, head dim 32
            assert rf.shape == (16,) and rf[0] == 1.0 and rf[-1] == 8.0, rf
        # r1 converts the folder; both engines' bytes per token, part by part
        r1m = os.path.join(tmp, model + ".r1m")
        subprocess.run([r1, "convert", hf, r1m, "--quant", "q8_0"], check=True,
                       stdout=subprocess.DEVNULL)
        rj = json.loads(subprocess.run([r1, "bench", "-m", r1m, "-p", "0", "-n", "2", "--reps",
                                        "1", "--json", "--triad-mb", "4", "-t", "1"],
                                       check=True, stdout=subprocess.PIPE, text=True).stdout)
        lj = json.loads(subprocess.run(
            [sys.executable, os.path.join(src, "gguf_bytes.py"), "--gguf-py", gguf_py, gf],
            check=True, stdout=subprocess.PIPE, text=True).stdout)
        rp, lp = rj["bytes_per_token_parts"], lj["bytes_per_token_parts"]
        for part in ("attention", "dense_mlp", "head"):
            assert lp[part] > 0 and rp[part] == lp[part], (model, part, rp, lp)
        for part in ("router", "shared", "experts"):
            assert lp[part] == 0 and rp.get(part, 0) == 0, (model, part)
        assert lp["embedding"] == 64 * 34 / 32 and rp["embedding"] == 64 * 2, (rp, lp)
        assert lj["layers"] == 1 and lj["expert_count"] == 0


def main():
    src, r1, model = sys.argv[1:4]
    gguf_py = find_gguf_py(src)
    if gguf_py is None:
        print("SKIP: no llama.cpp gguf-py (set LLAMA_CPP)")
        return SKIP
    sys.path.insert(0, gguf_py)
    try:
        import gguf  # noqa: PLC0415
        import numpy as np  # noqa: PLC0415
    except ImportError as e:
        print(f"SKIP: {e}")
        return SKIP
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "parts.gguf")
        want = write_gguf(gguf, np, path)
        got = json.loads(subprocess.run(
            [sys.executable, os.path.join(src, "gguf_bytes.py"), "--gguf-py", gguf_py, path],
            check=True, stdout=subprocess.PIPE, text=True).stdout)
        assert got["bytes_per_token_parts"] == want, (got["bytes_per_token_parts"], want)
        assert got["bytes_per_token"] == sum(want.values())
        assert got["layers"] == 2 and got["vectors_bytes_not_counted"] == 4 * (32 + 32 + 4)
        assert got["tensor_types"]["output.weight"] == "F16"

        stand_in = os.path.join(tmp, "llama-bench")
        with open(stand_in, "w") as f:
            f.write(STAND_IN)
        os.chmod(stand_in, 0o755)
        out = os.path.join(tmp, "out")
        p = subprocess.run(
            [sys.executable, os.path.join(src, "vs_llama_cpp.py"), "--r1", r1, "--llama-bench",
             stand_in, "--gguf-py", gguf_py, "-m", f"T:{path}:{model}", "--rounds", "2",
             "--reps", "3", "-p", "8", "-n", "4", "--depth", "8", "--depth-gen", "2",
             "--triad-mb", "4", "-t", "1", "--out", out],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 0, p.stderr[-3000:]
        for text in ("libr1 / llama.cpp", "| tg2 @ d8 |", "STREAM triad", "CPU: ",
                     "load of other processes", "| head | 0.004 |"):
            assert text in p.stdout, (text, p.stdout)
        s = json.load(open(os.path.join(out, "summary.json")))
        runs = s["runs"]
        assert len(runs) == 2 * 2 * 2  # rounds x (pp/tg, depth) x engines
        # The engine that goes first alternates from round to round.
        assert [r["engine"] for r in runs[:2]] == ["llama.cpp", "libr1"]
        assert [r["engine"] for r in runs[4:6]] == ["libr1", "llama.cpp"]
        for r in runs:
            assert 0 <= r["other_load_pct"] <= 100 and r["wall_s"] > 0 and "steal_pct" in r
        tests = s["models"]["T"]["tests"]
        assert sorted(tests) == ["pp8", "tg2 @ d8", "tg4"], sorted(tests)
        for name, t in tests.items():
            # each llama-bench run: the median of its samples (40, 50, 60 / 4, 5, 6)
            lm = 50.0 if name.startswith("pp") else 5.0
            assert t["llama_cpp"] == [lm, lm] and t["llama_cpp_median"] == lm
            assert len(t["libr1"]) == 2 and all(x > 0 for x in t["libr1"])
            assert abs(t["ratio_of_medians"] - t["libr1_median"] / lm) < 1e-9
            assert t["ratio_per_round"] == [x / lm for x in t["libr1"]]
        b = s["models"]["T"]["bytes_per_token"]
        assert b["llama_cpp_total"] == sum(want.values()) and b["libr1_total"] > 0
        assert b["libr1"]["head"] > 0 and b["libr1"]["embedding"] > 0
        check_dense(gguf, np, src, r1, gguf_py, tmp)
    print("vs_llama_cpp tools ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
