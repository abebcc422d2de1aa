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
policy) and three PNGs drawn by the same code as ``ptsim plot RUN_DIR``:
``fig7_timelines.png`` (GPUs by state and queued jobs), ``fig7_timelines_gantt.png`` and
``fig7_timelines_jct_cdf.png``.
With several seeds, the first seed is drawn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from plotting import ordered
from runner import figure_main, read_table

from ptsim.outcome import write_csv
from ptsim.plots import PAPER_ORDER, gantt_rows, plot_runs

FIGURE = "fig7_timelines"


def plot(out: Path) -> list[Path]:
    """The run figures of ``ptsim plot`` (timeline, Gantt, JCT CDF; ``ptsim.plots``), one
    row / line per policy, from ``points.csv``, ``jobs.csv`` and ``timeseries.csv``; the Gantt
    rows drawn are saved as ``fig7_timelines.csv``."""
    points = read_table(out, "points.csv")
    jobs = read_table(out, "jobs.csv")
    series = read_table(out, "timeseries.csv")
    seed = int(points.seed.min())
    runs = {}
    drawn = []
    for pol in ordered(points.policy, PAPER_ORDER):
        summ = points[(points.policy == pol) & (points.seed == seed)].iloc[0].to_dict()
        pj = jobs[(jobs.policy == pol) & (jobs.seed == seed)]
        runs[str(pol)] = {
            "summary": summ,
            "jobs": pj,
            "series": series[(series.policy == pol) & (series.seed == seed)],
        }
        drawn.append(gantt_rows(pj, float(summ["sim_end_s"])).assign(policy=pol, seed=seed))
    files = plot_runs(runs, out, [f"{FIGURE}.png", f"{FIGURE}_gantt.png", f"{FIGURE}_jct_cdf.png"])
    write_csv(pd.concat(drawn, ignore_index=True), out / f"{FIGURE}.csv")
    return [*files, out / f"{FIGURE}.csv"]


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
