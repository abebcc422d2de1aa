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

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptexec.faults import FaultPlan
from ptexec.jobs import ExecJob, TaskCatalog, fit_to_pool
from ptsim.convergence_io import FITTED

if TYPE_CHECKING:  # torch and pandas: imported where used, so config checks stay fast
    import pandas as pd

    from ptexec.driver import ExecOutcome, JobRun, PolicyFactory, StepHook
    from ptexec.prompt_bank import ExecBankConfig
    from ptexec.resume import RunJournal
    from ptexec.workers import WorkerPool
    from ptsim.core.profiles import ProfileSet
    from ptsim.outcome import RunResult

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
    "checkpoint_s",
    "train_s",
    "steps_lost",
    "restarts",
    "bank_entry",
    "bank_transfer",
    "prompt_dir",
    "loss_curve",
)
"""Columns the executor adds after ptsim's per-job columns (docs/ptexec.md)."""


@dataclass(frozen=True)
class ExecSettings:
    """How one executor run is set up (the ``ptexec run`` config, docs/ptexec.md).

    - ``workers``: pool size on CPU (one slot each); with CUDA GPUs, one worker per GPU.
      ``None``: chosen from the cores (:func:`cpu_layout`).
    - ``threads``: torch threads per worker (``None``: :func:`cpu_layout`'s).
    - ``devices``: explicit devices (``["cpu", "cpu"]``, ``["cuda:0"]``...), else automatic.
    - ``profile``: profile directory to plan with; ``None`` uses the cached quick profile
      of this machine, pool and model set (``profile_cache``), or measures one on the pool
      before the run and caches it; either way it is copied to ``<run dir>/profile``.
    - ``profile_cache``: directory of cached quick profiles (``None``: no cache);
      ``remeasure``: measure again and replace the cached one.
    - ``mechanics``: ``Mechanics`` overrides (handover_s, reconfig_s...).
    - ``checkpoint_every``: checkpoint each job every this many steps (worker death costs at
      most this many steps); ``keep_checkpoints``: keep them after the run.
    - ``horizon_s``: hard end of the run (``None``: 2 x the last deadline + 600 s).
    - ``price_per_gpu_hour``: the summary's price.
    - ``faults``: workers to kill on purpose during the run (``ptexec.faults``).
    - ``backend``: ``local`` (worker processes on this machine) or ``ray`` (worker actors on a
      Ray cluster, ``ptexec/ray_backend.py``); ``ray``: its options (``address``, ``num_gpus``,
      ``num_cpus``, ``object_store_mb``: :class:`~ptexec.ray_backend.RayWorkerPool`).
    - ``convergence``: the convergence model whose prior and estimator settings the cluster
      state plans with (``bank.convergence``, named as in ptsim: ``ptsim.convergence_io``);
      ``None``: each job's ``iterations`` known exactly.
    """

    workers: int | None = None
    threads: int | None = None
    devices: tuple[str, ...] | None = None
    profile: Path | None = None
    profile_cache: str | None = "~/.cache/ptexec/profiles"
    remeasure: bool = False
    mechanics: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_every: int | None = 50
    keep_checkpoints: bool = False
    horizon_s: float | None = None
    series_interval_s: float = 0.0
    price_per_gpu_hour: float = field(default_factory=lambda: _default_price())
    seed: int = 0
    faults: FaultPlan = field(default_factory=FaultPlan)
    backend: str = "local"
    ray: Mapping[str, Any] = field(default_factory=dict)
    convergence: str | None = FITTED


