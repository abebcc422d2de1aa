"""Result tables of a run: the per-job table, the cluster time series and the summary.

Every metric is defined, with its formula, in docs/metrics.md. A run builds its tables as
:class:`~ptsim.outcome.Table` rows (``job_rows``, ``series_rows``) and sums them up without
pandas; ``jobs_table`` and ``series_table`` give the same tables as DataFrames.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ptsim.core.state import SERIES_COLUMNS
from ptsim.core.types import GpuState, JobState
from ptsim.outcome import RunOutcome, Table

if TYPE_CHECKING:
    import pandas as pd

JOB_COLUMNS = (
    "job_id",
    "model",
    "task",
    "arrival_s",
    "deadline_s",
    "first_start_s",
    "finish_s",
    "status",
    "met_deadline",
    "jct_s",
    "queue_delay_s",
    "first_gpu_s",
    "first_ready_s",
    "num_gpus",
    "iterations_base",
    "ideal_s",
    "iterations_needed",
    "iterations_default",
    "iterations_done",
    "gpu_seconds",
    "cold_starts",
    "warm_hits",
    "rescales",
    "pause_s",
    "init_source",
    "init_source_task",
    "bank_layout",
    "bank_assessments",
    "bank_lookup_s",
    "expected_saving",
)

DEFAULT_PRICE_PER_GPU_HOUR = 4.10
"""USD per A100-hour: AWS p4d.24xlarge on-demand ($32.77/h for 8 A100-40GB, us-east-1)."""


def jobs_table(out: RunOutcome) -> pd.DataFrame:
    """One row per submitted job (see docs/metrics.md for each column)."""
    return job_rows(out).to_frame()


def job_rows(out: RunOutcome) -> Table:
    """:func:`jobs_table` as :class:`~ptsim.outcome.Table` rows."""
    rows: list[tuple[Any, ...]] = []
    profiles = out.state.profiles
    for rec in out.state.jobs.values():
        s = rec.spec
        if rec.state is JobState.DONE:
            status = "done"
        elif rec.state is JobState.REJECTED:
            status = "rejected"
        else:
            status = "unfinished"
        finish = rec.finish if status == "done" else math.nan
        met = status == "done" and rec.finish is not None and rec.finish <= s.deadline + 1e-9
        init = rec.init
        rows.append(
            (
                s.job_id,
                s.model,
                s.task,
                s.arrival,
                s.deadline,
                math.nan if rec.first_start is None else rec.first_start,
                finish,
                status,
                met,
                finish - s.arrival,
                (math.nan if rec.first_start is None else rec.first_start - s.arrival),
                math.nan if rec.first_gpu is None else rec.first_gpu,
                math.nan if rec.first_ready is None else rec.first_ready,
                s.num_gpus,
                s.iterations,
                profiles.run_time(s.model, s.num_gpus, s.batch_size, s.iterations),
                rec.iters_needed,
                rec.iters_default,
                rec.iters_done,
                rec.gpu_seconds,
                rec.cold_starts,
                rec.warm_hits,
                rec.rescales,
                rec.pause_s,
                None if init is None else init.source,
                None if init is None else init.source_task,
                "none" if init is None else init.layout,
                0 if init is None else init.assessments,
                0.0 if init is None else init.lookup_s,
                0.0 if init is None else init.expected_saving,
            )
        )
    return Table(JOB_COLUMNS, rows)


def series_table(out: RunOutcome) -> pd.DataFrame:
    """GPUs per state (and live/queued jobs) over time, one row per change."""
    return series_rows(out).to_frame()


def series_rows(out: RunOutcome) -> Table:
    """:func:`series_table` as :class:`~ptsim.outcome.Table` rows."""
    return Table(SERIES_COLUMNS, out.series)


def _values(jobs: pd.DataFrame | Table, name: str) -> np.ndarray:
    """One column of the per-job table as an array of the dtype pandas gives it."""
    if isinstance(jobs, Table):
        return np.asarray(jobs.column(name))
    return jobs[name].to_numpy()


def _floats(jobs: pd.DataFrame | Table, name: str) -> np.ndarray:
    return np.asarray(_values(jobs, name), dtype=float)


def _status_is(jobs: pd.DataFrame | Table, status: str) -> np.ndarray:
    col = jobs.column("status") if isinstance(jobs, Table) else jobs["status"].tolist()
    return np.array([v == status for v in col], dtype=bool)


def _mean(x: np.ndarray) -> float:
    """``pd.Series(x).mean()``: NaN skipped (filled with 0 in the sum), NaN when empty."""
    if x.size == 0:
        return math.nan
    if x.dtype.kind in "biu":
        return float(x.sum(dtype=np.float64) / np.float64(x.size))
    x = np.asarray(x, dtype=np.float64)
    mask = np.isnan(x)
    if mask.any():
        x = x.copy()
        np.putmask(x, mask, 0.0)
    count = np.float64(x.size - int(mask.sum()))
    return float(x.sum() / count) if count > 0 else math.nan


def _saving(jobs: pd.DataFrame | Table) -> float:
    """Mean fraction of iterations saved against the default initial prompt (the same job's
    count from it, so a job's own run-to-run spread cancels), over jobs not rejected."""
    chosen = ~_status_is(jobs, "rejected")
    if not chosen.any():
        return 0.0
    needed = _floats(jobs, "iterations_needed")[chosen]
    default = _floats(jobs, "iterations_default")[chosen]
    return _mean(1.0 - needed / default)


REJECTED_JCT = ("censor_at_end", "censor_at_deadline", "exclude")
"""How the JCT statistics count a job that did not finish (``sim.rejected_jct``;
docs/metrics.md, "JCT of rejected and unfinished jobs")."""


def jct_sample(
    jobs: pd.DataFrame | Table, end_s: float, rejected_jct: str
) -> tuple[np.ndarray, int]:
    """The JCTs the statistics are taken over and how many of them are censored.
    ``censor_at_end``: a job that did not finish counts ``end_s`` - arrival; ``censor_at_deadline``:
    a rejected job counts its deadline - arrival, an unfinished one ``end_s`` - arrival;
    ``exclude``: finished jobs only."""
    if rejected_jct not in REJECTED_JCT:
        raise ValueError(
            f"sim.rejected_jct must be one of {', '.join(REJECTED_JCT)}, got {rejected_jct!r}"
        )
    done = _status_is(jobs, "done")
    if rejected_jct == "exclude":
        return _floats(jobs, "jct_s")[done], 0
    arrival = _floats(jobs, "arrival_s")
    jct = np.where(done, _floats(jobs, "jct_s"), end_s - arrival)
    if rejected_jct == "censor_at_deadline":
        rejected = _status_is(jobs, "rejected")
        jct = np.where(rejected, _floats(jobs, "deadline_s") - arrival, jct)
    return jct, int((~done).sum())


def _max_queued(out: RunOutcome) -> int:
    """The most jobs that waited for GPUs at once (0: the cluster never queued a job)."""
    col = SERIES_COLUMNS.index("queued_jobs")
    return int(max((row[col] for row in out.series), default=0))


def summarize(
    out: RunOutcome,
    jobs: pd.DataFrame | Table,
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR,
    rejected_jct: str = "censor_at_end",
) -> dict[str, Any]:
    """The run's headline numbers (docs/metrics.md defines each); ``jobs`` is the per-job
    table, as a DataFrame or as rows."""
    t = out.state.totals
    n = len(jobs)
    done = int(_status_is(jobs, "done").sum())
    violations = int((~np.asarray(_values(jobs, "met_deadline"), dtype=bool)).sum())
    provisioned = sum(t.gpu_seconds.values())
    busy = t.gpu_seconds[GpuState.BUSY]
    jct, censored = jct_sample(jobs, out.stats.end_s, rejected_jct)
    job_loads = int(_values(jobs, "cold_starts").sum()) if n else 0
    hits_possible = t.warm_hits + job_loads

    def _f(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    return {
        "policy": out.policy,
        "jobs": n,
        "done": done,
        "rejected": int(_status_is(jobs, "rejected").sum()),
        "unfinished": int(_status_is(jobs, "unfinished").sum()),
        "slo_violations": violations,
        "slo_violation_rate": violations / n if n else 0.0,
        "cost_gpu_hours": provisioned / 3600.0,
        "cost_usd": provisioned / 3600.0 * price_per_gpu_hour,
        "price_per_gpu_hour": price_per_gpu_hour,
        "gpu_hours_loading": t.gpu_seconds[GpuState.LOADING] / 3600.0,
        "gpu_hours_busy": busy / 3600.0,
        "gpu_hours_warm_idle": t.gpu_seconds[GpuState.WARM] / 3600.0,
        "utilisation": busy / provisioned if provisioned > 0 else 0.0,
        "mean_jct_s": _f(float(np.mean(jct))) if len(jct) else None,
        "p50_jct_s": _f(float(np.percentile(jct, 50))) if len(jct) else None,
        "p99_jct_s": _f(float(np.percentile(jct, 99))) if len(jct) else None,
        "rejected_jct": rejected_jct,
        "jct_censored": censored,
        "jct_excluded": n - len(jct),
        "mean_queue_delay_s": _f(_mean(_floats(jobs, "queue_delay_s"))) if n else None,
        "max_queued_jobs": _max_queued(out),
        "cold_starts": t.cold_starts,
        "reloads": t.reloads,
        "warm_hits": t.warm_hits,
        "job_cold_starts": job_loads,
        "warm_hit_rate": t.warm_hits / hits_possible if hits_possible else 0.0,
        "prewarms": t.prewarms,
        "releases": t.releases,
        "rescales": t.rescales,
        "invalid_requests": t.invalid,
        "bank_assessments_mean": _mean(_values(jobs, "bank_assessments")) if n else 0.0,
        "bank_lookup_s_mean": _mean(_values(jobs, "bank_lookup_s")) if n else 0.0,
        "bank_saving_mean": _saving(jobs),
        "events": out.stats.events,
        "decisions": out.stats.decisions,
        "decide_wall_s": out.stats.decide_wall_s,
        "sim_wall_s": out.stats.sim_wall_s,
        "sim_end_s": out.stats.end_s,
        "horizon_s": out.stats.horizon_s,
        "horizon_hit": out.stats.horizon_hit,
    }


def run_summary(
    out: RunOutcome,
    jobs: pd.DataFrame | Table,
    policy: str,
    gpus: int,
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR,
    rejected_jct: str = "censor_at_end",
) -> dict[str, Any]:
    """:func:`summarize` plus what names the run (``policy``, ``gpus``) and the first refused
    requests (``invalid_examples``): the summary every driver's ``summary.json`` starts from."""
    summary = summarize(out, jobs, price_per_gpu_hour, rejected_jct)
    summary["policy"] = policy
    summary["gpus"] = gpus
    summary["invalid_examples"] = out.stats.invalid[:5]
    return summary
