#!/usr/bin/env python3
"""chat.py: a streaming terminal chat on libr1. Ctrl-C cancels the answer being written;
Ctrl-C at the prompt, or end of input, quits.

usage: chat.py MODEL [--max-tokens N] [--think-budget N] [--show-thinking] [--seed N]
               [--temp T] [--ctx N] [--overflow fail|shift] [--ignore-eos]

One session keeps the conversation: each turn evaluates only its new tokens (Session.sync_text).

Reads one user message per line from standard input, so it also runs non-interactively:
    printf 'Hello\\nAnd then?\\n' | chat.py model.r1m
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import r1  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Streaming chat with a DeepSeek-R1 model.")
    p.add_argument("model", help="the .r1m model file")
    p.add_argument("--max-tokens", type=int, default=-1, help="limit per answer (default none)")
    p.add_argument("--think-budget", type=int, default=-1, help="close reasoning after N tokens")
    p.add_argument("--show-thinking", action="store_true", help="stream the reasoning too")
    p.add_argument("--seed", type=int, default=0x5EED)
    p.add_argument("--temp", type=float, default=0.6, help="temperature (0 = greedy)")
    p.add_argument("--ctx", type=int, default=None,
                   help="context length (default 4096, or the model's maximum if smaller)")
    p.add_argument("--overflow", choices=("fail", "shift"), default="fail",
                   help="a full context fails the turn (default) or drops the oldest turns")
    p.add_argument("--ignore-eos", action="store_true", help="never stop at end of sentence")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    interactive = sys.stdin.isatty()
    with r1.Model(args.model) as model, r1.Session(
        model, context=args.ctx, overflow=args.overflow
    ) as session:
        generating = False

        def on_sigint(signum: int, frame: Optional[FrameType]) -> None:
            # Runs on the main thread between two steps: the next step reports the cancel.
            if not generating:
                raise KeyboardInterrupt
            session.cancel()

        signal.signal(signal.SIGINT, on_sigint)
        bias = {model.eos: float("-inf")} if args.ignore_eos else None
        history: List[Dict[str, str]] = []
        turn = 0
        while True:
            try:
                line = input("> ") if interactive else sys.stdin.readline()
            except (EOFError, KeyboardInterrupt):
                break
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            history.append({"role": "user", "content": line})
            turn += 1
            answer: List[str] = []
            shown = None
            generating = True
            try:
                # The whole conversation each turn; the session evaluates only what follows
                # the prefix it already holds.
                session.sync_text(model.chat_render(history))
                for text, kind in session.generate(
                    None,
                    reset=False,
                    max_tokens=args.max_tokens,
                    think_budget=args.think_budget,
                    seed=args.seed + turn,
                    temperature=args.temp,
                    logit_bias=bias,
                ):
                    if kind == "answer":
                        answer.append(text)
                    elif not args.show_thinking:
                        continue
                    if kind != shown:
                        sys.stdout.write("<think>" if kind == "reasoning" else "")
                        if shown == "reasoning":
                            sys.stdout.write("</think>")
                        shown = kind
                    sys.stdout.write(text)
                    sys.stdout.flush()
            except r1.R1ContextFull:
                sys.stdout.write(" [context full: starting over]")
                history.clear()
            finally:
                generating = False
            if shown == "reasoning":
                sys.stdout.write("</think>")
            cancelled = session.last_status == "cancelled"
            sys.stdout.write(" [cancelled]\n" if cancelled else "\n")
            sys.stdout.flush()
            prompt, reasoning, answered = session.counts()
            print(
                f"[prompt {prompt} tokens, reasoning {reasoning}, answer {answered}]",
                file=sys.stderr,
            )
            if history:
                history.append({"role": "assistant", "content": "".join(answer)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
