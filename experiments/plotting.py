"""Plotting helpers shared by the figure scripts (matplotlib, Agg backend).

Every helper draws from an aggregated table (``runner.aggregate``: ``<metric>_mean``,
``_lo``, ``_hi`` columns); none holds a number of its own beyond layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PALETTE = (
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(width: float, height: float) -> Any:
    """A new figure with constrained layout (titles, tables and tick labels never overlap)."""
    return pyplot().figure(figsize=(width, height), layout="constrained")


def is_rate(metric: str) -> bool:
    """Metrics that are fractions in [0, 1] (their axes are clipped to it)."""
    return metric.endswith(("_rate", "utilisation")) or metric == "bank_saving_mean"


def clip_axis(ax: Any, metric: str) -> None:
    """Start the value axis at 0 (error bars of small samples may reach below) and end a
    rate's axis at 1."""
    top = ax.get_ylim()[1]
    ax.set_ylim(0, min(top, 1.0) if is_rate(metric) else top)


def rotate_xticks(ax: Any, degrees: float = 30.0, size: float = 8.0) -> None:
    """Slanted, right-aligned x tick labels (long category names)."""
    ax.tick_params(axis="x", labelsize=size)
    for lab in ax.get_xticklabels():
        lab.set(rotation=degrees, ha="right")


