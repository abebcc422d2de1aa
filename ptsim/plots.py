"""Figures drawn from saved result tables (never from numbers typed into a script).

Shared drawing helpers (matplotlib, Agg backend) used by the report, the run plots and the
figure scripts (``experiments/plotting.py`` adds the figure-only ones), and:

- :func:`plot_report`: the headline metrics per group of an aggregated report table;
- :func:`plot_run` (``ptsim plot RUN_DIR``): a run's timeline (GPUs busy / warm-idle /
  loading, and queued jobs), per-job Gantt chart (waiting split into queueing, cold start and
  hand-over + bank lookup, then training coloured by outcome) and JCT CDF per policy, from the
  run's ``jobs.csv``, ``timeseries.csv`` and ``summary.json`` alone. Every table is checked
  (:func:`load_run`) and every figure drawn before any file is written; a bad table is a
  :class:`PlotError` (one line naming the file, row and column) and nothing is written.

Conventions every figure keeps: one legend per figure, units on every axis, integer ticks for
counts of jobs and GPUs, log axes only for positive values, and a note instead of error bars
when a group has too few seeds for an interval (``ptsim.report.MIN_SEEDS``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptsim.report import (
    ReportError,
    check_out_folder,
    complete_runs,
    read_summary,
    read_text,
    stderr_warning,
    write_files,
)

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

PAPER_ORDER = ("prompttuner", "infless", "elasticflow")
"""Policies drawn first, in this order, wherever they appear."""

STATE_COLORS = (("busy", "#4C72B0"), ("warm", "#DD8452"), ("loading", "#C44E52"))
STATE_LABELS = {"busy": "busy", "warm": "warm idle", "loading": "loading a model"}
WAIT_COLORS = {
    "queueing": "#BBBBBB",
    "cold start": "#C44E52",
    "hand-over + bank lookup": "#8172B3",
}
OUTCOME_COLORS = {"met": "#55A868", "late": "#DD8452", "unfinished": "#937860"}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(width: float, height: float) -> Any:
    """A new figure with constrained layout (titles, tables and tick labels never overlap)."""
    return pyplot().figure(figsize=(width, height), layout="constrained")


def save(fig: Any, png: Path) -> Path:
    """Save ``fig`` as ``png`` (folder created, written atomically) and close it."""
    from ptsim.outcome import atomic_write

    data = png_bytes(fig)
    atomic_write(png, lambda p: p.write_bytes(data))
    return png


def png_bytes(fig: Any) -> bytes:
    """``fig`` as PNG bytes (as :func:`save` writes it); the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def colors(names: Sequence[Any]) -> dict[Any, str]:
    """A stable colour per name, in the order given."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def ordered(values: Sequence[Any] | pd.Series, preferred: Sequence[Any] = ()) -> list[Any]:
    """Distinct values in first-appearance order, those in ``preferred`` first (in its order)."""
    seen = list(dict.fromkeys(list(values)))
    head = [v for v in preferred if v in seen]
    return head + [v for v in seen if v not in head]


def is_rate(metric: str) -> bool:
    """Metrics that are fractions in [0, 1] (their axes are clipped to it)."""
    from ptsim.report import is_bounded

    return is_bounded(metric)


def clip_axis(ax: Any, metric: str) -> None:
    """Start a linear value axis at 0 and end a rate's axis at 1 (or a little above, so a
    value of 1 and its marker stay visible)."""
    if ax.get_yscale() != "linear":
        return
    top = ax.get_ylim()[1]
    ax.set_ylim(0, min(top, 1.05) if is_rate(metric) else top)


def integer_ticks(axis: Any, nbins: int | str = "auto") -> None:
    """Only whole numbers on ``axis`` (an ``ax.xaxis`` / ``ax.yaxis``): counts of jobs, GPUs;
    at most ``nbins`` intervals (a short panel needs few)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))


