"""Figure 2, ablation: reproduces the paper's ablation study (the share of PromptTuner's gain
that comes from the Prompt Bank, the warm pool and elastic re-allocation) and adds the baselines
with the Prompt Bank, so the bank's effect is seen apart from the scheduler's.

    python experiments/fig2_ablation.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                        [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig2_ablation.yaml`` (variants = policy knob settings:
``scheduler.bank``, ``scheduler.warm_pool``, ``scheduler.elasticity``; loads 0.3/0.5/0.7 on 32
A100s; 20 seeds; ``compare:`` says which variant each one is measured against). Writes into
``--out`` (default ``results/fig2_ablation``):

- ``points.csv``: one row per run; ``compare.csv``: the variant pairs (copied from the config);
- ``fig2_ablation.csv``: mean and 95% t-interval per variant and load (drawn);
- ``deltas.csv``: per compared pair and load, the paired difference (variant - reference) of
  violation rate and cost with its 95% t-interval over seeds;
- ``fig2_ablation.png``: violation rate, cost, warm-hit rate and bank saving per variant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotting import (
    colors,
    figure,
    figure_legend,
    grouped_bars,
    interval_caption,
    ordered,
    rotate_xticks,
    save,
    table_height,
    table_panel,
)
from runner import MIN_SEEDS, FigureArgs, Sweep, aggregate, ci95, figure_main, read_table

from ptsim.outcome import write_csv

FIGURE = "fig2_ablation"
LOAD = "workload.load"
METRICS = (
    "slo_violation_rate",
    "cost_gpu_hours",
    "warm_hit_rate",
    "bank_saving_mean",
    "mean_jct_s",
    "cold_starts",
    "rescales",
)
PANELS = (
    ("slo_violation_rate", "SLO violation rate"),
    ("cost_gpu_hours", "cost [GPU-hours]"),
    ("warm_hit_rate", "warm-hit rate"),
    ("bank_saving_mean", "mean iteration saving (bank)"),
)
DELTA_METRICS = ("slo_violation_rate", "cost_gpu_hours")


def save_compare(sweep: Sweep, args: FigureArgs) -> dict[str, Any]:
    """Write the config's variant pairs as ``compare.csv``."""
    pairs = sweep.spec.get("compare") or {}
    rows = [{"variant": str(v), "reference": str(r)} for v, r in pairs.items()]
    write_csv(pd.DataFrame(rows, columns=["variant", "reference"]), args.out / "compare.csv")
    return {}


def delta_table(points: pd.DataFrame, compare: pd.DataFrame) -> pd.DataFrame:
    """Paired differences variant - reference per load (same trace: same load and seed)."""
    rows = []
    for pair in compare.itertuples(index=False):
        var = points[points.variant == pair.variant]
        ref = points[points.variant == pair.reference]
        if var.empty or ref.empty:
            continue
        both = var.merge(ref, on=[LOAD, "seed"], suffixes=("_v", "_r"))
        for load in ordered(both[LOAD]):
            grp = both[both[LOAD] == load]
            row: dict[str, Any] = {
                "variant": pair.variant,
                "reference": pair.reference,
                "load": load,
                "pairs": len(grp),
            }
            for m in DELTA_METRICS:
                d = grp[f"{m}_v"].to_numpy(float) - grp[f"{m}_r"].to_numpy(float)
                row[f"d_{m}_mean"], row[f"d_{m}_lo"], row[f"d_{m}_hi"] = ci95(d)
            rows.append(row)
    return pd.DataFrame(rows)


def plot(out: Path) -> list[Path]:
    """Draw the figure from ``points.csv`` (and ``compare.csv`` for the deltas)."""
    points = read_table(out, "points.csv")
    agg = aggregate(points, ["variant", LOAD], [m for m in METRICS if m in points])
    write_csv(agg, out / f"{FIGURE}.csv")
    cmp_path = out / "compare.csv"
    compare = pd.read_csv(cmp_path) if cmp_path.is_file() else pd.DataFrame()
    deltas = delta_table(points, compare) if not compare.empty else pd.DataFrame()
    if not deltas.empty:
        write_csv(deltas, out / "deltas.csv")
    variants = ordered(agg.variant)
    loads = ordered(agg[LOAD])
    pal = colors([f"load {v:g}" for v in loads])
    agg = agg.assign(load=[f"load {v:g}" for v in agg[LOAD]])
    rows = 3 if not deltas.empty else 2
    tab_h = table_height(len(deltas), 7.5) if not deltas.empty else 0.0
    fig = figure(12, 3.4 * 2 + tab_h + 0.8)
    grid = fig.add_gridspec(rows, 2, height_ratios=[3.4, 3.4, tab_h][:rows])
    for i, (metric, label) in enumerate(PANELS):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        grouped_bars(
            ax,
            agg,
            x="variant",
            hue="load",
            metric=metric,
            ylabel=label,
            x_order=variants,
            palette=pal,
        )
        rotate_xticks(ax)
    figure_legend(fig, fig.axes[:1])
    fig.suptitle(f"Ablation, {int(points.gpus.iloc[0])} GPUs: {interval_caption(agg)}")
    if not deltas.empty:
        pairs = int(deltas.pairs.min())
        how = (
            "mean [95% t-interval]" if pairs >= MIN_SEEDS else f"mean ({pairs} pairs: no interval)"
        )
        table_panel(
            fig.add_subplot(grid[2, :]),
            _shown(deltas),
            fontsize=7.5,
            title=f"variant - reference, paired by load and seed: {how}",
        )
    return [save(fig, out / f"{FIGURE}.png"), out / f"{FIGURE}.csv"]


def _shown(deltas: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {"variant": deltas.variant, "vs": deltas.reference, "load": deltas.load.map("{:g}".format)}
    )
    for m, label in (("slo_violation_rate", "d violation rate"), ("cost_gpu_hours", "d GPU-h")):
        out[label] = [
            _ci(a, b, c)
            for a, b, c in zip(
                deltas[f"d_{m}_mean"], deltas[f"d_{m}_lo"], deltas[f"d_{m}_hi"], strict=True
            )
        ]
    return out


def _ci(m: float, lo: float, hi: float) -> str:
    if np.isnan(lo):
        return f"{m:+.3f}"
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv, extra=save_compare)


if __name__ == "__main__":
    sys.exit(main())