def colors(names: Sequence[Any]) -> dict[Any, str]:
    """A stable colour per name, in the order given."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def ordered(values: Sequence[Any] | pd.Series, preferred: Sequence[Any] = ()) -> list[Any]:
    """Distinct values in first-appearance order, those in ``preferred`` first (in its order)."""
    seen = list(dict.fromkeys(list(values)))
    head = [v for v in preferred if v in seen]
    return head + [v for v in seen if v not in head]


def yerr(df: pd.DataFrame, metric: str) -> np.ndarray:
    """Asymmetric error bars (2 x n) from ``_lo``/``_hi``; NaN bounds draw no bar."""
    mean = df[f"{metric}_mean"].to_numpy(float)
    lo = np.nan_to_num(mean - df[f"{metric}_lo"].to_numpy(float), nan=0.0)
    hi = np.nan_to_num(df[f"{metric}_hi"].to_numpy(float) - mean, nan=0.0)
    return np.vstack([np.maximum(lo, 0.0), np.maximum(hi, 0.0)])


def grouped_bars(
    ax: Any,
    agg: pd.DataFrame,
    *,
    x: str,
    hue: str,
    metric: str,
    ylabel: str,
    x_order: Sequence[Any] | None = None,
    hue_order: Sequence[Any] | None = None,
    palette: dict[Any, str] | None = None,
    x_fmt: str = "{}",
) -> None:
    """Bars of ``<metric>_mean`` per ``x`` group, one bar per ``hue``, 95% CI error bars."""
    xs = list(x_order) if x_order is not None else ordered(agg[x])
    hs = list(hue_order) if hue_order is not None else ordered(agg[hue])
    pal = palette or colors(hs)
    width = 0.8 / max(1, len(hs))
    pos = np.arange(len(xs), dtype=float)
    for i, h in enumerate(hs):
        sub = agg[agg[hue] == h].set_index(x).reindex(xs)
        offs = pos - 0.4 + width * (i + 0.5)
        ax.bar(
            offs,
            sub[f"{metric}_mean"].to_numpy(float),
            width,
            yerr=yerr(sub, metric),
            capsize=2,
            color=pal.get(h),
            label=str(h),
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks(pos)
    ax.set_xticklabels([x_fmt.format(v) for v in xs])
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    clip_axis(ax, metric)


def lines_ci(
    ax: Any,
    agg: pd.DataFrame,
    *,
    x: str,
    hue: str,
    metric: str,
    ylabel: str,
    hue_order: Sequence[Any] | None = None,
    palette: dict[Any, str] | None = None,
    logx: bool = False,
    logy: bool = False,
    marker: str = "o",
    ls: str = "-",
    label_fmt: str = "{}",
) -> None:
    """``<metric>_mean`` against numeric ``x``, one line per ``hue``, 95% CI error bars."""
    hs = list(hue_order) if hue_order is not None else ordered(agg[hue])
    pal = palette or colors(hs)
    for h in hs:
        sub = agg[agg[hue] == h].sort_values(x)
        ax.errorbar(
            sub[x].to_numpy(float),
            sub[f"{metric}_mean"].to_numpy(float),
            yerr=yerr(sub, metric),
            marker=marker,
            ms=4,
            capsize=2,
            color=pal.get(h),
            ls=ls,
            label=label_fmt.format(h),
        )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def table_panel(ax: Any, df: pd.DataFrame, *, fontsize: float = 8.0, title: str = "") -> None:
    """``df`` drawn as a table filling ``ax`` (axes hidden)."""
    ax.axis("off")
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    tab = ax.table(cellText=cells, colLabels=list(df.columns), loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    tab.auto_set_column_width(list(range(len(df.columns))))
    tab.scale(1.0, 1.25)
    if title:
        ax.set_title(title, fontsize=fontsize + 1)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return "-"
        if np.isinf(v):
            return "inf"
        return f"{v:.2f}"
    return str(v)


def save(fig: Any, png: Path) -> Path:
    """Save ``fig`` as ``png`` (folder created) and close it."""
    from ptsim.outcome import atomic_write

    plt = pyplot()
    atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=130, bbox_inches="tight"))
    plt.close(fig)
    return png


def lines_figure(
    agg: pd.DataFrame,
    *,
    x: str,
    xlabel: str,
    panels: Sequence[tuple[str, str]],
    title: str,
    hue: str = "policy",
    hue_order: Sequence[Any] = (),
    logx: bool = False,
    logy: Sequence[str] = (),
    xticks: Sequence[float] | None = None,
) -> Any:
    """One panel per (metric, label), lines per ``hue`` against ``x`` with 95% CI bars."""
    hs = ordered(agg[hue], hue_order)
    pal = colors(hs)
    fig = figure(3.9 * len(panels), 3.5)
    axes = fig.subplots(1, len(panels))
    for ax, (metric, label) in zip(np.atleast_1d(axes), panels, strict=True):
        lines_ci(
            ax,
            agg,
            x=x,
            hue=hue,
            metric=metric,
            ylabel=label,
            hue_order=hs,
            palette=pal,
            logx=logx,
            logy=metric in logy,
        )
        if metric not in logy:
            clip_axis(ax, metric)
        if xticks is not None:
            ax.set_xticks(list(xticks))
            ax.set_xticklabels([f"{v:g}" for v in xticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(label)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def scale_sweep_plot(
    out: Path,
    *,
    figure_name: str,
    axis: str,
    metrics: Sequence[str],
    panels: Sequence[tuple[str, str]],
    xlabel: str,
    title: str,
) -> list[Path]:
    """The figure of a one-axis scale sweep (figures 3 and 4): aggregate ``points.csv`` per
    policy and ``axis`` value, save that table, and draw one line panel per metric from it.
    ``title`` is prefixed to "<GPUs> GPUs: mean and 95% CI over <n> seeds"."""
    from runner import aggregate, read_table

    from ptsim.outcome import write_csv

    pts = read_table(out, "points.csv")
    agg = aggregate(pts, ["policy", axis], [m for m in metrics if m in pts])
    write_csv(agg, out / f"{figure_name}.csv")
    fig = lines_figure(
        agg,
        x=axis,
        xlabel=xlabel,
        panels=panels,
        title=f"{title}, {int(pts.gpus.iloc[0])} GPUs: mean and 95% CI over "
        f"{int(agg.n.max())} seeds",
        hue_order=["prompttuner", "infless", "elasticflow"],
        logx=True,
        xticks=sorted(agg[axis].unique()),
    )
    return [save(fig, out / f"{figure_name}.png"), out / f"{figure_name}.csv"]
