"""Converters from public trace formats to canonical jobs.

- ElasticFlow CSV (``job_id,submission_time,num_iteration,model_name,deadline,batch_size,
  num_gpu,duration``, also its generator's ``submit_time,iteration,ddl`` spelling).
- Generic cluster logs (Helios / Acme style): ``submit_time`` or ``submission_time`` (seconds, or
  clock times, read as UTC when no offset is given), ``num_gpus``, ``gpu_num`` or ``num_gpu``,
  ``duration`` (seconds); an optional ``job_id``; other columns are ignored.
- Philly JSON (``cluster_job_log`` of msr-fiddle/philly-traces).

Cluster logs carry no model, task, iterations or deadline: a job gets a model (from the mix, or
the one given) and a task drawn from the seeded ``rng``, iterations = its logged duration / the
profile's step time on its GPUs, and deadline = arrival + ratio x that ideal run time.
docs/traces.md says what each converter takes from which field.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ptsim.core.profiles import ProfileSet
from ptsim.core.types import JobSpec
from ptsim.trace.cells import CellError, is_empty, to_float, to_int, to_str
from ptsim.trace.generator import WorkloadSpec, model_probs
from ptsim.trace.loader import (
    TraceError,
    check_job,
    check_unique_ids,
    read_table,
    read_text,
    sort_jobs,
)
from ptsim.trace.schema import job_from_row

ModelChoice = str | Mapping[str, str] | None
TimeUnit = Literal["s", "min", "ms"]
TIME_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "ms": 0.001}
"""Seconds per unit of a source's numeric times (``--time-unit``) and durations
(``--duration-unit``)."""

PLAUSIBLE_LOAD = (0.005, 20.0)
"""Offered loads outside this range, on the cluster size asked for, draw a warning."""
PLAUSIBLE_RATE_PER_MIN = 60.0
"""More jobs per minute than this, on average over 100 jobs or more, draw a warning."""
PLAUSIBLE_SPAN_S = 366 * 86400.0
"""A span of arrivals longer than this (a year) draws a warning."""


@dataclass(frozen=True)
class Converted:
    """The jobs a converter produced and how many source jobs it skipped, by reason."""

    jobs: list[JobSpec]
    skipped: Mapping[str, int] = field(default_factory=dict)
    demand_gpu_s: float | None = None

    def summary(self) -> str:
        """One line: job count and skips."""
        skips = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
        return f"{len(self.jobs)} jobs" + (f"; skipped {skips}" if skips else "")

    def implausible(self, path: str | os.PathLike[str], num_gpus: int) -> str | None:
        """One line naming ``path`` when the trace's arrival span, arrival rate or offered load
        on ``num_gpus`` GPUs (its logged GPU-seconds / (span x GPUs), where the source logs
        run times) is implausible, as when a time unit is misread; None otherwise."""
        span = self.jobs[-1].arrival - self.jobs[0].arrival
        n = len(self.jobs)
        parts = [f"{n} jobs over {span:g} s"]
        bad = span > PLAUSIBLE_SPAN_S
        if span > 0:
            rate = 60.0 * n / span
            parts.append(f"{rate:.3g} jobs/min")
            bad |= n >= 100 and rate > PLAUSIBLE_RATE_PER_MIN
            if self.demand_gpu_s is not None:
                load = self.demand_gpu_s / (span * num_gpus)
                parts.append(f"offered load {load:.3g} on {num_gpus} GPUs")
                bad |= not PLAUSIBLE_LOAD[0] <= load <= PLAUSIBLE_LOAD[1]
        if not bad:
            return None
        return (
            f"{Path(path)}: implausible trace ({', '.join(parts)}); are its times in another "
            "unit (--time-unit, --duration-unit: s|min|ms), or for another cluster size (--gpus)?"
        )


@dataclass(frozen=True, slots=True)
class _Record:
    """One usable job of a cluster log: submission (s, any origin), GPUs, run time (s)."""

    row: int
    job_id: str
    submit: float
    gpus: int
    duration: float


def _maybe_column(header: Sequence[str], *names: str) -> str | None:
    """The first of ``names`` the header has, if any."""
    return next((n for n in names if n in header), None)


def _column(path: Path, header: Sequence[str], *names: str) -> str:
    """The first of ``names`` the header has; an error if it has none."""
    found = _maybe_column(header, *names)
    if found is None:
        raise TraceError(path, "missing column", column=" or ".join(names))
    return found


def _cell(path: Path, row: int, column: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except CellError as e:
        raise TraceError(path, str(e), row=row, column=column) from None


def _clock_seconds(value: Any) -> float | None:
    """Seconds since the epoch of a clock-time text (UTC unless it has an offset); None if the
    value is not a clock time."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.timestamp()


