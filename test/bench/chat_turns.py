#!/usr/bin/env python3
"""chat_turns.py: the per-turn prefill cost of a chat that keeps one session (issue 19).

Each turn renders the whole conversation, gives it to r1_session_sync (Python: r1.Chat) and
generates a short answer. Printed per turn: the tokens the turn's prefill evaluated (new
tokens), the forward passes' time for them (prefill ms, from r1_session_profile) and per new
token, the cache position, and the conversation's length in tokens. With --fresh every turn
starts from an empty cache instead (what r1 chat did before), for comparison.

usage: chat_turns.py MODEL.r1m [--turns 20] [--max-tokens 16] [--ctx N] [--overflow shift]
                     [--threads N] [--fresh] [--lib BUILD/lib/libr1.so.1]
Run it on a quiet machine for numbers that mean anything; the token counts hold anywhere.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "python"))

import r1  # noqa: E402
from r1 import _ffi  # noqa: E402
from r1.errors import check  # noqa: E402

WORDS = ("river stone lamp orbit cedar quiet signal harbor maple prism ember velvet canyon "
         "tunnel meadow copper").split()


def message(k: int) -> str:
    """A deterministic user message whose length varies with the turn (12 to 40 words)."""
    n = 12 + (k * 7) % 29
    return f"Turn {k}: " + " ".join(WORDS[(k * 3 + i) % len(WORDS)] for i in range(n)) + "?"


def profile(session: r1.Session) -> tuple:
    p = _ffi.SessionProfileC()
    p.struct_size = ctypes.sizeof(p)
    with session._use() as h:
        check(session._lib.r1_session_get_profile(h, ctypes.byref(p)))
    return int(p.n_tokens), float(p.total_ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=None)
    ap.add_argument("--overflow", choices=("fail", "shift"), default="fail")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="empty the cache before every turn")
    ap.add_argument("--lib", default=os.environ.get("R1_LIBRARY"))
    a = ap.parse_args()
    if a.lib:
        r1.load_library(a.lib)
    model = r1.Model(a.model, threads=a.threads)
    chat = r1.Chat(model, system="You are a helpful assistant.", context=a.ctx,
                   overflow=a.overflow)
    s = chat.session
    with s._use() as h:
        check(s._lib.r1_session_set_profiling(h, 1))
    print(f"# {os.path.basename(a.model)}: {a.turns} turns, answers of {a.max_tokens} tokens, "
          f"{'fresh cache every turn' if a.fresh else 'one session (r1_session_sync)'}, "
          f"overflow {a.overflow}")
    print(f"{'turn':>4} {'new tok':>8} {'prefill ms':>11} {'ms/new tok':>11} {'position':>9} "
          f"{'conv tok':>9} {'wall ms':>8}")
    for k in range(a.turns):
        chat.messages.append({"role": "user", "content": message(k)})
        prompt = model.chat_render(chat.messages)
        conv = len(model.tokenize(prompt, special=True))
        t0 = time.perf_counter()
        if a.fresh:
            s.reset()
        s.sync_text(prompt)
        n0, ms0 = profile(s)
        answer = []
        prefill = None
        for step in s.steps(None, reset=False, max_tokens=a.max_tokens, temperature=0.0):
            if prefill is None and step.id >= 0:  # the first token: the prompt is evaluated
                prefill = profile(s)
                wall = (time.perf_counter() - t0) * 1e3
            if step.text and step.kind == "answer":
                answer.append(step.text)
        chat.messages.append({"role": "assistant", "content": "".join(answer)})
        n1, ms1 = prefill if prefill is not None else profile(s)
        new, ms = n1 - n0, ms1 - ms0
        print(f"{k + 1:>4} {new:>8} {ms:>11.1f} {ms / max(new, 1):>11.3f} {s.position:>9} "
              f"{conv:>9} {wall if prefill else 0:>8.1f}", flush=True)
    chat.close()
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
