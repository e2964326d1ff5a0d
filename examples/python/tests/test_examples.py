"""test_examples: chat.py and cache_stats.py run end to end on the tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_DIR = os.path.dirname(HERE)


def env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_chat_reads_lines_from_stdin(model_path: str) -> None:
    out = subprocess.run(
        [sys.executable, os.path.join(PKG_DIR, "chat.py"), model_path, "--max-tokens", "24",
         "--think-budget", "8", "--show-thinking"],
        input="Hello\n\nAnd then?\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("<think>") == 2
    assert out.stderr.count("[prompt ") == 2
    # The second turn re-renders the whole conversation: its prompt is longer.
    counts = [int(l.split()[1]) for l in out.stderr.splitlines() if l.startswith("[prompt ")]
    assert counts[1] > counts[0]


def test_chat_ctrl_c_cancels_the_answer(model_path: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(PKG_DIR, "chat.py"), model_path, "--ignore-eos",
         "--show-thinking", "--max-tokens", "100000", "--ctx", "1024"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"Tell me everything.\n")
    proc.stdin.flush()
    assert proc.stdout.read1(1)  # the answer has started streaming
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(b"Short one.\n", timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b" [cancelled]\n" in rest
    assert err.count(b"[prompt ") == 2  # the chat went on to the next line


def test_cache_stats_prints_counters(model_path: str) -> None:
    out = subprocess.run(
        [sys.executable, os.path.join(PKG_DIR, "cache_stats.py"), model_path,
         "--max-tokens", "16", "--budget-mb", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert out.returncode == 0, out.stderr
    assert "misses" in out.stdout and "evictions" in out.stdout
    misses = int(next(l.split()[1] for l in out.stdout.splitlines() if "misses" in l))
    assert misses > 0
