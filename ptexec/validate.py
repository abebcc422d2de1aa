"""``ptexec validate``: replay the executor's jobs in ptsim with what the executor measured, and
report per job how far the simulator is from the real run, and why.

The simulation gets what makes the comparison fair:

- the same jobs (arrivals, deadlines, models, batches, GPU ranges) with the same
  ``iterations`` the executor's policy planned with, and each job's *true* iterations as the
  executor measured them by training (its step count), given to ptsim as the realised
  iterations (``ClusterState``'s ``iterations`` function), so the policies know no more in
  ptsim than in the executor;
- the same policy and knobs, one node of as many GPUs as the executor had workers;
- the very ``ProfileSet`` the executor planned with (measured step, load, hand-over, resize,
  held-out evaluation and checkpoint times, with the run's evaluation and checkpoint cadences);
- each job's initial prompt as the executor's bank chose it, with its measured lookup time
  (``ReplayBank``): the bank's effect on iterations is already in the step counts;
- what the policies knew of the iterations: the executor's convergence model (its prior and
  estimator settings) and each job's measured held-out evaluations as its accuracy readings
  (``ptexec.jobrun.readings_of``), so at the same progress a policy sees the same estimate in
  both drivers.

Per job it reports start, finish, JCT, the simulator's JCT error relative to the executor, both
deadline outcomes, and the JCT difference (executor minus ptsim) split by mechanism:

- ``load``: model loads on the job's behalf (executor: measured; ptsim: cold starts x the
  profile's cold start);
- ``lookup``: the Prompt Bank lookup (the same number on both sides: its residual is 0 for the
  job itself; a lookup in the executor also stalls the other jobs, which shows in theirs);
- ``handover``: first start and resize pauses (executor: the real moves; ptsim: the modelled
  pauses less lookup and step-0 evaluation);
- ``eval``, ``checkpoint``: held-out evaluations and checkpoint writes (executor: measured;
  ptsim: ``heldout_eval_s`` x evaluations plus ``full_eval_s`` after each screen near the
  target (``screen_margin``), ``checkpoint_s`` x steps / ``checkpoint_every``);
- ``step``: time in training steps (executor: measured per step, from sending a step's
  requests to resuming the job with their replies, so it holds the loop's per-step cost;
  ptsim: the throughput table plus the profile's ``loop_overhead_s`` per step, which the
  ``sim_loop_s`` column shows on its own: without worker-side time stamps the executor's
  loop time cannot be told apart from its step time, so the two share one residual);
- ``queue``: the rest: waiting for GPUs, the driver's own latency, overlaps of the above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptexec.driver import ExecOutcome
from ptexec.jobrun import readings_of
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.profiles import ProfileSet, ThroughputTable
from ptsim.core.state import ClusterState, JobRecord
from ptsim.core.types import DEFAULT_INIT, InitChoice, JobSpec, JobState
from ptsim.metrics import jobs_table, run_summary, series_table
from ptsim.outcome import RunOutcome, RunResult, save_result, write_csv, write_json

MECHANISMS = ("queue", "load", "lookup", "handover", "eval", "checkpoint", "step")
"""The mechanisms the JCT difference is split into (see the module doc)."""

TARGETS = {"median_abs_jct_error": 0.05, "max_abs_jct_error": 0.15, "same_outcome": 0.95}
"""Issue 10's agreement targets: median |JCT error| <= 5%, none above 15%, the same deadline
outcome for >= 95% of jobs."""

COLUMNS = (
    "job_id",
    "model",
    "steps",
    "gpus",
    "arrival_s",
    "deadline_s",
    "exec_start_s",
    "sim_start_s",
    "exec_finish_s",
    "sim_finish_s",
    "exec_jct_s",
    "sim_jct_s",
    "jct_error",
    "run_error",
    "exec_met_deadline",
    "sim_met_deadline",
    "same_deadline_outcome",
    "exec_rescales",
    "sim_rescales",
    "exec_cold_starts",
    "sim_cold_starts",
    "exec_gpu_seconds",
    "sim_gpu_seconds",
    "sim_loop_s",
    *(f"residual_{m}_s" for m in MECHANISMS),
)
"""``validate.csv``'s columns: ``jct_error`` = (ptsim - executor) / executor JCT; ``run_error``
the same for the time from first start to finish (the job's own run, without its wait);
``sim_loop_s`` the part of ptsim's step time that is the driver loop's per-step cost
(``loop_overhead_s``, 0 without it); ``residual_<mechanism>_s`` = executor minus ptsim
seconds, summing to the JCT difference."""


class ReplayBank:
    """An ``InitChooser`` that gives every job the initial prompt the executor's bank chose
    for it (with its measured lookup time and assessments)."""

    def __init__(self, choices: Mapping[str, InitChoice]) -> None:
        self.choices = dict(choices)

    def choose(self, spec: JobSpec) -> InitChoice:
        return self.choices.get(spec.job_id, DEFAULT_INIT)


@dataclass
class _Trace:
    running_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    loop_s: float = 0.0


class TracingState(ClusterState):
    """ptsim's cluster state, also adding up each job's training time (the throughput table's
    part of its running time plus the loop's per-step cost, without the evaluation and
    checkpoint overheads), the loop's part of it, and its held-out evaluation time (screens
    and full evaluations), each at the contention it ran under."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: dict[str, _Trace] = {}

    def _settle(self, rec: JobRecord, now: float) -> None:  # every end of a running stretch
        if rec.state is JobState.RUNNING and rec.rate > 0:
            s = rec.spec
            dt = now - rec.progress_at
            left = max(0.0, rec.iters_needed - rec.iters_done)
            t = self.trace.setdefault(s.job_id, _Trace())
            full = rec.full_evals
            if full is None:
                iters = min(rec.rate * dt, left)
            else:  # the time it did not step was spent in full evaluations
                iters = min(self.progress(rec, now) - rec.iters_done, left)
                t.eval_s += max(0.0, dt - iters / full.rate)
            t.running_s += dt
            loop = iters * self.profiles.loop_overhead_time(s.model, rec.busy_share)
            t.loop_s += loop
            t.train_s += loop + iters * self.profiles.train_step_time(
                s.model, rec.running_gpus, s.batch_size, rec.busy_share
            )
            every = self.mech.eval_every
            if every:
                t.eval_s += iters * self.profiles.heldout_eval_time(s.model, rec.busy_share) / every
        super()._settle(rec, now)