def _default_price() -> float:
    from ptsim.metrics import DEFAULT_PRICE_PER_GPU_HOUR

    return DEFAULT_PRICE_PER_GPU_HOUR


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_layout(cores: int) -> tuple[int, int]:
    """(CPU workers, torch threads per worker) for ``cores`` cores: one single-thread worker
    per two cores, at least one; the other cores are left to the driver, tokenisation and
    whatever else runs on the machine. Measured on the shared 2-core machine (docs/ptexec.md,
    "Defaults"): two single-thread workers made a data-parallel MiniLM step slower than one
    worker (749 vs 434 ms, issue 11), and one worker with two threads was ~100x slower per
    tiny-model step than with one thread while other processes kept the cores busy (torch's
    threads wait on each other)."""
    return max(1, cores // 2), 1


def resolve_settings(settings: ExecSettings) -> ExecSettings:
    """``settings`` with the worker count and threads chosen for this machine where they are
    ``None`` (:func:`cpu_layout`; with CUDA GPUs, one thread per worker unless given)."""
    if settings.workers is not None and settings.threads is not None:
        return settings
    workers, threads = cpu_layout(available_cores())
    return replace(
        settings,
        workers=settings.workers if settings.workers is not None else workers,
        threads=settings.threads if settings.threads is not None else threads,
    )


def pool_size_for(settings: ExecSettings) -> int:
    if settings.devices:
        return len(settings.devices)
    if settings.backend == "ray":  # one actor per slot; the cluster is not this machine
        return settings.workers
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return resolve_settings(settings).workers or 1


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
    from ptexec.driver import Executor
    from ptexec.faults import Injector
    from ptexec.prompt_bank import ExecPromptBank
    from ptsim.convergence_io import load_convergence

    st = resolve_settings(settings if settings is not None else ExecSettings())
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
    t_setup = time.perf_counter()
    if pool is None:
        say(f"starting {n} worker(s), {st.threads or 1} thread(s) each")
        pool = start_pool(n, st)
    t_pool = time.perf_counter()
    try:
        if profiles is None:
            profiles = _profiles(fitted, pool, st, run_dir, cat, say)
        t_profile = time.perf_counter()
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
            convergence=None if st.convergence is None else load_convergence(st.convergence),
        )
        if journal is not None:
            journal.attach(ex)
        say(f"running {len(fitted)} job(s) under {ex.policy.name} on {n} worker(s)")
        t_run = time.perf_counter()
        out = ex.run()
        out.seed = st.seed
        out.startup_s = {
            "workers_s": t_pool - t_setup,
            "profile_s": t_profile - t_pool,
            "bank_and_driver_s": t_run - t_profile,
        }
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

        return RayWorkerPool(n, devices=devices, threads=st.threads or 1, **dict(st.ray))
    from ptexec.workers import WorkerPool

    return WorkerPool(n, devices=devices, threads=st.threads or 1)


