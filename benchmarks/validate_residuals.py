"""Two residuals of ``ptexec validate`` from a saved bench run
(``benchmarks/validate-runs/<run>/``: ``<policy>-executor-jobs.csv``, ``<policy>-validate.csv``,
``executor-curves.csv``, ``profile-models.csv``, ``jobs.jsonl``):

1. **Repeatability of the executor**: the first job of the trace runs alone until the second
   arrives, identically under every policy; its time per step (evaluations included) over that
   stretch, per policy run, is what the same work took minutes apart on the same machine.
2. **Screened evaluations**: an evaluation first screens ``eval_screen`` held-out examples and
   runs the full evaluation only when within ``eval_screen_margin`` of the target. Which
   evaluations ran the full one is read off the saved accuracies (a screen's accuracy is a
   multiple of 1/128, a full one's of 1/154). Per policy: their share; how many of them the
   mechanic ptsim now has (``Mechanics.full_eval_margin``: an evaluation whose reading is
   within the margin, as a fraction of the way from the initial accuracy to the target, plus
   the one that meets the target; the margin as ``ptexec.validate.screen_margin`` computes it)
   charges, and how many it charges that were screens only; and what that charge adds per job
   next to the measured ``eval`` residual. These runs' profiles predate the ``full_eval_s``
   column, so the full evaluation's time is estimated as the profile's screen time x 154 / 128
   (idle, or contended when another job's curve spans the evaluation); the executor's runs
   are not re-run.

    python benchmarks/validate_residuals.py benchmarks/validate-runs/contention-2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

POLICIES = ("prompttuner", "infless", "edf")
SCREEN, HELDOUT, MARGIN = 128, 154, 0.1  # conf/executor/run.yaml; 154 of 768 examples held out
READING_CAP = 0.999  # ptsim.core.estimator.READING_CAP


def _multiple(x: pd.Series, n: int) -> pd.Series:
    return (x * n - np.round(x * n)).abs() < 2e-3


def _busy(curves: pd.DataFrame, job: str, t: float) -> bool:
    """Whether another job's curve spans time ``t`` (on 2 workers: a training neighbour)."""
    other = curves[curves.job_id != job].groupby("job_id").time_s.agg(["min", "max"])
    return bool(((other["min"] <= t) & (t <= other["max"])).any())


def screened(d: Path, policy: str, jobs: dict[str, dict], prof: pd.DataFrame) -> str:
    """The screened-evaluation line of one policy run (see the module doc)."""
    curves = pd.read_csv(d / "executor-curves.csv")
    c = curves[curves.policy == policy]
    ex = pd.read_csv(d / f"{policy}-executor-jobs.csv").set_index("job_id")
    va = pd.read_csv(d / f"{policy}-validate.csv").set_index("job_id")
    ev = c.dropna(subset=["heldout_accuracy"]).copy()
    acc = ev.heldout_accuracy
    ev["full"] = _multiple(acc, HELDOUT) & ~_multiple(acc, SCREEN)
    first = ev.groupby("job_id").heldout_accuracy.first()
    target = pd.Series({j: float(jobs[j]["target_accuracy"]) for j in first.index})
    gap = target - first
    margin = float(np.median(np.minimum(1.0, MARGIN / gap[gap > 0])))  # screen_margin
    charged = []
    for job, g in ev.groupby("job_id"):
        a0, last = g.heldout_accuracy.iloc[0], g.step.max()
        frac = np.minimum((g.heldout_accuracy - a0) / (target[job] - a0), READING_CAP)
        charged.append(((g.step > 0) & (g.step < last) & (frac >= 1 - margin)) | (g.step == last))
    ev["charged"] = pd.concat(charged)
    idle, busy = prof.heldout_eval_s, prof.contended_heldout_eval_s.fillna(prof.heldout_eval_s)
    model = ev.job_id.map(ex.model)
    shared = ev.apply(lambda r: _busy(c, r.job_id, r.time_s), axis=1)
    full_s = np.where(shared, model.map(busy), model.map(idle)) * HELDOUT / SCREEN
    added = float((full_s * ev.charged).sum()) / len(ex)
    res = float(va.residual_eval_s.mean())
    return (
        f"{policy}: {ev.full.sum()} of {len(ev)} evaluations ran the full one "
        f"({ev.full.mean():.0%}); the mechanic (margin {margin:.3f} of the way) charges "
        f"{int(ev.charged.sum())}, {int((ev.charged & ev.full).sum())} of them full, "
        f"{int((ev.charged & ~ev.full).sum())} screens only, "
        f"{int((~ev.charged & ev.full).sum())} full ones missed; it adds {added:+.2f} s per job "
        f"({shared.mean():.0%} of evaluations beside a training neighbour) against a mean eval "
        f"residual of {res:+.2f} s: {added / res:.0%} of it"
    )


def main(argv: list[str]) -> int:
    d = Path(argv[0])
    curves = pd.read_csv(d / "executor-curves.csv")
    prof = pd.read_csv(d / "profile-models.csv").set_index("model")
    jobs = {
        r["job_id"]: r
        for r in (json.loads(x) for x in (d / "jobs.jsonl").read_text().splitlines() if x)
    }
    order = list(jobs)
    first, second = order[0], order[1]
    for p in POLICIES:
        ex = pd.read_csv(d / f"{p}-executor-jobs.csv").set_index("job_id")
        c = curves[curves.policy == p]
        alone_until = float(ex.loc[second, "first_start_s"])
        j = c[(c.job_id == first) & (c.time_s < alone_until)]
        steps = int(j.step.max())
        per_step = (j.time_s.max() - j.time_s.min()) / steps
        print(f"{p}: {first} alone for {steps} steps at {1000 * per_step:.1f} ms/step")
    for p in POLICIES:
        print(screened(d, p, jobs, prof))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
