"""Reading and writing canonical traces (CSV or Parquet), with one-line errors that name the
file, the row and the column of every problem.

Rows are counted from 1 at the first data row: row 1 is the line right after the header.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ptsim.core.types import JobSpec
from ptsim.outcome import Table
from ptsim.trace.cells import INT_LIMIT, PARSERS, CellError
from ptsim.trace.schema import COLUMN_NAMES, COLUMNS, SLO_COLUMN, job_from_row, job_to_row

EXTENSIONS = (".csv", ".parquet")


class TraceError(ValueError):
    """A problem with a trace file: the message names the file, and the row and column where
    there is one, e.g. ``trace.csv row 7, column deadline_s: -3.0 is before arrival_s 12.0``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        what: str,
        row: int | str | None = None,
        column: str | None = None,
        *,
        row_word: str = "row",
        column_word: str = "column",
    ) -> None:
        self.path, self.what, self.row, self.column = str(path), what, row, column
        where = self.path
        if row is not None:
            where += f" {row_word} {row}"
        if column is not None:
            where += f"{',' if row is not None else ''} {column_word} {column}"
        super().__init__(f"{where}: {what}")


def _extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise TraceError(
            path, f"unknown extension {path.suffix or '(none)'!r}; expected .csv or .parquet"
        )
    return ext


def require_file(path: Path) -> None:
    """A ``TraceError`` unless ``path`` is an existing file (a folder is named as one)."""
    if path.is_dir():
        raise TraceError(path, "is a folder, not a file")
    if not path.is_file():
        raise TraceError(path, "no such file")


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (CSV, JSON), a byte-order mark at its start (as spreadsheets
    such as Excel write) skipped; a ``TraceError`` names the first byte that is not UTF-8."""
    require_file(path)
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(path, f"not UTF-8 text ({e.reason} at byte {skip + e.start})") from None


def read_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Header and data rows of a CSV or Parquet file, each row a dict by column name. A CSV
    file is UTF-8 text; a byte-order mark at its start is skipped."""
    ext = _extension(path)
    require_file(path)
    if ext == ".parquet":
        try:
            import pandas as pd

            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise TraceError(path, f"cannot read as Parquet: {e}") from None
        records = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
        return [str(c) for c in df.columns], records
    try:
        lines = list(csv.reader(io.StringIO(read_text(path), newline="")))
    except csv.Error as e:
        raise TraceError(path, f"malformed CSV: {e}") from None
    if not lines:
        raise TraceError(path, "empty file: no header")
    header = [h.strip() for h in lines[0]]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()  # blank lines at the end
    rows: list[dict[str, Any]] = []
    for i, fields in enumerate(lines[1:], start=1):
        if len(fields) != len(header):
            what = "empty line" if not fields else f"{len(fields)} fields, header has {len(header)}"
            raise TraceError(path, what, row=i)
        rows.append(dict(zip(header, fields, strict=True)))
    return header, rows


