"""The experiment scripts (experiments/): every figure runs at a tiny size and leaves its tables
and PNG with the expected columns; a parallel sweep gives the serial one's tables; --plot-only
redraws from saved tables without running anything; missing policies fail with a clear message;
every experiment config also runs through the ptsim app."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))

import runner  # noqa: E402  (experiments/ is a folder of scripts, not a package)

PAPER = ("prompttuner", "infless", "elasticflow")
FIGURES = (
    "fig1_end_to_end",
    "fig2_ablation",
    "fig3_slo_tightness",
    "fig4_cold_start",
    "fig5_bank",
    "fig6_scale",
    "fig7_timelines",
)
TINY = [
    "--quick",
    "--jobs",
    "1",
    "--no-progress",
    "workload=short",  # enough jobs in 2 minutes
    "workload.duration_s=120",
]
"""Smaller than --quick: 2-minute windows (a handful of jobs per run), in this process."""


def script(name: str) -> ModuleType:
    return importlib.import_module(name)


def run_script(name: str, out: Path, *extra: str) -> None:
    assert script(name).main([*TINY, "--out", str(out), *extra]) == 0


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def columns(path: Path) -> set[str]:
    return set(pd.read_csv(path).columns)


CI = {"n"}


def ci_cols(*metrics: str) -> set[str]:
    return {f"{m}_{s}" for m in metrics for s in ("mean", "lo", "hi")}


POINT_COLS = {
    "figure",
    "variant",
    "policy",
    "seed",
    "overrides",
    "workload.load",
    "gpus",
    "slo_violation_rate",
    "cost_gpu_hours",
    "sim_wall_s",
}
EXPECTED: dict[str, dict[str, set[str]]] = {
    "fig1_end_to_end": {
        "points.csv": POINT_COLS,
        "fig1_end_to_end.csv": {"policy", "workload.load"}
        | CI
        | ci_cols("slo_violation_rate", "cost_gpu_hours"),
        "ratios.csv": {"metric", "ratio", "load", "measured", "lo", "hi", "paper", "pairs"},
        "reference.csv": {"target", "baseline", "metric", "paper", "source"},
        "jobs.csv": {"policy", "seed", "workload.load", "job_id", "model", "met_deadline"},
        "by_model.csv": {"policy", "model"} | CI | ci_cols("violation_rate"),
    },
    "fig2_ablation": {
        "points.csv": POINT_COLS | {"scheduler.bank"},
        "fig2_ablation.csv": {"variant", "workload.load"}
        | CI
        | ci_cols("slo_violation_rate", "cost_gpu_hours", "warm_hit_rate", "bank_saving_mean"),
        "deltas.csv": {"variant", "reference", "load", "pairs"}
        | {f"d_{c}" for c in ci_cols("slo_violation_rate", "cost_gpu_hours")},
        "compare.csv": {"variant", "reference"},
    },
    "fig3_slo_tightness": {
        "points.csv": POINT_COLS | {"deadline_scale", "workload.deadline_ratios"},
        "fig3_slo_tightness.csv": {"policy", "deadline_scale"}
        | CI
        | ci_cols("slo_violation_rate", "cost_gpu_hours"),
    },
    "fig4_cold_start": {
        "points.csv": POINT_COLS | {"profile.mechanics.cold_start_scale"},
        "fig4_cold_start.csv": {"policy", "profile.mechanics.cold_start_scale"}
        | CI
        | ci_cols("slo_violation_rate", "cost_gpu_hours", "warm_hit_rate"),
    },
    "fig5_bank": {
        "points.csv": POINT_COLS | {"bank.layout", "bank_saving_mean"},
        "jobs.csv": {
            "policy",
            "seed",
            "job_id",
            "task",
            "init_source_task",
            "similarity",
            "realised_saving",
            "expected_saving",
        },
        "index.csv": {
            "space",
            "entries",
            "seed",
            "layout",
            "assessments_mean",
            "lookup_s_mean",
            "lookup_ms_median",
            "quality",
        },
        "curve.csv": {"similarity", "expected_saving"},
        "pairs.csv": {"source", "target", "similarity", "expected_saving"},
        "fig5_bank.csv": {"part", "layout", "entries", "variant"},
    },
    "fig6_scale": {
        "points.csv": POINT_COLS | {"cluster.nodes", "decide_wall_s", "decisions"},
        "fig6_scale.csv": {"policy", "gpus"}
        | CI
        | ci_cols("slo_violation_rate", "cost_per_job_gpu_hours", "sim_wall_s", "decision_ms"),
    },
    "fig7_timelines": {
        "points.csv": POINT_COLS,
        "jobs.csv": {
            "policy",
            "seed",
            "job_id",
            "arrival_s",
            "first_start_s",
            "finish_s",
            "met_deadline",
        },
        "timeseries.csv": {"policy", "seed", "time_s", "free", "loading", "warm", "busy"},
        "fig7_timelines.csv": {
            "policy",
            "job_id",
            "lane",
            "arrival_s",
            "run_start_s",
            "run_end_s",
            "deadline_s",
            "outcome",
        },
    },
}


# ------------------------------------------------------------------------------ every figure


@pytest.mark.parametrize("name", FIGURES)
def test_figure_writes_its_tables_and_png(name: str, tmp_path: Path) -> None:
    run_script(name, tmp_path)
    assert is_png(tmp_path / f"{name}.png")
    for table, cols in EXPECTED[name].items():
        assert (tmp_path / table).is_file(), table
        missing = cols - columns(tmp_path / table)
        assert not missing, f"{name}/{table} lacks {sorted(missing)}"
    points = pd.read_csv(tmp_path / "points.csv")
    assert len(points) > 0 and (points.figure == name).all()
    meta = (tmp_path / "sweep.yaml").read_text()
    assert "sweep_wall_s" in meta and "quick: true" in meta


def test_fig1_runs_the_three_policies_at_three_loads(tmp_path: Path) -> None:
    run_script("fig1_end_to_end", tmp_path)
    points = pd.read_csv(tmp_path / "points.csv")
    assert sorted(points.policy.unique()) == sorted(PAPER)
    assert sorted(points["workload.load"].unique()) == [0.3, 0.5, 0.7]
    assert (points.gpus == 32).all()
    ratios = pd.read_csv(tmp_path / "ratios.csv")
    assert set(ratios.load.astype(str)) == {"0.3", "0.5", "0.7", "all"}
    assert set(ratios.paper) == {4.0, 7.9, 1.6, 4.5}  # copied from the config, not the script
    # the sensitivity panel: each baseline under both values of its adaptation knob
    sens = pd.read_csv(tmp_path / "sensitivity.csv")
    assert list(sens.variant) == [
        "prompttuner",
        "infless per_config",
        "infless per_model",
        "elasticflow dedicated",
        "elasticflow released",
    ]
    assert (sens["workload.load"] == 0.5).all()
    assert sens.cost_ratio.iloc[1:].notna().all()


def test_stand_in_policies_run_every_generic_figure(tmp_path: Path) -> None:
    """Today's smoke path: --policies fifo,edf works for a policy-grid figure."""
    run_script("fig4_cold_start", tmp_path, "--policies", "fifo,edf", "--seeds", "1")
    points = pd.read_csv(tmp_path / "points.csv")
    assert set(points.policy) == {"fifo", "edf"}
    assert is_png(tmp_path / "fig4_cold_start.png")


