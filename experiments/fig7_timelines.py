"""Figure 7, timelines: not a figure of the paper's evaluation as such, but the view behind its
end-to-end result: for one run per policy on the same trace, the GPUs in each state over time
(loading, warm-idle, busy) and a per-job Gantt chart (waiting from arrival to first start, then
training to finish, coloured by whether the deadline was met), so a reader can see why a policy
wins or loses: cold starts, idle warm GPUs, queueing, late or rejected jobs.

    python experiments/fig7_timelines.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                         [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig7_timelines.yaml`` (seed 0, load 0.7, 32 A100s). Writes into
``--out`` (default ``results/fig7_timelines``): ``points.csv`` (one row per run),
``jobs.csv`` and ``timeseries.csv`` (every policy's per-job table and time series, with
``policy``/``seed`` columns), ``fig7_timelines.csv`` (the Gantt rows drawn: one per job and
policy) and ``fig7_timelines.png``. With several seeds, the first seed is drawn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from plotting import figure, ordered, save
from runner import figure_main, read_table

from ptsim.outcome import write_csv

FIGURE = "fig7_timelines"
STATES = (("busy", "#4C72B0"), ("warm", "#DD8452"), ("loading", "#C44E52"))
OUTCOME_COLORS = {"met": "#55A868", "late": "#C44E52", "unfinished": "#8172B3"}


def gantt_rows(jobs: pd.DataFrame, end_s: float) -> pd.DataFrame:
    """One row per job: its lane (by arrival), wait and run intervals and its outcome."""
    j = jobs.sort_values(["arrival_s", "job_id"]).reset_index(drop=True)
    started = j.first_start_s.notna()
    run_end = j.finish_s.where(j.finish_s.notna(), end_s)
    outcome = np.where(
        j.status == "rejected",
        "rejected",
        np.where(
            j.met_deadline.astype(bool), "met", np.where(j.status == "done", "late", "unfinished")
        ),
    )
    return pd.DataFrame(
        {
            "job_id": j.job_id,
            "lane": np.arange(len(j)),
            "model": j.model,
            "arrival_s": j.arrival_s,
            "wait_end_s": j.first_start_s.where(started, run_end),
            "run_start_s": j.first_start_s,
            "run_end_s": run_end.where(started),
            "deadline_s": j.deadline_s,
            "outcome": outcome,
        }
    )


def plot(out: Path) -> list[Path]:
    """Draw one row per policy from ``points.csv``, ``jobs.csv`` and ``timeseries.csv``."""
    points = read_table(out, "points.csv")
    jobs = read_table(out, "jobs.csv")
    series = read_table(out, "timeseries.csv")
    seed = int(points.seed.min())
    policies = ordered(points.policy, ["prompttuner", "infless", "elasticflow"])
    fig = figure(14, 3.2 * len(policies) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(policies), 2, sharex=True, width_ratios=[1, 1.3]))
    drawn = []
    for row, pol in zip(axes, policies, strict=True):
        summ = points[(points.policy == pol) & (points.seed == seed)].iloc[0]
        ser = series[(series.policy == pol) & (series.seed == seed)].sort_values("time_s")
        end_s = float(summ.sim_end_s)
        ax = row[0]
        t = np.append(ser.time_s.to_numpy(float), end_s)
        base = np.zeros(len(t))
        for state, color in STATES:
            vals = np.append(ser[state].to_numpy(float), ser[state].iloc[-1])
            ax.fill_between(t, base, base + vals, step="post", color=color, lw=0, label=state)
            base = base + vals
        ax.plot(
            t,
            np.append(ser.queued_jobs.to_numpy(float), ser.queued_jobs.iloc[-1]),
            drawstyle="steps-post",
            color="k",
            lw=0.8,
            label="queued jobs",
        )
        ax.set_ylim(0, int(summ.gpus))
        ax.set_ylabel("GPUs")
        ax.set_title(
            f"{pol}: violation rate {summ.slo_violation_rate:.2f}, "
            f"{summ.cost_gpu_hours:.1f} GPU-h, warm hits {summ.warm_hit_rate:.2f}",
            fontsize=9,
        )
        ax.grid(alpha=0.3)

        g = gantt_rows(jobs[(jobs.policy == pol) & (jobs.seed == seed)], end_s)
        drawn.append(g.assign(policy=pol, seed=seed))
        ax = row[1]
        wait = g[g.outcome != "rejected"]  # a rejection's time is not recorded: no wait drawn
        ax.hlines(
            wait.lane, wait.arrival_s, wait.wait_end_s, color="#BBBBBB", lw=1.2, label="waiting"
        )
        for outcome, color in OUTCOME_COLORS.items():
            sel = g[(g.outcome == outcome) & g.run_start_s.notna()]
            ax.hlines(
                sel.lane,
                sel.run_start_s,
                sel.run_end_s,
                color=color,
                lw=2.2,
                label=f"training ({outcome})",
            )
        rej = g[g.outcome == "rejected"]
        ax.scatter(rej.arrival_s, rej.lane, marker="x", s=14, color="#C44E52", label="rejected")
        ax.scatter(g.deadline_s, g.lane, marker="|", s=18, color="k", lw=0.8, label="deadline")
        ax.set_ylabel("job (by arrival)")
        ax.set_ylim(len(g), -1)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper right")
    axes[0][1].legend(fontsize=7, loc="upper right", ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("time [s]")
    fig.suptitle(
        f"Timelines, {int(points.gpus.iloc[0])} GPUs, load "
        f"{points['workload.load'].iloc[0]:g}, seed {seed}: the same trace per policy"
    )
    write_csv(pd.concat(drawn, ignore_index=True), out / f"{FIGURE}.csv")
    return [save(fig, out / f"{FIGURE}.png"), out / f"{FIGURE}.csv"]


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
