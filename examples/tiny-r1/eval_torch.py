"""Evaluate a saved tiny-r1 checkpoint (hf/) with the PyTorch reference model.

    python3 eval_torch.py [--hf hf/] [--n 500] [--out results/]

* greedy accuracy on n held-out problems (operand pairs never seen in
  training), per category and plain/worded. The answer is the text after
  the first </think> of the generated completion (special tokens removed,
  whitespace stripped); it must equal the reference answer exactly.
* mean NLL per assistant token (teacher forcing) on the same held-out
  problems' reference completions.

The model is loaded from model.safetensors exactly as written (BF16 weights
widened to fp32), i.e. the weights an engine will see.

Writes results/torch_eval.json and results/torch_greedy.jsonl (one line per
problem: prompt ids, greedy output ids up to and including EOS, texts), so
an engine can be compared token for token.
"""

import argparse
import collections
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe             # noqa: E402
import data            # noqa: E402
import safetensors_io  # noqa: E402
from model import DeepseekV3ForCausalLM  # noqa: E402


def load_model(hfdir):
    with open(os.path.join(hfdir, "config.json")) as f:
        cfg = json.load(f)
    model = DeepseekV3ForCausalLM(cfg)
    sd, _ = safetensors_io.load(os.path.join(hfdir, "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    model.eval()
    return model, cfg


def extract_answer(text):
    if data.END_THINK not in text:
        return None
    return text.split(data.END_THINK, 1)[1].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", default=os.path.join(HERE, "hf"))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=4321, help="seed of the held-out problem draw")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new", type=int, default=400)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    model, cfg = load_model(args.hf)
    tok = bpe.Tokenizer(os.path.join(args.hf, "tokenizer.json"))
    eos = tok.added[data.EOS]
    exs = data.generate(args.n, args.seed, "heldout")

    # ---- NLL per assistant token (teacher forcing)
    nll_sum = collections.Counter()
    nll_n = collections.Counter()
    with torch.no_grad():
        for ex in exs:
            p = tok.encode(data.render_prompt(ex["question"]))
            c = tok.encode(data.render_completion(ex["working"], ex["answer"]))
            ids = p + c
            start = p.index(tok.added[data.ASSISTANT]) + 1
            x = torch.tensor([ids[:-1]])
            y = torch.tensor(ids[start:])
            logits = model(x)[0, start - 1:]
            nll = F.cross_entropy(logits, y, reduction="sum")
            for k in ("all", ex["category"]):
                nll_sum[k] += float(nll)
                nll_n[k] += len(y)
    t_nll = time.time() - t0

    # ---- greedy generation, batched by prompt length
    prompts = [tok.encode(data.render_prompt(ex["question"])) for ex in exs]
    groups = collections.defaultdict(list)
    for i, p in enumerate(prompts):
        groups[len(p)].append(i)
    outs = [None] * len(exs)
    for L in sorted(groups):
        idx = groups[L]
        for s in range(0, len(idx), 32):
            part = idx[s:s + 32]
            res = model.generate([prompts[i] for i in part], args.max_new, eos)
            for i, r in zip(part, res):
                outs[i] = r
    t_gen = time.time() - t0 - t_nll

    correct = collections.Counter()
    total = collections.Counter()
    fmt_ok = collections.Counter()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "torch_greedy.jsonl"), "w", encoding="utf-8") as f:
        for ex, p, o in zip(exs, prompts, outs):
            text = tok.decode(o, skip_special=True)
            ans = extract_answer(tok.decode(o))
            if ans is not None:
                ans = ans.replace(data.EOS, "").strip()
            ok = ans == ex["answer"]
            well_formed = (ans is not None and len(o) > 0 and o[-1] == eos)
            keys = ["all", ex["category"], ex["category"] + ("/worded" if ex["worded"] else "/plain")]
            for k in keys:
                total[k] += 1
                correct[k] += int(ok)
                fmt_ok[k] += int(well_formed)
            f.write(json.dumps({"category": ex["category"], "worded": ex["worded"],
                                "question": ex["question"], "expected": ex["answer"],
                                "answer": ans, "correct": ok,
                                "prompt_ids": p, "output_ids": o, "output_text": text},
                               ensure_ascii=False) + "\n")

    res = {
        "checkpoint": os.path.relpath(args.hf, HERE),
        "heldout_seed": args.seed,
        "n": len(exs),
        "accuracy": {k: round(correct[k] / total[k], 4) for k in sorted(total)},
        "counts": {k: [correct[k], total[k]] for k in sorted(total)},
        "well_formed": {k: round(fmt_ok[k] / total[k], 4) for k in sorted(total)},
        "nll_per_assistant_token": {k: round(nll_sum[k] / nll_n[k], 5) for k in sorted(nll_n)},
        "perplexity": round(math.exp(nll_sum["all"] / nll_n["all"]), 5),
        "assistant_tokens": nll_n["all"],
        "seconds": {"nll": round(t_nll, 1), "greedy": round(t_gen, 1)},
    }
    with open(os.path.join(args.out, "torch_eval.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: res[k] for k in ("accuracy", "nll_per_assistant_token", "perplexity", "seconds")},
                     indent=1))


if __name__ == "__main__":
    main()
