"""conftest: fixtures for the binding's tests: the tiny models that the meson build converts."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import r1  # noqa: E402


def models_dir() -> str:
    """build/test, where `r1 convert` wrote tiny-v3-src.r1m and friends."""
    d = os.environ.get("R1_TEST_MODELS_DIR")
    if not d:
        pytest.skip("R1_TEST_MODELS_DIR is not set (run through meson test)")
    return d


@pytest.fixture(scope="session")
def model_path() -> str:
    path = os.path.join(models_dir(), "tiny-v3-src.r1m")
    if not os.path.exists(path):
        pytest.skip(f"{path} has not been built")
    return path


@pytest.fixture(scope="session")
def model(model_path: str) -> Iterator[r1.Model]:
    with r1.Model(model_path) as m:
        yield m


@pytest.fixture
def session(model: r1.Model) -> Iterator[r1.Session]:
    with r1.Session(model, context=256) as s:
        yield s
