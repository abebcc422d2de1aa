"""Reports over saved runs: one tidy table over any set of run folders, an aggregate over seeds
with confidence intervals, and a comparison figure (``ptsim report RUN_DIR...``).

A *run* is a folder holding ``summary.json`` (a ``ptsim`` or ``ptexec`` run; a comparison run
holds one such folder per policy). :func:`collect` finds every run under the given folders,
leaves out (with a warning) the runs whose markers say they did not complete
(:func:`incomplete`), checks every remaining summary and overrides file (:func:`read_summary`,
:func:`run_overrides`: a bad one stops the report with one line naming the file) and makes
one row per run: ``run_dir``, ``label``, ``policy``, ``seed``, the run's hydra overrides
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ptsim.runfolder import (
    COMPLETE,
    LOCK,
    MARKERS,
    OVERRIDES_FILE,
    write_overrides,  # noqa: F401  (its home before)
)

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
    """A report (or run plot) that cannot be made: no runs found, an unreadable or malformed
    input file, an output path that is not a folder. One line, naming the file."""


def stderr_warning(prog: str) -> Callable[[str], None]:
    """A ``warn`` callback that prints ``<prog>: warning: <message>`` on stderr."""
    import sys

    def warn(message: str) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    return warn


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

SUMMARY_NUMBERS = ("jobs", "slo_violation_rate", "cost_gpu_hours", "warm_hit_rate")
"""Summary keys every run must have, each a number (not null)."""

SUMMARY_NULLABLE = ("mean_jct_s",)
"""Summary keys every run must have, each a number or null (no JCT sample)."""

SUMMARY_TEXT = frozenset({"policy", "label", "rejected_jct"})
"""Summary keys whose values are text; every other scalar must be a number, true/false or null."""


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Every run folder (one holding ``summary.json``) at or under ``paths``, sorted, each
    once; :class:`ReportError` if a path is missing or holds no run."""
    found: dict[Path, None] = {}
    for p in paths:
        if not p.exists():
            raise ReportError(f"{p}: no such folder")
        if not p.is_dir():
            raise ReportError(f"{p}: not a folder (give run folders)")
        runs = sorted({s.parent for s in p.rglob("summary.json")}, key=_natural)
        if not runs:
            raise ReportError(f"{p}: no run folder (summary.json) in it")
        found.update(dict.fromkeys(runs))
    return list(found)


def _natural(p: Path) -> list[Any]:
    """Sort key: numbered folders (hydra's 0, 1, ..., 10) in numeric order."""
    return [int(x) if x.isdigit() else x for x in p.parts]


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; :class:`ReportError` naming the file if it cannot be read
    or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _one_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


MARKER_LEVELS = 2
"""How many folders above a run :func:`incomplete` looks for the marker of the run it is part
of (a comparison's policy folder: 1; a ptexec validation's ``<policy>/executor``: 2)."""


