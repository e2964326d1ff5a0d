"""test_arguments: numbers and strings are checked against their C types before ctypes could
truncate them (threads=2**64 used to become 0, expert_cache_bytes=-1 2^64-1, an id 2**32+5 the
id 5), and paths may be str, bytes or os.PathLike; an embedded NUL raises ValueError."""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any, Callable

import pytest

import r1

BIG = 2**64
INT32_WRAPS = 2**32  # + n: the value ctypes turned into n


def raises_range(call: Callable[[], Any], name: str, ctype: str) -> None:
    with pytest.raises(OverflowError) as e:
        call()
    assert name in str(e.value) and ctype in str(e.value), str(e.value)


# Integers ---------------------------------------------------------------------------------------


def test_model_numbers(model_path: str) -> None:
    raises_range(lambda: r1.Model(model_path, threads=BIG), "threads", "int32_t")
    raises_range(lambda: r1.Model(model_path, threads=INT32_WRAPS + 1), "threads", "int32_t")
    raises_range(lambda: r1.Model(model_path, expert_cache_bytes=-1), "expert_cache_bytes",
                 "uint64_t")
    raises_range(lambda: r1.Model(model_path, expert_cache_bytes=BIG), "expert_cache_bytes",
                 "uint64_t")
    raises_range(lambda: r1.Model(model_path, device_expert_cache_bytes=-1),
                 "device_expert_cache_bytes", "uint64_t")
    with pytest.raises(TypeError, match="threads must be an integer"):
        r1.Model(model_path, threads=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="threads must be an integer"):
        r1.Model(model_path, threads="2")  # type: ignore[arg-type]
    with r1.Model(model_path, threads=1, expert_cache_bytes=BIG - 1) as m:  # the edges work
        assert m.expert_cache_stats().budget_bytes == BIG - 1


def test_session_numbers(model: r1.Model) -> None:
    raises_range(lambda: r1.Session(model, context=INT32_WRAPS + 16), "context", "int32_t")
    raises_range(lambda: r1.Session(model, context=-BIG), "context", "int32_t")
    with r1.Session(model, context=64) as s:
        raises_range(lambda: s.eval([1, INT32_WRAPS + 5]), "token ids[1]", "int32_t")
        raises_range(lambda: s.feed([-(2**31) - 1]), "token ids[0]", "int32_t")
        with pytest.raises(TypeError, match=r"token ids\[0\] must be an integer"):
            s.eval([1.0])  # type: ignore[list-item]
        assert s.position == 0
        s.eval([1, 2, 3])
        raises_range(lambda: s.logits(INT32_WRAPS - 1), "row", "int32_t")  # was row -1
        raises_range(lambda: s.truncate(INT32_WRAPS), "n_keep", "int32_t")  # was 0
        assert s.position == 3
        with pytest.raises(r1.R1OutOfRange):  # in range for the C type: libr1 judges it
            s.eval([2**31 - 1])


def test_generation_numbers(session: r1.Session, model: r1.Model) -> None:
    raises_range(lambda: session.steps([0, 5], max_tokens=INT32_WRAPS + 3), "max_tokens",
                 "int32_t")
    raises_range(lambda: session.steps([0, 5], think_budget=-BIG), "think_budget", "int32_t")
    raises_range(lambda: session.steps([0, 5], seed=-1), "seed", "uint64_t")
    raises_range(lambda: session.steps([0, 5], seed=BIG), "seed", "uint64_t")
    raises_range(lambda: session.steps([0, 5], top_k=BIG), "top_k", "int32_t")
    raises_range(lambda: session.steps([0, 5], logit_bias={INT32_WRAPS + model.eos: -1.0}),
                 "logit_bias token", "int32_t")
    raises_range(lambda: session.steps([0, 5], temperature=1e39), "temperature", "float")
    with pytest.raises(TypeError, match="temperature must be a number"):
        session.steps([0, 5], temperature="0.5")  # type: ignore[arg-type]
    assert len([s for s in session.steps([0, 5], max_tokens=2, seed=BIG - 1) if s.id >= 0]) == 2


def test_sampler_numbers() -> None:
    with r1.Sampler(seed=0) as smp:
        raises_range(lambda: smp.set_top_k(INT32_WRAPS), "top_k", "int32_t")
        raises_range(lambda: smp.set_penalties(BIG, 1.1), "penalty_last_n", "int32_t")
        raises_range(lambda: smp.set_penalties(64, 1e300), "repeat_penalty", "float")
        raises_range(lambda: smp.set_logit_bias(INT32_WRAPS + 1, 1.0), "logit_bias token",
                     "int32_t")
        raises_range(lambda: smp.set_logit_bias(1, -1e39), "logit_bias value", "float")
        raises_range(lambda: smp.accept(INT32_WRAPS), "token", "int32_t")
        raises_range(lambda: smp.sample([0.0, 1e39]), "logit", "float")
        smp.set_logit_bias(0, float("-inf"))  # infinities are values libr1 accepts
        assert smp.sample([5.0, 1.0]) == 1


# Strings and paths ------------------------------------------------------------------------------


def test_paths_may_be_str_bytes_or_pathlike(model_path: str, tmp_path: pathlib.Path) -> None:
    for p in (model_path, os.fsencode(model_path), pathlib.Path(model_path)):
        with r1.Model(p) as m:
            assert m.path == model_path
            assert m.info().n_layers > 0
    # A file name that is not UTF-8 (bytes are the only way to name it): used to be str(bytes).
    odd = os.path.join(os.fsencode(str(tmp_path)), b"mod\xffel.r1m")
    shutil.copyfile(model_path, odd)
    with r1.Model(odd) as m:
        assert m.info().n_layers > 0
    with pytest.raises(r1.R1NotFound) as e:
        r1.Model(tmp_path / "absent.r1m")
    assert "absent.r1m" in e.value.message
    with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
        r1.Model(42)  # type: ignore[arg-type]


def test_embedded_nul_raises_value_error(model: r1.Model, model_path: str,
                                         tmp_path: pathlib.Path) -> None:
    # ctypes used to pass the text up to the NUL: another file, another prompt.
    for p in (model_path + "\0.bak", os.fsencode(model_path) + b"\0x"):
        with pytest.raises(ValueError, match="embedded NUL"):
            r1.Model(p)
    with pytest.raises(ValueError, match="embedded NUL"):
        r1.convert(str(tmp_path) + "\0", str(tmp_path / "out.r1m"))
    with pytest.raises(ValueError, match="embedded NUL"):
        r1.convert(str(tmp_path), str(tmp_path / "out\0.r1m"))
    with pytest.raises(ValueError, match="embedded NUL"):
        model.chat_render([{"role": "user", "content": "visible\0hidden"}])
    with pytest.raises(ValueError, match="embedded NUL"):
        model.token_id("</think>\0")
    with pytest.raises(ValueError, match="embedded NUL"):
        r1.GenOptions(stop=["a\0b"])
    with pytest.raises(ValueError, match="embedded NUL"):
        r1.GenOptions(think_bridge="\n\0")
    with pytest.raises(ValueError, match="embedded NUL"):
        r1.Model(model_path, backend="cpu\0vulkan")
    assert not (tmp_path / "out.r1m").exists()