def check_header(
    path: Path, header: Sequence[str], required: Sequence[str], note: str = ""
) -> None:
    """Every required column present, no column twice, none unknown."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise TraceError(path, "appears twice in the header", column=repr(name))
        seen.add(name)
    expected = ", ".join(required) + note
    for name in header:
        if name not in required:
            raise TraceError(
                path, f"unknown column; expected columns: {expected}", column=repr(name)
            )
    for name in required:
        if name not in seen:
            raise TraceError(path, "missing column", column=name)


def check_unique_ids(
    path: Path, ids: Iterable[tuple[int, str]], column: str = "job_id", rows_word: str = "rows"
) -> None:
    """Every id is text without control characters (a newline or NUL would break the tables
    the id goes into), and none comes twice (the error names both rows)."""
    first: dict[str, int] = {}
    for row, jid in ids:
        if not jid or any(ord(c) < 32 or ord(c) == 127 for c in jid):
            raise TraceError(
                path,
                f"job id {jid!r} is empty or holds a control character",
                row=str(row),
                column=column,
                row_word=rows_word.rstrip("s"),
            )
        if jid in first:
            raise TraceError(
                path,
                f"duplicate job id {jid!r}",
                row=f"{first[jid]} and {row}",
                column=column,
                row_word=rows_word,
            )
        first[jid] = row


MAX_TIME_S = 1e9
"""Largest arrival or deadline a trace may give (about 31 years)."""

MAX_COUNTS = MappingProxyType(
    {"batch_size": 10**7, "iterations": 10**12, "num_gpus": 2**16, "min_gpus": 2**16}
)
"""Largest value of each count column (``max_gpus`` may be anything: it is a cap)."""


@dataclass(frozen=True)
class TraceWarning:
    """Something in a trace a user may mean but should know about, with a stable ``name``."""

    name: str
    path: str
    row: int
    column: str
    what: str

    def __str__(self) -> str:
        return f"{self.path} row {self.row}, column {self.column}: warning {self.name}: {self.what}"


@dataclass(frozen=True)
class TraceChecks:
    """What every row is checked against besides the schema: the models of the profile set,
    the tasks of the task space and the cluster size (``None``: not checked)."""

    known_models: Collection[str] | None = None
    known_tasks: Collection[str] | None = None
    num_gpus: int | None = None


def _known(kind: str, value: str, known: Collection[str]) -> str:
    names = sorted(known)
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return f"unknown {kind} {value!r}; known: {shown}"


def check_job(
    path: Path,
    row: int,
    v: Mapping[str, Any],
    checks: TraceChecks | None = None,
    warn: Callable[[TraceWarning], Any] | None = None,
    *,
    deadline_column: str = "deadline_s",
) -> None:
    """The loader's checks of one job's values ``v``, by canonical column (``deadline_s``
    absolute; cells already parsed): times within their limits and the deadline after the
    arrival, counts within theirs, a consistent GPU range, and ``checks``. Raises
    ``TraceError`` naming ``path``, ``row`` and the column; ``deadline_column`` is the column
    the deadline came from (``slo_s`` for a relative one). The converters run it on every job
    they make, so they never produce a trace the loader refuses."""
    checks = checks or TraceChecks()

    def bad(column: str, what: str) -> TraceError:
        return TraceError(path, what, row=row, column=column)

    arrival, deadline = v["arrival_s"], v["deadline_s"]
    if arrival < 0:
        raise bad("arrival_s", f"{arrival!r} is negative")
    if arrival > MAX_TIME_S:
        raise bad("arrival_s", f"{arrival!r} is above the limit {MAX_TIME_S:g} s")
    if checks.known_models is not None and v["model"] not in checks.known_models:
        raise bad("model", _known("model", v["model"], checks.known_models))
    if checks.known_tasks is not None and v["task"] not in checks.known_tasks:
        raise bad("task", _known("task", v["task"], checks.known_tasks))
    if deadline_column == "deadline_s":
        if deadline < arrival:
            raise bad("deadline_s", f"{deadline!r} is before arrival_s {arrival!r}")
        if deadline == arrival:
            raise bad("deadline_s", f"{deadline!r} equals arrival_s (no job can meet it)")
    elif deadline <= arrival:
        what = f"deadline {deadline!r} is not after arrival_s {arrival!r} (no job can meet it)"
        raise bad(deadline_column, what)
    if deadline > MAX_TIME_S:
        raise bad(deadline_column, f"deadline {deadline!r} is above the limit {MAX_TIME_S:g} s")
    for name in ("batch_size", "iterations", "num_gpus", "min_gpus", "max_gpus"):
        if v[name] < 1:
            raise bad(name, f"{v[name]} is below 1")
        if name in MAX_COUNTS and v[name] > MAX_COUNTS[name]:
            raise bad(name, f"{v[name]} is above the limit {MAX_COUNTS[name]}")
    lo, n, hi = v["min_gpus"], v["num_gpus"], v["max_gpus"]
    if lo > hi:
        raise bad("min_gpus", f"{lo} is above max_gpus {hi}")
    if not lo <= n <= hi:
        raise bad("num_gpus", f"{n} is outside [min_gpus, max_gpus] = [{lo}, {hi}]")
    size = checks.num_gpus
    if size is not None:
        if n > size:
            raise bad("num_gpus", f"the job asks for {n} GPUs; the cluster has {size}")
        if hi > size and warn is not None:
            what = f"{hi} is above the cluster's {size} GPUs; the job gets at most {size}"
            warn(TraceWarning("max-gpus-above-cluster", str(path), row, "max_gpus", what))


def _row_to_job(
    path: Path,
    i: int,
    row: Mapping[str, Any],
    slo: bool,
    checks: TraceChecks,
    warn: Callable[[TraceWarning], Any] | None = None,
) -> JobSpec:
    cols = [SLO_COLUMN if (slo and c.name == "deadline_s") else c for c in COLUMNS]
    v: dict[str, Any] = {}
    for c in cols:
        try:
            v[c.name] = PARSERS[c.kind](row[c.name])
        except CellError as e:
            raise TraceError(path, str(e), row=i, column=c.name) from None
    if slo:
        if v["slo_s"] <= 0:
            what = f"{v['slo_s']!r} is not positive (no job can meet it)"
            raise TraceError(path, what, row=i, column="slo_s")
        v["deadline_s"] = v["arrival_s"] + v.pop("slo_s")
    check_job(path, i, v, checks, warn, deadline_column="slo_s" if slo else "deadline_s")
    return job_from_row(v)


def sort_jobs(jobs: Iterable[JobSpec]) -> list[JobSpec]:
    """Jobs in trace order: by arrival, then job id."""
    return sorted(jobs, key=lambda j: (j.arrival, j.job_id))


def load_trace(
    path: str | os.PathLike[str],
    known_models: Collection[str] | None = None,
    *,
    known_tasks: Collection[str] | None = None,
    num_gpus: int | None = None,
    warn: Callable[[TraceWarning], Any] | None = None,
) -> list[JobSpec]:
    """The jobs of a canonical trace (.csv or .parquet), sorted by (arrival, job_id).

    Raises ``TraceError`` on the first problem found. When ``known_models`` (``known_tasks``)
    is given, every job's model (task) must be one of them; when ``num_gpus`` (the cluster
    size) is given, no job may ask for more GPUs than that. ``warn`` receives each
    ``TraceWarning`` (things a user may mean, such as ``max_gpus`` above the cluster size).
    """
    checks = TraceChecks(known_models, known_tasks, num_gpus)
    p = Path(path)
    header, rows = read_table(p)
    slo = "slo_s" in header and "deadline_s" not in header
    required = [("slo_s" if slo and n == "deadline_s" else n) for n in COLUMN_NAMES]
    if "slo_s" in header and "deadline_s" in header:
        raise TraceError(p, "give deadline_s or slo_s, not both", column="slo_s")
    if "slo_s" not in header and "deadline_s" not in header:
        raise TraceError(p, "missing column (or slo_s in its place)", column="deadline_s")
    check_header(p, header, required, note="; slo_s may replace deadline_s")
    if not rows:
        raise TraceError(p, "empty trace: no jobs")
    jobs = [_row_to_job(p, i, row, slo, checks, warn) for i, row in enumerate(rows, start=1)]
    check_unique_ids(p, ((i, j.job_id) for i, j in enumerate(jobs, start=1)))
    return sort_jobs(jobs)


_DTYPE = MappingProxyType({"str": "object", "float": "float64", "int": "int64"})
_CAST: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {"str": lambda v: v, "float": float, "int": int}
)


def write_trace(jobs: Iterable[JobSpec], path: str | os.PathLike[str]) -> Path:
    """Write ``jobs`` as a canonical trace, CSV or Parquet by the extension, sorted by
    (arrival, job_id). The file appears whole or not at all. Returns the path written."""
    p = Path(path)
    ext = _extension(p)
    ordered = sort_jobs(jobs)
    if not ordered:
        raise TraceError(p, "refusing to write an empty trace")
    check_unique_ids(p, ((i, j.job_id) for i, j in enumerate(ordered, start=1)))
    for i, job in enumerate(ordered, start=1):  # what the loader would refuse to read back
        for c in COLUMNS:
            value = getattr(job, c.field)
            if c.kind == "int" and not -INT_LIMIT <= value < INT_LIMIT:
                raise TraceError(p, f"{value} is out of range (below 2^63)", row=i, column=c.name)
            if c.kind == "float" and not math.isfinite(value):
                raise TraceError(p, f"{value!r} is not a finite number", row=i, column=c.name)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if ext == ".csv":  # as pandas writes the typed table below, without importing it
            cast = [_CAST[c.kind] for c in COLUMNS]
            rows = [
                tuple(f(getattr(j, c.field)) for f, c in zip(cast, COLUMNS, strict=True))
                for j in ordered
            ]
            Table(COLUMN_NAMES, rows).write_csv(tmp, lineterminator="\n")
        else:
            import pandas as pd

            df = pd.DataFrame([job_to_row(j) for j in ordered], columns=list(COLUMN_NAMES))
            df = df.astype({c.name: _DTYPE[c.kind] for c in COLUMNS})
            df.to_parquet(tmp, index=False)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


__all__ = [
    "TraceChecks",
    "TraceError",
    "TraceWarning",
    "check_job",
    "load_trace",
    "read_table",
    "read_text",
    "require_file",
    "sort_jobs",
    "write_trace",
]
