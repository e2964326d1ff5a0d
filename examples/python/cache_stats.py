#!/usr/bin/env python3
"""cache_stats.py: generate once, then print the model and its expert cache's statistics.

usage: cache_stats.py MODEL [--prompt TEXT] [--max-tokens N] [--budget-mb MB]

Routed experts are read from the model file by the store's I/O threads, some ahead of use
(router lookahead), and kept in a cache; with --budget-mb the cache is bounded and evictions,
prefetch waste and stalls appear.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import r1  # noqa: E402


def mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Expert-cache statistics after one generation.")
    p.add_argument("model")
    p.add_argument("--prompt", default="Why is the sky blue?")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--budget-mb", type=float, default=0.0, help="cache budget (0 = unbounded)")
    args = p.parse_args(argv)
    budget = int(args.budget_mb * (1 << 20))
    with r1.Model(args.model, expert_cache_bytes=budget) as model:
        info = model.info()
        print(
            f"model: {info.architecture_name}, {info.n_layers} layers, "
            f"{info.n_routed_experts} routed experts ({info.n_experts_per_token} per token, "
            f"{info.expert_dtype}), experts {mib(info.expert_bytes)}, dense {mib(info.dense_bytes)}"
        )
        with model.session() as session:
            n = sum(1 for s in session.steps(args.prompt, max_tokens=args.max_tokens) if s.id >= 0)
            prompt, reasoning, answer = session.counts()
        print(f"generated {n} tokens (prompt {prompt}, reasoning {reasoning}, answer {answer})")
        st = model.expert_cache_stats()
        rows = [
            ("hits", str(st.hits)),
            ("misses", str(st.misses)),
            ("hit rate", f"{st.hit_rate:.1%}"),
            ("evictions", str(st.evictions)),
            ("bytes read", mib(st.bytes_read)),
            ("bytes decompressed", mib(st.bytes_decompressed)),
            ("load time", f"{st.load_ns / 1e6:.2f} ms"),
            ("resident now", mib(st.current_bytes)),
            ("peak", mib(st.peak_bytes)),
            ("budget", mib(st.budget_bytes) if st.budget_bytes else "unbounded"),
            ("prefetch issued", str(st.prefetch_issued)),
            ("prefetch used", str(st.prefetch_used)),
            ("prefetch recall", f"{st.prefetch_recall:.1%}"),
            ("prefetch wasted", mib(st.prefetch_wasted_bytes)),
            ("stall", f"{st.stall_ns / 1e6:.2f} ms, {st.stall_ns / 1e6 / max(n, 1):.2f} ms/token"),
            ("I/O threads", f"{st.io_workers}{' (direct I/O)' if st.direct_io else ''}"),
        ]
        for name, value in rows:
            print(f"  {name:<20}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