# ------------------------------------------------------------------------------ the runner


def small_points(tables: bool) -> list[runner.Point]:
    policies = list(PAPER)
    sweep = runner.load_sweep(
        "fig1_end_to_end",
        quick=True,
        seeds=2,
        policies=policies,
        overrides=["workload=short", "workload.duration_s=120", "workload.load=0.7"],
    )
    sweep.tables = tables
    return runner.grid_points(sweep)


def test_parallel_sweep_equals_serial() -> None:
    points = small_points(tables=True)
    serial = runner.run_points(points, jobs=1, progress=False)
    parallel = runner.run_points(points, jobs=2, progress=False)
    wall = list(runner.WALL_COLUMNS)
    pd.testing.assert_frame_equal(
        serial.points.drop(columns=wall), parallel.points.drop(columns=wall)
    )
    assert serial.jobs is not None and parallel.jobs is not None
    pd.testing.assert_frame_equal(serial.jobs, parallel.jobs)
    assert serial.series is not None and parallel.series is not None
    pd.testing.assert_frame_equal(serial.series, parallel.series)
    assert list(serial.points.seed) == [int(p.overrides[-1].split("=")[1]) for p in points]


def test_a_point_matches_the_ptsim_app(tmp_path: Path) -> None:
    from ptsim.run import run_config

    point = small_points(tables=False)[0]
    row = runner.run_point(point).rows[0]
    run_config(runner.compose(point.overrides), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key, val in summary.items():
        if key in runner.WALL_COLUMNS or not np.isscalar(val):
            continue
        if isinstance(val, float):
            assert row[key] == pytest.approx(val, nan_ok=True), key
        else:
            assert row[key] == val, key


def test_plot_only_redraws_without_running(tmp_path: Path, monkeypatch: Any) -> None:
    run_script("fig3_slo_tightness", tmp_path, "--policies", "fifo,edf", "--seeds", "1")
    png = tmp_path / "fig3_slo_tightness.png"
    points = tmp_path / "points.csv"
    before = points.stat().st_mtime_ns, points.read_bytes()
    png.unlink()

    def no_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--plot-only ran a simulation")

    monkeypatch.setattr(runner, "run_points", no_run)
    monkeypatch.setattr(runner, "run_point", no_run)
    assert script("fig3_slo_tightness").main(["--plot-only", "--out", str(tmp_path)]) == 0
    assert is_png(png)
    assert (points.stat().st_mtime_ns, points.read_bytes()) == before


def test_plot_only_without_tables_says_so(tmp_path: Path, capsys: Any) -> None:
    assert script("fig6_scale").main(["--plot-only", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "points.csv not found" in err and "without --plot-only" in err


def test_missing_policy_fails_with_its_name(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(runner.SweepError, match=r"'nosuch'.*not registered"):
        runner.load_sweep("fig1_end_to_end", policies=["nosuch"])
    code = script("fig1_end_to_end").main([*TINY, "--out", str(tmp_path), "--policies", "nosuch"])
    assert code == 2
    assert "policy 'nosuch' is not registered" in capsys.readouterr().err
    assert not (tmp_path / "points.csv").exists()


def test_sweep_spec_quick_seeds_policies_and_grid_overrides() -> None:
    full = runner.load_sweep("fig4_cold_start", policies=["fifo"])
    assert full.seeds == list(range(20)) and list(full.variants) == ["fifo"]
    assert full.grid["profile.mechanics.cold_start_scale"] == [0.25, 0.5, 1.0, 2.0, 4.0]
    quick = runner.load_sweep("fig4_cold_start", quick=True, seeds=3, policies=["fifo"])
    assert quick.seeds == [0, 1, 2]
    assert "workload.duration_s=1200" in quick.overrides
    pinned = runner.load_sweep(
        "fig4_cold_start", policies=["fifo"], overrides=["profile.mechanics.cold_start_scale=3"]
    )
    assert pinned.grid["profile.mechanics.cold_start_scale"] == [3]
    (point, *_) = runner.grid_points(pinned)
    assert point.overrides.count("profile.mechanics.cold_start_scale=3") == 1
    assert point.overrides[0] == "experiment=fig4_cold_start" and point.overrides[-1] == "seed=0"


def test_ci95_is_the_student_t_interval() -> None:
    x = [1.0, 2.0, 4.0, 7.0]
    mean, lo, hi = runner.ci95(x)
    want = stats.t.interval(0.95, 3, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(3.5) and (lo, hi) == pytest.approx(want)
    assert runner.ci95([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    m, lo1, hi1 = runner.ci95([5.0, 6.0, float("nan")])  # two values < MIN_SEEDS: no interval
    assert m == 5.5 and np.isnan(lo1) and np.isnan(hi1)
    assert all(np.isnan(v) for v in runner.ci95([]))


def test_aggregate_groups_in_order_with_counts() -> None:
    df = pd.DataFrame({"p": ["b", "b", "a", "a", "a"], "v": [1.0, 3.0, 2.0, 2.0, 2.0]})
    agg = runner.aggregate(df, ["p"], ["v"])
    assert list(agg.p) == ["b", "a"] and list(agg.n) == [2, 3]
    assert list(agg.v_mean) == [2.0, 2.0] and agg.v_lo.iloc[1] == 2.0
    assert np.isnan(agg.v_lo.iloc[0]) and agg.interval.iloc[0].startswith("none")


# ------------------------------------------------------------------------------ ptsim app


@pytest.mark.parametrize("name", FIGURES)
def test_experiment_config_runs_through_the_ptsim_app(name: str, tmp_path: Path) -> None:
    from ptsim.app import check_overrides
    from ptsim.run import run_config

    overrides = [f"experiment={name}", "scheduler=edf", "workload=short", "workload.duration_s=120"]
    assert check_overrides(overrides) is None
    cfg = runner.compose(overrides)
    assert "sweep" in cfg  # the runner's key, ignored by the app
    run_config(cfg, tmp_path)
    assert (tmp_path / "summary.json").is_file()


def test_script_runs_from_the_command_line_with_a_process_pool(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(EXPERIMENTS / "fig7_timelines.py"),
            "--quick",
            "--jobs",
            "2",
            "--policies",
            "fifo,edf",
            "--out",
            str(tmp_path),
            "workload=short",
            "workload.duration_s=120",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert is_png(tmp_path / "fig7_timelines.png")
    assert set(pd.read_csv(tmp_path / "jobs.csv").policy) == {"fifo", "edf"}
