"""The default workload has the statistics of real 6-hour windows of an LLM development
cluster (issue 16, DESIGN.md section 5; docs/traces.md section 2): at load 1.0 over 6 h on 32
GPUs, with the shipped a100 profiles. A deterministic check of the generator over fixed seeds
(benchmarks/workload_bench.py prints the same statistics for any number of seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from ptsim.profiles_io import load_profiles
from ptsim.trace.generator import WorkloadSpec, generate_workload, workload_stats

SEEDS = range(10)
CV, PEAK, ONE_GPU, MEDIAN_S = (1.1, 1.5), (7.0, 15.0), (0.97, 0.99), (516.0, 918.0)


@pytest.fixture(scope="module")
def stats() -> dict[str, np.ndarray]:
    profiles = load_profiles("a100")
    cfg = WorkloadSpec(duration_s=6 * 3600.0, load=1.0)
    rows = [
        workload_stats(
            generate_workload(cfg, profiles, 32, np.random.default_rng(s)), profiles, 32, 21600.0
        )
        for s in SEEDS
    ]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def inside(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return (x >= bounds[0]) & (x <= bounds[1])


def test_burstiness_matches_real_windows(stats: dict[str, np.ndarray]) -> None:
    cv, peak = stats["count_cv"], stats["peak_to_mean"]
    assert CV[0] <= cv.mean() <= CV[1]
    assert PEAK[0] <= peak.mean() <= PEAK[1]
    # real windows spread over these ranges too; most seeds land inside both
    assert np.mean(inside(cv, CV) & inside(peak, PEAK)) >= 0.6
    assert np.all(cv > 1.0) and np.all(peak > 5.0)  # far from Poisson (CV ~0.7 at 2 jobs/min)


def test_gpu_counts_and_lengths_match_real_windows(stats: dict[str, np.ndarray]) -> None:
    assert ONE_GPU[0] <= stats["one_gpu_share"].mean() <= ONE_GPU[1]
    assert np.mean(inside(stats["one_gpu_share"], ONE_GPU)) >= 0.8  # binomial sd ~0.005
    assert np.all(inside(stats["median_ideal_s"], MEDIAN_S))
    assert np.all(stats["p90_ideal_s"] <= 1800.0 + 1.0)  # the cap (+ half a step)


def test_load_is_calibrated_on_average(stats: dict[str, np.ndarray]) -> None:
    assert stats["offered_load"].mean() == pytest.approx(1.0, abs=0.05)
    assert np.all(np.abs(stats["offered_load"] - 1.0) < 0.25)
