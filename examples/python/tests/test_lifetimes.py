"""test_lifetimes: no call order or thread interleaving of pure Python reaches freed memory or
races libr1: a closed or busy object raises R1BadState instead.

The crash-prone cases run in a child interpreter, so that a crash (a segfault, or AddressSanitizer
in the sanitized build, where meson preloads its runtime) fails that test, not the whole run.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from typing import List

import pytest

import r1

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_DIR = os.path.dirname(HERE)
NO_EOS_PROMPT = [0, 5]


def run_child(code: str, *args: str) -> str:
    """Runs *code* in a fresh interpreter with this binding; returns its stdout, asserting a
    clean exit (no crash, no sanitizer report)."""
    env = dict(os.environ, PYTHONPATH=PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-4000:]}"
    assert "ERROR: AddressSanitizer" not in out.stderr, out.stderr[-4000:]
    return out.stdout


def generated(session: r1.Session, model: r1.Model, n: int) -> List[int]:
    """The ids of a fresh generation of n tokens (end of sentence banned)."""
    steps = session.steps(NO_EOS_PROMPT, max_tokens=n, logit_bias={model.eos: float("-inf")})
    return [s.id for s in steps if s.id >= 0]


def endless(model: r1.Model) -> dict:
    return dict(max_tokens=100000, logit_bias={model.eos: float("-inf")})


# The session closed under its iterator ---------------------------------------------------------


def test_iterating_after_the_session_closed_raises(model: r1.Model) -> None:
    # Used to step the freed session (ASan: heap-use-after-free in r1_session_step).
    s = r1.Session(model, context=64)
    it = s.generate(NO_EOS_PROMPT, **endless(model))
    next(it)
    s.close()
    with pytest.raises(r1.R1BadState, match="Session is closed"):
        next(it)
    with pytest.raises(StopIteration):  # the iterator is finished, not wedged
        next(it)
    with pytest.raises(r1.R1BadState):
        s.steps(NO_EOS_PROMPT)


def test_close_from_another_thread_during_generation() -> None:
    # Used to segfault: close() freed the session while the other thread was inside a step.
    out = run_child(
        """
        import os, sys, threading, r1
        threading.excepthook = lambda args: (print(args), os._exit(3))
        m = r1.Model(sys.argv[1])
        outcomes = []
        for delay_steps in (1, 3, 10, 30):
            s = r1.Session(m, context=256)
            stepped = threading.Event()
            def consume():
                n = 0
                try:
                    for step in s.steps([0, 5], max_tokens=100000,
                                        logit_bias={m.eos: float("-inf")}):
                        n += 1
                        if n == delay_steps:
                            stepped.set()
                    outcomes.append("ended")
                except r1.R1BadState as e:
                    outcomes.append(e.message)
            t = threading.Thread(target=consume)
            t.start()
            assert stepped.wait(60)
            s.close()
            t.join(60)
            assert not t.is_alive()
        print("|".join(outcomes))
        m.chat("after", max_tokens=4)  # the model is intact
        """,
        os.path.join(os.environ["R1_TEST_MODELS_DIR"], "tiny-v3-src.r1m"),
    )
    assert out.strip().split("|") == ["Session is closed"] * 4


def test_close_from_a_callback_ends_the_generation(session: r1.Session, model: r1.Model) -> None:
    session.feed([0, 5])
    pieces: List[str] = []

    def on_piece(text: str, kind: str) -> bool:
        pieces.append(text)
        if len(pieces) == 2:
            session.close()  # the C object stays alive until generate_callback returns
        return False

    with r1.Sampler(seed=1, logit_bias={model.eos: float("-inf")}) as smp:
        with pytest.raises(r1.R1BadState, match="closed during the generation"):
            session.generate_callback(on_piece, smp, r1.GenOptions(max_tokens=1000))
    assert 2 <= len(pieces) < 1000
    assert session.closed


def test_close_from_another_thread_during_callback_generation(model: r1.Model) -> None:
    s = r1.Session(model, context=256)
    s.feed([0, 5])
    started = threading.Event()
    result: List[BaseException] = []

    def worker() -> None:
        with r1.Sampler(seed=1, logit_bias={model.eos: float("-inf")}) as smp:
            try:
                s.generate_callback(lambda t, k: started.set(), smp)
            except BaseException as e:  # noqa: B902
                result.append(e)

    t = threading.Thread(target=worker)
    t.start()
    assert started.wait(60)
    s.close()  # cancels the running generation; frees the session when it returns
    t.join(60)
    assert not t.is_alive()
    assert len(result) == 1 and isinstance(result[0], r1.R1BadState)


# Busy: one thread at a time --------------------------------------------------------------------


def test_a_second_thread_gets_busy_instead_of_a_race(session: r1.Session, model: r1.Model) -> None:
    # Used to run two calls in the session at once (libr1 allows one thread at a time).
    session.feed([0, 5])
    inside, release = threading.Event(), threading.Event()
    errors: List[BaseException] = []

    def on_piece(text: str, kind: str) -> bool:
        inside.set()
        release.wait(60)
        return True  # cancel: one piece is enough

    def worker() -> None:
        with r1.Sampler(seed=1, logit_bias={model.eos: float("-inf")}) as smp:
            try:
                session.generate_callback(on_piece, smp)
            except BaseException as e:  # noqa: B902
                errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert inside.wait(60)
        for call in (lambda: session.position, lambda: session.eval([1]), session.reset,
                     lambda: session.logits(), lambda: session.feed([3])):
            with pytest.raises(r1.R1BadState, match="busy"):
                call()
        session.cancel()  # cancel() is for any thread, any time
    finally:
        release.set()
        t.join(60)
    assert not errors
    assert session.last_status == "cancelled"
    assert session.position > 0  # usable again
    session.reset()


def test_a_callback_must_not_reenter_its_session(session: r1.Session) -> None:
    session.feed([0, 5])
    with r1.Sampler(seed=1) as smp, pytest.raises(r1.R1BadState, match="busy"):
        session.generate_callback(lambda t, k: session.position, smp)
    assert session.position >= 2  # the prompt stays evaluated; the session is usable
    session.reset()


def test_a_sampler_in_use_by_another_thread_is_busy(model: r1.Model) -> None:
    smp = r1.Sampler(seed=1, logit_bias={model.eos: float("-inf")})
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with r1.Session(model, context=64) as s:
            s.feed([0, 5])
            s.generate_callback(lambda t, k: inside.set() or release.wait(60), smp)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert inside.wait(60)
        with pytest.raises(r1.R1BadState, match="Sampler is busy"):
            smp.sample([0.0, 1.0])
    finally:
        release.set()
        t.join(60)
    assert smp.sample([0.0, 1.0]) in (0, 1)
    smp.close()


# Borrowed objects: a generation's sampler, a session's model ------------------------------------


def test_closing_the_sampler_of_a_running_generation_waits_for_its_end(model: r1.Model) -> None:
    # Used to free the sampler that libr1's generation still samples with.
    smp = r1.Sampler(seed=9, logit_bias={model.eos: float("-inf")})
    with r1.Session(model, context=128) as s:
        reference = [st.id for st in s.steps(NO_EOS_PROMPT, max_tokens=12, seed=9,
                                              logit_bias={model.eos: float("-inf")}) if st.id >= 0]
        it = s.steps(NO_EOS_PROMPT, max_tokens=12, sampler=smp)
        ids = [next(it).id]
        smp.close()
        assert smp.closed
        with pytest.raises(r1.R1BadState, match="Sampler is closed"):
            smp.sample([0.0, 1.0])
        ids += [st.id for st in it]  # the generation goes on with it
        assert [i for i in ids if i >= 0] == reference
        assert smp._handle is None  # freed once the generation ended


def test_model_closed_before_its_session_still_serves_it(model_path: str) -> None:
    m = r1.Model(model_path)
    s = r1.Session(m, context=128)
    m.close()
    with pytest.raises(r1.R1BadState, match="Model is closed"):
        m.tokenize("x")
    with pytest.raises(r1.R1BadState, match="Model is closed"):
        r1.Session(m)
    # Rendering a chat prompt needs the model: the session's reference keeps it alive.
    assert [t for t, _ in s.generate("hello", max_tokens=4)]
    assert m._handle is not None
    s.close()
    assert m._handle is None  # freed with its last session


def test_model_closed_while_another_thread_uses_it() -> None:
    # Used to free the model under a thread's tokenize/chat (no session held a reference).
    out = run_child(
        """
        import os, sys, threading, r1
        threading.excepthook = lambda args: (print(args), os._exit(3))
        closed = 0
        for round in range(20):
            m = r1.Model(sys.argv[1])
            go = threading.Event()
            def work():
                global closed
                go.set()
                try:
                    for _ in range(200):
                        m.detokenize(m.tokenize("some text to encode " * 20))
                        m.info()
                except r1.R1BadState as e:
                    assert e.message == "Model is closed", e.message
                    closed += 1
            t = threading.Thread(target=work)
            t.start()
            go.wait()
            m.close()
            t.join(60)
        print("ok", closed > 0)
        """,
        os.path.join(os.environ["R1_TEST_MODELS_DIR"], "tiny-v3-src.r1m"),
    )
    assert out.split()[0] == "ok"


def test_reset_during_a_generation_ends_its_iterator(session: r1.Session, model: r1.Model) -> None:
    it = session.steps(NO_EOS_PROMPT, **endless(model))
    next(it)
    session.reset()
    with pytest.raises(r1.R1BadState, match="ended by reset"):
        next(it)
    assert len(generated(session, model, 3)) == 3


def test_a_second_generation_while_one_runs_raises(session: r1.Session, model: r1.Model) -> None:
    it = session.steps(NO_EOS_PROMPT, **endless(model))
    next(it)
    with pytest.raises(r1.R1BadState, match="already running"):
        session.steps(NO_EOS_PROMPT)
    it.close()  # ends libr1's generation and frees the session for the next one
    assert session.last_status == "cancelled"
    assert len(generated(session, model, 3)) == 3


def test_iterator_abandoned_while_the_session_is_busy(session: r1.Session, model: r1.Model) -> None:
    # The iterator is collected while another call holds the session: its generation is ended
    # by the next one instead of being left running or stepped concurrently.
    it = session.steps(NO_EOS_PROMPT, **endless(model))
    next(it)
    session._acquire()  # what a call in progress on another thread holds
    try:
        del it
        gc.collect()
    finally:
        session._release()
    assert len(generated(session, model, 3)) == 3
