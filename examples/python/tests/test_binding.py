"""test_binding: the ctypes binding against the tiny, untrained V3 model (deterministic output)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from typing import List

import pytest

import r1
from conftest import missing
from r1 import _ffi

PROMPT = "What is 2+2?"
HERE = os.path.dirname(os.path.abspath(__file__))
PKG_DIR = os.path.dirname(HERE)


def gen_ids(session: r1.Session, prompt: object = PROMPT, **kw: object) -> List[int]:
    return [s.id for s in session.steps(prompt, **kw) if s.id >= 0]


# Library ---------------------------------------------------------------------------------------


def test_version_and_backends() -> None:
    assert r1.version().count(".") == 2
    major, minor, patch = (int(x) for x in r1.version().split("."))
    assert r1.version_number() == major * 1000000 + minor * 1000 + patch
    names = [b.name for b in r1.backends()]
    assert "cpu" in names
    assert dict(r1.backends())["cpu"] is True
    assert r1.status_name(-3) == "R1_ERR_IO"
    assert r1.describe_backend("cpu").startswith("0: ")
    with pytest.raises(r1.R1NotFound):
        r1.describe_backend("no such backend")


def test_every_declared_function_has_types() -> None:
    lib = _ffi.lib()
    for name in _ffi.declared_names():
        if lib.has(name):
            fn = getattr(lib, name)
            assert fn.argtypes is not None, name
            assert fn.restype == _ffi.DECLARATIONS[name][0], name


@pytest.mark.nolib
def test_discovery_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1_LIBRARY", "/from/env/libr1.so.1")
    found = _ffi.candidates("/explicit/libr1.so.1")
    assert found[:2] == ["/explicit/libr1.so.1", "/from/env/libr1.so.1"]
    assert "libr1.so.1" in found[2:]


@pytest.mark.nolib
def test_struct_mirrors_match_the_header() -> None:
    import ctypes

    # r1_model_info: u32 + i32 + char[32] + 12 x i64 + 6 x u64 + char[16]
    assert ctypes.sizeof(_ffi.ModelInfoC) == 4 + 4 + 32 + 12 * 8 + 6 * 8 + 16
    # r1_expert_cache_stats: u32 + u32 + 9 x u64, then (1.1) 5 x u64 + 2 x u32
    assert ctypes.sizeof(_ffi.ExpertCacheStatsC) == 8 + 9 * 8 + 5 * 8 + 2 * 4
    # r1_session_profile: u32 + u32 + 5 x u64 + f64 + 8 x f64, then (1.1) 8 x u64 + u64
    assert ctypes.sizeof(_ffi.SessionProfileC) == 8 + 5 * 8 + 8 + 8 * 8 + 8 * 8 + 8


# Errors carry the library's messages -------------------------------------------------------------


def test_bad_path_raises_not_found_with_the_path(tmp_path: object) -> None:
    missing = os.path.join(str(tmp_path), "nope.r1m")
    with pytest.raises(r1.R1NotFound) as e:
        r1.Model(missing)
    assert e.value.status == -7
    assert missing in e.value.message
    assert isinstance(e.value, r1.R1Error)


def test_malformed_file_raises_format(tmp_path: object) -> None:
    bad = os.path.join(str(tmp_path), "bad.r1m")
    with open(bad, "wb") as f:
        f.write(b"not a model at all" * 10)
    with pytest.raises(r1.R1Error) as e:
        r1.Model(bad)
    assert e.value.status in (-4, -5)
    assert e.value.message


def test_out_of_range_token_id(session: r1.Session, model: r1.Model) -> None:
    vocab = model.info().vocab_size
    with pytest.raises(r1.R1OutOfRange) as e:
        session.eval([1, vocab])
    assert e.value.status == -9
    assert str(vocab) in e.value.message
    assert session.position == 0  # unchanged on failure
    with pytest.raises(IndexError):  # also a Python IndexError
        session.feed([vocab + 5])


def test_context_overflow(model: r1.Model) -> None:
    with r1.Session(model, context=4) as s:
        with pytest.raises(r1.R1ContextFull) as e:
            s.eval(model.tokenize("a long prompt that does not fit"))
        assert "context" in e.value.message
        s.eval([2, 3])  # still usable


def test_generation_filling_the_context(model: r1.Model) -> None:
    with r1.Session(model, context=24) as s:
        with pytest.raises(r1.R1ContextFull):
            for _ in s.steps([5, 6, 7], max_tokens=100, logit_bias={model.eos: float("-inf")}):
                pass
        assert len(gen_ids(s, [5, 6, 7], max_tokens=3)) == 3  # usable afterwards


def test_misuse_has_messages(session: r1.Session, model: r1.Model) -> None:
    with pytest.raises(r1.R1BadState) as e:
        session.logits()
    assert e.value.message
    with pytest.raises(r1.R1InvalidUTF8) as e2:
        model.tokenize(b"\xc3\x28")
    assert "byte 0" in e2.value.message
    with pytest.raises(r1.R1InvalidArgument):
        r1.Sampler(temperature=-1.0)
    with pytest.raises(r1.R1NotFound):
        model.token_id("no such token text")
    with pytest.raises(ValueError):
        model.chat_render([{"role": "robot", "content": "x"}])


# Tokenizer, chat format, evaluation ----------------------------------------------------------------


def test_tokenize_round_trip(model: r1.Model) -> None:
    ids = model.tokenize("Hello world", bos=True)
    assert ids[0] == model.bos
    assert model.detokenize(ids[1:]) == "Hello world"
    assert model.detokenize(ids, skip_special=True) == "Hello world"
    long_text = "abc " * 500  # forces the retry with a larger id buffer
    assert model.detokenize(model.tokenize(long_text)) == long_text
    assert model.token_id("</think>") >= 0
    assert model.n_tokens == model.info().n_tokenizer_ids


def test_chat_render(model: r1.Model) -> None:
    text = model.chat_render([{"role": "user", "content": "hi"}])
    assert text.startswith("<｜begin▁of▁sentence｜>")
    assert text.endswith("<think>\n")
    long = model.chat_render([{"role": "user", "content": "x" * 5000}])  # buffer regrowth
    assert "x" * 5000 in long


def test_logits_buffer_and_rows(model: r1.Model) -> None:
    numpy = pytest.importorskip("numpy")
    with r1.Session(model, context=64, logits_all=True) as s:
        s.eval([0, 10, 20])
        assert s.position == 3
        last = s.logits()
        assert len(last) == model.info().vocab_size
        arr = numpy.frombuffer(last, dtype=numpy.float32)
        assert arr.shape == (model.info().vocab_size,)
        assert numpy.array_equal(arr, numpy.frombuffer(s.logits(2), dtype=numpy.float32))
        assert not numpy.array_equal(arr, numpy.frombuffer(s.logits(0), dtype=numpy.float32))
        with pytest.raises(r1.R1OutOfRange):
            s.logits(3)
        s.truncate(1)
        assert s.position == 1
        s.eval([10, 20])
        assert numpy.allclose(arr, numpy.frombuffer(s.logits(), dtype=numpy.float32), atol=1e-5)
        s.reset()
        assert s.position == 0


def test_sampler_on_logits(session: r1.Session) -> None:
    session.eval([0, 10])
    logits = session.logits()
    greedy = r1.Sampler(seed=1, temperature=0.0)
    best = max(range(len(logits)), key=lambda i: (logits[i], -i))
    assert greedy.sample(logits) == best
    assert greedy.sample(list(logits)) == best
    greedy.set_logit_bias(best, float("-inf"))
    assert greedy.sample(logits) != best
    greedy.close()
    greedy.close()  # idempotent


# Generation ------------------------------------------------------------------------------------


def test_generation_matches_the_c_program(model: r1.Model, model_path: str) -> None:
    exe = os.environ.get("R1_GENERATE_EXE")
    if not exe:
        missing("R1_GENERATE_EXE is not set (the examples/c program, BUILD/examples/"
                "example-generate)")
    for seed in (7, 1234):
        out = subprocess.run(
            [exe, model_path, PROMPT, "--max-tokens", "24", "--seed", str(seed), "--print-ids"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        c_ids = [int(x) for x in out.stdout.split()]
        with r1.Session(model) as s:
            assert gen_ids(s, PROMPT, max_tokens=24, seed=seed) == c_ids
        assert len(c_ids) > 0


def test_generate_yields_reasoning_then_answer(session: r1.Session, model: r1.Model) -> None:
    bias = {model.token_id("</think>"): float("-inf"), model.eos: float("-inf")}
    kinds = [
        k
        for _, k in session.generate(
            PROMPT, temperature=0, max_tokens=20, think_budget=5, think_bridge="\n\nOK:",
            logit_bias=bias,
        )
    ]
    assert kinds[0] == "reasoning" and kinds[-1] == "answer"
    assert kinds == sorted(kinds, key=lambda k: k == "answer")
    prompt, reasoning, answer = session.counts()
    assert prompt > 5 and reasoning == 6 and answer == 14
    assert session.last_status == "done"


def test_stop_string(session: r1.Session, model: r1.Model) -> None:
    kw = dict(temperature=0, max_tokens=30, logit_bias={model.eos: float("-inf")})
    full = "".join(t for t, _ in session.generate(PROMPT, **kw))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = "".join(t for t, _ in session.generate(PROMPT, stop=[stop], **kw))
    assert cut == full[: full.index(stop)]


def test_same_seed_same_tokens_and_messages_prompt(session: r1.Session) -> None:
    a = gen_ids(session, PROMPT, max_tokens=16, seed=3)
    b = gen_ids(session, [{"role": "user", "content": PROMPT}], max_tokens=16, seed=3)
    c = gen_ids(session, PROMPT, max_tokens=16, seed=4)
    assert a == b and a != c


def test_breaking_out_leaves_the_session_usable(session: r1.Session) -> None:
    for i, _ in enumerate(session.generate(PROMPT, max_tokens=50)):
        if i == 2:
            break
    gc.collect()
    assert session.last_status == "cancelled"
    assert len(gen_ids(session, PROMPT, max_tokens=4)) == 4


def test_model_chat(model: r1.Model) -> None:
    answer = model.chat(PROMPT, max_tokens=20, think_budget=4)
    assert isinstance(answer, str)
    streamed = "".join(model.chat(PROMPT, stream=True, max_tokens=20, think_budget=4))
    assert streamed == answer


def test_callback_generation(session: r1.Session, model: r1.Model) -> None:
    session.feed_text(model.chat_render([{"role": "user", "content": PROMPT}]))
    pieces: List[str] = []
    with r1.Sampler(seed=1, logit_bias={model.eos: float("-inf")}) as smp:
        end = session.generate_callback(lambda t, k: pieces.append(t) or len(pieces) >= 3, smp)
    assert end == "cancelled" and len(pieces) == 3
    session.reset()
    session.feed([0, 5])

    def boom(text: str, kind: str) -> bool:
        raise KeyError("from the callback")

    with r1.Sampler(seed=1) as smp, pytest.raises(KeyError):
        session.generate_callback(boom, smp)


def test_expert_cache_stats_count_loads(model_path: str) -> None:
    with r1.Model(model_path, expert_cache_bytes=1 << 20) as m:
        before = m.expert_cache_stats()
        assert before.budget_bytes == 1 << 20
        m.chat(PROMPT, max_tokens=8)
        after = m.expert_cache_stats()
        assert after.misses > 0 and after.bytes_decompressed > 0
        assert after.hits + after.misses > before.hits + before.misses
        assert 0.0 <= after.hit_rate <= 1.0


def test_expert_io_threads_and_async_store_stats(model_path: str) -> None:
    with r1.Model(model_path, expert_cache_bytes=1 << 20, expert_io_threads=3) as m:
        m.chat(PROMPT, max_tokens=8)
        st = m.expert_cache_stats()
        assert st.io_workers == 3 and st.direct_io in (0, 1)
        assert st.misses_prefetched <= st.misses and st.prefetch_used <= st.prefetch_issued
        assert 0.0 <= st.prefetch_recall <= 1.0
    with r1.Model(model_path) as m:
        assert m.expert_cache_stats().io_workers == 8  # the default
    with pytest.raises(r1.R1InvalidArgument):
        r1.Model(model_path, expert_io_threads=65)


# Threads ---------------------------------------------------------------------------------------


def test_two_threads_match_sequential(model: r1.Model) -> None:
    seeds = (11, 22)
    sequential = {}
    for seed in seeds:
        with r1.Session(model) as s:
            sequential[seed] = gen_ids(s, PROMPT, max_tokens=32, seed=seed)
    results: dict = {}

    def worker(seed: int) -> None:
        with r1.Session(model) as s:
            results[seed] = gen_ids(s, PROMPT, max_tokens=32, seed=seed)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == sequential


def test_cancel_from_another_thread(session: r1.Session, model: r1.Model) -> None:
    started = threading.Event()
    seen: List[int] = []

    def consume() -> None:
        for step in session.steps(PROMPT, max_tokens=200, logit_bias={model.eos: float("-inf")}):
            if step.id >= 0:
                seen.append(step.id)
            if len(seen) == 3:
                started.set()

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(60)
    session.cancel()
    t.join(60)
    assert not t.is_alive()
    assert session.last_status == "cancelled"
    assert 3 <= len(seen) < 200
    assert len(gen_ids(session, PROMPT, max_tokens=3)) == 3  # usable afterwards


def test_cancel_before_begin_is_not_lost(session: r1.Session) -> None:
    it = session.steps(PROMPT, max_tokens=50)
    session.cancel()  # the iterator has not started: the request must still apply
    assert [s for s in it if s.id >= 0] == []
    assert session.last_status == "cancelled"


# Release in any order --------------------------------------------------------------------------


def test_model_released_before_session(model_path: str) -> None:
    m = r1.Model(model_path)
    s = r1.Session(m, context=64)
    m.close()
    m.close()
    with pytest.raises(r1.R1BadState):
        m.info()
    assert len(gen_ids(s, [0, 5, 6], max_tokens=4)) == 4  # the C side keeps the model alive
    del m
    gc.collect()
    s.eval([7])
    s.close()
    s.close()
    with pytest.raises(r1.R1BadState):
        s.eval([1])


def test_garbage_collection_in_any_order(model_path: str) -> None:
    for order in ("model", "session", "cycle"):
        m = r1.Model(model_path)
        s = r1.Session(m, context=64)
        it = s.generate([0, 5], max_tokens=10, logit_bias={m.eos: float("-inf")})
        next(it)
        if order == "model":
            del m
            gc.collect()
            del it, s
        elif order == "session":
            del it, s
            gc.collect()
            del m
        else:
            s.cycle = s  # type: ignore[attr-defined]
            m.cycle = (m, s)  # type: ignore[attr-defined]
            del it, s, m
        gc.collect()


def test_session_closed_under_a_live_iterator(model_path: str) -> None:
    with r1.Model(model_path) as m:
        s = r1.Session(m, context=64)
        it = s.generate([0, 5], max_tokens=10, logit_bias={m.eos: float("-inf")})
        next(it)
        s.close()
        del it
        gc.collect()


def test_interpreter_exit_with_live_objects(model_path: str) -> None:
    code = (
        "import r1, sys\n"
        "m = r1.Model(sys.argv[1])\n"
        "s = r1.Session(m, context=64)\n"
        "s2 = m.session(context=32)\n"
        "it = s.generate([0, 5], max_tokens=100, logit_bias={m.eos: -1e30})\n"
        "next(it)\n"
        "smp = r1.Sampler(seed=1)\n"
        "opts = r1.GenOptions(max_tokens=3)\n"
        "m.loop = (m, s, it)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", code, model_path],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "Exception ignored" not in out.stderr, out.stderr