@dataclass
class Simulated:
    """ptsim's run of the executor's jobs: its tables and its outcome (for the residuals)."""

    result: RunResult
    outcome: RunOutcome
    trace: dict[str, _Trace] = field(default_factory=dict)


def contention_variants(profiles: ProfileSet) -> dict[str, ProfileSet]:
    """The two profiles a contended profile (``ModelProfile.contended``) holds without the
    contention mechanism: ``idle`` (every step and evaluation at the idle time) and ``busy``
    (at the contended time wherever it was measured, i.e. as if the other workers always
    trained: what ``ptexec profile --busy`` measures). Empty for a profile without contention.
    ``benchmarks/validate_bench.py`` replays each executor run with them too, to show what the
    mechanism changes on the same runs."""
    if not profiles.contention:
        return {}
    idle, busy = {}, {}
    for name, m in profiles.models.items():
        idle[name] = replace(
            m,
            contended=None,
            contended_heldout_eval_s=None,
            contended_full_eval_s=None,
            contended_loop_overhead_s=None,
        )
        if m.contended is None:
            busy[name] = idle[name]
            continue
        t, c = m.throughput, m.contended
        cells = np.array(
            [
                [
                    c.iters_per_second(g, b) if g in c.gpu_counts else t.iters_per_second(g, b)
                    for g in t.gpu_counts
                ]
                for b in t.batches
            ]
        )
        busy[name] = replace(
            idle[name],
            throughput=ThroughputTable(t.batches, t.gpu_counts, cells),
            heldout_eval_s=m.contended_heldout_eval_s
            if m.contended_heldout_eval_s is not None
            else m.heldout_eval_s,
            full_eval_s=m.contended_full_eval_s
            if m.contended_full_eval_s is not None
            else m.full_eval_s,
            loop_overhead_s=m.contended_loop_overhead_s
            if m.contended_loop_overhead_s is not None
            else m.loop_overhead_s,
        )
    return {
        "idle": replace(profiles, models=idle, name=f"{profiles.name} (idle)"),
        "busy": replace(profiles, models=busy, name=f"{profiles.name} (busy)"),
    }


