"""Running the executor from settings and saving what it did, in ptsim's formats.

``run_jobs`` runs a list of :class:`~ptexec.jobs.ExecJob` under one policy on a worker pool
(its own, or one passed in) and returns a ``ptsim.outcome.RunResult`` whose per-job table, time
series and summary are built by ``ptsim.metrics`` from the executor's ``ClusterState``, exactly
as ptsim builds them, plus the executor's own columns. ``save_exec_result`` writes them with
``ptsim.outcome.save_result`` (``jobs.csv``, ``timeseries.csv``, ``summary.json``) next to
each job's tuned prompt (``prompts/<job>/``, a PEFT adapter directory), its loss curve
(``curves/<job>.csv``), every model load (``loads.csv``), every bank lookup
(``bank_lookups.csv``) and the executor's facts (``executor.json``).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ptexec.driver import (
    ExecOutcome,
    Executor,
    JobRun,
    PolicyFactory,
    StepHook,
    curve_rows,
    final_eval,
)
from ptexec.faults import FaultPlan, Injector
from ptexec.jobs import ExecJob, TaskCatalog, fit_to_pool
from ptexec.prompt_bank import ExecBankConfig, ExecPromptBank
from ptexec.workers import WorkerPool
from ptsim.core.profiles import ProfileSet
from ptsim.metrics import DEFAULT_PRICE_PER_GPU_HOUR, jobs_table, series_table, summarize
from ptsim.outcome import RunResult, save_result, write_csv, write_json

if TYPE_CHECKING:
    from ptexec.resume import RunJournal

EXEC_SUMMARY_KEYS = ("faults_injected", "worker_deaths", "steps_lost")
"""The keys the executor's ``summary.json`` has beyond ptsim's (docs/metrics.md)."""

EXEC_JOB_COLUMNS = (
    "reached_target",
    "steps",
    "final_accuracy",
    "final_loss",
    "exec_pause_s",
    "load_s",
    "eval_s",
    "steps_lost",
    "restarts",
    "bank_entry",
    "prompt_dir",
    "loss_curve",
)
"""Columns the executor adds after ptsim's per-job columns (docs/ptexec.md)."""


@dataclass(frozen=True)
class ExecSettings:
    """How one executor run is set up (the ``ptexec run`` config, docs/ptexec.md).

    - ``workers``: pool size on CPU (one slot each); with CUDA GPUs, one worker per GPU.
    - ``threads``: torch threads per worker.
    - ``devices``: explicit devices (``["cpu", "cpu"]``, ``["cuda:0"]``...), else automatic.
    - ``profile``: profile directory to plan with; ``None`` measures a quick one on the pool
      before the run (written to ``<run dir>/profile``).
    - ``mechanics``: ``Mechanics`` overrides (handover_s, reconfig_s...).
    - ``checkpoint_every``: checkpoint each job every this many steps (worker death costs at
      most this many steps); ``keep_checkpoints``: keep them after the run.
    - ``horizon_s``: hard end of the run (``None``: 2 x the last deadline + 600 s).
    - ``price_per_gpu_hour``: the summary's price.
    - ``faults``: workers to kill on purpose during the run (``ptexec.faults``).
    - ``backend``: ``local`` (worker processes on this machine) or ``ray`` (worker actors on a
      Ray cluster, ``ptexec/ray_backend.py``); ``ray``: its options (``address``, ``num_gpus``,
      ``num_cpus``, ``object_store_mb``: :class:`~ptexec.ray_backend.RayWorkerPool`).
    """

    workers: int = 2
    threads: int = 1
    devices: tuple[str, ...] | None = None
    profile: Path | None = None
    mechanics: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_every: int | None = 50
    keep_checkpoints: bool = False
    horizon_s: float | None = None
    series_interval_s: float = 0.0
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    seed: int = 0
    faults: FaultPlan = field(default_factory=FaultPlan)
    backend: str = "local"
    ray: Mapping[str, Any] = field(default_factory=dict)


def pool_size_for(settings: ExecSettings) -> int:
    if settings.devices:
        return len(settings.devices)
    if settings.backend == "ray":  # one actor per slot; the cluster is not this machine
        return settings.workers
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else settings.workers


