"""test_tiny_r1: the binding on the model this project ships (examples/tiny-r1/tiny-r1.r1m), as a
newcomer first uses it: default options everywhere. Model.session(), chat() and generate() used to
fail on it: the binding asked for a context of 4096, above the model's maximum of 1024."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import r1

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUESTION = "What is 347 + 285?"
ANSWER = "The answer is 632."  # the README's transcript


def test_default_session_context(tiny_r1: r1.Model) -> None:
    limit = tiny_r1.info().max_position_embeddings
    assert limit < 4096
    with tiny_r1.session() as s:  # the library's default: 4096, or the model's maximum
        assert s.context is None
        s.eval(list(range(1, 11)) * (limit // 10))
        assert s.position == limit // 10 * 10
        with pytest.raises(r1.R1ContextFull):
            s.eval([1] * (limit - s.position + 1))


def test_chat_answers(tiny_r1: r1.Model) -> None:
    assert tiny_r1.chat(QUESTION).strip() == ANSWER
    assert "".join(tiny_r1.chat(QUESTION, stream=True)).strip() == ANSWER


def test_generate_reasons_then_answers(tiny_r1: r1.Model) -> None:
    with tiny_r1.session() as s:
        pieces = list(s.generate(QUESTION))
        assert s.last_status == "done"
        reasoning = "".join(t for t, k in pieces if k == "reasoning")
        answer = "".join(t for t, k in pieces if k == "answer")
        assert [k for _, k in pieces] == sorted((k for _, k in pieces), key=lambda k: k == "answer")
        assert "7+5+0=12" in reasoning and "=0632" in reasoning
        assert answer.strip() == ANSWER
        prompt, n_reasoning, n_answer = s.counts()
        assert prompt > 0 and n_reasoning > 0 and n_answer > 0


def test_chat_example_on_the_shipped_model(tiny_r1_path: str) -> None:
    env = dict(os.environ, PYTHONPATH=PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, os.path.join(PKG_DIR, "chat.py"), tiny_r1_path, "--temp", "0"],
        input=QUESTION + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert ANSWER in out.stdout


def test_cache_stats_example_on_the_shipped_model(tiny_r1_path: str) -> None:
    env = dict(os.environ, PYTHONPATH=PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, os.path.join(PKG_DIR, "cache_stats.py"), tiny_r1_path,
         "--prompt", QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "misses" in out.stdout