def without_full_evals(profiles: ProfileSet) -> ProfileSet:
    """``profiles`` without the screened-evaluation mechanic (no model has ``full_eval_s``):
    every evaluation charged as its screen, as before the mechanic. ``validate_bench.py``
    replays each executor run with it too, to show what the mechanic changes."""
    models = {
        name: replace(m, full_eval_s=0.0, contended_full_eval_s=None)
        for name, m in profiles.models.items()
    }
    return replace(profiles, models=models, name=f"{profiles.name} (screens only)")


def without_loop_overhead(profiles: ProfileSet) -> ProfileSet:
    """``profiles`` without the driver loop's per-step cost (no model has
    ``loop_overhead_s``), as before the mechanic. ``validate_bench.py`` replays each executor
    run with it too, to show what the mechanic changes."""
    models = {
        name: replace(m, loop_overhead_s=0.0, contended_loop_overhead_s=None)
        for name, m in profiles.models.items()
    }
    return replace(profiles, models=models, name=f"{profiles.name} (no loop overhead)")


def screen_margin(outcome: ExecOutcome) -> float:
    """The executor's screening margin (``TuningConfig.eval_screen_margin``, in accuracy) as
    ``Mechanics.full_eval_margin`` (a fraction of the way from a job's initial accuracy to its
    target, the unit of the accuracy readings): ``margin / (target - initial accuracy)`` per
    job with an accuracy target, a screen and a first evaluation below the target, the median
    over those jobs, at most 1; 0 when there is none."""
    per_job = []
    for jid in sorted(outcome.runs):
        run = outcome.runs[jid]
        tun = run.job.tuning
        if tun.eval_screen is None or tun.target_accuracy is None or not run.evals:
            continue
        gap = tun.target_accuracy - run.evals[0][2]
        if gap > 0:
            per_job.append(min(1.0, tun.eval_screen_margin / gap))
    return float(np.median(per_job)) if per_job else 0.0


def with_screen_margin(profiles: ProfileSet, outcome: ExecOutcome) -> ProfileSet:
    """``profiles`` with the executor's screening margin (``screen_margin``) when some model
    has a full evaluation time and the profile sets no margin of its own."""
    if profiles.mechanics.full_eval_margin > 0 or not any(
        m.full_eval_s > 0 for m in profiles.models.values()
    ):
        return profiles
    mech = replace(profiles.mechanics, full_eval_margin=screen_margin(outcome))
    return replace(profiles, mechanics=mech)


def realised_steps(outcome: ExecOutcome) -> dict[str, int]:
    """Each job's true iterations as the executor measured them (its step count; a job that
    did not finish keeps its planned iterations)."""
    out = {}
    for jid, rec in outcome.state.jobs.items():
        run = outcome.runs.get(jid)
        out[jid] = max(1, int(run.step if run is not None and run.done else rec.spec.iterations))
    return out


