"""Contention (workers that share a machine): with a contended table in the profile, a job's
step rate depends on whether the node's other GPUs train, and changes when a neighbour starts
or stops; without one nothing changes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.profiles import Mechanics, ProfileSet, ThroughputTable
from ptsim.metrics import jobs_table
from ptsim.run import simulate_jobs
from tests._util import job, linear_profiles


def _profiles(contended: bool) -> ProfileSet:
    """1 it/s on one GPU alone, 0.5 it/s while the other GPU of the node trains; no pauses."""
    base = linear_profiles(("m",), cold_start_s=0.0, reload_s=0.0,
                           mechanics=Mechanics(handover_s=0.0, reconfig_s=0.0))  # fmt: skip
    if not contended:
        return base
    slow = ThroughputTable((16,), (1,), np.array([[0.5]]))
    return replace(base, models={"m": replace(base.models["m"], contended=slow)})


def _jct(profiles: ProfileSet) -> dict[str, float]:
    jobs = [job("a", 0.0, 100, 1000.0), job("b", 0.0, 20, 1000.0)]
    pol = POLICIES.build("fifo", PolicyContext(profiles, None), {})
    out = simulate_jobs(jobs, pol, profiles, 2, lambda spec, init: float(spec.iterations))
    out.state.check_invariants()
    t = jobs_table(out).set_index("job_id")
    return {j: float(t.loc[j, "jct_s"]) for j in ("a", "b")}


def test_a_neighbour_slows_a_job_down_while_it_trains() -> None:
    # both train at 0.5 it/s until b is done at 40 s (a has done 20); a then runs alone at
    # 1 it/s for its last 80
    assert _jct(_profiles(True)) == pytest.approx({"a": 120.0, "b": 40.0})
    assert _jct(_profiles(False)) == pytest.approx({"a": 100.0, "b": 20.0})


def test_busy_share_interpolates_between_the_measured_tables() -> None:
    p = _profiles(True)
    assert p.contention and not _profiles(False).contention
    assert p.train_step_time("m", 1, 16) == pytest.approx(1.0)
    assert p.train_step_time("m", 1, 16, busy_share=1.0) == pytest.approx(2.0)
    assert p.train_step_time("m", 1, 16, busy_share=0.5) == pytest.approx(1.5)
    assert p.iters_per_second("m", 1, 16, busy_share=1.0) == pytest.approx(0.5)
