"""The workload generator and the arrival shape: determinism, load calibration, burstiness,
value ranges, for the short-job workload (``WorkloadSpec.short()``) and the default one
(tests/test_trace_stats.py checks the default's statistics against real clusters')."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ptsim.core.profiles import ModelProfile, ProfileSet, ThroughputTable, UnknownName
from ptsim.trace import TraceError, WorkloadSpec, generate_workload
from ptsim.trace.arrival_shape import (
    ShapeSpec,
    read_shape,
    shape_from_arrivals,
    shape_stats,
    synthesize_shape,
    write_shape,
)
from ptsim.trace.generator import (
    DEFAULT_TASKS,
    ideal_run_time,
    mean_demand,
    mean_length,
    offered_load,
)

REPO = Path(__file__).resolve().parents[1]
SPEEDUP = (1.0, 1.8, 3.2, 5.6)


def toy_profiles() -> ProfileSet:
    """Three models; iterations/s = base x 16/batch x speedup(GPUs)."""
    batches, gpus = (16, 32, 64, 128), (1, 2, 4, 8)
    models = {}
    for name, base in (("gpt2-base", 8.0), ("gpt2-large", 3.0), ("vicuna-7b", 1.0)):
        ips = np.array([[base * 16 / b * s for s in SPEEDUP] for b in batches])
        table = ThroughputTable(batches, gpus, ips)
        models[name] = ModelProfile(name, 1e8, table, 10.0, 5.0, 0.5)
    return ProfileSet(models)


def test_same_seed_same_jobs_other_seed_other_jobs() -> None:
    cfg, prof = WorkloadSpec.short(), toy_profiles()
    a = generate_workload(cfg, prof, 32, np.random.default_rng(7))
    b = generate_workload(cfg, prof, 32, np.random.default_rng(7))
    c = generate_workload(cfg, prof, 32, np.random.default_rng(8))
    assert a == b and len(a) > 20
    assert a != c


def test_values_in_range() -> None:
    cfg, prof = WorkloadSpec.short(duration_s=3 * 3600), toy_profiles()
    jobs = generate_workload(cfg, prof, 512, np.random.default_rng(1))
    n = len(jobs)
    assert n > 5000
    assert [j.job_id for j in jobs] == [f"j{i:06d}" for i in range(n)]
    assert all(jobs[i].arrival <= jobs[i + 1].arrival for i in range(n - 1))
    assert all(0 <= j.arrival < cfg.duration_s for j in jobs)
    assert min(j.iterations for j in jobs) >= 200 and max(j.iterations for j in jobs) <= 1800
    assert {j.task for j in jobs} == set(DEFAULT_TASKS)
    assert all(j.batch_size == 16 * j.num_gpus for j in jobs)
    assert all((j.min_gpus, j.max_gpus) == (1, 8) for j in jobs)
    ratios = Counter(round((j.deadline - j.arrival) / ideal_run_time(prof, j), 9) for j in jobs)
    assert set(ratios) == {0.5, 0.75, 1.0, 1.25, 1.5}
    gpus = Counter(j.num_gpus for j in jobs)
    assert set(gpus) == {1, 2, 4, 8}
    single = gpus[1] / n  # 98% expected; binomial sd ~ 0.002 here
    assert abs(single - 0.98) < 0.01
    share = Counter(j.model for j in jobs)
    for m, w in zip(cfg.models, cfg.model_weights, strict=True):
        assert abs(share[m] / n - w) < 0.03


def test_offered_load_is_calibrated() -> None:
    prof = toy_profiles()
    for load in (0.3, 0.7):
        cfg = WorkloadSpec.short(duration_s=6 * 3600, load=load)
        jobs = generate_workload(cfg, prof, 512, np.random.default_rng(3))
        realised = offered_load(jobs, prof, 512, cfg.duration_s)
        assert realised == pytest.approx(load, rel=0.03)


def test_mean_demand_by_hand() -> None:
    prof = toy_profiles()
    cfg = WorkloadSpec.short(models=("gpt2-base",), model_weights=(1.0,), multi_gpu_fraction=0.0)
    # 1 GPU, batch 16: 8 it/s; mean iterations 1000 -> 125 GPU-seconds
    assert mean_demand(cfg, prof) == pytest.approx(125.0)
    cfg = WorkloadSpec.short(
        models=("gpt2-base",),
        model_weights=(1.0,),
        multi_gpu_fraction=1.0,
        multi_gpu_counts=(4,),
    )
    # 4 GPUs, batch 64: 8 x 16/64 x 3.2 = 6.4 it/s -> 1000 / 6.4 s on 4 GPUs
    assert mean_demand(cfg, prof) == pytest.approx(4 * 1000 / 6.4)


def test_arrivals_are_bursty() -> None:
    cfg = WorkloadSpec.short(duration_s=24 * 3600, shape_offset_min=0)
    jobs = generate_workload(cfg, toy_profiles(), 64, np.random.default_rng(5))
    counts = np.bincount([int(j.arrival // 60) for j in jobs], minlength=1440)
    cv, poisson_cv = counts.std() / counts.mean(), 1 / math.sqrt(counts.mean())
    assert counts.mean() > 3
    assert cv > 0.6 and cv > 2 * poisson_cv


def test_constant_shape_gives_poisson_counts(tmp_path: Path) -> None:
    flat = write_shape(np.ones(60), tmp_path / "flat.csv")
    cfg = WorkloadSpec.short(duration_s=3600, shape_path=str(flat))
    jobs = generate_workload(cfg, toy_profiles(), 256, np.random.default_rng(2))
    counts = np.bincount([int(j.arrival // 60) for j in jobs], minlength=60)
    assert 0.6 < counts.var() / counts.mean() < 1.5  # Poisson: dispersion index 1


def test_shipped_shape_is_the_default_synthetic_one() -> None:
    shipped = read_shape(REPO / "traces" / "arrival_shape.csv")
    np.testing.assert_allclose(shipped, synthesize_shape(), rtol=1e-12)
    st = shape_stats(shipped)
    assert st["minutes"] == 1440
    assert st["cv"] > 0.5 and st["peak_to_mean"] > 5
    assert st["count_cv"] > 2 * st["poisson_cv"]


def test_shape_parameters_change_the_series() -> None:
    base = synthesize_shape()
    assert base.mean() == pytest.approx(1.0)
    assert not np.allclose(base, synthesize_shape(ShapeSpec(seed=1)))
    calm = synthesize_shape(ShapeSpec(ar_sigma=0.0, burst_prob=0.0, diurnal_amplitude=0.0))
    np.testing.assert_allclose(calm, 1.0)


def test_window_defaults_to_the_busiest_one() -> None:
    prof, rng = toy_profiles(), np.random.default_rng
    sums = np.convolve(synthesize_shape(), np.ones(10), "valid")
    busiest, quietest = int(np.argmax(sums)), int(np.argmin(sums))
    default = generate_workload(WorkloadSpec.short(duration_s=600), prof, 64, rng(0))
    at = [
        generate_workload(WorkloadSpec.short(duration_s=600, shape_offset_min=o), prof, 64, rng(0))
        for o in (busiest, quietest)
    ]
    assert default == at[0]
    assert default != at[1]


def test_shape_from_arrivals_and_read_errors(tmp_path: Path) -> None:
    w = shape_from_arrivals([0.0, 10.0, 59.9, 60.0, 185.0])
    np.testing.assert_allclose(w, np.array([3, 1, 0, 1]) / 1.25)
    bad = tmp_path / "s.csv"
    bad.write_text("# c\nminute,intensity\n0,1.0\n2,1.0\n")
    with pytest.raises(TraceError, match=r"s\.csv row 2, column minute: expected minute 1, got 2"):
        read_shape(bad)


def test_spec_validation_and_unknown_model() -> None:
    assert WorkloadSpec(tasks=["a", "b"]).tasks == ("a", "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal length"):
        WorkloadSpec(model_weights=(1.0,))
    with pytest.raises(ValueError, match="multi_gpu_counts"):
        WorkloadSpec(multi_gpu_counts=(16,))
    with pytest.raises(UnknownName, match="known: gpt2-base, gpt2-large, vicuna-7b"):
        generate_workload(
            WorkloadSpec(models=("llama",), model_weights=(1.0,)),
            toy_profiles(),
            8,
            np.random.default_rng(0),
        )


def test_short_workload_is_the_earlier_default() -> None:
    """WorkloadSpec.short() draws exactly what the generator drew before issue 16: the same
    jobs as conf/workload/short.yaml, and the golden tables (tests/test_golden.py) pin it."""
    cfg = WorkloadSpec.short()
    assert (cfg.duration_s, cfg.load, cfg.arrivals, cfg.lengths) == (
        1200.0,
        0.5,
        "shape",
        "iterations",
    )
    jobs = generate_workload(cfg, toy_profiles(), 32, np.random.default_rng(0))
    assert all(200 <= j.iterations <= 1800 for j in jobs)
    # the config file gives the same spec, so the same jobs
    import yaml

    from ptsim.paths import conf_root
    from ptsim.specs import workload_from

    shipped = yaml.safe_load((conf_root() / "workload" / "short.yaml").read_text())
    assert workload_from(shipped) == cfg
    again = generate_workload(workload_from(shipped), toy_profiles(), 32, np.random.default_rng(0))
    assert again == jobs and len(jobs) > 10


def test_default_lengths_are_capped_lognormal_run_times() -> None:
    prof = toy_profiles()
    cfg = WorkloadSpec(duration_s=6 * 3600, load=0.7)
    assert (cfg.arrivals, cfg.lengths) == ("modulated", "lognormal")
    jobs = generate_workload(cfg, prof, 512, np.random.default_rng(4))
    ideal = np.array([ideal_run_time(prof, j) for j in jobs])
    assert len(jobs) > 5000
    # iterations = round(length / step): ideal run time within half a step of the draw
    assert ideal.max() <= cfg.length_cap_s + 1.0  # half the longest step here is 0.71 s
    assert np.median(ideal) == pytest.approx(cfg.length_median_s, rel=0.05)
    at_cap = np.mean(ideal > cfg.length_cap_s - 1.0)  # P(Z > ln(1800/690)) = 0.169
    assert at_cap == pytest.approx(0.169, abs=0.02)
    ratios = {round((j.deadline - j.arrival) / ideal_run_time(prof, j), 9) for j in jobs}
    assert ratios == {0.5, 0.75, 1.0, 1.25, 1.5}
    realised = offered_load(jobs, prof, 512, cfg.duration_s)
    assert realised == pytest.approx(0.7, rel=0.05)


def test_mean_length_closed_form() -> None:
    cfg = WorkloadSpec()
    z = np.random.default_rng(0).standard_normal(2_000_000)
    sample = np.minimum(cfg.length_cap_s, cfg.length_median_s * np.exp(cfg.length_sigma * z))
    assert mean_length(cfg) == pytest.approx(sample.mean(), rel=0.003)
    assert mean_length(WorkloadSpec(length_sigma=0.0)) == 690.0


def test_modulated_arrivals_differ_by_seed_and_are_bursty() -> None:
    prof = toy_profiles()
    cfg = WorkloadSpec(duration_s=6 * 3600)
    per_min = [
        np.bincount(
            [
                int(j.arrival // 60)
                for j in generate_workload(cfg, prof, 512, np.random.default_rng(s))
            ],
            minlength=360,
        )
        for s in (0, 1)
    ]
    assert not np.array_equal(per_min[0], per_min[1])
    for counts in per_min:  # ~35 jobs/min: Poisson alone would give a CV of ~0.17
        assert counts.std() / counts.mean() > 0.8


def test_fields_that_do_not_apply_are_refused() -> None:
    with pytest.raises(ValueError, match=r"lognormal: shape_path \("):
        WorkloadSpec(shape_path="x.csv")
    with pytest.raises(ValueError, match="lognormal: iterations_min, iterations_max"):
        WorkloadSpec(iterations_min=10, iterations_max=20)
    with pytest.raises(ValueError, match="iterations: length_median_s"):
        WorkloadSpec.short(length_median_s=60.0)
    with pytest.raises(ValueError, match="iterations: rate_sigma"):
        WorkloadSpec.short(rate_sigma=0.5)
    with pytest.raises(ValueError, match="arrivals must be one of modulated, shape"):
        WorkloadSpec(arrivals="poisson")


def test_a_workload_too_large_to_hold_is_refused_before_drawing() -> None:
    cfg = WorkloadSpec(load=100.0, duration_s=1e7)
    with pytest.raises(ValueError) as e:
        generate_workload(cfg, toy_profiles(), 262144, np.random.default_rng(0))
    what = str(e.value)
    assert what.startswith("about 2.") and what.endswith(
        "e+11 jobs would arrive (load 100 on 262144 GPUs over 1e+07 s); at most 10,000,000 are "
        "generated"
    )


def test_read_shape_skips_a_byte_order_mark(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    write_shape(synthesize_shape(ShapeSpec(minutes=30)), p)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    np.testing.assert_array_equal(read_shape(bom), read_shape(p))
    (tmp_path / "adir.csv").mkdir()
    with pytest.raises(TraceError, match=r"adir\.csv: is a folder, not a file$"):
        read_shape(tmp_path / "adir.csv")
