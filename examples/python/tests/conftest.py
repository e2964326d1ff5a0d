"""conftest: finds libr1 and the models for the binding's tests, or skips saying how to.

Through meson (`meson test -C build python`) everything is given in the environment and a
missing piece fails. Plain `pytest examples/python/tests` looks for a build directory:
$R1_BUILD_DIR, else `build/` at the top of the repository (the README's); a library named by
$R1_LIBRARY and models in $R1_TEST_MODELS_DIR take precedence. Without a library the tests that
need one are skipped, with that explanation.
"""

from __future__ import annotations

import os
import sys
from typing import Iterator, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PKG_DIR))
#: The model this project ships (examples/tiny-r1), in the source tree.
TINY_R1 = os.path.join(REPO, "examples", "tiny-r1", "tiny-r1.r1m")
HOW = (
    "build libr1 first (meson setup build && ninja -C build) and rerun, point the tests at a "
    "build with R1_BUILD_DIR=/path/to/build (or R1_LIBRARY=/path/to/libr1.so.1 and "
    "R1_TEST_MODELS_DIR=BUILD/test), or run them through meson: meson test -C build python"
)

sys.path.insert(0, PKG_DIR)

import r1  # noqa: E402


def strict() -> bool:
    """Under meson (R1_TEST_STRICT=1) a missing library, model or tool fails instead of
    skipping: CI must not pass without testing."""
    return os.environ.get("R1_TEST_STRICT") == "1"


def missing(reason: str) -> None:
    """Skip (plain pytest) or fail (under meson) because *reason* is missing."""
    if strict():
        pytest.fail(reason + " (R1_TEST_STRICT=1: required)", pytrace=False)
    pytest.skip(reason)


def _build_dir() -> Optional[str]:
    d = os.environ.get("R1_BUILD_DIR") or os.path.join(REPO, "build")
    return d if os.path.isfile(os.path.join(d, "build.ninja")) else None


def _configure() -> None:
    """Fills R1_LIBRARY and R1_TEST_MODELS_DIR from a build directory when they are unset, in
    os.environ so that the programs the tests start see them too."""
    build = _build_dir()
    if build is None:
        return
    lib = os.path.join(build, "lib", "libr1.so.1")
    if not os.environ.get("R1_LIBRARY") and os.path.exists(lib):
        os.environ["R1_LIBRARY"] = lib
    if not os.environ.get("R1_TEST_MODELS_DIR"):
        os.environ["R1_TEST_MODELS_DIR"] = os.path.join(build, "test")
    exe = os.path.join(build, "examples", "example-generate")
    if not os.environ.get("R1_GENERATE_EXE") and os.path.exists(exe):
        os.environ["R1_GENERATE_EXE"] = exe


_configure()
_library_error: Optional[str] = None
try:
    r1.load_library()
except OSError as e:
    _library_error = str(e)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nolib: the test does not need libr1")


def pytest_report_header(config: pytest.Config) -> str:
    if _library_error:
        return f"libr1: not found ({HOW})"
    return f"libr1: {r1.library_path()} ({r1.version()})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture, a session-scoped model too, would try to load the library.
    if _library_error and item.get_closest_marker("nolib") is None:
        missing(f"libr1 not found: {HOW}. ({_library_error})")


def models_dir() -> str:
    """build/test, where `r1 convert` wrote tiny-v3-src.r1m and friends."""
    d = os.environ.get("R1_TEST_MODELS_DIR")
    if not d:
        missing(f"R1_TEST_MODELS_DIR is not set: {HOW}")
    return d  # type: ignore[return-value]


@pytest.fixture(scope="session")
def model_path() -> str:
    path = os.path.join(models_dir(), "tiny-v3-src.r1m")
    if not os.path.exists(path):
        missing(f"{path} has not been built (ninja -C BUILD test/tiny-v3-src.r1m)")
    return path


@pytest.fixture(scope="session")
def model(model_path: str) -> Iterator[r1.Model]:
    with r1.Model(model_path) as m:
        yield m


@pytest.fixture
def session(model: r1.Model) -> Iterator[r1.Session]:
    with r1.Session(model, context=256) as s:
        yield s


@pytest.fixture(scope="session")
def tiny_r1_path() -> str:
    """The shipped model, examples/tiny-r1/tiny-r1.r1m (committed: never skipped)."""
    assert os.path.exists(TINY_R1), f"the shipped model {TINY_R1} is missing"
    return TINY_R1


@pytest.fixture(scope="session")
def tiny_r1(tiny_r1_path: str) -> Iterator[r1.Model]:
    with r1.Model(tiny_r1_path) as m:
        yield m
