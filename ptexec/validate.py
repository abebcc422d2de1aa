"""``ptexec validate``: replay one small trace on the executor and in ptsim with the profile the
executor planned with, and report the per-job difference.

ptsim gets the executor's jobs with each job's *realised* step count as its iterations (the
executor learns it by training; the simulator is given it), the same policy and knobs, the same
arrivals and deadlines, one node of as many GPUs as the executor had workers, and the measured
profile (step times, load times, hand-over and resize pauses). No bank in the simulation: the
executor's bank effect is already in the realised step counts, and its lookup time is not
simulated. What remains is the mechanics: queueing, loads, pauses, step time, and what ptsim does
not model (held-out evaluations, checkpoints, the driver's own latency).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptexec.driver import ExecOutcome
from ptsim.core.profiles import ProfileSet
from ptsim.outcome import RunResult, save_result, write_csv, write_json
from ptsim.specs import ClusterSpec

COMPARE = ("first_start_s", "jct_s", "gpu_seconds")


def simulate_like(
    outcome: ExecOutcome,
    policy: str,
    params: dict[str, Any],
    profiles: ProfileSet,
    workers: int,
    price_per_gpu_hour: float,
) -> RunResult:
    """ptsim's run of the executor's jobs (realised steps as iterations) on ``workers`` GPUs."""
    from ptsim.run import run_policy  # the simulator (simpy) only when validating

    specs = []
    for jid, rec in outcome.state.jobs.items():
        run = outcome.runs.get(jid)
        steps = run.step if run is not None and run.done else rec.spec.iterations
        specs.append(replace(rec.spec, iterations=max(1, int(steps))))
    cluster = ClusterSpec(nodes=1, gpus_per_node=workers, price_per_gpu_hour=price_per_gpu_hour)
    res = run_policy(specs, policy, params, profiles, cluster, bank=None)
    res.summary["seed"] = outcome.seed  # as ptsim's run_config records it
    return res


def compare(executor: RunResult, sim: RunResult) -> pd.DataFrame:
    """One row per job: each compared metric on the executor, in ptsim and their difference."""
    a: dict[Any, dict[Any, Any]] = executor.jobs.set_index("job_id").to_dict("index")
    b: dict[Any, dict[Any, Any]] = sim.jobs.set_index("job_id").to_dict("index")
    rows = []
    for jid in a:
        row: dict[str, Any] = {"job_id": jid, "steps": a[jid]["steps"]}
        for col in COMPARE:
            x, y = float(a[jid][col]), float(b[jid][col])
            row[f"exec_{col}"] = x
            row[f"sim_{col}"] = y
            row[f"diff_{col}"] = x - y
        row["rel_diff_jct"] = (
            (row["exec_jct_s"] - row["sim_jct_s"]) / row["sim_jct_s"]
            if row["sim_jct_s"] and not math.isnan(row["sim_jct_s"])
            else math.nan
        )
        row["exec_met_deadline"] = bool(a[jid]["met_deadline"])
        row["sim_met_deadline"] = bool(b[jid]["met_deadline"])
        row["same_deadline_outcome"] = row["exec_met_deadline"] == row["sim_met_deadline"]
        row["exec_eval_s"] = float(a[jid]["eval_s"])
        row["exec_pause_s"] = float(a[jid]["exec_pause_s"])
        row["sim_pause_s"] = float(b[jid]["pause_s"])
        for col in ("cold_starts", "warm_hits"):
            row[f"exec_{col}"] = int(a[jid][col])
            row[f"sim_{col}"] = int(b[jid][col])
        rows.append(row)
    return pd.DataFrame(rows)


def summary_of(table: pd.DataFrame) -> dict[str, Any]:
    """Headline agreement numbers."""

    def _m(x: pd.Series) -> float | None:
        v = x.dropna().to_numpy(dtype=float)
        return float(np.mean(v)) if len(v) else None

    return {
        "jobs": len(table),
        "mean_abs_diff_jct_s": _m(table.diff_jct_s.abs()),
        "mean_rel_diff_jct": _m(table.rel_diff_jct),
        "mean_abs_rel_diff_jct": _m(table.rel_diff_jct.abs()),
        "mean_abs_diff_gpu_seconds": _m(table.diff_gpu_seconds.abs()),
        "mean_exec_eval_s": _m(table.exec_eval_s),
        "mean_abs_diff_jct_s_less_evals": _m((table.diff_jct_s - table.exec_eval_s).abs()),
        "deadline_outcome_agreement": float(table.same_deadline_outcome.mean()),
    }


def save_validation(
    out: Path, executor: RunResult, sim: RunResult, table: pd.DataFrame
) -> dict[str, Any]:
    """Write ``ptsim/`` (the simulated run's tables), ``validate.csv`` and
    ``validate.json``; returns the summary."""
    save_result(sim, out / "ptsim")
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
        "exec_jct_s",
        "sim_jct_s",
        "diff_jct_s",
        "exec_eval_s",
        "exec_met_deadline",
        "sim_met_deadline",
        "exec_gpu_seconds",
        "sim_gpu_seconds",
    ]
    return table[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}")