def _submit_seconds(path: Path, row: int, column: str, value: Any) -> tuple[float, bool]:
    """Seconds of a submission time given as a number or a clock time, and whether it was a
    clock time."""
    try:
        return to_float(value), False
    except CellError as e:
        secs = _clock_seconds(value)
        if secs is None:
            raise TraceError(path, f"{e}, nor a clock time", row, column) from None
        return secs, True


UNIT_HINT = "are the source's times in another unit? --time-unit: s|min|ms"
"""Said after a converted time above the loader's limit, where the source's unit may be wrong."""


def _job(
    path: Path,
    row: int,
    values: dict[str, Any],
    row_word: str = "row",
    notes: Mapping[str, str] | None = None,
) -> JobSpec:
    """The job of a converted source row, checked as the loader checks a trace's rows
    (``loader.check_job``), so a converter never makes a trace the loader refuses. The error
    names the source file and row, the converted job and its column, and adds ``notes`` of
    that column (how its value was made)."""
    try:
        check_job(path, row, values)
    except TraceError as e:
        note = (notes or {}).get(e.column or "")
        what = f"column {e.column}: {e.what}" + (f"; {note}" if note else "")
        what = f"the converted job {values['job_id']!r} would not load ({what})"
        raise TraceError(path, what, row, row_word=row_word) from None
    return job_from_row(values)


def _map_model(path: Path, row: int, column: str, name: str, model: ModelChoice) -> str:
    if model is None:
        return name
    if isinstance(model, str):
        return model
    if name not in model:
        mapped = ", ".join(sorted(model))
        raise TraceError(path, f"no mapping for model {name!r}; mapped: {mapped}", row, column)
    return model[name]


