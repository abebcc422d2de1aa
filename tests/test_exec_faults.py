"""The fault-injection schedule (ptexec/faults.py): seeded, kills busy workers first."""

from __future__ import annotations

import pytest

from ptexec.faults import FaultPlan, Injector


def schedule(seed: int) -> list[tuple[float, int, str | None]]:
    inj = Injector(FaultPlan(kills=10, mean_interval_s=2.0), seed)
    t = 0.0
    while not inj.done:
        t += 0.1
        if inj.due(t):
            inj.pick(t, [(0, "a"), (1, "b"), (3, "c")], [0, 1, 2, 3])
    return inj.kills


def test_the_schedule_is_seeded_and_kills_busy_workers() -> None:
    a, b = schedule(0), schedule(0)
    assert a == b and len(a) == 10
    assert schedule(1) != a
    assert {g for _, g, _ in a} <= {0, 1, 3}
    assert [t for t, _, _ in a] == sorted(t for t, _, _ in a)


def test_idle_workers_only_when_allowed() -> None:
    inj = Injector(FaultPlan(kills=1, start_s=0.0, mean_interval_s=0.1), 0)
    assert inj.pick(5.0, [], [0, 1]) is None and not inj.done
    inj = Injector(FaultPlan(kills=1, idle_ok=True), 0)
    assert inj.pick(5.0, [], [2]) == 2 and inj.done and not inj.due(99.0)


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="kills"):
        FaultPlan(kills=-1)
    with pytest.raises(ValueError, match="mean_interval_s"):
        FaultPlan(mean_interval_s=0)
