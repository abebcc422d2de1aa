"""Reports over saved runs: one tidy table over any set of run folders, an aggregate over seeds
with confidence intervals, and a comparison figure (``ptsim report RUN_DIR...``).

A *run* is a folder holding ``summary.json`` (a ``ptsim`` or ``ptexec`` run; a comparison run
holds one such folder per policy). :func:`collect` finds every run under the given folders and
makes one row per run: ``run_dir``, ``label``, ``policy``, ``seed``, the run's hydra overrides
as columns (``key=value`` from ``.hydra/overrides.yaml``, when hydra wrote one), then every
scalar of its summary. :func:`aggregate` groups rows (by default by ``label`` and every
override but the seed) and gives each metric's mean over seeds with a 95% interval:

- a count rate (``slo_violation_rate``, ``warm_hit_rate``): the Wilson score interval of the
  pooled counts (its mean is the pooled rate, Σ numerator / Σ denominator), so it stays in
  [0, 1] and is not empty at 0 or 1;
- any other metric in [0, 1] (``utilisation``, ``bank_saving_mean``, ``*_rate``): a percentile
  bootstrap of the mean over seeds (inside the values' range);
- everything else: the Student-t interval over seeds.

A group with fewer than :data:`MIN_SEEDS` seeds gets no interval (NaN bounds) and its
``interval`` column says so; figures drawn from it say so too. docs/metrics.md documents this.
The experiment runner (``experiments/runner.py``) builds its rows and aggregates with the
functions here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ptsim.runfolder import OVERRIDES_FILE, write_overrides  # noqa: F401  (its home before)

MIN_SEEDS = 3
"""Fewest seeds (rows) a group needs for an interval; fewer: the interval is left out."""

CONFIDENCE = 0.95

COUNT_RATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "slo_violation_rate": ("slo_violations", ("jobs",)),
    "warm_hit_rate": ("warm_hits", ("warm_hits", "job_cold_starts")),
}
"""Rates that are a count over a count: metric -> (numerator, columns summed as denominator)."""

BOUNDED = ("utilisation", "bank_saving_mean")
"""Metrics in [0, 1] besides every ``*_rate``."""

HEADLINE = (
    ("slo_violation_rate", "SLO violation rate"),
    ("cost_gpu_hours", "cost [GPU-hours]"),
    ("mean_jct_s", "mean JCT [s] (unfinished censored)"),
    ("warm_hit_rate", "warm-hit rate (per GPU a job gets)"),
)
"""The metrics a report prints and draws, with their axis labels."""

ID_COLUMNS = ("run_dir", "label", "policy", "seed")
"""Columns every report table starts with."""

NOT_METRICS = frozenset(
    {"seed", "gpus", "price_per_gpu_hour", "horizon_s", "sim_wall_s", "decide_wall_s"}
)
"""Numeric summary keys that describe the run rather than measure it (not aggregated)."""


class ReportError(Exception):
    """A report that cannot be made (no runs found, unreadable summary)."""


# ------------------------------------------------------------------------------ intervals


def ci95(values: Iterable[float], min_n: int = MIN_SEEDS) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval ``(mean, lo, hi)`` of ``values`` (NaNs dropped).
    Fewer than ``min_n`` values: ``(mean, nan, nan)``; none: three NaNs; no spread:
    ``(m, m, m)``."""
    from scipy import stats

    x = _finite(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < max(2, min_n):
        return mean, math.nan, math.nan
    sem = float(stats.sem(x))
    if sem == 0.0:
        return mean, mean, mean
    lo, hi = stats.t.interval(CONFIDENCE, x.size - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of ``successes`` out of ``trials`` (inside [0, 1]);
    NaNs when ``trials`` is 0."""
    from scipy import stats

    if trials <= 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(CONFIDENCE, "wilson")
    return float(ci.low), float(ci.high)


def bootstrap_ci(values: Iterable[float], min_n: int = MIN_SEEDS) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of the mean (fixed seed, so reproducible);
    inside the values' range. Same conventions as :func:`ci95` for few values / no spread."""
    from scipy import stats

    x = _finite(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < max(2, min_n):
        return mean, math.nan, math.nan
    if np.all(x == x[0]):
        return mean, mean, mean
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=CONFIDENCE,
        method="percentile",
        n_resamples=2000,
        rng=np.random.default_rng(0),
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def _finite(values: Iterable[float]) -> np.ndarray:
    x = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    return x[~np.isnan(x)]


def is_bounded(metric: str) -> bool:
    """Metrics that are fractions in [0, 1]."""
    return metric.endswith("_rate") or metric in BOUNDED


def metric_ci(
    grp: pd.DataFrame, metric: str, min_n: int = MIN_SEEDS, bootstrap: bool = False
) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of ``metric`` over the rows of ``grp``, with the interval this module
    uses for it (Wilson for a count rate whose counts are in ``grp``, bootstrap for other
    bounded metrics, Student-t otherwise). ``bootstrap`` asks for the bootstrap interval
    (inside the values' range: positive for positive values, e.g. on a log axis)."""
    count = COUNT_RATES.get(metric)
    if count is not None and all(c in grp.columns for c in (count[0], *count[1])):
        num = grp[count[0]].astype(float)
        den = sum(grp[c].astype(float) for c in count[1])
        ok = num.notna() & den.notna()  # type: ignore[union-attr]
        k, n = int(num[ok].sum()), int(den[ok].sum())  # type: ignore[union-attr]
        if n == 0:
            return ci95(grp[metric].astype(float), min_n)
        mean = k / n
        if int(ok.sum()) < min_n:
            return mean, math.nan, math.nan
        lo, hi = wilson(k, n)
        return mean, lo, hi
    if bootstrap or is_bounded(metric):
        return bootstrap_ci(grp[metric].astype(float), min_n)
    return ci95(grp[metric].astype(float), min_n)


def interval_note(n: int, min_n: int = MIN_SEEDS) -> str:
    """What a group's interval columns hold, for the ``interval`` column and figure titles."""
    return "95%" if n >= min_n else f"none: {n} seed{'s' if n != 1 else ''} < {min_n}"


def aggregate(
    df: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    min_n: int = MIN_SEEDS,
    bootstrap: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per group of ``by`` (in order of first appearance) with ``n`` (rows in the
    group), ``interval`` (:func:`interval_note`) and ``<metric>_mean``, ``_lo``, ``_hi`` per
    metric (:func:`metric_ci`; the metrics in ``bootstrap`` get the bootstrap interval)."""
    if "n" in by or "interval" in by:
        raise ValueError("aggregate: a group column may not be called 'n' or 'interval'")
    rows: list[dict[str, Any]] = []
    groups = df.groupby(list(by), sort=False, dropna=False) if by else [((), df)]
    for key, grp in groups:
        keys = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, keys, strict=True))
        row["n"] = len(grp)
        row["interval"] = interval_note(len(grp), min_n)
        for m in metrics:
            mean, lo, hi = metric_ci(grp, m, min_n, m in bootstrap)
            row[f"{m}_mean"], row[f"{m}_lo"], row[f"{m}_hi"] = mean, lo, hi
        rows.append(row)
    cols = [*by, "n", "interval", *(f"{m}_{s}" for m in metrics for s in ("mean", "lo", "hi"))]
    return pd.DataFrame(rows, columns=cols)


def fmt_ci(row: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    """``mean [lo, hi]`` of an aggregated row (just the mean when it has no interval)."""
    mean, lo, hi = (row.get(f"{metric}_{s}") for s in ("mean", "lo", "hi"))
    if mean is None or _nan(mean):
        return "-"
    if lo is None or hi is None or _nan(lo) or _nan(hi):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


# ------------------------------------------------------------------------------ rows


def override_value(text: str) -> Any:
    """The value of an override's right-hand side as YAML reads it (numbers, booleans, null);
    lists and mappings stay as their text, so every table column is a scalar."""
    try:
        val = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(val, list | dict) else val


def override_columns(overrides: Sequence[str]) -> dict[str, Any]:
    """``{key: value}`` of ``key=value`` overrides (``+``/``~`` prefixes dropped)."""
    out: dict[str, Any] = {}
    for o in overrides:
        if "=" not in o:
            continue
        key, val = o.split("=", 1)
        out[key.lstrip("+~")] = override_value(val)
    return out


def scalars(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of a summary (lists such as ``invalid_examples`` left out)."""
    return {k: v for k, v in summary.items() if v is None or np.isscalar(v)}


def summary_row(
    labels: Mapping[str, Any], overrides: Sequence[str], summary: Mapping[str, Any]
) -> dict[str, Any]:
    """One tidy row: ``labels``, the override values as columns, then every summary scalar
    (a label or override column wins over a summary key of the same name)."""
    head = {**dict(labels), **override_columns(overrides)}
    return {**head, **{k: v for k, v in scalars(summary).items() if k not in head}}


def run_label(summary: Mapping[str, Any]) -> str:
    """A run's label: the summary's ``label`` (the config's ``name``), else its policy."""
    return str(summary.get("label") or summary.get("policy") or "?")


# ------------------------------------------------------------------------------ run folders


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Every run folder (one holding ``summary.json``) at or under ``paths``, sorted, each
    once; :class:`ReportError` if a path is missing or holds no run."""
    found: dict[Path, None] = {}
    for p in paths:
        if not p.exists():
            raise ReportError(f"{p}: no such folder")
        runs = sorted({s.parent for s in p.rglob("summary.json")}, key=_natural)
        if not runs:
            raise ReportError(f"{p}: no run folder (summary.json) in it")
        found.update(dict.fromkeys(runs))
    return list(found)


def _natural(p: Path) -> list[Any]:
    """Sort key: numbered folders (hydra's 0, 1, ..., 10) in numeric order."""
    return [int(x) if x.isdigit() else x for x in p.parts]


def run_overrides(run_dir: Path) -> list[str]:
    """The hydra overrides of the run in ``run_dir`` (or of its comparison folder, one level
    up), from the ``overrides.yaml`` the app writes (or hydra's ``.hydra/overrides.yaml``);
    empty when there is none."""
    for d in (run_dir, run_dir.parent):
        for path in (d / OVERRIDES_FILE, d / ".hydra" / "overrides.yaml"):
            if path.is_file():
                data = yaml.safe_load(path.read_text()) or []
                return [str(o) for o in data]
    return []


def read_summary(run_dir: Path) -> dict[str, Any]:
    """``summary.json`` of a run folder; :class:`ReportError` naming the file if unreadable."""
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read the summary ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    return data


def collect(paths: Sequence[Path]) -> pd.DataFrame:
    """The tidy table over every run at or under ``paths``: :data:`ID_COLUMNS`, the override
    columns (``seed`` and ``scheduler`` ones aside, which the id columns hold), then every
    summary scalar; one row per run in folder order."""
    rows = []
    for run_dir in find_runs(paths):
        summary = read_summary(run_dir)
        ovr = [o for o in run_overrides(run_dir) if o.split("=", 1)[0] not in ("seed",)]
        labels = {
            "run_dir": str(run_dir),
            "label": run_label(summary),
            "policy": summary.get("policy"),
            "seed": summary.get("seed"),
        }
        rows.append(summary_row(labels, ovr, summary))
    return pd.DataFrame(rows)


def is_override_column(column: str) -> bool:
    """Whether a table column holds an override value (a dotted config key or a config group
    choice such as ``workload``); summary keys are neither."""
    from ptsim.paths import conf_root

    if "." in column:
        return True
    return (conf_root() / column).is_dir()


def group_columns(table: pd.DataFrame) -> list[str]:
    """What rows are grouped by: ``label`` and every override column except ``scheduler``
    (the label names the scheduler config); never the seed."""
    return ["label"] + [
        c
        for c in table.columns
        if c not in ID_COLUMNS and c != "scheduler" and is_override_column(c)
    ]


def metric_columns(table: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """Every numeric summary column worth aggregating (not the grouping, id, override or
    run-describing ones)."""
    out = []
    for c in table.columns:
        if c in by or c in ID_COLUMNS or c in NOT_METRICS or is_override_column(c):
            continue
        if pd.api.types.is_bool_dtype(table[c]) or not pd.api.types.is_numeric_dtype(table[c]):
            continue
        out.append(c)
    return out


# ------------------------------------------------------------------------------ the report


def write_report(
    paths: Sequence[Path], out: Path, *, by: Sequence[str] | None = None
) -> dict[str, Path]:
    """Collect the runs under ``paths`` and write into ``out``: ``report.csv`` (one row per
    run), ``report_agg.csv`` (per group: mean and interval of every metric) and
    ``report.png`` (the headline metrics per group). Returns the files by name."""
    from ptsim.outcome import write_csv

    table = collect(paths)
    groups = list(by) if by is not None else group_columns(table)
    missing = [c for c in groups if c not in table.columns]
    if missing:
        raise ReportError(f"no column {missing[0]!r} to group by; columns: {list(table.columns)}")
    agg = aggregate(table, groups, metric_columns(table, groups))
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": out / "report.csv", "aggregate": out / "report_agg.csv"}
    write_csv(table, files["table"])
    write_csv(agg, files["aggregate"])
    from ptsim.plots import plot_report

    files["figure"] = plot_report(agg, groups, out / "report.png")
    return files


def headline_text(agg: pd.DataFrame, by: Sequence[str]) -> str:
    """The aggregate's headline metrics as a text table (mean [95% interval])."""
    cols = [m for m, _ in HEADLINE if f"{m}_mean" in agg.columns]
    shown = pd.DataFrame(
        {
            **{c: agg[c].astype(str) for c in by},
            "n": agg.n,
            **{m: [fmt_ci(r, m) for r in agg.to_dict("records")] for m in cols},
        }
    )
    text = shown.to_string(index=False)
    if (agg.n < MIN_SEEDS).any():
        text += f"\n(no interval for groups of fewer than {MIN_SEEDS} seeds)"
    return text


def queue_note(table: pd.DataFrame) -> str | None:
    """A line naming the labels whose runs never queued a job (``max_queued_jobs`` = 0 in every
    run): for them queue order cannot matter, so e.g. fifo and edf coincide. None if every
    label queued somewhere (or the table predates the column)."""
    if "max_queued_jobs" not in table:
        return None
    never = table.groupby("label", sort=False).max_queued_jobs.max()
    names = [str(k) for k, v in never.items() if v == 0]
    if not names:
        return None
    if len(names) == len(never):
        return (
            "note: no job ever waited in a queue in any of these runs (the cluster never "
            "filled), so queue order cannot matter: policies that differ only in it coincide"
        )
    return (
        f"note: {', '.join(names)} never queued a job in any run (the cluster never filled "
        "for them), so their queue order did not matter"
    )


def print_report(files: Mapping[str, Path], by: Sequence[str] | None = None) -> None:
    """Print the headline table of a written report, the queue note and the file names."""
    table = pd.read_csv(files["table"])
    agg = pd.read_csv(files["aggregate"])
    groups = list(by) if by is not None else group_columns(table)
    print(headline_text(agg, groups))
    note = queue_note(table)
    if note:
        print(note)
    for f in files.values():
        print(f)


def main(argv: Sequence[str] | None = None) -> int:
    """``ptsim report RUN_DIR... [--out DIR] [--by COL,COL]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="ptsim report",
        description="One tidy table over run folders (a run, a comparison, a multirun), an "
        "aggregate over seeds with 95% intervals, and a comparison figure.",
    )
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (searched recursively)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: the only RUN_DIR given, else ./report)",
    )
    ap.add_argument(
        "--by",
        default=None,
        help="comma-separated columns to group by (default: label and every override but the seed)",
    )
    ns = ap.parse_args(argv)
    out = ns.out or (ns.runs[0] if len(ns.runs) == 1 else Path("report"))
    by = None if ns.by is None else [c for c in ns.by.split(",") if c]
    try:
        files = write_report(ns.runs, out, by=by)
    except ReportError as exc:
        print(f"ptsim report: {exc}", file=sys.stderr)
        return 2
    print_report(files, by)
    return 0