def run_jobs(
    jobs: Sequence[ExecJob],
    policy: str | PolicyFactory,
    run_dir: Path,
    settings: ExecSettings | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    bank: ExecBankConfig | None = None,
    tasks: TaskCatalog | None = None,
    pool: WorkerPool | None = None,
    profiles: ProfileSet | None = None,
    on_step: StepHook | None = None,
    on_job_done: Callable[[str], Any] | None = None,
    progress: Callable[[str], Any] | None = None,
    journal: RunJournal | None = None,
) -> tuple[RunResult, ExecOutcome]:
    """Run ``jobs`` under ``policy`` and return the ``RunResult`` (tables built by
    ``ptsim.metrics``, executor columns added) and the raw outcome. Nothing is written but
    checkpoints and prompts (``save_exec_result`` writes the tables). ``journal``
    (``ptexec.resume``) records each finished job as it finishes and, when resuming, leaves
    out the jobs it holds, restarts the others from their checkpoints and merges its rows."""
    st = settings if settings is not None else ExecSettings()
    say = progress or (lambda _m: None)
    cat = tasks if tasks is not None else TaskCatalog(seed=st.seed)
    own_pool = pool is None
    n = len(pool) if pool is not None else pool_size_for(st)
    fitted, notes = fit_to_pool(jobs, n)
    for note in notes:
        say(note)
    if journal is not None:
        fitted = journal.pending(fitted)
    for j in fitted:  # load every task before the clock starts (bad data fails here)
        cat.get(j.task)
    if pool is None:
        say(f"starting {n} worker(s)")
        pool = start_pool(n, st)
    try:
        if profiles is None:
            profiles = _profiles(fitted, pool, st, run_dir, cat, say)
        exec_bank = None
        if bank is not None:
            exec_bank = ExecPromptBank(bank, {j.job_id: j for j in fitted}, cat, seed=st.seed)
        ex = Executor(
            fitted,
            policy,
            pool,
            profiles,
            run_dir,
            params=params,
            tasks=cat,
            bank=exec_bank,
            checkpoint_every=st.checkpoint_every,
            horizon_s=st.horizon_s,
            series_interval_s=st.series_interval_s,
            on_step=on_step,
            on_job_done=on_job_done,
            faults=Injector(st.faults, st.seed) if st.faults.kills else None,
        )
        if journal is not None:
            journal.attach(ex)
        say(f"running {len(fitted)} job(s) under {ex.policy.name} on {n} worker(s)")
        out = ex.run()
        out.seed = st.seed
    finally:
        if own_pool:
            pool.close()
    if not st.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    result = build_result(out, run_dir, st, n)
    if journal is not None:
        result = journal.merge(result, out, st, n)
    return result, out


def start_pool(n: int, st: ExecSettings) -> WorkerPool:
    """``n`` workers on ``st.backend``: local processes, or Ray actors."""
    devices = list(st.devices) if st.devices else None
    if st.backend == "ray":
        from ptexec.ray_backend import RayWorkerPool

        return RayWorkerPool(n, devices=devices, threads=st.threads, **dict(st.ray))
    return WorkerPool(n, devices=devices, threads=st.threads)


def _profiles(
    jobs: Sequence[ExecJob],
    pool: WorkerPool,
    st: ExecSettings,
    run_dir: Path,
    tasks: TaskCatalog,
    say: Callable[[str], Any],
) -> ProfileSet:
    from ptexec.profile import QUICK, load_exec_profiles, profile_models

    if st.profile is not None:
        profiles = load_exec_profiles(st.profile, st.mechanics)
    else:
        models = sorted({(j.model, j.kind) for j in jobs}, key=lambda mk: (mk[0], str(mk[1])))
        batches = tuple(sorted({j.spec.batch_size for j in jobs}))
        quick = replace(QUICK, batches=batches, convergence=False, assessments=1)
        say(f"measuring a quick profile of {', '.join(m for m, _ in models)} (no --profile given)")
        d = profile_models(pool, models, run_dir / "profile", quick, tasks=tasks, progress=say)
        profiles = load_exec_profiles(d, st.mechanics)
    missing = sorted({j.spec.model for j in jobs} - set(profiles.models))
    if missing:
        raise ValueError(
            f"profile {profiles.name}: no model {missing[0]!r} (it has "
            f"{', '.join(profiles.models)}); run `ptexec profile --model {missing[0]}`"
        )
    return profiles