def log_labels(axis: Any) -> None:
    """Plain-number labels (``0.3``, ``2``, ``100``) on a log ``axis``, minor ticks too where
    the axis spans little (so a range under one decade still has labelled ticks)."""
    from matplotlib.ticker import LogFormatter

    class _Plain(LogFormatter):  # type: ignore[misc]
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return f"{x:g}"

    axis.set_major_formatter(_Plain(labelOnlyBase=False))
    axis.set_minor_formatter(_Plain(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def rotate_xticks(ax: Any, degrees: float = 30.0, size: float = 8.0) -> None:
    """Slanted, right-aligned x tick labels (long category names)."""
    ax.tick_params(axis="x", labelsize=size)
    for lab in ax.get_xticklabels():
        lab.set(rotation=degrees, ha="right")


def yerr(df: pd.DataFrame, metric: str) -> np.ndarray:
    """Asymmetric error bars (2 x n) from ``_lo``/``_hi``; NaN bounds draw no bar."""
    mean = df[f"{metric}_mean"].to_numpy(float)
    lo = np.nan_to_num(mean - df[f"{metric}_lo"].to_numpy(float), nan=0.0)
    hi = np.nan_to_num(df[f"{metric}_hi"].to_numpy(float) - mean, nan=0.0)
    return np.vstack([np.maximum(lo, 0.0), np.maximum(hi, 0.0)])


def interval_caption(agg: pd.DataFrame, unit: str = "seed") -> str:
    """ "mean and 95% interval over N seeds", or says there is no interval (too few)."""
    from ptsim.report import MIN_SEEDS

    n_min, n_max = int(agg.n.min()), int(agg.n.max())
    count = f"{n_max} {unit}{'s' if n_max > 1 else ''}"
    if n_min != n_max:
        count = f"{n_min}-{n_max} {unit}s"
    if n_max < MIN_SEEDS:
        return f"mean over {count} (no intervals: fewer than {MIN_SEEDS})"
    if n_min < MIN_SEEDS:
        return f"mean and 95% interval over {count} (none where fewer than {MIN_SEEDS})"
    return f"mean and 95% interval over {count}"


def figure_legend(
    fig: Any, axes: Sequence[Any], ncol: int | None = None, order: Sequence[str] = ()
) -> None:
    """One legend for the whole figure, below the panels (clear of the title), from the
    handles of ``axes`` (duplicates by label dropped)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if not lab.startswith("_"):
                handles.setdefault(lab, h)
    first = [lab for lab in order if lab in handles]
    handles = {lab: handles[lab] for lab in first + [k for k in handles if k not in first]}
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=ncol or min(len(handles), 6),
            fontsize=8,
            frameon=False,
        )


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
    palette: Mapping[Any, str] | None = None,
    x_fmt: str = "{}",
) -> None:
    """Bars of ``<metric>_mean`` per ``x`` group, one bar per ``hue``, interval error bars."""
    xs = list(x_order) if x_order is not None else ordered(agg[x])
    hs = list(hue_order) if hue_order is not None else ordered(agg[hue])
    pal = palette or colors(hs)
    width = 0.8 / max(1, len(hs))
    pos = np.arange(len(xs), dtype=float)
    for i, h in enumerate(hs):
        sub = agg[agg[hue] == h].set_index(x).reindex(xs)
        offs = pos - 0.4 + width * (i + 0.5)
        has_ci = bool(sub[f"{metric}_lo"].notna().any())
        ax.bar(
            offs,
            sub[f"{metric}_mean"].to_numpy(float),
            width,
            yerr=yerr(sub, metric) if has_ci else None,
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
    palette: Mapping[Any, str] | None = None,
    logx: bool = False,
    logy: bool = False,
    marker: str = "o",
    ls: str = "-",
    label_fmt: str = "{}",
) -> None:
    """``<metric>_mean`` against numeric ``x``, one line per ``hue``, interval error bars.
    A log axis is used only if every value drawn on it is positive."""
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
    if logx and bool((agg[x].astype(float) > 0).all()):
        ax.set_xscale("log")
    if logy and _positive(agg, metric):
        ax.set_yscale("log")
        log_labels(ax.yaxis)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _positive(agg: pd.DataFrame, metric: str) -> bool:
    cols = [f"{metric}_{s}" for s in ("mean", "lo") if f"{metric}_{s}" in agg.columns]
    vals = agg[cols].to_numpy(float)
    vals = vals[~np.isnan(vals)]
    return bool(vals.size) and bool((vals > 0).all())


# ------------------------------------------------------------------------------ report


def plot_report(agg: pd.DataFrame, by: Sequence[str], png: Path) -> Path:
    """:func:`report_figure` saved as ``png``."""
    return save(report_figure(agg, by), png)


def report_figure(agg: pd.DataFrame, by: Sequence[str]) -> Any:
    """The headline metrics (``ptsim.report.HEADLINE``) of an aggregated report, one panel
    each: bars per label, grouped by the other grouping columns' values; one legend."""
    from ptsim.report import HEADLINE

    panels = [(m, lab) for m, lab in HEADLINE if f"{m}_mean" in agg.columns]
    df = agg.copy()
    others = [c for c in by if c != "label"]
    hue = "label" if "label" in df.columns else (by[0] if by else None)
    if hue is None:
        df["label"] = "all"
        hue = "label"
    if others:
        df["_x"] = [", ".join(f"{c}={_short(r[c])}" for c in others) for r in df.to_dict("records")]
    else:
        df["_x"] = ""
    labels = ordered(df[hue], PAPER_ORDER)
    pal = colors(labels)
    fig = figure(3.6 * max(1, len(panels)), 3.6)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(panels))))
    for ax, (metric, label) in zip(axes, panels, strict=False):
        grouped_bars(
            ax, df, x="_x", hue=hue, metric=metric, ylabel=label, hue_order=labels, palette=pal
        )
        if others:
            rotate_xticks(ax)
        else:
            ax.set_xticks([])
    figure_legend(fig, axes[:1])
    fig.suptitle(f"Per run {hue}: {interval_caption(df)}", fontsize=10)
    return fig


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ------------------------------------------------------------------------------ one run


