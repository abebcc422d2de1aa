"""Figures drawn from saved result tables (never from numbers typed into a script)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(table_csv: Path, png: Path) -> None:
    """Bar charts of SLO violation rate, cost and mean JCT per policy from ``comparison.csv``."""
    df = pd.read_csv(table_csv)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    panels = [
        ("slo_violation_rate", "SLO violation rate"),
        ("cost_gpu_hours", "cost [GPU-hours]"),
        ("mean_jct_s", "mean JCT [s]"),
    ]
    for ax, (col, label) in zip(axes, panels, strict=True):
        ax.bar(df["policy"], df[col], color="#4C72B0")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{int(df['jobs'].iloc[0])} jobs, per policy")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