def convert_elasticflow(
    path: str | os.PathLike[str],
    cfg: WorkloadSpec,
    rng: np.random.Generator,
    *,
    model: ModelChoice = None,
    deadline: Literal["absolute", "relative"] = "absolute",
    rebase: bool = True,
    time_unit: TimeUnit = "s",
    duration_unit: TimeUnit = "s",
) -> Converted:
    """Jobs of an ElasticFlow trace (CSV or Parquet).

    ``deadline``: how the ``deadline``/``ddl`` column is read. ElasticFlow's own code treats it
    as absolute, on the ``submission_time`` clock (the default; see docs/traces.md).
    ``model``: keep ElasticFlow's model names (None), use one model for every job (a name), or
    map names (a mapping; an unmapped name is an error). ``rebase``: shift times so that the
    first submission is at 0. Tasks are drawn uniformly from ``cfg.tasks``; the GPU range is
    ``cfg.min_gpus``..``cfg.max_gpus``, widened to hold the requested count. Best-effort jobs
    (``best_effort`` = 1) are skipped. ``time_unit``: the unit of ``submission_time`` and
    ``deadline``; ``duration_unit``: that of ``duration`` (only used for ``Converted``'s
    logged demand); seconds by default.
    """
    unit, dur_unit = _unit(time_unit), _unit(duration_unit)
    p = Path(path)
    header, rows = read_table(p)
    c_sub = _column(p, header, "submission_time", "submit_time")
    c_it = _column(p, header, "num_iteration", "iteration")
    c_ddl = _column(p, header, "deadline", "ddl")
    c_be = _maybe_column(header, "best_effort")
    c_dur = _maybe_column(header, "duration")
    for name in ("job_id", "model_name", "batch_size", "num_gpu"):
        _column(p, header, name)
    if not rows:
        raise TraceError(p, "empty trace: no jobs")
    parsed = []
    skipped: Counter[str] = Counter()
    demand: float | None = None if c_dur is None else 0.0
    for i, r in enumerate(rows, start=1):
        if c_be and not is_empty(r[c_be]) and _cell(p, i, c_be, to_int, r[c_be]) == 1:
            skipped["best effort"] += 1
            continue
        jid = _cell(p, i, "job_id", to_str, r["job_id"])
        sub = _cell(p, i, c_sub, to_float, r[c_sub]) * unit
        ddl = _cell(p, i, c_ddl, to_float, r[c_ddl]) * unit
        its = _cell(p, i, c_it, to_int, r[c_it])
        batch = _cell(p, i, "batch_size", to_int, r["batch_size"])
        gpus = _cell(p, i, "num_gpu", to_int, r["num_gpu"])
        for col, v in ((c_it, its), ("batch_size", batch), ("num_gpu", gpus)):
            if v < 1:
                raise TraceError(p, f"{v} is below 1", i, col)
        if deadline == "relative":
            if ddl < 0:
                raise TraceError(p, f"relative deadline {ddl!r} is negative", i, c_ddl)
            ddl = sub + ddl
        elif ddl < sub:
            raise TraceError(p, f"{ddl!r} is before {c_sub} {sub!r} (read as absolute)", i, c_ddl)
        if sub < 0 and not rebase:
            raise TraceError(p, f"{sub!r} is negative (convert with rebase)", i, c_sub)
        name = _cell(p, i, "model_name", to_str, r["model_name"])
        m = _map_model(p, i, "model_name", name, model)
        parsed.append((i, jid, sub, m, ddl, batch, its, gpus))
        if demand is not None and c_dur is not None:
            if is_empty(r[c_dur]):
                demand = None
            else:
                demand += _cell(p, i, c_dur, to_float, r[c_dur]) * dur_unit * gpus
    if not parsed:
        raise TraceError(p, "no usable jobs")
    check_unique_ids(p, ((x[0], x[1]) for x in parsed))
    t0 = min(x[2] for x in parsed) if rebase else 0.0
    parsed.sort(key=lambda x: (x[2], x[1]))
    tasks = rng.integers(0, len(cfg.tasks), size=len(parsed))
    jobs = [
        _job(
            p,
            i,
            {
                "job_id": jid,
                "arrival_s": sub - t0,
                "model": m,
                "task": cfg.tasks[tasks[k]],
                "deadline_s": ddl - t0,
                "batch_size": batch,
                "iterations": its,
                "num_gpus": g,
                "min_gpus": min(cfg.min_gpus, g),
                "max_gpus": max(cfg.max_gpus, g),
            },
            notes={"arrival_s": UNIT_HINT},
        )
        for k, (i, jid, sub, m, ddl, batch, its, g) in enumerate(parsed)
    ]
    return Converted(sort_jobs(jobs), dict(skipped), demand)


def _unit(time_unit: str) -> float:
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time unit {time_unit!r}: expected one of {', '.join(TIME_UNITS)}")
    return TIME_UNITS[time_unit]


def _demand(records: Sequence[_Record]) -> float:
    """Logged GPU-seconds of cluster-log records."""
    return float(sum(r.duration * r.gpus for r in records))


