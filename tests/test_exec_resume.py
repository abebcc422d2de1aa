"""``ptexec run --resume``: an interrupted run goes on from its run folder without rerunning
finished jobs or the steps before an unfinished job's last checkpoint. CPU, tiny model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import pandas as pd  # noqa: E402

from ptexec import cli  # noqa: E402
from ptexec.resume import JOURNAL  # noqa: E402

pytestmark = pytest.mark.exec
torch.set_num_threads(1)

JOB = {
    "arrival_s": 0.0,
    "model": "tiny-gpt2",
    "task": "synthetic:A",
    "slo_s": 600,
    "batch_size": 32,
    "target_accuracy": 0.99,
}
JOBS = [
    {**JOB, "job_id": "a", "max_steps": 6, "eval_every": 3},
    {**JOB, "job_id": "b", "max_steps": 40, "eval_every": 20, "checkpoint_every": 5},
]


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("p") / "tiny"
    args = ["profile", "--out", str(d), "--quick", "--no-convergence", "--batches", "32"]
    assert cli.main([*args, "--as", "tiny-gpt2=tiny-gpt2", "--quiet"]) == 0
    return d


def _journal(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / JOURNAL).read_text().splitlines()]


def test_interrupted_run_resumes_from_journal_and_checkpoints(
    profile_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in JOBS) + "\n")
    out = tmp_path / "run"
    args = ["run", "--jobs", str(jobs), "--out", str(out), "--profile", str(profile_dir)]
    args += ["--quiet", "scheduler=edf", "tuning.lr=0.01"]
    orig = cli._Progress.on_step

    def stop(self: Any, jid: str, step: int, ex: Any) -> None:
        # Ctrl-C once "a" is journaled as done and "b" has checkpointed (and gone past it)
        orig(self, jid, step, ex)
        b = ex.runs["b"]
        past = jid == "b" and b.checkpoint_step >= 5 and step > b.checkpoint_step
        if past and any(r["kind"] == "done" and r["job"] == "a" for r in _journal(out)):
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._Progress, "on_step", stop)
    assert cli.main(args) == 130
    assert (out / "INTERRUPTED").is_file() and not (out / "jobs.csv").exists()
    before = _journal(out)
    ck = max(r["step"] for r in before if r["kind"] == "checkpoint" and r["job"] == "b")
    assert ck >= 5
    assert [r["job"] for r in before if r["kind"] == "done"] == ["a"]
    capsys.readouterr()

    # an interrupted folder is refused without --resume, and with a different config
    monkeypatch.setattr(cli._Progress, "on_step", orig)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "ended INTERRUPTED" in err and "--resume" in err and err.count("\n") == 1
    assert cli.main([*args[:-1], "tuning.lr=0.02", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "different config (tuning.lr differs)" in err and err.count("\n") == 1

    seen: list[tuple[str, int]] = []

    def record(self: Any, jid: str, step: int, ex: Any) -> None:
        seen.append((jid, step))
        orig(self, jid, step, ex)

    monkeypatch.setattr(cli._Progress, "on_step", record)
    assert cli.main([*args, "--resume"]) == 0
    assert "edf: 2 jobs" in capsys.readouterr().out
    assert not any(j == "a" for j, _ in seen)  # the finished job is not rerun
    assert seen[0] == ("b", ck + 1)  # the unfinished one restarts at its checkpoint
    t = pd.read_csv(out / "jobs.csv").set_index("job_id")
    assert sorted(t.index) == ["a", "b"] and (t.status == "done").all()
    assert t.loc["a", "steps"] == 6 and t.loc["b", "steps"] == 40
    assert t.loc["b", "restarts"] == 1 and t.loc["a", "restarts"] == 0
    curve = pd.read_csv(out / "curves" / "b.csv")
    assert list(curve.step[curve.step > 0]) == list(range(1, 41))
    assert (out / "curves" / "a.csv").is_file()
    # the resumed clock went on from the journal's last time
    facts = json.loads((out / "executor.json").read_text())["resumed"]
    assert facts["jobs_from_journal"] == ["a"] and facts["jobs_from_checkpoint"] == {"b": ck}
    assert facts["from_s"] >= max(r.get("time_s", 0.0) for r in before)
    assert t.loc["b", "finish_s"] > facts["from_s"]
    # the journal's row of a finished job is its final row
    done_b = [r for r in _journal(out) if r["kind"] == "done" and r["job"] == "b"][-1]["row"]
    for col in ("finish_s", "status", "steps", "restarts", "gpu_seconds", "prompt_dir"):
        want = done_b[col]
        got = t.loc["b", col]
        assert got == want or (isinstance(want, float) and math.isnan(want) and math.isnan(got))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["jobs"] == 2 and summary["done"] == 2
    assert (out / "COMPLETE").is_file()
    # a complete folder is not resumed
    assert cli.main([*args, "--resume"]) == 2
    assert "already holds a complete ptexec run" in capsys.readouterr().err


def test_journal_reads_back_a_killed_drivers_lines(tmp_path: Path) -> None:
    from ptexec.resume import ResumeError, RunJournal, check_resumable

    lines = [
        {"kind": "run", "jobs": ["a", "b"]},
        {
            "kind": "checkpoint",
            "job": "b",
            "step": 5,
            "path": "checkpoints/b/step-00000005.pt",
            "time_s": 2.0,
            "curve": [[s, 0.1 * s, 1, 1.0] for s in range(1, 6)],
            "evals": [],
            "counters": {"restarts": 0, "load_s": 0.5},
        },
        {"kind": "done", "job": "a", "time_s": 3.0, "row": {"job_id": "a"}, "curve": []},
        {
            "kind": "checkpoint",
            "job": "b",
            "step": 10,
            "path": "checkpoints/b/step-00000010.pt",
            "time_s": 4.0,
            "curve": [[s, 0.1 * s, 1, 1.0] for s in range(6, 11)],
            "evals": [[10, 1.0, 0.5, 0.7]],
            "counters": {"restarts": 1, "load_s": 0.9},
        },
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"kind": "done", "job": "b", "ti'
    (tmp_path / JOURNAL).write_text(text)
    j = RunJournal(tmp_path, resume=True)
    assert sorted(j.done) == ["a"] and j.resumed_from_s == 4.0  # the torn line did not happen
    ck = j.checkpoints["b"]
    assert ck.step == 10 and [c[0] for c in ck.curve] == list(range(1, 11))
    assert ck.evals == [[10, 1.0, 0.5, 0.7]] and ck.counters == {"restarts": 1, "load_s": 0.9}
    assert (tmp_path / JOURNAL).read_text().endswith("}\n")  # torn line cut off
    assert [x.job_id for x in j.pending([_Job("a"), _Job("b")])] == ["b"]  # type: ignore[list-item]
    with pytest.raises(ResumeError, match="nothing to resume"):
        j.pending([_Job("a")])  # type: ignore[list-item]
    (tmp_path / "config.yaml").write_text("tuning:\n  lr: 0.01\nworkers: 2\n")
    check_resumable(tmp_path, "tuning:\n  lr: 0.01\nworkers: 2\n")
    with pytest.raises(ResumeError, match=r"\(workers differs\)"):
        check_resumable(tmp_path, "tuning:\n  lr: 0.01\nworkers: 3\n")
    with pytest.raises(ResumeError, match=r"no jobs\.journal\.jsonl"):
        check_resumable(tmp_path / "x", "")


class _Job:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
