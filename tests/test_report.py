"""Reports and plots over saved runs (ptsim.report, ptsim.plots) and the summary metrics they
rest on: the tidy table over run folders, intervals (Wilson, bootstrap, none below MIN_SEEDS),
per-job warm-hit counting, JCT statistics that do not reward rejection, run plots from the
saved tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ptsim import report
from ptsim.paths import conf_root
from ptsim.plots import plot_run
from ptsim.run import run_config, simulate_config


def cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        return compose("config", overrides=["progress=false", "workload=short", *overrides])


def fake_run(root: Path, overrides: list[str], **summary: object) -> Path:
    """A run folder as hydra and ptsim leave it: summary.json and .hydra/overrides.yaml."""
    root.mkdir(parents=True)
    (root / ".hydra").mkdir()
    (root / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    base = {
        "policy": "edf",
        "jobs": 10,
        "slo_violations": 2,
        "slo_violation_rate": 0.2,
        "cost_gpu_hours": 1.0,
        "mean_jct_s": 100.0,
        "warm_hit_rate": 0.5,
    }
    base.update(summary)
    (root / "summary.json").write_text(json.dumps(base))
    return root


# ------------------------------------------------------------------------------ tidy table


def test_report_is_one_tidy_row_per_run_with_overrides_as_columns(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    k = 0
    for load in (0.3, 0.7):
        for seed in range(3):
            fake_run(
                sweep / str(k),
                ["scheduler=edf", f"workload.load={load}", f"seed={seed}"],
                policy="edf",
                label="edf",
                seed=seed,
                slo_violations=seed,
                slo_violation_rate=seed / 10,
                cost_gpu_hours=1.0 + seed + load,
            )
            k += 1
    table = report.collect([sweep])
    assert len(table) == 6
    assert list(table.columns[:4]) == list(report.ID_COLUMNS)
    assert list(table["workload.load"]) == [0.3, 0.3, 0.3, 0.7, 0.7, 0.7]
    assert "cost_gpu_hours" in table and "seed" not in table.columns[4:]
    assert report.group_columns(table) == ["label", "workload.load"]

    files = report.write_report([sweep], tmp_path / "out")
    agg = pd.read_csv(files["aggregate"])
    assert list(agg["workload.load"]) == [0.3, 0.7] and list(agg.n) == [3, 3]
    low = agg.iloc[0]
    assert low.cost_gpu_hours_mean == pytest.approx(2.3)
    # violations 0+1+2 of 30 jobs pooled: the Wilson interval of 3/30
    assert low.slo_violation_rate_mean == pytest.approx(0.1)
    assert (low.slo_violation_rate_lo, low.slo_violation_rate_hi) == pytest.approx(
        wilson_by_hand(3, 30)
    )
    assert files["figure"].read_bytes()[:4] == b"\x89PNG"


def test_report_labels_keep_variants_apart(tmp_path: Path) -> None:
    fake_run(tmp_path / "a", ["scheduler=prompttuner"], policy="prompttuner", label="pt_m02")
    fake_run(tmp_path / "b", ["scheduler=prompttuner"], policy="prompttuner", label="prompttuner")
    agg = report.aggregate(
        t := report.collect([tmp_path]), report.group_columns(t), ["cost_gpu_hours"]
    )
    assert sorted(agg.label) == ["prompttuner", "pt_m02"]


def test_report_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(report.ReportError, match="no run folder"):
        report.collect([tmp_path])
    assert report.main([str(tmp_path / "missing")]) == 2


# ------------------------------------------------------------------------------ intervals


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(0, 40), (40, 40), (3, 30), (1, 1000)])
def test_wilson_interval_is_the_score_interval_inside_0_1(k: int, n: int) -> None:
    lo, hi = report.wilson(k, n)
    assert (lo, hi) == pytest.approx(wilson_by_hand(k, n))
    assert 0.0 <= lo <= k / n <= hi <= 1.0 and hi > lo


def test_rates_near_0_get_intervals_inside_0_1() -> None:
    df = pd.DataFrame(
        {
            "jobs": [20, 20, 20],
            "slo_violations": [0, 0, 1],
            "slo_violation_rate": [0.0, 0.0, 0.05],
            "utilisation": [0.99, 1.0, 0.98],
            "cost": [1.0, 2.0, 6.0],
        }
    )
    agg = report.aggregate(df, [], ["slo_violation_rate", "utilisation", "cost"]).iloc[0]
    assert 0.0 <= agg.slo_violation_rate_lo < agg.slo_violation_rate_hi <= 1.0
    assert 0.98 <= agg.utilisation_lo <= agg.utilisation_hi <= 1.0  # bootstrap: inside the values
    assert agg.cost_lo < 0.0  # a Student-t interval may leave the positives; rates may not


def test_too_few_seeds_give_no_interval_and_say_so() -> None:
    df = pd.DataFrame({"p": ["a", "a"], "jobs": [10, 10], "slo_violations": [1, 2], "x": [1, 2]})
    df["slo_violation_rate"] = df.slo_violations / df.jobs
    agg = report.aggregate(df, ["p"], ["x", "slo_violation_rate"]).iloc[0]
    assert agg.n == 2 and agg.interval.startswith("none")
    assert math.isnan(agg.x_lo) and math.isnan(agg.slo_violation_rate_hi)
    assert agg.slo_violation_rate_mean == pytest.approx(0.15)
    assert "no interval" in report.headline_text(report.aggregate(df, ["p"], ["x"]), ["p"])


# ------------------------------------------------------------------------------ metrics


def test_warm_hits_are_counted_per_gpu_a_job_gets() -> None:
    (res,) = simulate_config(cfg("scheduler=prompttuner", "workload.duration_s=600"))
    s, jobs = res.summary, res.jobs
    assert s["prewarms"] > 0  # the case the old rate got wrong
    # every model load is for a job or a pre-warm; a pre-warm a job adopts is a hit only
    assert s["cold_starts"] + s["reloads"] == s["job_cold_starts"] + s["prewarms"]
    assert s["warm_hits"] == jobs.warm_hits.sum()
    assert s["job_cold_starts"] == jobs.cold_starts.sum()
    assert s["warm_hit_rate"] == pytest.approx(
        jobs.warm_hits.sum() / (jobs.warm_hits.sum() + jobs.cold_starts.sum())
    )


def test_jct_statistics_count_rejected_jobs_at_the_end_of_the_run() -> None:
    (res,) = simulate_config(cfg("scheduler=elasticflow", "workload.duration_s=600"))
    s, jobs = res.summary, res.jobs
    assert s["rejected"] > 0 and s["jct_censored"] == s["rejected"] + s["unfinished"]
    jct = np.where(jobs.status == "done", jobs.jct_s, s["sim_end_s"] - jobs.arrival_s)
    assert s["mean_jct_s"] == pytest.approx(jct.mean())
    assert s["p99_jct_s"] == pytest.approx(np.percentile(jct, 99))
    assert s["mean_jct_s"] > jobs.jct_s.dropna().mean()  # rejecting does not look fast


# ------------------------------------------------------------------------------ plots


def test_plot_draws_a_comparison_run_from_its_tables(tmp_path: Path) -> None:
    run_config(cfg("workload.duration_s=120"), tmp_path / "run")
    files = plot_run(tmp_path / "run", tmp_path / "plots")
    assert [f.name for f in files] == ["timeline.png", "gantt.png", "jct_cdf.png"]
    for f in files:
        assert f.read_bytes()[:4] == b"\x89PNG"
    # a one-policy folder works too (the comparison's subfolder)
    assert len(plot_run(tmp_path / "run" / "edf", tmp_path / "one")) == 3


# ------------------------------------------------------------------------------ sweeps


def _sweep(out: Path, launcher: str) -> pd.DataFrame:
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-c",
        "from ptsim.app import main; main()",
        "-m",
        f"hydra/launcher={launcher}",
        "scheduler=edf,prompttuner",
        "seed=0,1",
        "workload=short",
        "workload.duration_s=90",
        "progress=false",
        f"hydra.sweep.dir={out}",
    ]
    if launcher == "joblib":
        cmd.append("hydra.launcher.n_jobs=2")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # the multirun callback wrote the sweep's report and printed its headline
    assert (out / "report.csv").is_file() and (out / "report_agg.csv").is_file()
    assert "slo_violation_rate" in done.stdout
    return report.collect([out])


def test_parallel_sweep_gives_the_serial_sweeps_tables(tmp_path: Path) -> None:
    serial = _sweep(tmp_path / "serial", "basic")
    parallel = _sweep(tmp_path / "joblib", "joblib")
    assert len(serial) == 4 and set(serial.label) == {"edf", "prompttuner"}
    assert list(serial["workload.duration_s"]) == [90] * 4  # overrides as columns
    drop = ["run_dir", "sim_wall_s", "decide_wall_s"]
    pd.testing.assert_frame_equal(serial.drop(columns=drop), parallel.drop(columns=drop))
    for run in ("0", "3"):
        a = pd.read_csv(tmp_path / "serial" / run / "jobs.csv")
        b = pd.read_csv(tmp_path / "joblib" / run / "jobs.csv")
        pd.testing.assert_frame_equal(a, b)


def test_report_and_plot_are_subcommands_of_ptsim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ptsim import app

    run_config(cfg("scheduler=fifo", "workload.duration_s=90"), tmp_path / "run")
    assert app.run_cli(["report", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "report_agg.csv").is_file()
    assert "fifo" in capsys.readouterr().out
    assert app.run_cli(["plot", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "gantt.png").is_file()
    assert app.run_cli(["plot", str(tmp_path / "nothing")]) == 2
    assert "ptsim plot:" in capsys.readouterr().err


def test_a_scheduler_config_of_ones_own_is_labelled_by_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "experiments"))
    import runner

    (tmp_path / "scheduler").mkdir()
    own = (conf_root() / "scheduler" / "prompttuner.yaml").read_text()
    (tmp_path / "scheduler" / "pt_margin02.yaml").write_text(
        own.replace("safety_margin: 0.1 ", "safety_margin: 0.2 ")
    )
    point = runner.Point(
        ("workload=short", "workload.duration_s=90", "scheduler=pt_margin02", "seed=0"),
        config_dir=str(tmp_path),
    )
    (row,) = runner.run_point(point).rows
    assert row["label"] == "pt_margin02" and row["policy"] == "prompttuner"
    own_cfg = runner.compose(["scheduler=pt_margin02"], str(tmp_path))
    assert own_cfg.scheduler.safety_margin == 0.2 and "hydra" not in own_cfg
    # the comparison labels each policy by its name
    results = simulate_config(cfg("workload.duration_s=90"))
    assert len(results) > 1
    assert [r.summary["label"] for r in results] == [r.policy for r in results]


def test_gantt_splits_waiting_into_queueing_cold_start_and_pause() -> None:
    from ptsim.plots import gantt_rows

    (res,) = simulate_config(cfg("scheduler=prompttuner", "workload.duration_s=600"))
    jobs = res.jobs
    started = jobs[jobs.first_start_s.notna()]
    assert (started.first_gpu_s >= started.arrival_s).all()
    assert (started.first_ready_s >= started.first_gpu_s).all()
    assert (started.first_start_s >= started.first_ready_s).all()
    # a GPU already warm is ready when handed over: no cold start drawn
    warm = started[(started.cold_starts == 0) & (started.warm_hits > 0)]
    cold = started[(started.cold_starts > 0) & (started.warm_hits == 0)]
    assert len(cold) and (cold.first_ready_s > cold.first_gpu_s).all()
    assert len(warm) and (warm.first_ready_s - warm.first_gpu_s).min() == 0.0
    # the pause holds the bank lookup
    assert ((started.first_start_s - started.first_ready_s) >= started.bank_lookup_s).all()
    rows = gantt_rows(jobs, float(res.summary["sim_end_s"]))
    assert list(rows.lane) == list(range(len(jobs)))
    assert set(rows.outcome) <= {"met", "late", "unfinished", "rejected"}