def _synthesize(
    path: Path,
    records: list[_Record],
    cfg: WorkloadSpec,
    profiles: ProfileSet,
    rng: np.random.Generator,
    model: str | None,
    row_word: str = "row",
    unit_hint: str = UNIT_HINT,
) -> list[JobSpec]:
    """Canonical jobs from cluster-log records (see the module docstring)."""
    if not records:
        raise TraceError(path, "no usable jobs")
    check_unique_ids(path, ((r.row, r.job_id) for r in records))
    for m in [model] if model else cfg.models:
        profiles.model(m)
    t0 = min(r.submit for r in records)
    records = sorted(records, key=lambda r: (r.submit, r.job_id))
    n = len(records)
    model_idx = rng.choice(len(cfg.models), size=n, p=model_probs(cfg))
    task_idx = rng.integers(0, len(cfg.tasks), size=n)
    ratios = rng.choice(np.asarray(cfg.deadline_ratios, dtype=np.float64), size=n)
    jobs = []
    for k, r in enumerate(records):
        m = model or cfg.models[model_idx[k]]
        batch = cfg.per_gpu_batch * r.gpus
        step = profiles.step_time(m, r.gpus, batch)
        iters = max(1, round(r.duration / step))
        arrival, ratio = r.submit - t0, float(ratios[k])
        values = {
            "job_id": r.job_id,
            "arrival_s": arrival,
            "model": m,
            "task": cfg.tasks[task_idx[k]],
            "deadline_s": arrival + ratio * iters * step,
            "batch_size": batch,
            "iterations": iters,
            "num_gpus": r.gpus,
            "min_gpus": min(cfg.min_gpus, r.gpus),
            "max_gpus": max(cfg.max_gpus, r.gpus),
        }
        notes = {
            "arrival_s": unit_hint,
            "deadline_s": f"arrival {arrival:g} s + deadline ratio {ratio:g} (--ratios) x ideal "
            f"run time {iters * step:g} s",
            "iterations": f"run time {r.duration:g} s / step time {step:g} s",
        }
        jobs.append(_job(path, r.row, values, row_word, notes))
    return sort_jobs(jobs)


def convert_generic(
    path: str | os.PathLike[str],
    cfg: WorkloadSpec,
    profiles: ProfileSet,
    rng: np.random.Generator,
    *,
    model: str | None = None,
    time_unit: TimeUnit = "s",
    duration_unit: TimeUnit = "s",
) -> Converted:
    """Jobs of a generic cluster log (CSV or Parquet; Helios / Acme style).

    Submission times are seconds or clock times (ISO 8601, e.g. ``2020-04-01 00:00:05``; UTC
    unless an offset is given), all of one kind; arrivals count from the first kept job. Jobs
    with no GPUs, an empty duration, or a zero duration are skipped. ``model`` gives every job
    that model; otherwise models are drawn from ``cfg``'s mix. ``time_unit``: the unit of
    numeric submission times (clock times are clock times); ``duration_unit``: that of
    ``duration``; seconds by default.
    """
    unit, dur_unit = _unit(time_unit), _unit(duration_unit)
    p = Path(path)
    header, rows = read_table(p)
    c_sub = _column(p, header, "submit_time", "submission_time")
    c_gpu = _column(p, header, "num_gpus", "gpu_num", "num_gpu")
    c_dur = _column(p, header, "duration")
    c_id = _maybe_column(header, "job_id")
    records: list[_Record] = []
    skipped: Counter[str] = Counter()
    clock: bool | None = None
    for i, r in enumerate(rows, start=1):
        gpus = _cell(p, i, c_gpu, to_int, r[c_gpu])
        if gpus < 0:
            raise TraceError(p, f"{gpus} is negative", i, c_gpu)
        if is_empty(r[c_dur]):
            skipped["no duration"] += 1
            continue
        dur = _cell(p, i, c_dur, to_float, r[c_dur]) * dur_unit
        if dur < 0:
            raise TraceError(p, f"{dur!r} is negative", i, c_dur)
        secs, is_clock = _submit_seconds(p, i, c_sub, r[c_sub])
        secs = secs if is_clock else secs * unit
        if clock is None:
            clock = is_clock
        if is_clock != clock:
            kind = "clock times" if clock else "numbers"
            raise TraceError(p, f"{r[c_sub]!r} is not like earlier rows ({kind})", i, c_sub)
        if gpus == 0:
            skipped["no GPUs"] += 1
        elif dur == 0:
            skipped["zero duration"] += 1
        else:
            jid = _cell(p, i, c_id, to_str, r[c_id]) if c_id else f"r{i:06d}"
            records.append(_Record(i, jid, secs, gpus, dur))
    jobs = _synthesize(p, records, cfg, profiles, rng, model)
    return Converted(jobs, dict(skipped), _demand(records))