def run_folders(run_dir: Path) -> list[Path]:
    """The policy runs of a run folder: itself if it holds ``summary.json``, else its
    subfolders that do (a comparison), in the paper's policy order first."""
    if (run_dir / "summary.json").is_file():
        return [run_dir]
    subs = sorted(p.parent for p in run_dir.glob("*/summary.json"))
    names = ordered([p.name for p in subs], PAPER_ORDER)
    return [run_dir / n for n in names]


class PlotError(ReportError):
    """A run that cannot be plotted (missing or malformed table): one line naming the file."""


JOBS_COLUMNS = (
    "job_id",
    "model",
    "status",
    "met_deadline",
    "arrival_s",
    "deadline_s",
    "first_start_s",
    "finish_s",
    "jct_s",
)
"""Columns of ``jobs.csv`` the run plots read (besides :data:`JOBS_WAIT_COLUMNS`)."""

JOBS_WAIT_COLUMNS = (("first_gpu_s", "first_ready_s"), ("bank_lookup_s",))
"""Either set splits a job's wait in the Gantt chart (the first; older tables: the second)."""

JOBS_NUMBERS = ("arrival_s", "deadline_s")
"""``jobs.csv`` columns that hold a number on every row."""

JOBS_OPTIONAL_NUMBERS = (
    "first_start_s",
    "finish_s",
    "jct_s",
    "first_gpu_s",
    "first_ready_s",
    "bank_lookup_s",
)
"""``jobs.csv`` columns that hold a number or nothing."""

JOB_STATUSES = ("done", "rejected", "unfinished")

SERIES_USED = ("time_s", "free", "loading", "warm", "busy", "queued_jobs")
"""Columns of ``timeseries.csv`` the run plots read, a number on every row."""


