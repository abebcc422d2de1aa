"""Resuming an interrupted ``ptexec run`` from its run folder (``ptexec run --resume``).

While a run goes, :class:`RunJournal` appends one JSON line per event to
``<run dir>/jobs.journal.jsonl`` (flushed and ``fsync``'ed, so a killed driver loses at most
the line it was writing):

- ``{"kind": "run", ...}``: the first line (policy, job ids, when it started);
- ``{"kind": "checkpoint", "job", "step", "path", "time_s", ...}``: a job's checkpoint was
  written (with the loss-curve rows and evaluations since its previous checkpoint, and its
  running counters), so a resumed run can restart it there;
- ``{"kind": "done", "job", "time_s", "row", "curve"}``: a job finished; ``row`` is its whole
  row of the final ``jobs.csv`` (ptsim's columns and the executor's), ``curve`` its loss curve.

On ``--resume`` (see :func:`check_resumable` for which folders qualify) the journal is read
back: jobs with a ``done`` line are not run again (their rows go into the final tables as
journaled), every other job arrives as usual and, when it has a checkpoint, starts from it
(its step count, prompt and optimizer state, loss curve and counters) with one more restart
charged; the model loads a restart needs happen for real and are measured. The resumed run's
clock continues from the latest time the journal recorded (the last checkpoint or completion),
so arrivals, deadlines and JCTs keep their meaning; the time the run was down is not counted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pandas as pd

from ptexec.jobrun import JobRun, curve_rows
from ptexec.jobs import ExecJob
from ptexec.loop import WallClock
from ptsim.metrics import jobs_table
from ptsim.outcome import RunResult, write_csv

if TYPE_CHECKING:
    from ptexec.driver import ExecOutcome, Executor
    from ptexec.run import ExecSettings

JOURNAL = "jobs.journal.jsonl"
"""The journal's file name in a run folder."""


class ResumeError(ValueError):
    """A run folder that cannot be resumed (one line)."""


@dataclass
class Checkpointed:
    """What the journal knows of an unfinished job: its last checkpoint and what it had done
    by then."""

    step: int
    path: str
    curve: list[list[Any]] = field(default_factory=list)
    evals: list[list[Any]] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)


