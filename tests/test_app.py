"""The hydra app: config composition, one run, the comparison, sweeps, trace replay and the
errors a user sees for unknown names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ptsim.app import check_overrides
from ptsim.paths import conf_root
from ptsim.run import COMPARISON_COLUMNS, run_config
from ptsim.schema import ConfigError
from ptsim.trace import load_trace

SMALL = ["workload=short", "workload.duration_s=300", "progress=false"]  # enough jobs in 5 min
SUMMARY_KEYS = {
    "policy", "jobs", "slo_violation_rate", "cost_gpu_hours", "cost_usd", "mean_jct_s",
    "p99_jct_s", "cold_starts", "warm_hits", "events", "sim_wall_s", "bank_assessments_mean",
    "bank_lookup_s_mean", "bank_saving_mean",
}  # fmt: skip


def cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        return compose("config", overrides=[*SMALL, *overrides])


def test_default_config_composes_with_every_group() -> None:
    c = cfg()
    assert "scheduler" not in c  # no scheduler = compare every policy
    assert c.cluster.nodes * c.cluster.gpus_per_node == 32
    assert c.profile.name == "a100" and c.bank.layout == "two_layer"
    assert c.workload.load == 0.5 and c.workload.trace is None
    assert cfg("scheduler=edf").scheduler.name == "edf"


def test_one_policy_writes_config_trace_tables_and_summary(tmp_path: Path) -> None:
    run_config(cfg("scheduler=edf"), tmp_path)
    for name in ("config.yaml", "trace.csv", "jobs.csv", "timeseries.csv", "summary.json"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS and summary["policy"] == "edf"
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    assert len(jobs) == summary["jobs"] == len(load_trace(tmp_path / "trace.csv"))
    assert summary["slo_violation_rate"] == pytest.approx(1 - jobs.met_deadline.mean())


def test_comparison_runs_every_registered_policy(tmp_path: Path) -> None:
    from ptsim.core.policy import POLICIES

    results = run_config(cfg(), tmp_path)
    assert [r.policy for r in results] == list(POLICIES.names())
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert list(table.policy) == list(POLICIES.names())
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    for name in POLICIES.names():
        assert (tmp_path / name / "summary.json").is_file()
        assert (tmp_path / name / "COMPLETE").is_file()
    marker = json.loads((tmp_path / "COMPLETE").read_text())
    assert marker["kind"] == "ptsim comparison"
    assert {"comparison.csv", "comparison.png", *POLICIES.names()} <= set(marker["outputs"])


def test_same_config_and_seed_give_identical_tables(tmp_path: Path) -> None:
    (a,) = run_config(cfg("scheduler=fifo", "seed=3"), tmp_path / "a")
    (b,) = run_config(cfg("scheduler=fifo", "seed=3"), tmp_path / "b")
    (c,) = run_config(cfg("scheduler=fifo", "seed=4"), tmp_path / "c")
    assert a.jobs.equals(b.jobs) and a.series.equals(b.series)
    assert (tmp_path / "a" / "trace.csv").read_bytes() == (
        tmp_path / "b" / "trace.csv"
    ).read_bytes()
    assert not a.jobs.equals(c.jobs)


def test_replaying_a_trace_file(tmp_path: Path) -> None:
    run_config(cfg("scheduler=edf", "seed=5"), tmp_path / "gen")
    trace = tmp_path / "gen" / "trace.csv"
    replay = ["scheduler=edf", "workload=replay", f"workload.trace={trace}", "progress=false"]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        (res,) = run_config(compose("config", overrides=replay), tmp_path / "replay")
        half = compose("config", overrides=[*replay, "workload.window_s=150"])
    assert (tmp_path / "replay" / "trace.csv").read_bytes() == trace.read_bytes()
    assert len(res.jobs) == len(load_trace(trace))
    (cut,) = run_config(half, tmp_path / "half")
    assert 0 < len(cut.jobs) < len(res.jobs)
    with pytest.raises(ValueError, match=r"replay a trace with `workload=replay"):
        run_config(cfg("scheduler=edf", f"workload.trace={trace}"), tmp_path / "no")
    assert not (tmp_path / "no").exists()


def test_unknown_names_fail_listing_what_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'scheduler.keepalive'; keys under scheduler: back"):
        run_config(cfg("scheduler=edf", "+scheduler.keepalive=3"), tmp_path)
    bad = ["workload.models=[gpt2-base,gpt5]", "workload.model_weights=[1,1]"]
    with pytest.raises(KeyError, match=r"unknown model 'gpt5'; known: gpt2-base"):
        run_config(cfg("scheduler=edf", *bad), tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written
    msg = check_overrides(["cluster.nodez=3"])
    assert msg is not None and "keys under cluster: gpus_per_node, nodes" in msg
    assert check_overrides(["cluster.nodes=3", "scheduler=edf", "scheduler.backfill=true"]) is None


def _ptsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from ptsim.app import main; sys.argv[0] = 'ptsim'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True
    )


def test_cli_sweep_writes_one_directory_per_point(tmp_path: Path) -> None:
    out = _ptsim(
        "-m", "scheduler=fifo,edf", "seed=0,1", *SMALL, f"hydra.sweep.dir={tmp_path}", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summaries = sorted(tmp_path.glob("*/summary.json"))
    assert len(summaries) == 4
    seen = {
        (json.loads(p.read_text())["policy"], json.loads(p.read_text())["seed"]) for p in summaries
    }
    assert seen == {("fifo", 0), ("fifo", 1), ("edf", 0), ("edf", 1)}


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    out = _ptsim("cluster.nodez=3", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "unknown config key 'cluster.nodez'" in out.stderr
    out = _ptsim(
        "scheduler=edf",
        "workload=replay",
        "workload.trace=/no/such.csv",
        f"hydra.run.dir={tmp_path}/r",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "no such file" in out.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_a_run_folder_holds_one_run(tmp_path: Path) -> None:
    from ptsim.runfolder import COMPLETE, RunFolderError, read_marker

    run_config(cfg("scheduler=edf"), tmp_path / "r")
    marker = read_marker(tmp_path / "r")
    assert marker is not None and marker["status"] == COMPLETE
    assert "jobs.csv" in marker["outputs"] and "summary.json" in marker["outputs"]
    before = (tmp_path / "r" / "jobs.csv").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a complete ptsim run"):
        run_config(cfg("scheduler=fifo", "seed=4"), tmp_path / "r")
    assert (tmp_path / "r" / "jobs.csv").read_bytes() == before  # nothing mixed in
    (res,) = run_config(cfg("scheduler=fifo", "seed=4", "overwrite=true"), tmp_path / "r")
    assert res.summary["policy"] == "fifo"
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["policy"] == "fifo"


def test_a_comparison_is_complete_only_when_every_policy_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ptsim.run
    from ptsim.runfolder import FAILED, read_marker

    real = ptsim.run.run_plan
    calls: list[str] = []

    def third_fails(plan: object, name: str, params: object, progress: bool = False) -> object:
        calls.append(name)
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        return real(plan, name, params, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(ptsim.run, "run_plan", third_fails)
    with pytest.raises(RuntimeError):
        run_config(cfg(), tmp_path)
    marker = read_marker(tmp_path)
    assert marker is not None and marker["status"] == FAILED
    assert marker["error"] == "out of memory"
    assert not (tmp_path / "comparison.csv").exists()
    done = sorted(p.parent.name for p in tmp_path.glob("*/COMPLETE"))
    assert done == calls[:2]


def test_an_interrupted_run_is_marked_and_reusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ptsim.run
    from ptsim.runfolder import COMPLETE, INTERRUPTED, read_marker

    real = ptsim.run.run_plan

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ptsim.run, "run_plan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg("scheduler=edf"), tmp_path / "r")
    assert read_marker(tmp_path / "r")["status"] == INTERRUPTED  # type: ignore[index]
    assert not (tmp_path / "r" / "summary.json").exists()
    monkeypatch.setattr(ptsim.run, "run_plan", real)
    run_config(cfg("scheduler=edf"), tmp_path / "r")  # an unfinished folder may be rerun
    assert read_marker(tmp_path / "r")["status"] == COMPLETE  # type: ignore[index]
    assert not (tmp_path / "r" / INTERRUPTED).exists()


def test_end_of_run_line_says_when_the_horizon_was_hit() -> None:
    from ptsim.app import horizon_line

    s = {"policy": "edf", "jobs": 40, "unfinished": 7, "horizon_s": 900.0, "horizon_hit": True}
    assert horizon_line(s) == (
        "edf: stopped at the horizon (900 s, sim.horizon_s) with 7 of 40 jobs unfinished"
    )
    assert horizon_line({**s, "horizon_hit": False}) is None


def test_a_multirun_folder_is_named_once_in_the_parent() -> None:
    """The parallel launcher's workers would resolve the default sweep dir (clock + pid) each
    on their own; the parent fixes it, and keeps one given on the command line."""
    from ptsim.app import _fixed_sweep_dir

    got = _fixed_sweep_dir(["-m", "seed=0,1"])
    extra = [a for a in got if a.startswith("hydra.sweep.dir=runs/multirun/")]
    assert len(extra) == 1 and "${" not in extra[0]
    assert _fixed_sweep_dir(["seed=0"]) == ["seed=0"]
    mine = ["-m", "seed=0,1", "hydra.sweep.dir=out/x"]
    assert _fixed_sweep_dir(mine) == mine


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bank.convergence=bogus", "bank.convergence = 'bogus': unknown convergence model"),
        ("bank.seeding=store bank.store=/no/such/store", "bank.store: /no/such/store: no such"),
        ("bank.seeding=store bank.store=FILE", "a file, not a bank store folder"),
    ],
)
def test_bank_errors_come_before_the_run_folder_is_touched(
    override: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad bank setting fails before the run folder is claimed: nothing is written, and a
    file the user keeps there is left as it was."""
    from ptsim.app import run_cli

    kept = tmp_path / "mine" / "trace.csv"
    kept.parent.mkdir()
    kept.write_text("mine\n")
    words = override.replace("FILE", str(kept)).split()
    rc = run_cli(["scheduler=edf", *SMALL, *words, f"hydra.run.dir={kept.parent}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and message in err, err
    assert sorted(p.name for p in kept.parent.iterdir()) == ["trace.csv"]
    assert kept.read_text() == "mine\n"


def test_run_folders_that_cannot_be_folders_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ptsim.app import run_cli

    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        (f"hydra.run.dir={afile}", "exists and is not a folder"),
        (f"hydra.run.dir={afile}/sub", f"{afile} is a file"),
        ("hydra.run.dir=", "hydra.run.dir is empty"),
    ]
    for arg, message in cases:
        assert run_cli(["scheduler=edf", *SMALL, arg]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert run_cli(["-m", "scheduler=edf", *SMALL, f"hydra.sweep.dir={afile}"]) == 2
    assert "hydra.sweep.dir" in capsys.readouterr().err
    assert run_cli(["scheduler=edf", "scheduler.name=prompttuner", *SMALL]) == 2
    assert "scheduler=NAME" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_sweep_checks_every_value_before_any_point_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ptsim.app import run_cli

    sweep = tmp_path / "sweep"
    args = ["-m", "scheduler=edf", "seed=0,1", *SMALL, f"hydra.sweep.dir={sweep}"]
    assert run_cli([*args, "workload.load=0.5,-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "workload.load = -1" in err, err
    assert not sweep.exists()  # no point ran
    # a knob of a swept scheduler group is checked against the group's first option
    assert check_overrides(["scheduler=prompttuner,infless", "scheduler.bank=true,false"]) is None
    from ptsim.app import sweep_error

    bad = ["scheduler=prompttuner,infless", "scheduler.bank=true,bogus"]
    assert "scheduler.bank = 'bogus'" in str(sweep_error(bad))


def test_replaying_a_run_folders_own_trace_into_it_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With overwrite=true a run would replace the trace it replays (its own trace.csv)."""
    from ptsim.app import run_cli

    run = tmp_path / "run"
    assert run_cli(["scheduler=edf", *SMALL, f"hydra.run.dir={run}"]) == 0
    before = (run / "trace.csv").read_bytes()
    capsys.readouterr()
    again = ["scheduler=edf", "workload=replay", f"workload.trace={run / 'trace.csv'}"]
    assert run_cli([*again, "progress=false", "overwrite=true", f"hydra.run.dir={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is one of the files this run writes" in err, err
    assert (run / "trace.csv").read_bytes() == before


def test_config_dir_and_name_that_do_not_exist_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ptsim.app import run_cli

    assert run_cli(["--config-dir", str(tmp_path / "nope"), "scheduler=edf"]) == 2
    assert capsys.readouterr().err.strip().endswith("nope: no such folder")
    assert run_cli(["--config-name", "nope", "scheduler=edf"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--config-name nope: no nope.yaml in" in err