def _philly_time(path: Path, job: int, name: str, value: Any) -> float | None:
    if value is None or value in ("", "None"):
        return None
    secs = _clock_seconds(value)
    if secs is None:
        raise TraceError(
            path,
            f"{value!r} is not a time like '2017-10-03 02:52:33'",
            job,
            name,
            row_word="job",
            column_word="field",
        )
    return secs


def convert_philly(
    path: str | os.PathLike[str],
    cfg: WorkloadSpec,
    profiles: ProfileSet,
    rng: np.random.Generator,
    *,
    model: str | None = None,
) -> Converted:
    """Jobs of a Philly ``cluster_job_log`` (JSON: a list of jobs with ``jobid``,
    ``submitted_time``, ``attempts`` [{``start_time``, ``end_time``, ``detail``: [{``ip``,
    ``gpus``}]}], ``status``). Times are read as UTC.

    Run time = last attempt's end - first attempt's start; GPUs = the most any attempt held.
    Jobs never started, unfinished (last attempt has no end), without a submission time, with
    no GPUs or with a zero run time are skipped and counted. Errors name the job's position in
    the list (from 1) and the field.
    """
    p = Path(path)
    try:
        data = json.loads(read_text(p))
    except json.JSONDecodeError as e:
        raise TraceError(p, f"not valid JSON: {e}") from None
    if not isinstance(data, list) or not data:
        raise TraceError(p, "expected a non-empty JSON list of jobs")

    def bad(job: int, name: str, what: str) -> TraceError:
        return TraceError(p, what, job, name, row_word="job", column_word="field")

    records: list[_Record] = []
    skipped: Counter[str] = Counter()
    for i, job in enumerate(data, start=1):
        if not isinstance(job, dict):
            raise bad(i, "(job)", "expected an object")
        for name in ("jobid", "submitted_time", "attempts"):
            if name not in job:
                raise bad(i, name, "missing")
        jid = job["jobid"]
        if not isinstance(jid, str) or not jid:
            raise bad(i, "jobid", f"{jid!r} is not a non-empty string")
        attempts = job["attempts"]
        if not isinstance(attempts, list):
            raise bad(i, "attempts", "expected a list")
        submit = _philly_time(p, i, "submitted_time", job["submitted_time"])
        spans: list[tuple[float | None, float | None]] = []
        gpus = 0
        for k, a in enumerate(attempts):
            where = f"attempts[{k}]"
            if not isinstance(a, dict) or not isinstance(a.get("detail", []), list):
                raise bad(i, where, "expected an object with a list 'detail'")
            start = _philly_time(p, i, f"{where}.start_time", a.get("start_time"))
            end = _philly_time(p, i, f"{where}.end_time", a.get("end_time"))
            spans.append((start, end))
            held = 0
            for d in a.get("detail", []):
                if not isinstance(d, dict) or not isinstance(d.get("gpus"), list):
                    raise bad(i, f"{where}.detail", "expected objects with a list 'gpus'")
                held += len(d["gpus"])
            gpus = max(gpus, held)
        started = [(s, e) for s, e in spans if s is not None]
        if submit is None:
            skipped["no submitted_time"] += 1
        elif not started:
            skipped["never started"] += 1
        elif started[-1][1] is None:
            skipped["unfinished"] += 1
        elif gpus == 0:
            skipped["no GPUs"] += 1
        else:
            end = started[-1][1]
            assert end is not None
            duration = end - started[0][0]
            if duration < 0:
                raise bad(i, "attempts", "last attempt ends before the first one starts")
            if duration == 0:
                skipped["zero duration"] += 1
            else:
                records.append(_Record(i, jid, submit, gpus, duration))
    check_unique_ids(p, ((r.row, r.job_id) for r in records), "jobid", rows_word="jobs")
    jobs = _synthesize(p, records, cfg, profiles, rng, model, "job", unit_hint="")
    return Converted(jobs, dict(skipped), _demand(records))