def read_csv_table(
    path: Path,
    what: str,
    columns: Sequence[str],
    numbers: Sequence[str] = (),
    optional_numbers: Sequence[str] = (),
) -> pd.DataFrame:
    """A saved run table, checked before anything is drawn: UTF-8 CSV text ending in a
    newline (a file cut short does not), a header with ``columns``, each row as many fields
    as the header, a finite number in every ``numbers`` cell and a finite number or nothing in
    every ``optional_numbers`` cell. :class:`PlotError` naming the file (and row and column;
    rows count from 1 at the first data row) otherwise."""
    text = read_text(path)
    if not text.strip():
        raise PlotError(f"{path}: empty file (not a ptsim {what} table)")
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise PlotError(f"{path}: malformed CSV ({exc})") from None
    header = lines[0]
    for name in header:
        if header.count(name) > 1:
            raise PlotError(f"{path}: column {name} appears twice in the header")
    missing = [name for name in columns if name not in header]
    if missing:
        s = "s" if len(missing) > 1 else ""
        names = ", ".join(missing)
        raise PlotError(f"{path}: missing column{s} {names} (not a ptsim {what} table)")
    while len(lines) > 1 and not lines[-1]:
        lines.pop()  # blank lines at the end
    for i, fields in enumerate(lines[1:], start=1):
        if len(fields) != len(header):
            what_row = (
                "empty line"
                if not fields
                else f"{len(fields)} fields, header has {len(header)}"
                + (" (truncated?)" if i == len(lines) - 1 and len(fields) < len(header) else "")
            )
            raise PlotError(f"{path} row {i}: {what_row}")
    if not text.endswith("\n"):
        raise PlotError(f"{path}: ends mid-row, without a newline (truncated?)")
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise PlotError(f"{path}: malformed CSV ({' '.join(str(exc).split())})") from None
    for name in (*numbers, *optional_numbers):
        if name not in df.columns:
            continue
        raw = df[name]
        vals = pd.to_numeric(raw, errors="coerce")
        bad = vals.isna() & raw.notna()
        if name in numbers:
            bad |= raw.isna()
        bad |= np.isinf(vals.to_numpy(float))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            shown = _shown(raw.iloc[i])
            raise PlotError(f"{path} row {i + 1}, column {name}: {shown}: expected a number")
        df[name] = vals.astype(float)
    return df


def _shown(cell: Any) -> str:
    """A table cell for a message: quoted and cut short, or ``no value`` when empty."""
    if pd.isna(cell):
        return "no value"
    text = str(cell)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def read_jobs(path: Path, summary: Mapping[str, Any]) -> pd.DataFrame:
    """``jobs.csv`` of a run, checked (:func:`read_csv_table`; ``status`` one of
    :data:`JOB_STATUSES`, ``met_deadline`` true or false, one row per job of ``summary``)."""
    jobs = read_csv_table(path, "jobs", JOBS_COLUMNS, JOBS_NUMBERS, JOBS_OPTIONAL_NUMBERS)
    if "first_ready_s" in jobs.columns and "first_gpu_s" not in jobs.columns:
        raise PlotError(f"{path}: missing column first_gpu_s (first_ready_s needs it)")
    if "first_ready_s" not in jobs.columns and "bank_lookup_s" not in jobs.columns:
        raise PlotError(
            f"{path}: missing column bank_lookup_s (or first_gpu_s and first_ready_s): not a "
            "ptsim jobs table"
        )
    status = jobs.status.astype(str)
    bad = ~status.isin(JOB_STATUSES)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise PlotError(
            f"{path} row {i + 1}, column status: {_shown(jobs.status.iloc[i])}: expected "
            f"{', '.join(JOB_STATUSES[:-1])} or {JOB_STATUSES[-1]}"
        )
    if not pd.api.types.is_bool_dtype(jobs.met_deadline):
        text = jobs.met_deadline.astype(str).str.strip().str.lower()
        bad = ~text.isin(("true", "false"))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise PlotError(
                f"{path} row {i + 1}, column met_deadline: "
                f"{_shown(jobs.met_deadline.iloc[i])}: expected True or False"
            )
        jobs["met_deadline"] = text == "true"
    n = int(summary["jobs"])
    if len(jobs) != n:
        raise PlotError(
            f"{path}: {len(jobs)} rows, but summary.json counts {n} jobs (truncated, or from "
            "another run?)"
        )
    return jobs


