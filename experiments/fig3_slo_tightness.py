"""Figure 3, SLO tightness: reproduces the paper's study of how the policies fare as SLOs get
tighter or looser (SLO violation rate and cost as deadlines shrink and grow).

    python experiments/fig3_slo_tightness.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                             [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig3_slo_tightness.yaml``: every point scales the workload's deadline
ratios (``workload.deadline_ratios``, deadline = ratio x the job's ideal run time) by one of
``sweep.deadline_scales`` (0.5x..2x); 32 A100s, load 0.5, 20 seeds. Writes into ``--out``
(default ``results/fig3_slo_tightness``): ``points.csv`` (one row per run, with
``deadline_scale``), ``fig3_slo_tightness.csv`` (per policy and scale: 95% Wilson intervals
for the rates, t-intervals otherwise; drawn) and ``fig3_slo_tightness.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from plotting import scale_sweep_plot
from runner import Point, Sweep, SweepError, figure_main, grid_points

FIGURE = "fig3_slo_tightness"
AXIS = "deadline_scale"
METRICS = ("slo_violation_rate", "cost_gpu_hours", "mean_jct_s", "rejected", "unfinished")
PANELS = (
    ("slo_violation_rate", "SLO violation rate"),
    ("cost_gpu_hours", "cost [GPU-hours]"),
    ("mean_jct_s", "mean JCT [s] (unfinished censored)"),
)


def points(sweep: Sweep) -> list[Point]:
    """Policies x deadline scales x seeds; each scale rewrites ``workload.deadline_ratios``."""
    base = [float(r) for r in sweep.config.workload.deadline_ratios]
    scales = [float(s) for s in sweep.spec.get("deadline_scales") or []]
    if not scales:
        raise SweepError(f"conf/experiment/{FIGURE}.yaml: sweep.deadline_scales is empty")
    extra = []
    for s in scales:
        ratios = ",".join(f"{r * s:g}" for r in base)
        extra.append(({AXIS: s}, [f"workload.deadline_ratios=[{ratios}]"]))
    return grid_points(sweep, extra)


def plot(out: Path) -> list[Path]:
    """Draw the figure from ``points.csv``."""
    return scale_sweep_plot(
        out,
        figure_name=FIGURE,
        axis=AXIS,
        metrics=METRICS,
        panels=PANELS,
        xlabel="deadline scale (x the default deadline ratios)",
        title="SLO tightness",
    )


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv, points=points)


if __name__ == "__main__":
    sys.exit(main())