def build_result(out: ExecOutcome, run_dir: Path, st: ExecSettings, gpus: int) -> RunResult:
    """ptsim's tables for an executor outcome, plus the executor's columns."""
    table = jobs_table(out)
    extra = [
        exec_columns(out.runs[jid], run_dir) if jid in out.runs else dict.fromkeys(EXEC_JOB_COLUMNS)
        for jid in table.job_id
    ]
    table = pd.concat([table, pd.DataFrame(extra, columns=list(EXEC_JOB_COLUMNS))], axis=1)
    table["met_deadline"] = slo_met(table)
    summary = exec_summary(out, table, st, gpus)
    return RunResult(out.policy, summary, table, series_table(out))


def exec_columns(r: JobRun, run_dir: Path) -> dict[str, Any]:
    """The executor's columns (``EXEC_JOB_COLUMNS``) of one job's row."""
    acc, loss = final_eval(r)
    return {
        "reached_target": bool(r.reached),
        "steps": r.step,
        "final_accuracy": acc,
        "final_loss": loss,
        "exec_pause_s": r.exec_pause_s,
        "load_s": r.load_s,
        "eval_s": r.eval_s,
        "steps_lost": r.steps_lost,
        "restarts": r.restarts,
        "bank_entry": r.bank_entry,
        "prompt_dir": _rel(r.prompt_dir, run_dir),
        "loss_curve": f"curves/{r.job_id}.csv" if (r.curve or r.evals) else None,
    }


def exec_summary(
    out: ExecOutcome, table: pd.DataFrame, st: ExecSettings, gpus: int
) -> dict[str, Any]:
    """ptsim's summary of ``table`` plus the executor's keys (``EXEC_SUMMARY_KEYS``)."""
    summary = summarize(out, table, st.price_per_gpu_hour)
    summary["policy"] = out.policy
    summary["gpus"] = gpus
    summary["invalid_examples"] = out.stats.invalid[:5]
    summary["seed"] = st.seed
    # EXEC_SUMMARY_KEYS: the executor's own, beyond ptsim's summary
    summary["faults_injected"] = len(out.faults)
    summary["worker_deaths"] = len(out.worker_deaths)
    summary["steps_lost"] = int(table.steps_lost.fillna(0).sum())
    return summary


def slo_met(table: pd.DataFrame) -> pd.Series:
    """A job meets its SLO when it finished by its deadline *and* reached its target: one that
    spent its step budget without reaching the target missed it, however early it stopped."""
    reached = table.reached_target.astype("boolean").fillna(False).astype(bool)
    return table.met_deadline.astype(bool) & reached


def _rel(path: str | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


def save_exec_result(
    result: RunResult,
    out: ExecOutcome,
    run_dir: Path,
    facts: Mapping[str, Any] | None = None,
) -> RunResult:
    """Write the run's files (see the module doc); ``summary.json`` last."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for jid, r in sorted(out.runs.items()):
        rows = curve_rows(r)
        if rows:
            write_csv(pd.DataFrame(rows), run_dir / "curves" / f"{jid}.csv")
    write_csv(
        pd.DataFrame([asdict(x) for x in out.loads], columns=_LOAD_COLUMNS), run_dir / "loads.csv"
    )
    if out.bank is not None:
        write_csv(
            pd.DataFrame([asdict(x) for x in out.bank.lookups], columns=_LOOKUP_COLUMNS),
            run_dir / "bank_lookups.csv",
        )
    info: dict[str, Any] = dict(facts or {})
    info.update(
        {
            "workers": len(out.boot_s),
            "worker_boot_s": out.boot_s,
            "worker_deaths": [{"time_s": t, "worker": g} for t, g in out.worker_deaths],
            "faults": [{"time_s": t, "worker": g, "job": j} for t, g, j in out.faults],
            "loads": len(out.loads),
            "mean_cold_load_s": _mean([x.load_s for x in out.loads if x.cold]),
        }
    )
    if out.bank is not None:
        info["bank"] = {
            "store": str(out.bank.store.root),
            "entries_at_end": len(out.bank),
            "scorer_model_load_s": out.bank.model_loads,
            "skipped_entries": out.bank.skipped[:20],
        }
    write_json(info, run_dir / "executor.json")
    return save_result(result, run_dir)


_LOAD_COLUMNS = ("gid", "model", "job", "reload", "issued_s", "ready_s", "load_s", "cold", "stale")
_LOOKUP_COLUMNS = (
    "job_id",
    "model",
    "task",
    "layout",
    "entries",
    "assessments",
    "chosen",
    "best_score",
    "default_score",
    "lookup_s",
)


def _mean(xs: Sequence[float]) -> float | None:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else None


def temp_run_dir(prefix: str = "ptexec-") -> Path:
    """A fresh temporary run directory (for callers that want nothing kept)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
