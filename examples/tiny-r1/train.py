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

Deterministic for a given seed and number of workers (each runs one PyTorch thread).
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
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


def batches(lengths, batch_size, rng):
    """Groups of similar length (sorted within shuffled chunks), shuffled."""
    encoded = [(range(n), 0) for n in lengths]
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
    ap.add_argument("--workers", type=int, default=1,
                    help="data-parallel processes of one thread each (PyTorch's intra-op threads "
                         "only slow these small matrices down). On the 2-vCPU machines this was "
                         "made on, 2 workers ran no faster than 1 (the vCPUs share one core's "
                         "throughput); on real cores they divide the time")
    ap.add_argument("--out", default=os.path.join(HERE, "hf"))
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--bias-gamma", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--q-lora", type=int, default=64)
    ap.add_argument("--kv-lora", type=int, default=32)
    ap.add_argument("--nope-dim", type=int, default=16)
    ap.add_argument("--rope-dim", type=int, default=16)
    ap.add_argument("--v-dim", type=int, default=16)
    ap.add_argument("--dense-inter", type=int, default=384)
    ap.add_argument("--moe-inter", type=int, default=64)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--topk", type=int, default=2)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--topk-group", type=int, default=2)
    ap.add_argument("--tok-texts", type=int, default=20000)
    ap.add_argument("--time-limit", type=float, default=0, help="stop early after this many seconds (pilots only)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--save-every", type=int, default=1000,
                    help="also save a snapshot to OUT/step-N every N steps (0: never)")
    ap.add_argument("--port", type=int, default=29517, help="local port of the workers' rendezvous")
    args = ap.parse_args()
    if args.batch % args.workers:
        ap.error("--batch must be a multiple of --workers")
    if args.workers == 1:
        train(0, args)
    else:
        mp.spawn(train, args=(args,), nprocs=args.workers, join=True)


def train(rank, args):
    """One worker: the whole model, 1/workers of every batch; gradients, token counts and
    expert loads are summed over the workers, so every worker takes the same step."""
    world = args.workers
    if world > 1:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % args.port,
                                rank=rank, world_size=world)

    def log(*a):
        if rank == 0:
            print(*a, flush=True)

    def all_sum(t):
        if world > 1:
            dist.all_reduce(t)
        return t

    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = random.Random(args.seed)

    # 1. tokenizer
    # (learned by worker 0, read by all)
    if rank == 0:
        texts = [data.text_of(ex) for ex in data.generate(args.tok_texts, args.seed, "train")]
        merges = bpe.train(texts, 1000, 20)
        tj = bpe.build_tokenizer_json(merges)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)
        with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(bpe.tokenizer_config(), f, ensure_ascii=False, indent=2)
        log("tokenizer: %d merges" % len(merges))
    if world > 1:
        dist.barrier()
    tok = bpe.Tokenizer(os.path.join(args.out, "tokenizer.json"))
    n_ids = tok.size
    vocab_size = (n_ids + 63) // 64 * 64      # padding rows like R1 (never produced)
    bos, eos = tok.added[data.BOS], tok.added[data.EOS]
    pad = tok.added["<｜▁pad▁｜>"]
    log("tokenizer: %d ids, embedding rows %d (%.1fs)" % (n_ids, vocab_size, time.time() - t_start))

    # 2. data: a fresh example for every training slot, the same list in every worker;
    # batches are formed by text length and each worker tokenises only its share, when used
    n_train = args.steps * args.batch
    exs = data.generate(n_train, args.seed, "train")
    encoded = {}

    def enc(i):
        if i not in encoded:
            encoded[i] = encode_example(tok, exs[i])
        return encoded[i]
    log("data: %d examples (%.1fs)" % (len(exs), time.time() - t_start))

    # 3. model
    cfg = make_config(vocab_size, bos, eos, args)
    model = DeepseekV3ForCausalLM(cfg)
    nparam = sum(p.numel() for p in model.parameters())
    log("model: %.3fM parameters, %d workers" % (nparam / 1e6, world))
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    order = batches([len(data.text_of(ex)) for ex in exs], args.batch, rng)
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
        mine = order[s][rank::world]
        for i in mine:
            enc(i)
        x, y, valid = collate(encoded, mine, pad)
        # mean over the targets of the whole batch: a sum here, divided by the global count
        n_tgt = all_sum(torch.tensor([float((y != -100).sum()), float(valid.sum())]))
        logits = model(x, valid)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=-100,
                               reduction="sum") / n_tgt[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            flat = all_sum(torch.cat([g.reshape(-1) for g in grads]))
            o = 0
            for g in grads:
                g.copy_(flat[o:o + g.numel()].view_as(g))
                o += g.numel()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # auxiliary-loss-free load balancing: bias_e += gamma * sign(mean_load - load_e)
        with torch.no_grad():
            loads = all_sum(torch.stack([m.last_load for m in moes]))
            for m, load in zip(moes, loads):
                m.last_load = load
                m.gate.e_score_correction_bias += args.bias_gamma * torch.sign(load.mean() - load)
        run_loss += float(all_sum(loss.detach().clone()))
        run_n += 1
        seen += int(n_tgt[1])
        for i in mine:      # each example is used once
            del encoded[i]
        if (s + 1) % args.log_every == 0 or s == steps - 1:
            el = time.time() - t0
            loads = [m.last_load for m in moes]
            imb = max(float(l.max() / l.mean()) for l in loads)
            log("step %5d  loss %.4f  lr %.2e  tok/s %.0f  max load/mean %.2f  elapsed %.0fs" % (
                s + 1, run_loss / run_n, lr_at(s), seen / el, imb, el))
            run_loss, run_n = 0.0, 0
        if rank == 0 and args.save_every and (s + 1) % args.save_every == 0 and s + 1 < steps:
            # a snapshot to fall back on if a shared machine makes the run too slow
            save_hf(model, cfg, os.path.join(args.out, "step-%d" % (s + 1)))
        # every worker stops at the same step: worker 0's clock decides
        stop = torch.tensor([1.0 if args.time_limit and time.time() - t0 > args.time_limit else 0.0])
        if world > 1:
            dist.broadcast(stop, 0)
        if stop.item():
            log("time limit reached at step %d" % (s + 1))
            break

    # 4. save
    if rank != 0:
        dist.destroy_process_group()
        return
    n = save_hf(model, cfg, args.out)
    info = {"seed": args.seed, "workers": world, "steps": s + 1, "batch": args.batch,
            "train_examples_seen": (s + 1) * args.batch, "train_seconds": round(time.time() - t0, 1),
            "total_seconds": round(time.time() - t_start, 1), "parameters": nparam,
            "args": vars(args)}
    with open(os.path.join(args.out, "train_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    log("saved %d tensors to %s; training %.0fs, total %.0fs" % (
        n, args.out, time.time() - t0, time.time() - t_start))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
