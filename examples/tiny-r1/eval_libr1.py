#!/usr/bin/env python3
"""eval_libr1.py: the held-out evaluation of tiny-r1 run through libr1, compared with PyTorch.

Reads results/torch_greedy.jsonl (written by eval_torch.py: the 500 held-out problems, their
prompt ids and PyTorch's greedy output ids) and, through libr1's Python binding on the
converted .r1m:
  * greedy decoding of every prompt (argmax of libr1's logits at each step, over the ids the
    tokenizer defines; stopped at EOS or --max-new tokens): answer accuracy per category and
    the fraction of problems whose output ids equal PyTorch's exactly;
  * the mean negative log-likelihood per assistant token (teacher forcing, reference working
    and answer) on the same held-out draw, compared with results/torch_eval.json's value (relative difference).
Writes results/libr1_eval.json.

  /usr/bin/python3 examples/tiny-r1/eval_libr1.py --model examples/tiny-r1/tiny-r1.r1m \\
      --lib build/lib/libr1.so.1
"""
import argparse
import collections
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import bpe   # noqa: E402
import data  # noqa: E402


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(HERE, "tiny-r1.r1m"))
    ap.add_argument("--lib", default=None, help="path of libr1.so.1 (else R1_LIBRARY / search)")
    ap.add_argument("--hf", default=os.path.join(HERE, "hf"))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--max-new", type=int, default=400)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.lib:
        os.environ["R1_LIBRARY"] = os.path.abspath(args.lib)
    import r1  # noqa: E402  (after R1_LIBRARY is set)

    with open(os.path.join(args.results, "torch_greedy.jsonl"), encoding="utf-8") as f:
        problems = [json.loads(line) for line in f]
    with open(os.path.join(args.results, "torch_eval.json")) as f:
        torch_eval = json.load(f)
    tok = bpe.Tokenizer(os.path.join(args.hf, "tokenizer.json"))
    eos = tok.added[data.EOS]
    model = r1.Model(args.model, threads=args.threads)
    n_ids = model.n_tokens
    t0 = time.time()

    # ---- greedy decoding
    correct, total = collections.Counter(), collections.Counter()
    same_ids = 0
    for p in problems:
        s = r1.Session(model, context=1024)
        s.eval(p["prompt_ids"])
        out = []
        while len(out) < args.max_new:
            logits = np.frombuffer(s.logits(), dtype=np.float32)[:n_ids]
            nxt = int(np.argmax(logits))
            out.append(nxt)
            if nxt == eos:
                break
            s.eval([nxt])
        s.close()
        same_ids += int(out == p["output_ids"])
        text = tok.decode(out)
        ans = text.split(data.END_THINK, 1)[1].replace(data.EOS, "").strip() \
            if data.END_THINK in text else None
        ok = ans == p["expected"]
        for k in ("all", p["category"], p["category"] + ("/worded" if p["worded"] else "/plain")):
            total[k] += 1
            correct[k] += int(ok)
    t_gen = time.time() - t0

    # ---- NLL per assistant token, teacher forcing on prompt + PyTorch's reference completion
    nll_sum, nll_n = collections.Counter(), collections.Counter()
    # The same held-out draw as eval_torch.py (data.generate is deterministic in its seed).
    for ex in data.generate(len(problems), torch_eval["heldout_seed"], "heldout"):
        prompt = tok.encode(data.render_prompt(ex["question"]))
        ids = prompt + tok.encode(data.render_completion(ex["working"], ex["answer"]))
        start = prompt.index(tok.added[data.ASSISTANT]) + 1
        s = r1.Session(model, context=1024, logits_all=True)
        s.eval(ids[:-1])
        for pos in range(start - 1, len(ids) - 1):
            lp = log_softmax(np.frombuffer(s.logits(pos), dtype=np.float32))
            for k in ("all", ex["category"]):
                nll_sum[k] -= lp[ids[pos + 1]]
                nll_n[k] += 1
        s.close()
    t_nll = time.time() - t0 - t_gen

    nll = {k: nll_sum[k] / nll_n[k] for k in nll_n}
    torch_nll = torch_eval["nll_per_assistant_token"]
    res = {
        "model": os.path.relpath(args.model, HERE),
        "n": len(problems),
        "accuracy": {k: round(correct[k] / total[k], 4) for k in sorted(total)},
        "torch_accuracy": torch_eval["accuracy"],
        "greedy_ids_identical_to_torch": round(same_ids / len(problems), 4),
        "nll_per_assistant_token": {k: round(v, 5) for k, v in sorted(nll.items())},
        "torch_nll_per_assistant_token": torch_nll,
        "nll_relative_difference": round(abs(nll["all"] - torch_nll["all"]) / torch_nll["all"], 6),
        "seconds": {"greedy": round(t_gen, 1), "nll": round(t_nll, 1)},
    }
    with open(os.path.join(args.results, "libr1_eval.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
