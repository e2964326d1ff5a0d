"""test_conversation: prefix reuse (Session.sync), context shift (Session.shift) and the Chat
class that keeps one session across turns, on the tiny V3 model."""

from __future__ import annotations

import ctypes
from typing import List

import pytest

import r1


def evaluated(session: r1.Session) -> int:
    """Tokens the session evaluated since profiling was switched on."""
    prof = r1._ffi.SessionProfileC()
    prof.struct_size = ctypes.sizeof(prof)
    with session._use() as h:
        r1.errors.check(session._lib.r1_session_get_profile(h, ctypes.byref(prof)))
    return int(prof.n_tokens)


def profiled(session: r1.Session) -> r1.Session:
    with session._use() as h:
        r1.errors.check(session._lib.r1_session_set_profiling(h, 1))
    return session


def run_prompt(session: r1.Session) -> None:
    """Evaluates what is queued (up to the first sampled token) and ends the generation."""
    for step in session.steps(None, reset=False, max_tokens=1, temperature=0.0):
        if step.id >= 0:
            break


def test_sync_evaluates_only_the_new_suffix(model: r1.Model) -> None:
    ids: List[int] = [10 + (i * 37) % 250 for i in range(120)]
    with r1.Session(model, context=256) as s:
        profiled(s)
        s.sync(ids[:80])
        run_prompt(s)
        assert evaluated(s) == 80
        s.sync(ids)
        run_prompt(s)
        assert evaluated(s) == 80 + 40  # only the 40 new ids
        s.sync(ids[:60] + [11, 12, 13])  # differs from 60 on: the cache keeps 60
        assert s.position == 60
        run_prompt(s)
        assert evaluated(s) == 120 + 3


def test_shift_moves_the_cache(model: r1.Model) -> None:
    with r1.Session(model, context=64) as s:
        s.eval(list(range(10, 50)))
        s.shift(4, 10)
        assert s.position == 30
        with pytest.raises(r1.R1BadState):
            s.logits()  # they described the cache before the shift
        s.eval([7])
        assert len(s.logits()) > 0
        with pytest.raises(r1.R1OutOfRange):
            s.shift(30, 5)


def test_chat_keeps_one_session(model: r1.Model) -> None:
    with r1.Chat(model, system="Be brief.", context=256) as chat:
        profiled(chat.session)
        first = chat.send("What is 2+2?", max_tokens=6, temperature=0.0)
        assert isinstance(first, str)
        after_first = evaluated(chat.session)
        streamed = "".join(chat.send("And 3+3?", stream=True, max_tokens=6, temperature=0.0))
        assert isinstance(streamed, str)
        second = evaluated(chat.session) - after_first
        # The second turn evaluates its own message and the last answer, not the first turn.
        assert 0 < second < after_first + 6
        roles = [m["role"] for m in chat.messages]
        assert roles == ["system", "user", "assistant", "user", "assistant"]


def test_chat_continues_past_the_context_with_shift(model: r1.Model) -> None:
    with r1.Chat(model, system="Be brief.", context=96, overflow="shift") as chat:
        for t in range(10):
            chat.send(f"Turn {t}: tell me about {t * 7}.", max_tokens=8, temperature=0.0)
            assert chat.session.position <= 96
        assert len(chat.messages) == 21
    with r1.Chat(model, system="Be brief.", context=96) as chat:
        with pytest.raises(r1.R1ContextFull):
            for t in range(10):
                chat.send(f"Turn {t}: tell me about {t * 7}.", max_tokens=8, temperature=0.0)
        assert chat.messages[-1]["role"] == "assistant"  # the failed turn was taken back


def test_overflow_argument_checked(model: r1.Model) -> None:
    with pytest.raises(ValueError):
        r1.Session(model, overflow="wrap")
