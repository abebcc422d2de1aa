"""Plotting helpers shared by the figure scripts (matplotlib, Agg backend).

Every helper draws from an aggregated table (``ptsim.report.aggregate``: ``<metric>_mean``,
``_lo``, ``_hi`` columns); none holds a number of its own beyond layout. The generic helpers
are ``ptsim.plots``'s (re-exported here); the ones below are used by figure scripts only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# the generic helpers live in ptsim.plots (the report and run plots draw with them too)
from matplotlib.ticker import NullLocator

from ptsim.plots import (  # noqa: F401  (re-exported for the figure scripts)
    PALETTE,
    PAPER_ORDER,
    clip_axis,
    colors,
    figure,
    figure_legend,
    grouped_bars,
    integer_ticks,
    interval_caption,
    is_rate,
    lines_ci,
    log_labels,
    ordered,
    pyplot,
    rotate_xticks,
    save,
    yerr,
)


def table_panel(ax: Any, df: pd.DataFrame, *, fontsize: float = 8.0, title: str = "") -> None:
    """``df`` drawn as a table hanging from the top of ``ax`` (axes hidden), below ``title``;
    give ``ax`` :func:`table_height` inches so the table does not run past it."""
    ax.axis("off")
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    tab = ax.table(cellText=cells, colLabels=list(df.columns), loc="upper center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    tab.auto_set_column_width(list(range(len(df.columns))))
    tab.scale(1.0, 1.25)
    if title:
        ax.set_title(title, fontsize=fontsize + 1)


def table_height(rows: int, fontsize: float = 8.0) -> float:
    """Inches a :func:`table_panel` of ``rows`` rows (plus its header and title) needs."""
    return (rows + 2) * fontsize * 1.25 * 1.9 / 72.0


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return "-"
        if np.isinf(v):
            return "inf"
        return f"{v:.2f}"
    return str(v)


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
    """One panel per (metric, label), lines per ``hue`` against ``x`` with interval bars; one
    legend for the figure."""
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
            if is_rate(metric):
                ax.set_ylim(bottom=-0.02)  # a line at 0 stays visible above the axis
        if xticks is not None:
            ax.set_xticks(list(xticks))
            ax.set_xticklabels([f"{v:g}" for v in xticks])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
    figure_legend(fig, np.atleast_1d(axes)[:1])
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
        title=f"{title}, {int(pts.gpus.iloc[0])} GPUs: {interval_caption(agg)}",
        hue_order=PAPER_ORDER,
        logx=True,
        xticks=sorted(agg[axis].unique()),
    )
    return [save(fig, out / f"{figure_name}.png"), out / f"{figure_name}.csv"]
