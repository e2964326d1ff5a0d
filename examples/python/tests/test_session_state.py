"""test_session_state: Session.save/load and their bytes forms, Session.resume, and the sampler's
save_bytes/load_bytes, against the tiny V3 model."""

from __future__ import annotations

import itertools
import os

import pytest

import r1


def busy_sampler(model: r1.Model, seed: int) -> r1.Sampler:
    # Random draws, a penalty window and a logit bias: all of it is state that must survive.
    return r1.Sampler(
        seed,
        temperature=0.9,
        top_k=50,
        repeat_penalty=1.1,
        frequency_penalty=0.1,
        logit_bias={model.eos: float("-inf")},
    )


def test_generation_continues_after_load_bytes(model: r1.Model) -> None:
    with r1.Session(model, context=256) as a, r1.Session(model, context=256) as b:
        sampler = busy_sampler(model, 42)
        it = a.steps("What is 2+2?", sampler=sampler, think_budget=4)
        before = [step.id for step in itertools.islice(it, 6)]
        assert len(before) == 6
        state = a.save_bytes()  # between steps: the session is free
        ref = [(step.id, step.text, step.kind) for step in itertools.islice(it, 15)]
        it.close()
        fresh = r1.Sampler(7)  # its settings and state come from the saved one
        b.load_bytes(bytearray(state), fresh)
        got = [(step.id, step.text, step.kind) for step in itertools.islice(b.resume(), 15)]
        assert got == ref
        with pytest.raises(r1.R1BadState):
            b.resume()  # the restored generation has an iterator already
        sampler.close()
        fresh.close()


def test_file_round_trip_and_logits(model: r1.Model, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "state.r1s")
    with r1.Session(model, context=128) as a, r1.Session(model, context=128) as b:
        a.eval([5, 9, 200, 31, 7])
        a.save(path)
        with open(path, "rb") as f:
            assert f.read() == a.save_bytes()
        b.load(path)
        assert b.position == 5
        assert b.logits().tobytes() == a.logits().tobytes()
        a.eval([11])
        b.eval([11])
        assert b.logits().tobytes() == a.logits().tobytes()
        with pytest.raises(r1.R1BadState):
            b.resume()  # nothing was generating


def test_refusals_leave_the_session_unchanged(model: r1.Model, tmp_path: object) -> None:
    with r1.Session(model, context=128) as a, r1.Session(model, context=64) as short:
        a.eval([1, 2, 3, 4])
        state = a.save_bytes()
        before = a.save_bytes()
        damaged = bytearray(state)
        damaged[len(damaged) // 2] ^= 0x10
        with pytest.raises(r1.R1Checksum):
            a.load_bytes(damaged)
        with pytest.raises(r1.R1Format):
            a.load_bytes(state[:-1])
        with pytest.raises(r1.R1Format):
            a.load_bytes(b"")
        with pytest.raises(r1.R1InvalidArgument, match="context length"):
            short.load_bytes(state)
        with pytest.raises(r1.R1NotFound):
            a.load(os.path.join(str(tmp_path), "missing.r1s"))
        with pytest.raises(TypeError):
            a.load_bytes(state, sampler="not a sampler")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            a.load_bytes(12)  # type: ignore[arg-type]
        assert a.save_bytes() == before
        a.eval([5])  # still usable


def test_state_of_a_generation_needs_a_sampler(model: r1.Model) -> None:
    with r1.Session(model, context=256) as a, r1.Session(model, context=256) as b:
        it = a.steps("Hi", temperature=0.0)
        next(it)
        state = a.save_bytes()
        it.close()
        before = b.save_bytes()
        with pytest.raises(r1.R1InvalidArgument, match="sampler"):
            b.load_bytes(state)
        assert b.save_bytes() == before


def test_sampler_bytes(session: r1.Session) -> None:
    session.eval([3, 4, 5])
    row = session.logits()
    a = r1.Sampler(9, temperature=1.0, repeat_penalty=1.3, penalty_last_n=8)
    for _ in range(3):
        a.accept(a.sample(row))
    b = r1.Sampler(1)
    b.load_bytes(a.save_bytes())
    assert [a.sample(row) for _ in range(8)] == [b.sample(row) for _ in range(8)]
    saved = b.save_bytes()
    with pytest.raises(r1.R1Checksum):
        b.load_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    assert b.save_bytes() == saved
