"""test_batch: r1.generate_many (r1_session_step_many) gives each session what it gets alone."""

from __future__ import annotations

import os
from typing import Dict, List

import pytest

import r1
from conftest import missing, models_dir

PROMPTS = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [40, 41]]


def _model(name: str) -> r1.Model:
    path = os.path.join(models_dir(), name)
    if not os.path.exists(path):
        missing(f"{path} has not been built")
    return r1.Model(path)


def test_generate_many_equals_alone() -> None:
    with _model("tiny-v3-q8_0.r1m") as m:
        eos = {m.eos: float("-inf")}
        alone: List[List[int]] = []
        last: List[bytes] = []
        for i, p in enumerate(PROMPTS):
            with r1.Session(m, context=128) as s:
                ids = [st.id for st in s.steps(p, max_tokens=6 + i, seed=3 + i, logit_bias=eos)]
                alone.append([t for t in ids if t >= 0])
                last.append(s.logits().tobytes())
        sessions = [r1.Session(m, context=128) for _ in PROMPTS]
        got: Dict[int, List[int]] = {i: [] for i in range(len(PROMPTS))}
        try:
            rounds = 0
            for batch in r1.generate_many(sessions, PROMPTS, max_tokens=6, seed=3, logit_bias=eos):
                rounds += 1
                for i, step in batch:
                    if step.id >= 0:
                        got[i].append(step.id)
            assert rounds >= 6
            # max_tokens is shared here: compare each with its alone run cut to 6 tokens.
            for i in range(len(PROMPTS)):
                assert got[i] == alone[i][:6]
                assert sessions[i].last_status == "done"
            assert sessions[0].logits().tobytes() == last[0]
        finally:
            for s in sessions:
                s.close()


def test_generate_many_refuses_two_models() -> None:
    with _model("tiny-v3-q8_0.r1m") as a, _model("tiny-v2lite-q8_0.r1m") as b:
        with r1.Session(a, context=64) as s, r1.Session(b, context=64) as t:
            with pytest.raises(r1.R1InvalidArgument):
                for _ in r1.generate_many([s, t], [[5, 6], [5, 6]], max_tokens=2):
                    pass
            # Both sessions are usable afterwards (their generations were ended).
            assert [x.id for x in s.steps([5, 6], max_tokens=1) if x.id >= 0]
            with pytest.raises(r1.R1InvalidArgument):
                next(iter(r1.generate_many([s, s], [[5], [5]])))