def _profiles(
    jobs: Sequence[ExecJob],
    pool: WorkerPool,
    st: ExecSettings,
    run_dir: Path,
    tasks: TaskCatalog,
    say: Callable[[str], Any],
) -> ProfileSet:
    from ptexec.profile import QUICK, load_exec_profiles, overhead_mechanics, profile_models

    mech = {**overhead_mechanics(jobs, st.checkpoint_every), **st.mechanics}
    if st.profile is not None:
        profiles = load_exec_profiles(st.profile, mech)
    else:
        models = sorted({(j.model, j.kind) for j in jobs}, key=lambda mk: (mk[0], str(mk[1])))
        batches = tuple(sorted({j.spec.batch_size for j in jobs}))
        quick = replace(QUICK, batches=batches, convergence=False, assessments=1)
        d = run_dir / "profile"
        cache = profile_cache_dir(st, pool, models, batches)
        names = ", ".join(m for m, _ in models)
        if cache is not None and (cache / "models.csv").is_file() and not st.remeasure:
            say(f"using the cached profile of {names}: {cache} (re-measure: --remeasure)")
            shutil.copytree(cache, d)
        else:
            say(f"measuring a quick profile of {names} (no --profile given; cached for next time)")
            profile_models(pool, models, d, quick, tasks=tasks, progress=say)
            if cache is not None:
                tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=_mkdir(cache.parent)))
                shutil.copytree(d, tmp, dirs_exist_ok=True)
                shutil.rmtree(cache, ignore_errors=True)
                os.replace(tmp, cache)
        profiles = load_exec_profiles(d, mech)
    missing = sorted({j.spec.model for j in jobs} - set(profiles.models))
    if missing:
        raise ValueError(
            f"profile {profiles.name}: no model {missing[0]!r} (it has "
            f"{', '.join(profiles.models)}); run `ptexec profile --model {missing[0]}`"
        )
    return profiles


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def profile_cache_dir(
    st: ExecSettings,
    pool: WorkerPool,
    models: Sequence[tuple[str, Any]],
    batches: Sequence[int],
) -> Path | None:
    """Where the quick profile of ``models`` at ``batches`` on this machine and pool is cached
    (``None`` without a cache): ``<profile_cache>/<models>-<key>``, the key a hash of the
    machine (host, processor, cores, devices), the pool (workers, threads) and the software
    (torch, transformers, peft, ptexec's profile format)."""
    if not st.profile_cache:
        return None
    import platform
    from importlib import metadata

    def version(dist: str) -> str | None:  # without importing it (transformers: seconds)
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    ident = {
        "host": platform.node(),
        "processor": platform.processor(),
        "cores": available_cores(),
        "devices": [w.device for w in pool.workers],
        "threads": pool.threads,
        "models": [[m, k] for m, k in models],
        "batches": list(batches),
        "software": {
            **{d: version(d) for d in ("torch", "transformers", "peft")},
            "python": platform.python_version(),
        },
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    label = "+".join(m.replace("/", "_") for m, _ in models)[:40]
    return Path(st.profile_cache).expanduser() / f"{label}-{key}"


def build_result(out: ExecOutcome, run_dir: Path, st: ExecSettings, gpus: int) -> RunResult:
    """ptsim's tables for an executor outcome, plus the executor's columns."""
    import pandas as pd

    from ptsim.metrics import jobs_table, series_table
    from ptsim.outcome import RunResult

    table = jobs_table(out)
    extra = []
    for jid in table.job_id:
        r = out.runs.get(jid)
        if r is None:
            extra.append(dict.fromkeys(EXEC_JOB_COLUMNS))
            continue
        init = out.state.job(jid).init if jid in out.state.jobs else None
        transfer = None
        if init is not None and init.source is not None and out.bank is not None:
            transfer = out.bank.config.transfer
        extra.append(exec_columns(r, run_dir, transfer))
    table = pd.concat([table, pd.DataFrame(extra, columns=list(EXEC_JOB_COLUMNS))], axis=1)
    table["met_deadline"] = slo_met(table)
    summary = exec_summary(out, table, st, gpus)
    return RunResult(out.policy, summary, table, series_table(out))


def exec_columns(r: JobRun, run_dir: Path, transfer: str | None = None) -> dict[str, Any]:
    """The executor's columns (``EXEC_JOB_COLUMNS``) of one job's row (``transfer``: what the
    bank transferred to it, when it started from a stored prompt)."""
    from ptexec.jobrun import final_eval

    acc, loss = final_eval(r)
    return {
        "reached_target": bool(r.reached),
        "steps": r.step,
        "final_accuracy": acc,
        "final_loss": loss,
        "exec_pause_s": r.exec_pause_s,
        "load_s": r.load_s,
        "eval_s": r.eval_s,
        "checkpoint_s": r.checkpoint_s,
        "train_s": r.train_s,
        "steps_lost": r.steps_lost,
        "restarts": r.restarts,
        "bank_entry": r.bank_entry,
        "bank_transfer": transfer,
        "prompt_dir": _rel(r.prompt_dir, run_dir),
        "loss_curve": f"curves/{r.job_id}.csv" if (r.curve or r.evals) else None,
    }


def exec_summary(
    out: ExecOutcome, table: pd.DataFrame, st: ExecSettings, gpus: int
) -> dict[str, Any]:
    """ptsim's summary of ``table`` plus the executor's keys (``EXEC_SUMMARY_KEYS``)."""
    from ptsim.metrics import run_summary

    summary = run_summary(out, table, out.policy, gpus, st.price_per_gpu_hour)
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
    import pandas as pd

    from ptexec.jobrun import curve_rows
    from ptsim.outcome import save_result, write_csv, write_json

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
            "decision_latency_ms": _latency_ms(out.decide_s),
            "startup_s": out.startup_s,
        }
    )
    if out.bank is not None:
        ran = [x for x in out.bank.lookups if x.worker is not None]
        info["bank"] = {
            "store": str(out.bank.store.root),
            "entries_at_end": len(out.bank),
            "transfer": out.bank.config.transfer,
            "lookups_run": len(ran),
            "lookup_s_total": sum(x.lookup_s for x in ran),
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
    "planned_assessments",
    "planned_s",
    "assessments",
    "chosen",
    "best_score",
    "default_score",
    "lookup_s",
    "worker_s",
    "transfer",
    "worker",
    "start_s",
)


def _latency_ms(xs: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, 99th percentile and maximum of the policy's decisions, in ms."""
    if not xs:
        return {"decisions": 0, "mean": None, "p99": None, "max": None}
    v = sorted(xs)
    p99 = v[min(len(v) - 1, math.ceil(0.99 * len(v)) - 1)]
    return {
        "decisions": len(v),
        "mean": 1e3 * sum(v) / len(v),
        "p99": 1e3 * p99,
        "max": 1e3 * v[-1],
    }


def _mean(xs: Sequence[float]) -> float | None:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else None


def temp_run_dir(prefix: str = "ptexec-") -> Path:
    """A fresh temporary run directory (for callers that want nothing kept)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
