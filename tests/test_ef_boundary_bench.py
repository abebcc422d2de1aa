"""``benchmarks/ef_boundary_bench.py``: elasticflow's re-planning boundaries and what of each plan
could be carried over from the previous one."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType

import pytest

from ptsim import native
from ptsim.core.policies.elasticflow import ElasticFlowConfig
from tests._util import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports policy_bench
    return load_benchmark("ef_boundary_bench", monkeypatch)


def test_a_plan_is_the_same_when_it_is_the_previous_one_less_the_slots_that_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same = _load(monkeypatch)._same
    assert same((True, [2, 2, 1]), (True, [4, 2, 2, 1]), 1)
    assert same((True, [2]), (True, [4, 2, 0, 0]), 1)  # a row ends where nothing more is held
    assert not same((True, [2, 2]), (True, [2, 2, 1]), 0)
    assert not same((False, [2, 1]), (True, [4, 2, 1]), 1)  # met its deadline before, not now
    assert not same((True, [1, 2]), (True, [4, 2, 1]), 1)


@pytest.mark.skipif(bool(native.active()), reason="the carry-over count needs the pure build")
def test_each_boundary_counts_every_job_admitted_before_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mod = _load(monkeypatch)
    got = mod.run(100, True, 0, ElasticFlowConfig().slot_s)
    assert [b.now for b in got] == [60.0, 120.0, 180.0, 240.0, 300.0]  # the slot grid
    assert got[0].carry is None  # nothing to compare the first timed re-plan with
    for before, b in itertools.pairwise(got):
        assert b.carry is not None
        # nobody finishes in this scenario: the jobs planned are those admitted at the last one
        assert sum(b.carry.values()) == before.admitted
        assert b.carry["new since"] == 0
        moved = b.carry["rem changed, not same"] + b.carry["rem same, not same"]
        assert (b.first_diff is None) == (moved == 0)
    assert got[-1].newcomers == 0 and got[-1].rejected == 0  # the trickle of arrivals ended