def read_series(path: Path, summary: Mapping[str, Any]) -> pd.DataFrame:
    """``timeseries.csv`` of a run, checked (:func:`read_csv_table`; at least one row when
    the run had jobs)."""
    series = read_csv_table(path, "timeseries", SERIES_USED, SERIES_USED)
    if series.empty and int(summary["jobs"]) > 0:
        raise PlotError(f"{path}: no rows (truncated?)")
    return series


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run's saved tables, each checked (:func:`ptsim.report.read_summary`,
    :func:`read_jobs`, :func:`read_series`): ``summary`` (dict), ``jobs`` and ``series``
    (DataFrames). :class:`PlotError` (a :class:`ptsim.report.ReportError`) naming the file
    when one is missing or malformed."""
    for name in ("summary.json", "jobs.csv", "timeseries.csv"):
        if not (run_dir / name).is_file():
            raise PlotError(f"{run_dir / name}: missing (not a complete run folder)")
    summary = read_summary(run_dir)
    return {
        "summary": summary,
        "jobs": read_jobs(run_dir / "jobs.csv", summary),
        "series": read_series(run_dir / "timeseries.csv", summary),
    }


def run_title(summary: Mapping[str, Any]) -> str:
    """A run's name and headline numbers, for a panel title."""
    name = summary.get("label") or summary.get("policy")
    return (
        f"{name}: violations {summary['slo_violation_rate']:.2f}, "
        f"{summary['cost_gpu_hours']:.1f} GPU-h, warm hits {summary['warm_hit_rate']:.2f}"
    )


