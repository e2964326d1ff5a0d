"""test_budget: the binding's expert budget is "auto" unless told otherwise (libr1 sizes it from
MemAvailable at load), and r1.plan() gives the planner's numbers without loading the model."""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Any, List

import pytest

import r1
from r1 import _ffi


def test_model_budget_defaults_to_auto(model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = _ffi.lib()
    assert lib.has("r1_model_opts_set_expert_cache_auto")
    real = lib.r1_model_opts_set_expert_cache_auto
    calls: List[int] = []

    def spy(opts: Any, context: int) -> int:
        calls.append(context)
        return int(real(opts, context))

    monkeypatch.setattr(lib, "r1_model_opts_set_expert_cache_auto", spy)
    with r1.Model(model_path):
        pass
    assert calls == [0]  # the default: auto, for a session's default context
    with r1.Model(model_path, expert_cache_bytes="auto", device_expert_cache_bytes="auto"):
        pass
    assert calls == [0, 0]
    with r1.Model(model_path, expert_cache_bytes=0) as m:  # 0 is still unbounded
        assert m.expert_cache_stats().budget_bytes == 0
    with r1.Model(model_path, expert_cache_bytes=1 << 20) as m:
        assert m.expert_cache_stats().budget_bytes == 1 << 20
    assert calls == [0, 0]


def test_model_budget_auto_on_a_small_model_keeps_everything(model_path: str) -> None:
    # tiny-v3 is far smaller than any memory the tests run in: auto leaves it unbounded
    with r1.Model(model_path) as m:
        assert m.expert_cache_stats().budget_bytes == 0


def test_model_budget_rejects_other_strings(model_path: str) -> None:
    with pytest.raises(ValueError, match='expert_cache_bytes must be a number of bytes or "auto"'):
        r1.Model(model_path, expert_cache_bytes="4G")
    with pytest.raises(ValueError, match="device_expert_cache_bytes"):
        r1.Model(model_path, device_expert_cache_bytes="max")


def test_plan_numbers(model_path: str) -> None:
    with r1.Model(model_path, expert_cache_bytes=0) as m:
        info = m.info()
    p = r1.plan(model_path, ram_bytes=1 << 40, mem_bytes_per_s=1e10, drive_bytes_per_s=1e9)
    assert isinstance(p, r1.Plan)
    assert p.fits == r1.PLAN_IN_MEMORY
    assert p.file_bytes == info.file_bytes
    assert p.dense_bytes == info.dense_bytes
    assert p.expert_bytes == info.expert_bytes
    assert p.ram_bytes == 1 << 40
    assert p.hit_rate == 1.0 and p.drive_bytes_per_token == 0
    assert p.mem_bytes_per_s == 1e10
    assert p.decode_tokens_per_s == pytest.approx(1e10 / p.memory_bytes_per_token)
    assert r1.plan(model_path, ram_bytes=1000, mem_bytes_per_s=1, drive_bytes_per_s=1).fits == (
        r1.PLAN_NO_FIT
    )


def test_plan_arguments(model_path: str, tmp_path: Any) -> None:
    with pytest.raises(OverflowError, match="ram_bytes"):
        r1.plan(model_path, ram_bytes=-1)
    with pytest.raises(r1.R1InvalidArgument):
        r1.plan(model_path, mem_bytes_per_s=-1.0)
    with pytest.raises(r1.R1Error):
        r1.plan(str(tmp_path / "missing.r1m"))


def test_plan_struct_mirror() -> None:
    # r1_plan: two 32-bit fields, then 13 64-bit integers and 6 doubles (include/r1.h)
    assert ctypes.sizeof(_ffi.PlanC) == 4 + 4 + 13 * 8 + 6 * 8
    names = [f[0] for f in _ffi.PlanC._fields_]
    assert names[1:] == ["fits"] + [f.name for f in dataclasses.fields(r1.Plan)][1:]


def test_model_cache_policy(model_path: str) -> None:
    with r1.Model(model_path, expert_cache_bytes=1 << 20, expert_cache_policy="lru") as m:
        assert m.expert_cache_stats().budget_bytes == 1 << 20
    with r1.Model(model_path, expert_cache_policy="default"):
        pass
    with pytest.raises(ValueError, match="expert_cache_policy"):
        r1.Model(model_path, expert_cache_policy="mru")