def simulate_like(
    outcome: ExecOutcome,
    policy: str,
    params: Mapping[str, Any],
    workers: int,
    price_per_gpu_hour: float,
    profiles: ProfileSet | None = None,
) -> Simulated:
    """ptsim's run of the executor's jobs on ``workers`` GPUs (see the module doc);
    ``profiles`` default to the ones the executor planned with; either way with the
    executor's screening margin (``with_screen_margin``)."""
    from ptsim.run import simulate_jobs  # the simulator (simpy) only when validating

    prof = with_screen_margin(profiles if profiles is not None else outcome.state.profiles, outcome)
    steps = realised_steps(outcome)
    specs = [rec.spec for rec in outcome.state.jobs.values()]
    choices = {jid: rec.init for jid, rec in outcome.state.jobs.items() if rec.init is not None}
    pol = POLICIES.build(policy, PolicyContext(prof, ReplayBank(choices)), dict(params))

    def iterations(spec: JobSpec, init: InitChoice) -> float:
        return float(steps[spec.job_id])

    conv = outcome.convergence
    known: dict[str, Any] = (
        {}
        if conv is None
        else {
            "prior": conv.model.job_prior,
            "estimator": conv.estimator,
            "readings": readings_of(outcome.runs),
        }
    )
    state = TracingState(1, workers, prof, iterations, **known)
    out = simulate_jobs(specs, pol, prof, workers, iterations, state)
    table = jobs_table(out)
    summary = run_summary(out, table, policy, workers, price_per_gpu_hour)
    summary["seed"] = outcome.seed  # as ptsim's run_config records it
    return Simulated(RunResult(policy, summary, table, series_table(out)), out, state.trace)


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def compare(executor: RunResult, outcome: ExecOutcome, sim: Simulated) -> pd.DataFrame:
    """One row per job (``COLUMNS``): start, finish, JCT on both sides, the JCT error, deadline
    outcomes and the JCT difference by mechanism."""
    a: dict[Any, dict[Any, Any]] = executor.jobs.set_index("job_id").to_dict("index")
    b: dict[Any, dict[Any, Any]] = sim.result.jobs.set_index("job_id").to_dict("index")
    prof = outcome.state.profiles
    sim_state = sim.outcome.state
    rows = []
    for jid, x in a.items():
        y = b[jid]
        model = str(x["model"])
        rec_e = outcome.state.jobs[jid]
        rec_s = sim_state.jobs[jid]
        run = outcome.runs.get(jid)
        steps = _f(x["steps"])
        row: dict[str, Any] = {
            "job_id": jid,
            "model": model,
            "steps": int(steps) if not math.isnan(steps) else None,
            "gpus": f"{rec_e.spec.min_gpus}-{rec_e.spec.max_gpus}",
            "arrival_s": _f(x["arrival_s"]),
            "deadline_s": _f(x["deadline_s"]),
            "exec_start_s": _f(x["first_start_s"]),
            "sim_start_s": _f(y["first_start_s"]),
            "exec_finish_s": _f(x["finish_s"]),
            "sim_finish_s": _f(y["finish_s"]),
            "exec_jct_s": _f(x["jct_s"]),
            "sim_jct_s": _f(y["jct_s"]),
            "exec_met_deadline": bool(x["met_deadline"]),
            "sim_met_deadline": bool(y["met_deadline"]),
            "exec_rescales": int(x["rescales"]),
            "sim_rescales": int(y["rescales"]),
            "exec_cold_starts": int(x["cold_starts"]),
            "sim_cold_starts": int(y["cold_starts"]),
            "exec_gpu_seconds": _f(x["gpu_seconds"]),
            "sim_gpu_seconds": _f(y["gpu_seconds"]),
        }
        ej, sj = row["exec_jct_s"], row["sim_jct_s"]
        row["jct_error"] = (sj - ej) / ej if ej and not math.isnan(ej) else math.nan
        row["same_deadline_outcome"] = row["exec_met_deadline"] == row["sim_met_deadline"]
        er = row["exec_finish_s"] - row["exec_start_s"]
        sr = row["sim_finish_s"] - row["sim_start_s"]
        row["run_error"] = (sr - er) / er if er and not math.isnan(er) else math.nan
        # executor's parts
        e_lookup = rec_e.init.lookup_s if rec_e.init is not None else 0.0
        e = {
            "load": run.load_s if run else 0.0,
            "lookup": e_lookup,
            "handover": run.exec_pause_s if run else 0.0,
            "eval": run.eval_s if run else 0.0,
            "checkpoint": run.checkpoint_s if run else 0.0,
            "step": run.train_s if run else 0.0,
        }
        # ptsim's parts
        iters = rec_s.iters_done
        mech = prof.mechanics
        m = prof.model(model)
        s_lookup = rec_s.init.lookup_s if rec_s.init is not None else 0.0
        s_eval0 = prof.start_overhead(model) if rec_s.first_start is not None else 0.0
        trace = sim.trace.get(jid)
        s = {
            "load": rec_s.cold_starts * prof.cold_start(model),
            "lookup": s_lookup if rec_s.first_start is not None else 0.0,
            "handover": max(0.0, rec_s.pause_s - s_lookup - s_eval0),
            "eval": s_eval0 + (trace.eval_s if trace is not None else 0.0),
            "checkpoint": (
                iters * m.checkpoint_s / mech.checkpoint_every if mech.checkpoint_every else 0.0
            ),
            "step": trace.train_s if trace is not None else 0.0,
        }
        row["sim_loop_s"] = trace.loop_s if trace is not None else 0.0
        total = ej - sj
        parts = {k: e[k] - s[k] for k in e}
        row["residual_queue_s"] = total - sum(parts.values())
        for k, v in parts.items():
            row[f"residual_{k}_s"] = v
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary_of(table: pd.DataFrame) -> dict[str, Any]:
    """Headline agreement numbers, the targets and whether each is met, and the mean absolute
    residual per mechanism."""
    err = table.jct_error.dropna().abs().to_numpy(dtype=float)
    med = float(np.median(err)) if len(err) else None
    mx = float(np.max(err)) if len(err) else None
    same = float(table.same_deadline_outcome.mean()) if len(table) else None
    out: dict[str, Any] = {
        "jobs": len(table),
        "compared_jobs": len(err),
        "median_abs_jct_error": med,
        "mean_abs_jct_error": float(np.mean(err)) if len(err) else None,
        "max_abs_jct_error": mx,
        "worst_job": (
            str(table.loc[table.jct_error.abs().idxmax(), "job_id"]) if len(err) else None
        ),
        "mean_jct_error": float(np.mean(table.jct_error.dropna())) if len(err) else None,
        "median_abs_run_error": (
            float(np.median(table.run_error.dropna().abs()))
            if table.run_error.notna().any()
            else None
        ),
        "jobs_above_15pct": int((err > TARGETS["max_abs_jct_error"]).sum()),
        "same_outcome": same,
        "mean_abs_diff_jct_s": float(np.mean(np.abs(table.exec_jct_s - table.sim_jct_s))),
        "mean_residual_s": {m: float(table[f"residual_{m}_s"].mean()) for m in MECHANISMS},
        "mean_sim_loop_s": float(table.sim_loop_s.mean()) if len(table) else 0.0,
        "mean_abs_residual_s": {
            m: float(table[f"residual_{m}_s"].abs().mean()) for m in MECHANISMS
        },
    }
    out["targets"] = dict(TARGETS)
    out["met"] = {
        "median_abs_jct_error": med is not None and med <= TARGETS["median_abs_jct_error"],
        "max_abs_jct_error": mx is not None and mx <= TARGETS["max_abs_jct_error"],
        "same_outcome": same is not None and same >= TARGETS["same_outcome"],
    }
    return out


