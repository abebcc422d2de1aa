"""Figure 6, scale: reproduces the paper's scalability study (the policies on larger clusters
at the same offered load) and adds what a simulator user needs: the simulator's wall time and
each policy's decision latency as the cluster grows from 32 to 1,024 GPUs.

    python experiments/fig6_scale.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                     [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig6_scale.yaml`` (grid over ``cluster.nodes`` = 4, 12, 32, 128 nodes
of 8 A100s; ``workload.load`` 0.5 at every size: the generator scales arrivals with the GPU
count; 10 seeds). Wall times are measured inside the worker processes: run with ``--jobs`` at
most the number of cores. Writes into ``--out`` (default ``results/fig6_scale``):
``points.csv`` (one row per run), ``fig6_scale.csv`` (mean and 95% t-interval per policy and
size of violation rate, GPU-hours per job, simulator wall time and decision latency; drawn) and
``fig6_scale.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from plotting import PAPER_ORDER, interval_caption, lines_figure, save
from runner import aggregate, figure_main, read_table

from ptsim.outcome import write_csv

FIGURE = "fig6_scale"
METRICS = (
    "slo_violation_rate",
    "cost_per_job_gpu_hours",
    "sim_wall_s",
    "decision_ms",
    "jobs",
    "cost_gpu_hours",
    "decisions",
    "rejected",
    "bank_assessments_mean",
    "bank_lookup_s_mean",
    "gpu_hours_warm_idle",
)
PANELS = (
    ("slo_violation_rate", "SLO violation rate"),
    ("cost_per_job_gpu_hours", "cost per job [GPU-hours]"),
    ("sim_wall_s", "simulator wall time [s]"),
    ("decision_ms", "decision latency [ms / decision]"),
)


def derived(points: pd.DataFrame) -> pd.DataFrame:
    """Per-run ratios drawn by the figure, from the saved summary columns."""
    return points.assign(
        cost_per_job_gpu_hours=points.cost_gpu_hours / points.jobs,
        decision_ms=1e3 * points.decide_wall_s / points.decisions.clip(lower=1),
    )


def plot(out: Path) -> list[Path]:
    """Draw the figure from ``points.csv``."""
    pts = derived(read_table(out, "points.csv"))
    # bootstrap intervals for the log-scale panels: inside the (positive) values
    agg = aggregate(pts, ["policy", "gpus"], list(METRICS), bootstrap=("sim_wall_s", "decision_ms"))
    write_csv(agg, out / f"{FIGURE}.csv")
    fig = lines_figure(
        agg,
        x="gpus",
        xlabel="GPUs",
        panels=PANELS,
        title=f"Scale at offered load {pts['workload.load'].iloc[0]:g}: {interval_caption(agg)}",
        hue_order=PAPER_ORDER,
        logx=True,
        logy=("sim_wall_s", "decision_ms"),
        xticks=sorted(agg.gpus.unique()),
    )
    return [save(fig, out / f"{FIGURE}.png"), out / f"{FIGURE}.csv"]


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
