"""Figure 4, cold-start sensitivity: reproduces the paper's question of how much of the gain
rests on cold starts, by scaling every model's load (cold-start and reload) time from 0.25x to
4x and measuring SLO violation rate, cost and the warm-hit rate.

    python experiments/fig4_cold_start.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                          [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig4_cold_start.yaml`` (grid over
``profile.mechanics.cold_start_scale``; 32 A100s, load 0.5, 20 seeds). Writes into ``--out``
(default ``results/fig4_cold_start``): ``points.csv`` (one row per run),
``fig4_cold_start.csv`` (per policy and scale: 95% Wilson intervals for the rates, t-intervals
otherwise; drawn) and
``fig4_cold_start.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from plotting import scale_sweep_plot
from runner import figure_main

FIGURE = "fig4_cold_start"
AXIS = "profile.mechanics.cold_start_scale"
METRICS = (
    "slo_violation_rate",
    "cost_gpu_hours",
    "warm_hit_rate",
    "gpu_hours_loading",
    "mean_queue_delay_s",
)
PANELS = (
    ("slo_violation_rate", "SLO violation rate"),
    ("cost_gpu_hours", "cost [GPU-hours]"),
    ("gpu_hours_loading", "GPU-hours loading models"),
    ("warm_hit_rate", "warm-hit rate"),
)


def plot(out: Path) -> list[Path]:
    """Draw the figure from ``points.csv``."""
    return scale_sweep_plot(
        out,
        figure_name=FIGURE,
        axis=AXIS,
        metrics=METRICS,
        panels=PANELS,
        xlabel="cold-start time scale",
        title="Cold-start sensitivity",
    )


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