class _OffsetClock(WallClock):
    """The executor's clock, starting at ``offset`` seconds instead of 0."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def now(self) -> float:
        return super().now() + self.offset


def _plain(x: Any) -> Any:
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON: {type(x).__name__}")


class RunJournal:
    """The journal of one run folder (module doc); ``resume``: read the existing one back."""

    def __init__(self, run_dir: Path, *, resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOURNAL
        self.resume = resume
        self.done: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, Checkpointed] = {}
        self.resumed_from_s = 0.0
        self._ex: Executor | None = None
        if resume:
            self._read()
        else:
            self.path.unlink(missing_ok=True)
        self._last_step = {j: c.step for j, c in self.checkpoints.items()}
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in merge)

    # -- reading -------------------------------------------------------------------------------

    def _read(self) -> None:
        if not self.path.is_file():
            raise ResumeError(f"run folder {self.run_dir} has no {JOURNAL} to resume from")
        lines = self.path.read_text(encoding="utf-8").splitlines()
        torn = False
        for i, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except ValueError:
                if i == len(lines):
                    torn = True  # a line torn by a killed driver: the event did not happen
                    break
                raise ResumeError(f"{self.path}:{i}: not a JSON line") from None
            kind, jid = rec.get("kind"), rec.get("job")
            self.resumed_from_s = max(self.resumed_from_s, float(rec.get("time_s", 0.0)))
            if kind == "done":
                self.done[jid] = rec
                self.checkpoints.pop(jid, None)
            elif kind == "checkpoint":
                prev = self.checkpoints.get(jid)
                step = int(rec["step"])
                curve = [c for c in (prev.curve if prev else []) if c[0] <= step]
                evals = [e for e in (prev.evals if prev else []) if e[0] <= step]
                self.checkpoints[jid] = Checkpointed(
                    step,
                    rec["path"],
                    curve + [c for c in rec.get("curve", []) if c[0] <= step],
                    evals + [e for e in rec.get("evals", []) if e[0] <= step],
                    dict(rec.get("counters", {})),
                )
        # a torn last line must not glue onto the next record
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if torn:
                fh.truncate(data.rfind(b"\n") + 1)
            elif data and not data.endswith(b"\n"):
                fh.write(b"\n")

    # -- writing -------------------------------------------------------------------------------

    def _write(self, rec: dict[str, Any]) -> None:
        self._fh.write(json.dumps(rec, default=_plain) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def pending(self, jobs: Sequence[ExecJob]) -> list[ExecJob]:
        """The jobs still to run (all of them in a fresh run); writes the header line."""
        if not self.resume:
            self._write(
                {
                    "kind": "run",
                    "jobs": [j.job_id for j in jobs],
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            return list(jobs)
        ids = {j.job_id for j in jobs}
        unknown = sorted(set(self.done) - ids)
        if unknown:
            raise ResumeError(f"{self.path}: job {unknown[0]!r} is not in this run's jobs")
        left = [j for j in jobs if j.job_id not in self.done]
        if not left:
            raise ResumeError(
                f"run folder {self.run_dir}: every job already finished ({JOURNAL}); "
                "nothing to resume (rerun with --overwrite to start over)"
            )
        return left

    def attach(self, ex: Executor) -> None:
        """Journal ``ex``'s checkpoints and completions; when resuming, start its clock where
        the journal ends and restore each arriving job from its checkpoint."""
        self._ex = ex
        ex.env.on_checkpoint = self._checkpointed
        after = ex.env.on_job_done

        def done(jid: str) -> None:
            self._finished(jid)
            if after is not None:
                after(jid)

        ex.env.on_job_done = done
        if self.resume:
            ex.clock = ex.loop.clock = _OffsetClock(self.resumed_from_s)
            ex.on_arrive = self._restore

    def _checkpointed(self, run: JobRun) -> None:
        assert self._ex is not None
        last = self._last_step.get(run.job_id, 0)
        self._last_step[run.job_id] = run.checkpoint_step
        self._write(
            {
                "kind": "checkpoint",
                "job": run.job_id,
                "step": run.checkpoint_step,
                "path": str(
                    Path(str(run.checkpoint)).resolve().relative_to(self.run_dir.resolve())
                ),
                "time_s": self._ex.now(),
                "curve": [list(c) for c in run.curve if c[0] > last],
                "evals": [list(e) for e in run.evals if e[0] > last],
                "counters": {
                    k: getattr(run, k)
                    for k in ("exec_pause_s", "load_s", "eval_s", "steps_lost", "restarts")
                },
            }
        )

    def _finished(self, jid: str) -> None:
        from ptexec.run import exec_columns

        ex = self._ex
        assert ex is not None
        run = ex.runs[jid]
        one = SimpleNamespace(
            state=SimpleNamespace(jobs={jid: ex.state.jobs[jid]}, profiles=ex.state.profiles)
        )
        row = jobs_table(one).iloc[0].to_dict()  # type: ignore[arg-type]
        row.update(exec_columns(run, self.run_dir))
        self._write(
            {"kind": "done", "job": jid, "time_s": ex.now(), "row": row, "curve": curve_rows(run)}
        )

    def _restore(self, run: JobRun) -> None:
        """An arriving job that has a checkpoint starts from it (one more restart)."""
        from ptexec.train import load_checkpoint
        from ptexec.workers import state_to_bytes

        ck = self.checkpoints.get(run.job_id)
        if ck is None:
            return
        assert self._ex is not None
        path = self.run_dir / ck.path
        for k, v in ck.counters.items():
            setattr(run, k, v)
        run.restarts += 1
        run.step = run.checkpoint_step = ck.step
        run.checkpoint = path
        run.state_bytes = state_to_bytes(load_checkpoint(path))
        run.state_fresh = True
        run.curve = [tuple(c) for c in ck.curve]  # type: ignore[misc]
        run.evals = [tuple(e) for e in ck.evals]  # type: ignore[misc]
        self._ex.state.set_progress(run.job_id, float(ck.step), self._ex.now())

    # -- the final tables ----------------------------------------------------------------------

    def merge(self, result: RunResult, out: ExecOutcome, st: ExecSettings, gpus: int) -> RunResult:
        """The final tables: the journaled jobs' rows with this run's, in arrival order, and
        the summary over all of them (cluster-wide totals: this run's part only)."""
        from ptexec.run import exec_summary, slo_met

        self._fh.close()
        if not self.done or not self.resume:
            return result
        for jid, rec in sorted(self.done.items()):
            if rec.get("curve"):
                write_csv(pd.DataFrame(rec["curve"]), self.run_dir / "curves" / f"{jid}.csv")
        old = pd.DataFrame([rec["row"] for rec in self.done.values()])
        old = old.reindex(columns=result.jobs.columns)
        table = pd.concat([old, result.jobs], ignore_index=True)
        table = table.sort_values(["arrival_s", "job_id"], kind="stable", ignore_index=True)
        for col in table.columns:
            if table[col].dtype == object and table[col].map(_is_num).all():
                table[col] = pd.to_numeric(table[col])
        table["met_deadline"] = slo_met(table)
        return RunResult(result.policy, exec_summary(out, table, st, gpus), table, result.series)

    def facts(self) -> dict[str, Any]:
        """What ``executor.json`` says of the resume (nothing for a fresh run)."""
        if not self.resume:
            return {}
        return {
            "resumed": {
                "from_s": self.resumed_from_s,
                "jobs_from_journal": sorted(self.done),
                "jobs_from_checkpoint": {j: c.step for j, c in sorted(self.checkpoints.items())},
            }
        }


def _is_num(x: Any) -> bool:
    """A number or missing (a journaled column that pandas read as objects)."""
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool))


def check_resumable(run_dir: Path, config_yaml: str) -> None:
    """A folder may be resumed when it holds a journal and the run's ``config.yaml`` equals
    this one (the folder's marker is checked by ``ptsim.runfolder.claim``)."""
    if not (run_dir / JOURNAL).is_file():
        raise ResumeError(f"run folder {run_dir} has no {JOURNAL} to resume from")
    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        raise ResumeError(f"run folder {run_dir} has no config.yaml to resume with")
    old = cfg.read_text()
    if old != config_yaml:
        key = _first_difference(old, config_yaml)
        raise ResumeError(
            f"run folder {run_dir} was started with a different config ({key} differs); "
            "resume with the same arguments or use another folder"
        )


def _first_difference(a: str, b: str) -> str:
    import yaml

    def flat(d: Any, pre: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {pre: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{pre}{k}."))
        return out

    fa, fb = flat(yaml.safe_load(a) or {}), flat(yaml.safe_load(b) or {})
    for k in sorted(set(fa) | set(fb)):
        if fa.get(k) != fb.get(k):
            return k.rstrip(".")
    return "its text"


def clear_unfinished(run_dir: Path) -> bool:
    """Remove an unfinished run's journal and checkpoints (a fresh run over it); True when
    there was one."""
    had = (run_dir / JOURNAL).is_file()
    (run_dir / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return had


__all__ = ["JOURNAL", "ResumeError", "RunJournal", "check_resumable", "clear_unfinished"]
