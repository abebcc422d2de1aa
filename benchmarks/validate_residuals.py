"""Two residuals of ``ptexec validate`` that ptsim does not model, from a saved bench run
(``benchmarks/validate-runs/<run>/``: ``<policy>-executor-jobs.csv``, ``executor-curves.csv``,
``profile-models.csv``, ``jobs.jsonl``):

1. **Repeatability of the executor**: the first job of the trace runs alone until the second
   arrives, identically under every policy; its time per step (evaluations included) over that
   stretch, per policy run, is what the same work took minutes apart on the same machine.
2. **Screened evaluations**: an evaluation first screens ``eval_screen`` held-out examples and
   runs the full evaluation only when within ``eval_screen_margin`` of the target; the profile
   times the screen (its job has no target). Per policy: the share of evaluations that read
   within the margin (so were screen + full), and the seconds per job the full evaluations
   added, at the profile's mean of idle and contended evaluation time and the trace's example
   counts.

    python benchmarks/validate_residuals.py benchmarks/validate-runs/contention-2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

POLICIES = ("prompttuner", "infless", "edf")
SCREEN, HELDOUT, MARGIN = 128, 154, 0.1  # conf/executor/run.yaml; 154 of 768 examples held out


def main(argv: list[str]) -> int:
    d = Path(argv[0])
    curves = pd.read_csv(d / "executor-curves.csv")
    prof = pd.read_csv(d / "profile-models.csv").set_index("model")
    jobs = [json.loads(x) for x in (d / "jobs.jsonl").read_text().splitlines() if x]
    first, second = jobs[0]["job_id"], jobs[1]["job_id"]
    for p in POLICIES:
        ex = pd.read_csv(d / f"{p}-executor-jobs.csv").set_index("job_id")
        c = curves[curves.policy == p]
        alone_until = float(ex.loc[second, "first_start_s"])
        j = c[(c.job_id == first) & (c.time_s < alone_until)]
        steps = int(j.step.max())
        per_step = (j.time_s.max() - j.time_s.min()) / steps
        ev = c.dropna(subset=["heldout_accuracy"]).merge(
            ex[["model"]], left_on="job_id", right_index=True
        )
        target = {r["job_id"]: r["target_accuracy"] for r in jobs}
        near = ev.heldout_accuracy >= ev.job_id.map(target) - MARGIN
        screen_s = (prof.heldout_eval_s + prof.contended_heldout_eval_s) / 2
        extra = (ev[near].model.map(screen_s) * HELDOUT / SCREEN).sum() / len(ex)
        print(
            f"{p}: {first} alone for {steps} steps at {1000 * per_step:.1f} ms/step; "
            f"{near.mean():.0%} of {len(ev)} evaluations near the target, "
            f"+{extra:.2f} s of full evaluations per job"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