def draw_timeline(ax: Any, ax_queue: Any, series: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    """GPUs busy / warm-idle / loading stacked over time on ``ax``; queued jobs on
    ``ax_queue`` (its own axis, integer ticks)."""
    ser = series.sort_values("time_s")
    end_s = float(summary.get("sim_end_s") or ser.time_s.max())
    t = np.append(ser.time_s.to_numpy(float), end_s)
    base = np.zeros(len(t))
    for state, color in STATE_COLORS:
        vals = ser[state].to_numpy(float)
        vals = np.append(vals, vals[-1] if len(vals) else 0.0)
        ax.fill_between(
            t, base, base + vals, step="post", color=color, lw=0, label=STATE_LABELS[state]
        )
        base = base + vals
    gpus = summary.get("gpus")
    ax.set_ylim(0, int(gpus) if gpus else max(1.0, float(base.max())))
    ax.set_ylabel("GPUs")
    integer_ticks(ax.yaxis)
    ax.grid(alpha=0.3)
    q = ser.queued_jobs.to_numpy(float)
    q = np.append(q, q[-1] if len(q) else 0.0)
    ax_queue.fill_between(t, 0, q, step="post", color="#555555", lw=0, label="queued jobs")
    ax_queue.set_ylim(0, max(1.0, float(q.max())) * 1.1)
    ax_queue.set_ylabel("queued\njobs")
    integer_ticks(ax_queue.yaxis, nbins=2)
    ax_queue.grid(alpha=0.3)


def gantt_rows(jobs: pd.DataFrame, end_s: float) -> pd.DataFrame:
    """One row per job (lane by arrival): its waiting split into queueing, cold start and
    hand-over + bank lookup, its training interval and its outcome. Queueing ends when the
    job got its first GPU and the cold start when that GPU was ready (``first_gpu_s``,
    ``first_ready_s``); tables without those columns draw the whole wait before the lookup
    as queueing."""
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
    wait_end = j.first_start_s.where(started, run_end)
    if "first_ready_s" in j.columns:
        ready = j.first_ready_s.where(j.first_ready_s.notna(), wait_end)
        gpu = j.first_gpu_s.where(j.first_gpu_s.notna(), ready)
    else:
        ready = (wait_end - j.bank_lookup_s.where(started, 0.0)).clip(lower=j.arrival_s)
        gpu = ready
    return pd.DataFrame(
        {
            "job_id": j.job_id,
            "lane": np.arange(len(j)),
            "model": j.model,
            "arrival_s": j.arrival_s,
            "first_gpu_s": gpu,
            "first_ready_s": ready,
            "wait_end_s": wait_end,
            "run_start_s": j.first_start_s,
            "run_end_s": run_end.where(started),
            "deadline_s": j.deadline_s,
            "outcome": outcome,
        }
    )


def draw_gantt(ax: Any, rows: pd.DataFrame) -> None:
    """Per-job lanes: queueing, cold start, hand-over + lookup, training by outcome; a cross
    at a rejected job's arrival, a tick at each deadline."""
    live = rows[rows.outcome != "rejected"]
    segs = (
        ("queueing", live.arrival_s, live.first_gpu_s),
        ("cold start", live.first_gpu_s, live.first_ready_s),
        ("hand-over + bank lookup", live.first_ready_s, live.wait_end_s),
    )
    lw = max(0.6, min(3.0, 220.0 / max(1, len(rows))))
    for name, start, end in segs:
        sel = end > start
        if not sel.any():
            continue  # nothing of this kind: no legend entry either
        ax.hlines(live.lane[sel], start[sel], end[sel], color=WAIT_COLORS[name], lw=lw, label=name)
    for outcome, color in OUTCOME_COLORS.items():
        sel = rows[(rows.outcome == outcome) & rows.run_start_s.notna()]
        if sel.empty:
            continue
        ax.hlines(
            sel.lane,
            sel.run_start_s,
            sel.run_end_s,
            color=color,
            lw=lw,
            label=f"training, {outcome}",
        )
    rej = rows[rows.outcome == "rejected"]
    if not rej.empty:
        ax.scatter(rej.arrival_s, rej.lane, marker="x", s=12, color="k", lw=0.8, label="rejected")
    ax.scatter(rows.deadline_s, rows.lane, marker="|", s=14, color="k", lw=0.6, label="deadline")
    ax.set_ylim(len(rows) - 0.5, -0.5)
    integer_ticks(ax.yaxis)
    ax.set_ylabel("job (by arrival)")
    ax.grid(axis="x", alpha=0.3)


def draw_jct_cdf(ax: Any, jobs: pd.DataFrame, label: str, color: str, ls: str = "-") -> None:
    """Empirical CDF of JCT over every submitted job: jobs that never finished count as
    infinite, so the curve ends at the fraction that finished."""
    jct = np.sort(jobs.jct_s.dropna().to_numpy(float))
    n = len(jobs)
    if n == 0 or len(jct) == 0:
        return
    frac = np.arange(1, len(jct) + 1) / n
    missing = n - len(jct)
    tail = f", {missing} of {n} not finished" if missing else ""
    ax.step(
        np.r_[jct[0], jct],
        np.r_[0.0, frac],
        where="post",
        color=color,
        ls=ls,
        label=f"{label}{tail}",
    )


def plot_run(
    run_dir: Path, out: Path | None = None, warn: Callable[[str], None] | None = None
) -> list[Path]:
    """``ptsim plot RUN_DIR``: ``timeline.png``, ``gantt.png`` and ``jct_cdf.png`` of a run (a
    one-policy run or a comparison, one row / line per policy) in ``out`` (default
    ``run_dir``), from its saved tables only. Every table is read and checked
    (:func:`load_run`) and every figure drawn before any is written; incomplete policy runs
    are left out and ``warn`` told (``ptsim.report.complete_runs``; default: stderr).
    :class:`PlotError` / :class:`ptsim.report.ReportError` for bad input: nothing written."""
    if not run_dir.exists():
        raise PlotError(f"{run_dir}: no such folder")
    if not run_dir.is_dir():
        raise PlotError(f"{run_dir}: not a folder (give a run folder)")
    folders = run_folders(run_dir)
    if not folders:
        raise PlotError(f"{run_dir}: no run (summary.json) in it or its subfolders")
    folders = complete_runs(folders, warn or stderr_warning("ptsim plot"))
    runs = [load_run(p) for p in folders]
    named = {str(r["summary"].get("label") or r["summary"].get("policy")): r for r in runs}
    target = out or run_dir
    check_out_folder(target)
    return plot_runs(named, target)


RUN_FIGURES = ("timeline.png", "gantt.png", "jct_cdf.png")


def plot_runs(
    runs: Mapping[str, Mapping[str, Any]], out: Path, names: Sequence[str] = RUN_FIGURES
) -> list[Path]:
    """The three run figures for ``runs`` (name -> ``summary``/``jobs``/``series``): the
    timeline, the Gantt chart and the JCT CDF, saved in ``out`` under ``names``, all three or
    none (``ptsim.report.write_files``)."""
    figs = run_figures(runs)
    return write_files({out / n: png_bytes(f) for n, f in zip(names, figs, strict=True)})


def run_figures(runs: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """The timeline, Gantt chart and JCT CDF figures of ``runs`` (not saved)."""
    labels = list(runs)
    pal = colors(labels)
    n = len(labels)
    first = runs[labels[0]]["summary"]
    context = f"{first.get('gpus', '?')} GPUs, seed {first.get('seed', '?')}"

    fig = figure(10, 2.9 * n + 0.6)
    grid = fig.add_gridspec(2 * n, 1, height_ratios=[3, 1] * n)
    axes: list[Any] = []
    for i, name in enumerate(labels):
        r = runs[name]
        ax = fig.add_subplot(grid[2 * i], sharex=axes[0] if axes else None)
        axq = fig.add_subplot(grid[2 * i + 1], sharex=ax)
        draw_timeline(ax, axq, r["series"], r["summary"])
        ax.set_title(run_title(r["summary"]), fontsize=9)
        ax.tick_params(labelbottom=False)
        axes += [ax, axq]
    axes[-1].set_xlabel("time [s]")
    figure_legend(fig, axes[:2])
    fig.suptitle(f"GPUs by state and queued jobs over time, {context}", fontsize=10)
    figs = [fig]

    fig = figure(10, max(3.0, 3.2 * n) + 0.6)
    gaxes = np.atleast_1d(fig.subplots(n, 1, sharex=True))
    for ax, name in zip(gaxes, labels, strict=True):
        r = runs[name]
        end_s = float(r["summary"].get("sim_end_s") or r["series"].time_s.max())
        draw_gantt(ax, gantt_rows(r["jobs"], end_s))
        ax.set_title(run_title(r["summary"]), fontsize=9)
    gaxes[-1].set_xlabel("time [s]")
    order = [*WAIT_COLORS, *(f"training, {o}" for o in OUTCOME_COLORS), "rejected", "deadline"]
    figure_legend(fig, list(gaxes), ncol=5, order=order)
    fig.suptitle(f"Per-job timeline, {context}", fontsize=10)
    figs.append(fig)

    fig = figure(6, 4)
    ax = fig.subplots()
    styles = ("-", "--", ":", "-.")
    drawn: dict[str, str] = {}
    for i, name in enumerate(labels):
        jct = tuple(np.sort(runs[name]["jobs"].jct_s.dropna().to_numpy(float)))
        key = str(hash((len(runs[name]["jobs"]), jct)))
        same = drawn.setdefault(key, name)
        label = name if same == name else f"{name} (same as {same})"
        draw_jct_cdf(ax, runs[name]["jobs"], label, pal[name], styles[i % len(styles)])
    if ax.get_lines() and all(min(ln.get_xdata()) > 0 for ln in ax.get_lines()):
        ax.set_xscale("log")
    ax.set_xlabel("job completion time [s]")
    ax.set_ylabel("fraction of submitted jobs")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"JCT CDF per policy, {context}", fontsize=10)
    figs.append(fig)
    return figs


def main(argv: Sequence[str] | None = None) -> int:
    """``ptsim plot RUN_DIR [--out DIR]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="ptsim plot",
        description="Timeline, per-job Gantt chart and JCT CDF of a saved run (one policy or "
        "a comparison), from its tables.",
    )
    ap.add_argument("run", type=Path, help="a run folder (ptsim's run directory)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: RUN)")
    ns = ap.parse_args(argv)
    try:
        files = plot_run(ns.run, ns.out)
    except ReportError as exc:  # PlotError too
        print(f"ptsim plot: {exc}", file=sys.stderr)
        return 2
    for f in files:
        print(f)
    return 0


def plot_comparison(table_csv: Path, png: Path) -> None:
    """Bar charts of SLO violation rate, cost and mean JCT per policy from ``comparison.csv``."""
    df = pd.read_csv(table_csv)
    name = "label" if "label" in df.columns else "policy"
    fig = figure(11, 3.4)
    axes = fig.subplots(1, 3)
    panels = [
        ("slo_violation_rate", "SLO violation rate"),
        ("cost_gpu_hours", "cost [GPU-hours]"),
        ("mean_jct_s", "mean JCT [s] (unfinished censored)"),
    ]
    pal = colors(list(df[name]))
    for ax, (col, label) in zip(axes, panels, strict=True):
        ax.bar(df[name].astype(str), df[col], color=[pal[p] for p in df[name]])
        ax.set_ylabel(label)
        rotate_xticks(ax)
        ax.grid(axis="y", alpha=0.3)
        clip_axis(ax, col)
    fig.suptitle(f"{int(df['jobs'].iloc[0])} jobs, one run per policy")
    save(fig, png)
