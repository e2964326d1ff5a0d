"""Train tiny-r1 (a small DeepSeek-V3 / R1 architecture model) on the synthetic
arithmetic reasoning data and save it in Hugging Face layout.

    python3 train.py                  # full run (seed 1234), writes hf/
    python3 train.py --steps 200      # shorter run

Steps: (1) learn the BPE tokenizer (bpe.py) on training examples and write
hf/tokenizer.json + hf/tokenizer_config.json, (2) generate and tokenise the
training examples, (3) train with AdamW, loss on the assistant part only,
auxiliary-loss-free expert balancing (bias += gamma * sign(mean_load - load_e)
after every step), (4) write hf/config.json and hf/model.safetensors (BF16,
e_score_correction_bias F32), names as in the HF DeepSeek-V3 checkpoint.

Deterministic for a given seed and thread count (torch.set_num_threads).
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe            # noqa: E402
import data           # noqa: E402
import safetensors_io  # noqa: E402
from model import DeepseekV3ForCausalLM  # noqa: E402


def make_config(vocab_size, bos, eos, args):
    D = args.hidden
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": vocab_size,
        "hidden_size": D,
        "intermediate_size": args.dense_inter,
        "moe_intermediate_size": args.moe_inter,
        "num_hidden_layers": args.layers,
        "num_nextn_predict_layers": 0,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.heads,
        "n_shared_experts": 1,
        "n_routed_experts": args.experts,
        "routed_scaling_factor": 2.5,
        "kv_lora_rank": args.kv_lora,
        "q_lora_rank": args.q_lora,
        "qk_rope_head_dim": args.rope_dim,
        "v_head_dim": args.v_dim,
        "qk_nope_head_dim": args.nope_dim,
        "topk_method": "noaux_tc",
        "n_group": args.groups,
        "topk_group": args.topk_group,
        "num_experts_per_tok": args.topk,
        "moe_layer_freq": 1,
        "first_k_dense_replace": 1,
        "norm_topk_prob": True,
        "scoring_func": "sigmoid",
        "aux_loss_alpha": 0.0,
        "seq_aux": True,
        "hidden_act": "silu",
        "max_position_embeddings": 1024,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "rope_theta": 10000.0,
        "rope_scaling": {
            "type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 256,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        "attention_bias": False,
        "attention_dropout": 0.0,
        "ep_size": 1,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
    }


def encode_example(tok, ex):
    """ids and the index where the assistant part starts (first target)."""
    p = tok.encode(data.render_prompt(ex["question"]))
    c = tok.encode(data.render_completion(ex["working"], ex["answer"]))
    # The generation prompt ends with "<think>\n"; the loss covers "<think>\n" too
    # (everything after <｜Assistant｜>), then the model's working, answer and EOS.
    a = tok.added[data.ASSISTANT]
    start = p.index(a) + 1
    return p + c, start


def batches(encoded, batch_size, rng):
    """Groups of similar length (sorted within shuffled chunks), shuffled."""
    idx = list(range(len(encoded)))
    rng.shuffle(idx)
    chunk = batch_size * 32
    out = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s:s + chunk], key=lambda i: len(encoded[i][0]))
        for b in range(0, len(part), batch_size):
            out.append(part[b:b + batch_size])
    rng.shuffle(out)
    return out


def collate(encoded, ids, pad_id):
    T = max(len(encoded[i][0]) for i in ids)
    x = torch.full((len(ids), T), pad_id, dtype=torch.long)
    y = torch.full((len(ids), T), -100, dtype=torch.long)
    valid = torch.zeros((len(ids), T), dtype=torch.bool)
    for r, i in enumerate(ids):
        seq, start = encoded[i]
        n = len(seq)
        x[r, :n] = torch.tensor(seq)
        valid[r, :n] = True
        # position t predicts token t+1; targets are tokens start .. n-1
        tgt = torch.tensor(seq[start:])
        y[r, start - 1:n - 1] = tgt
    return x, y, valid


def save_hf(model, cfg, outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    sd = model.state_dict()
    tensors, dtypes = {}, {}
    for k, v in sd.items():
        tensors[k] = v
        dtypes[k] = "F32" if k.endswith("e_score_correction_bias") else "BF16"
    safetensors_io.save(os.path.join(outdir, "model.safetensors"), tensors, dtypes,
                        metadata={"format": "pt"})
    return len(tensors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "hf"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--bias-gamma", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--q-lora", type=int, default=96)
    ap.add_argument("--kv-lora", type=int, default=64)
    ap.add_argument("--nope-dim", type=int, default=32)
    ap.add_argument("--rope-dim", type=int, default=32)
    ap.add_argument("--v-dim", type=int, default=32)
    ap.add_argument("--dense-inter", type=int, default=512)
    ap.add_argument("--moe-inter", type=int, default=96)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--topk", type=int, default=4)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--topk-group", type=int, default=2)
    ap.add_argument("--tok-texts", type=int, default=20000)
    ap.add_argument("--time-limit", type=float, default=0, help="stop early after this many seconds (pilots only)")
    ap.add_argument("--log-every", type=int, default=25)
    args = ap.parse_args()

    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)

    # 1. tokenizer
    texts = [data.text_of(ex) for ex in data.generate(args.tok_texts, args.seed, "train")]
    merges = bpe.train(texts, 1000, 20)
    tj = bpe.build_tokenizer_json(merges)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(bpe.tokenizer_config(), f, ensure_ascii=False, indent=2)
    tok = bpe.Tokenizer(os.path.join(args.out, "tokenizer.json"))
    n_ids = tok.size
    vocab_size = (n_ids + 63) // 64 * 64      # padding rows like R1 (never produced)
    bos, eos = tok.added[data.BOS], tok.added[data.EOS]
    pad = tok.added["<｜▁pad▁｜>"]
    print("tokenizer: %d merges, %d ids, embedding rows %d (%.1fs)" % (
        len(merges), n_ids, vocab_size, time.time() - t_start), flush=True)

    # 2. data: a fresh example for every training slot
    n_train = args.steps * args.batch
    exs = data.generate(n_train, args.seed, "train")
    encoded = [encode_example(tok, ex) for ex in exs]
    ntok = sum(len(e[0]) for e in encoded)
    print("data: %d examples, %d tokens, max len %d (%.1fs)" % (
        len(encoded), ntok, max(len(e[0]) for e in encoded), time.time() - t_start), flush=True)

    # 3. model
    cfg = make_config(vocab_size, bos, eos, args)
    model = DeepseekV3ForCausalLM(cfg)
    nparam = sum(p.numel() for p in model.parameters())
    print("model: %.3fM parameters" % (nparam / 1e6), flush=True)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    order = batches(encoded, args.batch, rng)
    steps = min(args.steps, len(order))

    def lr_at(s):
        if s < args.warmup:
            return args.lr * (s + 1) / args.warmup
        t = (s - args.warmup) / max(1, steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))

    moes = model.moe_layers()
    t0 = time.time()
    run_loss, run_n, seen = 0.0, 0, 0
    model.train()
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        x, y, valid = collate(encoded, order[s], pad)
        logits = model(x, valid)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # auxiliary-loss-free load balancing: bias_e += gamma * sign(mean_load - load_e)
        with torch.no_grad():
            for m in moes:
                load = m.last_load
                m.gate.e_score_correction_bias += args.bias_gamma * torch.sign(load.mean() - load)
        run_loss += float(loss)
        run_n += 1
        seen += int(valid.sum())
        if (s + 1) % args.log_every == 0 or s == steps - 1:
            el = time.time() - t0
            loads = [m.last_load for m in moes]
            imb = max(float(l.max() / l.mean()) for l in loads)
            print("step %5d  loss %.4f  lr %.2e  tok/s %.0f  max load/mean %.2f  elapsed %.0fs" % (
                s + 1, run_loss / run_n, lr_at(s), seen / el, imb, el), flush=True)
            run_loss, run_n = 0.0, 0
        if args.time_limit and time.time() - t0 > args.time_limit:
            print("time limit reached at step %d" % (s + 1), flush=True)
            break

    # 4. save
    n = save_hf(model, cfg, args.out)
    info = {"seed": args.seed, "threads": args.threads, "steps": s + 1, "batch": args.batch,
            "train_examples_seen": (s + 1) * args.batch, "train_seconds": round(time.time() - t0, 1),
            "total_seconds": round(time.time() - t_start, 1), "parameters": nparam,
            "args": vars(args)}
    with open(os.path.join(args.out, "train_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    print("saved %d tensors to %s; training %.0fs, total %.0fs" % (
        n, args.out, time.time() - t0, time.time() - t_start), flush=True)


if __name__ == "__main__":
    main()
