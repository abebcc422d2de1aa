"""Replaying a trace: a window cut keeps the jobs arriving in it (shifted to start at 0), a
lower target load thins the jobs (keeping arrival order, scaling the count), a higher one
compresses arrival times; bad keys and empty windows fail with one line."""

from __future__ import annotations

import numpy as np
import pytest

from ptsim.core.types import JobSpec
from ptsim.trace.generator import offered_load
from ptsim.trace.replay import ReplaySpec, replay_window
from tests.test_trace_cli import toy_profiles

GPUS = 8


def trace(n: int = 2000, gap: float = 1.0) -> list[JobSpec]:
    """``n`` gpt2-base one-GPU jobs of 800 iterations (100 s), one every ``gap`` seconds."""
    return [
        JobSpec(f"t{i:05d}", i * gap, "gpt2-base", "sst2", i * gap + 150.0 + i % 7, 16, 800)
        for i in range(n)
    ]


def replay(jobs: list[JobSpec], seed: int = 0, **spec: float) -> list[JobSpec]:
    return replay_window(
        jobs, ReplaySpec(**spec), toy_profiles(), GPUS, np.random.default_rng(seed)
    )


def test_no_window_no_load_is_the_trace_itself() -> None:
    jobs = trace(50)
    assert replay(jobs) == jobs


def test_window_keeps_the_jobs_inside_shifted_to_zero() -> None:
    jobs = trace(100)
    cut = replay(jobs, window_start_s=20.0, window_s=30.0)
    assert [j.job_id for j in cut] == [f"t{i:05d}" for i in range(20, 50)]
    assert [j.arrival for j in cut] == [float(i) for i in range(30)]
    assert [j.deadline - j.arrival for j in cut] == [150.0 + i % 7 for i in range(20, 50)]


def test_thinning_keeps_arrival_order_and_scales_the_count() -> None:
    jobs = trace()  # 100 s jobs, one a second, on 8 GPUs: load 100 / 8 = 12.5 over 1999 s
    prof = toy_profiles()
    recorded = offered_load(jobs, prof, GPUS, 1999.0)
    assert recorded == pytest.approx(2000 * 100 / (1999 * 8))
    for target in (6.25, 1.25):
        thin = replay(jobs, load=target)
        share = target / recorded
        assert len(thin) == pytest.approx(share * len(jobs), abs=4 * np.sqrt(2000 * share))
        ids = [j.job_id for j in thin]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        originals = {j.job_id: j for j in jobs}
        assert all(j == originals[j.job_id] for j in thin)  # times untouched
    assert replay(jobs, load=2.0, seed=3) == replay(jobs, load=2.0, seed=3)
    assert replay(jobs, load=2.0, seed=3) != replay(jobs, load=2.0, seed=4)


def test_window_then_load_measures_the_load_over_the_window() -> None:
    jobs = trace()
    cut = replay(jobs, window_start_s=1000.0, window_s=400.0, load=2.5)  # recorded 12.5
    assert len(cut) == pytest.approx(80, abs=25)
    assert all(0 <= j.arrival < 400 for j in cut)


def test_a_higher_load_compresses_arrivals_and_keeps_relative_deadlines() -> None:
    jobs = trace(100, gap=40.0)  # 100 s jobs every 40 s on 8 GPUs: load 100 x 100 / (3960 x 8)
    fast = replay(jobs, load=1.0)
    recorded = 100 * 100 / (3960 * 8)
    assert [j.job_id for j in fast] == [j.job_id for j in jobs]
    assert [j.arrival for j in fast] == pytest.approx([j.arrival * recorded for j in jobs])
    assert [j.deadline - j.arrival for j in fast] == pytest.approx(
        [j.deadline - j.arrival for j in jobs]
    )
    assert offered_load(fast, toy_profiles(), GPUS, fast[-1].arrival) == pytest.approx(1.0)


def test_bad_windows_and_loads_fail_with_one_line() -> None:
    with pytest.raises(
        ValueError,
        match=r"workload.window_start_s / workload.window_s: no job of the trace arrives "
        r"\[5000, 5100\) s",
    ):
        replay(trace(100), window_start_s=5000.0, window_s=100.0)
    with pytest.raises(ValueError, match=r"workload\.window_s must be > 0"):
        ReplaySpec(window_s=0.0)
    with pytest.raises(ValueError, match=r"workload\.load must be > 0"):
        ReplaySpec(load=-1.0)
    with pytest.raises(ValueError, match=r"span 0 s; give workload\.window_s"):
        replay(trace(1), load=0.5)
