"""The ``ptexec`` command: profile, run with a job file, job-file and trace loading, and one-line
errors for bad input. CPU, tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from ptexec.cli import main  # noqa: E402
from ptexec.jobs import JobFileError, load_jobs, load_trace_jobs  # noqa: E402
from ptexec.models import ModelNotFound  # noqa: E402
from ptexec.run import EXEC_JOB_COLUMNS  # noqa: E402
from ptsim.core.types import JobSpec  # noqa: E402
from ptsim.metrics import JOB_COLUMNS  # noqa: E402
from ptsim.profiles_io import load_profiles  # noqa: E402
from ptsim.trace import write_trace  # noqa: E402

pytestmark = pytest.mark.exec
torch.set_num_threads(1)

JOBS = [
    {
        "job_id": "x1",
        "arrival_s": 0.0,
        "model": "tiny-gpt2",
        "task": "synthetic:A",
        "slo_s": 60,
        "batch_size": 32,
        "target_accuracy": 0.8,
        "max_steps": 150,
        "eval_every": 5,
    },
    {
        "job_id": "x2",
        "arrival_s": 0.2,
        "model": "tiny-gpt2",
        "task": "synthetic:A2~A@0.75",
        "slo_s": 60,
        "batch_size": 32,
        "target_accuracy": 0.8,
        "max_steps": 150,
        "eval_every": 5,
        "num_gpus": 2,
    },
]


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("p") / "tiny"
    args = ["profile", "--out", str(d), "--quick", "--no-convergence", "--batches", "32"]
    assert main([*args, "--as", "tiny-gpt2=tiny-gpt2", "--quiet"]) == 0
    return d


def test_profile_writes_a_directory_ptsim_loads(profile_dir: Path) -> None:
    ps = load_profiles(str(profile_dir))
    assert ps.model("tiny-gpt2").throughput.gpu_counts == (1, 2)
    readme = (profile_dir / "README.md").read_text()
    assert "measured by ptexec profile" in readme and "torch" in readme
    assert (profile_dir / "mechanics.json").is_file()


def test_profile_measures_what_ptsim_charges(profile_dir: Path) -> None:
    m = load_profiles(str(profile_dir)).model("tiny-gpt2")
    assert m.heldout_eval_s > 0 and m.checkpoint_s > 0 and m.eval_s > 0 and m.cold_start_s > 0
    # the full evaluation after a screen near the target: more examples than the screen
    assert m.full_eval_s > 0
    import pandas as pd

    loads = pd.read_csv(profile_dir / "loads.csv")
    assert {"heldout_eval", "full_eval"} <= set(loads.what)
    mech = json.loads((profile_dir / "mechanics.json").read_text())
    assert mech["handover_s"] > 0 and mech["reconfig_s"] > 0
    assert mech["per_model"]["tiny-gpt2"]["worker_boot_s"] > 0
    readme = (profile_dir / "README.md").read_text()
    assert "| command | `ptexec profile --out" in readme and "heldout_eval_s" in readme


def test_validate_reports_every_column(profile_dir: Path, tmp_path: Path) -> None:
    from ptexec.validate import COLUMNS, MECHANISMS

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in JOBS) + "\n")
    out = tmp_path / "val"
    args = ["validate", "--jobs", str(jobs), "--out", str(out), "--profile", str(profile_dir)]
    assert main([*args, "--quiet", "scheduler=edf"]) == 0
    import pandas as pd

    t = pd.read_csv(out / "validate.csv")
    assert list(t.columns) == list(COLUMNS) and sorted(t.job_id) == ["x1", "x2"]
    assert (t.steps == pd.read_csv(out / "ptsim" / "jobs.csv").iterations_needed).all()
    # by definition the residuals split the JCT difference (the queue's is what the others leave)
    parts = t[[f"residual_{m}_s" for m in MECHANISMS]].sum(axis=1)
    assert ((parts - (t.exec_jct_s - t.sim_jct_s)).abs() < 1e-6).all()
    assert ((t.sim_jct_s - t.exec_jct_s) / t.exec_jct_s - t.jct_error).abs().max() < 1e-9
    # each row is read off the two runs' own per-job tables
    ex = pd.read_csv(out / "executor" / "jobs.csv").set_index("job_id")
    sim = pd.read_csv(out / "ptsim" / "jobs.csv").set_index("job_id")
    row = t.set_index("job_id")
    for col, side, src in (
        ("exec_jct_s", ex, "jct_s"),
        ("sim_jct_s", sim, "jct_s"),
        ("exec_start_s", ex, "first_start_s"),
        ("sim_start_s", sim, "first_start_s"),
        ("exec_cold_starts", ex, "cold_starts"),
        ("sim_cold_starts", sim, "cold_starts"),
        ("exec_gpu_seconds", ex, "gpu_seconds"),
        ("sim_gpu_seconds", sim, "gpu_seconds"),
    ):
        assert (row[col] - side.loc[row.index, src]).abs().max() < 1e-9, col
    assert (row.exec_jct_s > 0).all() and (row.sim_jct_s > 0).all()
    # no bank under edf: neither side charges a lookup, so that part of the difference is 0
    assert (t.residual_lookup_s == 0).all()
    summary = json.loads((out / "validate.json").read_text())
    assert summary["policy"] == "edf" and summary["jobs"] == 2
    assert set(summary["met"]) == {"median_abs_jct_error", "max_abs_jct_error", "same_outcome"}


def test_run_with_a_job_file_end_to_end(
    profile_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in JOBS) + "\n")
    out = tmp_path / "run"
    args = ["run", "--jobs", str(jobs), "--out", str(out), "--profile", str(profile_dir)]
    args += ["--workers", "2"]  # the default would be one per 2 cores
    assert main([*args, "--quiet", "scheduler=edf", "tuning.lr=0.01"]) == 0
    printed = capsys.readouterr().out
    assert "edf: 2 jobs" in printed and str(out) in printed
    import pandas as pd

    t = pd.read_csv(out / "jobs.csv")
    assert list(t.columns) == [*JOB_COLUMNS, *EXEC_JOB_COLUMNS]
    assert (t.status == "done").all()
    assert t.set_index("job_id").loc["x2", "num_gpus"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "edf" and summary["jobs"] == 2 and summary["gpus"] == 2
    for name in ("config.yaml", "jobs.jsonl", "timeseries.csv", "executor.json"):
        assert (out / name).is_file()
    facts = json.loads((out / "executor.json").read_text())
    assert facts["threads_per_worker"] == 1 and facts["workers"] == 2
    assert facts["decision_latency_ms"]["decisions"] > 0
    assert (out / "prompts" / "x1" / "adapter_config.json").is_file()
    assert [j.job_id for j in load_jobs(out / "jobs.jsonl")] == ["x1", "x2"]  # reads back
    assert (out / "curves" / "x2.csv").is_file()
    marker = json.loads((out / "COMPLETE").read_text())
    assert marker["kind"] == "ptexec run" and "summary.json" in marker["outputs"]
    # the run refuses to overwrite a finished run, in one line
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a complete ptexec run" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (
            "job_id,arrival_s,model,task,slo_s,batch_size,target_accuracy,max_steps\n"
            "a,0,tiny-gpt2,synthetic:A,10,32,0.9,100\n"
            "b,1,tiny-gpt2,synthetic:A,10,lots,0.9,100\n",
            "row 2, column batch_size",
        ),
        (
            "job_id,arrival_s,model,task,slo_s,batch_size,target_accuracy\n"
            "a,0,tiny-gpt2,synthetic:A,10,32,0.9\n",
            "column max_steps: missing column",
        ),
        (
            "job_id,arrival_s,model,task,deadline_s,batch_size,target_accuracy,max_steps\n"
            "a,5,tiny-gpt2,synthetic:A,2,32,0.9,100\n",
            "row 1, column deadline_s",
        ),
        (
            "job_id,arrival_s,model,task,slo_s,batch_size,target_accuracy,max_steps,colour\n"
            "a,0,tiny-gpt2,synthetic:A,10,32,0.9,100,red\n",
            "column 'colour': unknown column",
        ),
        (
            "job_id,arrival_s,model,task,slo_s,batch_size,target_accuracy,max_steps\n"
            "a,0,no-such-model,synthetic:A,10,32,0.9,100\n",
            "row 1, column model",
        ),
        (
            "job_id,arrival_s,model,task,slo_s,batch_size,target_accuracy,max_steps\n"
            "a,0,tiny-gpt2,nonsense-task,10,32,0.9,100\n",
            "nonsense-task",
        ),
        (
            "job_id,arrival_s,model,task,slo_s,batch_size,target_accuracy,max_steps,lr\n"
            "a,0,tiny-gpt2,synthetic:A,10,32,0.9,100,-1\n",
            "row 1: lr -1.0: must be > 0",
        ),
    ],
)
def test_bad_job_file_is_one_line_naming_file_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, where: str
) -> None:
    f = tmp_path / "jobs.csv"
    f.write_text(content)
    out = tmp_path / "run"
    assert main(["run", "--jobs", str(f), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ptexec: ") and "\n" not in err
    assert where in err
    if "nonsense" not in where:
        assert str(f) in err
    assert not out.exists()  # nothing written


def test_unknown_config_key_and_policy_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad, says in (
        ("colour=red", "colour"),
        ("scheduler=nope", "nope"),
        ("bank.convergence=nope", "bank.convergence"),
    ):
        assert main(["run", "--out", str(tmp_path / "r"), "--quiet", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("ptexec: ") and "\n" not in err and says in err


def test_job_file_defaults_and_missing_model_message(tmp_path: Path) -> None:
    f = tmp_path / "j.csv"
    f.write_text(
        "job_id,arrival_s,model,task,slo_s,batch_size,target_loss,max_steps,lr\n"
        "b,2,tiny-gpt2,synthetic:B,30,16,0.3,80,0.05\n"
        "a,1,tiny-gpt2,synthetic:A,30,16,0.3,80,\n"
    )
    jobs = load_jobs(f, pool_size=4)
    assert [j.job_id for j in jobs] == ["a", "b"]  # sorted by arrival
    a, b = jobs
    assert a.spec.deadline == 31.0 and a.spec.max_gpus == 4 and a.spec.iterations == 80
    assert a.tuning.target_loss == 0.3 and a.tuning.target_accuracy is None
    assert b.tuning.lr == 0.05 and a.tuning.lr == 0.01
    f.write_text(
        "job_id,arrival_s,model,task,slo_s,batch_size,target_loss,max_steps\n"
        "a,1,minilm-missing-dir/,synthetic:A,30,16,0.3,80\n"
    )
    with pytest.raises(ModelNotFound, match="row 1, column model"):
        load_jobs(f)
    f.write_text("job_id,arrival_s\n")
    with pytest.raises(JobFileError, match="no jobs"):
        load_jobs(f)


def test_trace_with_task_map(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    write_trace(
        [
            JobSpec("t1", 0.0, "gpt2-base", "sst2", 100.0, 16, 900, 1, 1, 8),
            JobSpec("t2", 5.0, "gpt2-large", "rte", 50.0, 16, 40, 2, 1, 8),
        ],
        trace,
    )
    m = {
        "models": {"*": "tiny-gpt2"},
        "tasks": {"sst2": "synthetic:S", "*": "synthetic:{task}"},
        "target_accuracy": 0.85,
        "max_steps": 200,
    }
    jobs = load_trace_jobs(trace, m)
    t1, t2 = jobs
    assert t1.spec.model == "tiny-gpt2" and t1.task == "synthetic:S" and t2.task == "synthetic:rte"
    assert t1.spec.iterations == 200 and t2.spec.iterations == 40  # capped at the budget
    assert t2.spec.num_gpus == 2 and t2.spec.deadline == 50.0
    assert t1.tuning.target_accuracy == 0.85 and t1.tuning.max_steps == 200
    with pytest.raises(JobFileError, match="no entry for trace task"):
        load_trace_jobs(trace, {"models": {"*": "tiny-gpt2"}, "tasks": {"sst2": "synthetic:S"}})


def test_a_job_that_misses_its_target_misses_its_slo() -> None:
    import pandas as pd

    from ptexec.run import slo_met

    table = pd.DataFrame(
        {
            "met_deadline": [True, True, False, False],
            "reached_target": [True, False, True, None],
        }
    )
    assert list(slo_met(table)) == [True, False, False, False]


def test_cpu_layout_and_a_missing_job_file_before_any_import(tmp_path: Path) -> None:
    from ptexec.run import cpu_layout

    assert cpu_layout(1) == (1, 1) and cpu_layout(2) == (1, 1) and cpu_layout(16) == (8, 1)
    code = (
        "import sys; from ptexec.cli import main; rc = main(['run', '--jobs', 'nope.jsonl']); "
        "print(rc, sorted(m for m in ('torch', 'pandas', 'hydra') if m in sys.modules))"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == "2 []"
    assert "--jobs nope.jsonl: no such file" in out.stderr


def test_after_column_reads_and_round_trips(tmp_path: Path) -> None:
    from ptexec.jobs import JobFileError, write_jobs

    rows = [
        {**JOBS[0], "job_id": "p"},
        {**JOBS[0], "job_id": "q", "after": ["p"], "arrival_s": 0},
    ]
    f = tmp_path / "j.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    jobs = load_jobs(f)
    assert [j.after for j in jobs] == [(), ("p",)]
    assert [j.after for j in load_jobs(write_jobs(jobs, tmp_path / "back.jsonl"))] == [(), ("p",)]
    rows[1]["after"] = ["zz"]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(JobFileError, match="line 2, column after: 'zz' is not a job"):
        load_jobs(f)


def test_check_refuses_what_the_run_would_refuse_before_any_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --check`` fails where the run would (a device that is not one, a bad profile, a
    folder that holds a complete run or is a file), with one line, and the run itself fails
    the same way before it makes its folder; ``--resume`` needs ``--out``."""
    import shutil

    from ptsim.paths import profiles_root
    from ptsim.runfolder import claim

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in JOBS) + "\n")
    bad = tmp_path / "bad_profile"
    shutil.copytree(profiles_root() / "a100", bad)
    models = bad / "models.csv"
    models.write_text(models.read_text().replace(",0.282673,", ",-1,", 1))
    done = tmp_path / "done"
    with claim(done, "ptexec run") as rf:
        rf.start()
        rf.complete([])
    afile = tmp_path / "afile"
    afile.write_text("")
    base = ["run", "--jobs", str(jobs), "--quiet"]
    cases = [
        (["--out", str(tmp_path / "o1"), "devices=[tpu]"], "devices[0] = 'tpu': expected cpu"),
        (["--out", str(tmp_path / "o2"), "--profile", str(bad)], "'eval_s'): '-1' must be >= 0"),
        (["--out", str(done)], "already holds a complete ptexec run"),
        (["--out", str(afile)], "exists and is not a folder"),
    ]
    for extra, message in cases:
        for check in (["--check"], []):
            if not check and "done" in extra[-1]:
                continue  # (the run refuses it too: tests/test_runfolder.py)
            assert main([*base, *check, *extra]) == 2, (check, extra)
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and message in err, err
    assert main([*base, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "afile",
        "bad_profile",
        "done",
        "jobs.jsonl",
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--similarities", "2"], "--similarities '2': expected numbers in [0, 1]"),
        (["--seeds", "-1"], "--seeds '-1': expected whole numbers >= 0"),
        (["--max-steps", "0"], "--max-steps 0: expected a whole number >= 1"),
        (["--gpu-counts", "1,99"], "--gpu-counts '1,99': expected whole numbers >= 1, at most 1"),
        (["--gpu-counts", "2"], "--gpu-counts '2'"),
        (["--batches", "0"], "--batches '0': expected whole numbers >= 1"),
    ],
)
def test_profile_flags_are_checked_before_anything_is_measured(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p"
    assert main(["profile", "--out", str(out), "--workers", "1", "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not out.exists()