def save_validation(
    out: Path, executor: RunResult, sim: Simulated, table: pd.DataFrame
) -> dict[str, Any]:
    """Write ``ptsim/`` (the simulated run's tables), ``validate.csv`` and
    ``validate.json``; returns the summary."""
    save_result(sim.result, out / "ptsim")
    write_csv(table, out / "validate.csv")
    summary = summary_of(table)
    summary["policy"] = executor.policy
    write_json(summary, out / "validate.json")
    return summary


def format_table(table: pd.DataFrame) -> str:
    """The per-job comparison as text."""
    cols = [
        "job_id",
        "steps",
        "exec_start_s",
        "sim_start_s",
        "exec_jct_s",
        "sim_jct_s",
        "jct_error",
        "run_error",
        "exec_met_deadline",
        "sim_met_deadline",
        *(f"residual_{m}_s" for m in MECHANISMS),
    ]
    show = table[cols].rename(columns=lambda c: c.replace("residual_", "r_"))
    return show.to_string(index=False, float_format=lambda x: f"{x:.3f}")


def format_summary(summary: Mapping[str, Any]) -> str:
    """The headline numbers and the targets, one line each."""
    med, mx, same = (
        summary["median_abs_jct_error"],
        summary["max_abs_jct_error"],
        summary["same_outcome"],
    )
    met = summary["met"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    res = ", ".join(f"{k} {v:+.3f}" for k, v in summary["mean_residual_s"].items())

    def verdict(key: str) -> str:
        return "met" if met[key] else "missed"

    return "\n".join(
        [
            f"median |JCT error| {pct(med)} (target <= 5%: {verdict('median_abs_jct_error')})",
            f"max |JCT error| {pct(mx)} at {summary['worst_job']} (target <= 15%: "
            f"{verdict('max_abs_jct_error')}; {summary['jobs_above_15pct']} jobs above)",
            f"same deadline outcome {pct(same)} (target >= 95%: {verdict('same_outcome')})",
            f"median |run error| (first start to finish) {pct(summary['median_abs_run_error'])}",
            f"mean residual per job [s, executor - ptsim]: {res}",
            f"ptsim's loop overhead per job (in its step time) "
            f"{summary.get('mean_sim_loop_s', 0.0):.3f} s",
        ]
    )