def incomplete(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` is not complete, or None when it is, from the run markers
    (``ptsim.runfolder``) of its folder or, when it has none, of the nearest of the
    :data:`MARKER_LEVELS` folders above it that has a marker or a run lock (the run it is part
    of: a comparison, a ptexec validation). ``COMPLETE`` there: complete; ``FAILED`` or
    ``INTERRUPTED``: incomplete; a run lock without a marker: incomplete (a run killed, or
    still going). No marker and no run lock (a run from before markers, or made by hand):
    complete."""
    folder = run_dir
    for level in range(MARKER_LEVELS + 1):
        # the marker's file name says how the run ended (COMPLETE first, as runfolder reads)
        status = next((m for m in MARKERS if (folder / m).is_file()), None)
        if status is not None:
            if status == COMPLETE:
                return None
            return f"part of {folder}, which ended {status}" if level else f"ended {status}"
        # a lock without a marker: a run folder claimed and never finished (above the run
        # only a run folder's lock counts, one next to its config.yaml: other tools use .lock)
        if (folder / LOCK).exists() and (level == 0 or (folder / "config.yaml").is_file()):
            what = "no COMPLETE marker: stopped, or still running"
            return f"part of {folder}, which has {what}" if level else what
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def complete_runs(runs: Sequence[Path], warn: Callable[[str], None] | None) -> list[Path]:
    """``runs`` without the incomplete ones (:func:`incomplete`), which ``warn`` is told about
    in one line; :class:`ReportError` when none is complete."""
    why = {r: incomplete(r) for r in runs}
    bad = [f"{r} ({w})" for r, w in why.items() if w is not None]
    good = [r for r, w in why.items() if w is None]
    if bad and not good:
        raise ReportError(f"no complete run: {'; '.join(bad)}")
    if bad and warn is not None:
        n = len(bad)
        warn(f"skipped {n} incomplete run{'s' if n != 1 else ''}: {'; '.join(bad)}")
    return good


def overrides_file(run_dir: Path) -> Path | None:
    """The file holding the run's hydra overrides: the ``overrides.yaml`` the app writes (or
    hydra's ``.hydra/overrides.yaml``) in ``run_dir`` or, for a comparison's policy folder,
    one level up; None when there is none."""
    for d in (run_dir, run_dir.parent):
        for path in (d / OVERRIDES_FILE, d / ".hydra" / "overrides.yaml"):
            if path.is_file():
                return path
    return None


def run_overrides(run_dir: Path) -> list[str]:
    """The hydra overrides of the run in ``run_dir`` (:func:`overrides_file`); empty when there
    is none. :class:`ReportError` naming the file unless it is a YAML list of strings."""
    path = overrides_file(run_dir)
    if path is None:
        return []
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ReportError(f"{path}: not valid YAML{where} ({_one_line(problem)})") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ReportError(
            f"{path}: expected a list of overrides (key=value strings), got {_yaml_kind(data)}"
        )
    for i, o in enumerate(data, start=1):
        if not isinstance(o, str):
            raise ReportError(
                f"{path}: item {i} is {_yaml_kind(o)} ({_show(o)}): expected an override "
                "string (key=value)"
            )
    return list(data)


def _yaml_kind(value: Any) -> str:
    """What a YAML / JSON value is, in words with its article."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "text" if isinstance(value, str) else f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """A JSON value as it is written (text quoted), cut to one short line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return _one_line(text, 60)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """``summary.json`` of a run folder, checked: a JSON object with :data:`SUMMARY_NUMBERS`
    (numbers), :data:`SUMMARY_NULLABLE` (numbers or null) and ``policy`` (text), every other
    scalar a number, true/false or null except the :data:`SUMMARY_TEXT` keys (text or null).
    :class:`ReportError` naming the file and the key otherwise."""
    path = run_dir / "summary.json"
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object (not a ptsim summary)")
    need = ("policy", *SUMMARY_NUMBERS, *SUMMARY_NULLABLE)
    missing = [k for k in need if k not in data]
    if missing:
        keys = ", ".join(missing)
        raise ReportError(
            f"{path}: missing key{'s' if len(missing) > 1 else ''} {keys} (not a ptsim summary)"
        )
    if not isinstance(data["policy"], str) or not data["policy"]:
        raise ReportError(f"{path}: policy = {_show(data['policy'])}: expected a name")
    for key, value in data.items():
        if key in SUMMARY_TEXT:
            if value is not None and not isinstance(value, str):
                raise ReportError(f"{path}: {key} = {_show(value)}: expected text")
            continue
        required = key in SUMMARY_NUMBERS
        metric = required or key in SUMMARY_NULLABLE
        if value is None:
            if required:
                raise ReportError(f"{path}: {key} is null: expected a number")
            continue
        if isinstance(value, list | dict) and not metric:
            continue  # not a scalar: not in the report (e.g. invalid_examples)
        if isinstance(value, bool) and not metric:
            continue  # a flag (horizon_hit)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ReportError(
                f"{path}: {key} = {_show(value)}: expected a number{'' if required else ' or null'}"
            )
        if math.isinf(value) or (required and math.isnan(value)):
            raise ReportError(f"{path}: {key} = {value}: expected a finite number")
    return data


def collect(paths: Sequence[Path], warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The tidy table over every complete run at or under ``paths``: :data:`ID_COLUMNS`, the
    override columns (``seed`` and ``scheduler`` ones aside, which the id columns hold), then
    every summary scalar; one row per run in folder order. Every run's summary and overrides
    are checked before the table is made (:func:`read_summary`, :func:`run_overrides`);
    incomplete runs are left out and ``warn`` told (:func:`complete_runs`; default: one line
    on stderr)."""
    rows = []
    for run_dir in complete_runs(find_runs(paths), warn or stderr_warning("ptsim report")):
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


def check_out_folder(out: Path) -> None:
    """Refuse (:class:`ReportError`) an output path that is, or lies under, something other
    than a folder (checked with the inputs, before anything is written)."""
    from ptsim.runfolder import not_a_folder

    problem = not_a_folder(out)
    if problem:
        raise ReportError(f"{out}: {problem}")


def write_files(files: Mapping[Path, bytes]) -> list[Path]:
    """Write every file (path -> its bytes) or none: each goes to a temporary file in its
    folder first, and only when all are written (and no target is a folder) are they renamed
    into place, one after another. Temporary files and folders this call created are removed
    again on failure; :class:`ReportError` names the file that failed."""
    import contextlib
    import errno
    import os
    import tempfile

    made: list[Path] = []
    temps: dict[Path, Path] = {}
    current = next(iter(files), Path("."))
    try:
        for path in files:
            current = path
            new = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            made += reversed(new)
        for path, data in files.items():
            current = path
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps[path] = Path(name)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for path in temps:  # what would make a rename fail, before the first one
            current = path
            if path.is_dir() and not path.is_symlink():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way")
        for path, tmp in temps.items():
            current = path
            os.replace(tmp, path)
    except OSError as exc:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise ReportError(f"{current}: cannot write ({exc.strerror or exc})") from None
    return list(files)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as CSV (no index), as :func:`ptsim.outcome.write_csv` writes it."""
    return df.to_csv(index=False).encode("utf-8")


def write_report(
    paths: Sequence[Path],
    out: Path,
    *,
    by: Sequence[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Collect the runs under ``paths`` and write into ``out``: ``report.csv`` (one row per
    run), ``report_agg.csv`` (per group: mean and interval of every metric) and
    ``report.png`` (the headline metrics per group). Returns the files by name.

    Every input is read and checked, and the three files made in memory, before anything is
    written; then all three are written or none (:func:`write_files`). Bad input (an output
    path that is not a folder, a run folder, summary or overrides file that is missing or
    malformed, a group column that does not exist) is a :class:`ReportError`; incomplete runs
    are left out and ``warn`` told (:func:`collect`)."""
    from ptsim.plots import png_bytes, report_figure

    table = collect(paths, warn)
    check_out_folder(out)
    groups = list(by) if by is not None else group_columns(table)
    missing = [c for c in groups if c not in table.columns]
    if missing:
        raise ReportError(f"no column {missing[0]!r} to group by; columns: {list(table.columns)}")
    reserved = [c for c in groups if c in ("n", "interval")]
    if reserved:
        raise ReportError(f"cannot group by {reserved[0]!r}: the aggregate's own column")
    agg = aggregate(table, groups, metric_columns(table, groups))
    files = {"table": out / "report.csv", "aggregate": out / "report_agg.csv"}
    files["figure"] = out / "report.png"
    write_files(
        {
            files["table"]: csv_bytes(table),
            files["aggregate"]: csv_bytes(agg),
            files["figure"]: png_bytes(report_figure(agg, groups)),
        }
    )
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
