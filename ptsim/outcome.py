"""The run record both drivers produce, and how it is written to files.

A driver (the SimPy simulator, ``ptsim/simulator.py``, or the real executor,
``ptexec/driver.py``) ends a run with a :class:`RunOutcome`: the core's ``ClusterState`` at the
end, the cluster time series, the driver's own :class:`RunStats` and the policy's name.
``ptsim.metrics`` turns an outcome into the per-job table, the time series table and the
summary; a :class:`RunResult` holds those, and :func:`save_result` writes them
(``jobs.csv``, ``timeseries.csv``, then ``summary.json``). Every file goes through
:func:`atomic_write`: a reader never sees a partial file.

Nothing here knows which driver ran: this module imports neither simpy nor hydra nor torch,
and not pandas either: a run's tables are :class:`Table` rows, written as the CSV pandas would
write (``Table.csv_text``) and turned into DataFrames only when read (``RunResult.jobs``), so a
run that only writes its tables never imports pandas (start-up time).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptsim.core.state import ClusterState, SeriesRow

if TYPE_CHECKING:  # pandas only for type hints: a run folder's markers must not load it
    import pandas as pd


@dataclass
class RunStats:
    """What the driver measured about the run itself."""

    events: int = 0
    decisions: int = 0
    decide_wall_s: float = 0.0
    sim_wall_s: float = 0.0
    end_s: float = 0.0
    horizon_s: float = 0.0
    horizon_hit: bool = False
    invalid: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    """The state at the end of a run, the cluster time series and the driver's own stats."""

    state: ClusterState
    series: list[SeriesRow]
    stats: RunStats
    policy: str


class Table:
    """A result table as rows of plain values under named columns (what a ``pd.DataFrame`` of
    these rows holds, without importing pandas)."""

    def __init__(self, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.columns = tuple(columns)
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        """The values of one column, in row order."""
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame (``pd.DataFrame(rows, columns=...)``)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.columns))

    def csv_text(self, lineterminator: str = os.linesep) -> str:
        """The table as CSV, byte for byte what ``self.to_frame().to_csv(index=False)``
        writes: each column formatted by the dtype pandas infers for it (bool, int64, float64:
        the shortest repr, NaN empty; anything else as text, None and NaN empty)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=lineterminator)
        w.writerow(self.columns)
        if self.columns and self.rows:
            cols = list(zip(*self.rows, strict=True))
            assert len(cols) == len(self.columns), "a row's length differs from the columns'"
            w.writerows(zip(*[_csv_column(list(c)) for c in cols], strict=True))
        return buf.getvalue()

    def write_csv(self, path: Path, lineterminator: str = os.linesep) -> None:
        """Write :meth:`csv_text` to ``path`` (UTF-8, line ends as given)."""
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(self.csv_text(lineterminator))


def _is_float(v: Any) -> bool:
    return isinstance(v, float | np.floating)


def _csv_float(v: Any) -> str:
    x = float(v)
    return "" if math.isnan(x) else repr(x)


def _csv_text(v: Any) -> str:
    if v is None or (_is_float(v) and math.isnan(v)):
        return ""
    return str(v)


def _csv_column(values: list[Any]) -> list[str]:
    """A column's values as pandas writes them (``_csv_format``), with the common columns of
    plain ints and plain floats formatted without a call per value."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return list(map(str, values))
    if kinds == {float}:
        return [repr(x) if x == x else "" for x in values]  # NaN: empty
    fmt = _csv_format(values)
    if fmt is _csv_text and kinds <= {type(None), str, int, float}:
        return ["" if v is None or (type(v) is float and v != v) else str(v) for v in values]
    return list(map(fmt, values))


def _csv_format(values: list[Any]) -> Callable[[Any], str]:
    """How pandas writes a column of these values: by the dtype it infers for them."""
    kinds = set(map(type, values))  # (each test below holds for a value iff for its type)
    if values and all(issubclass(k, bool | np.bool_) for k in kinds):
        return str
    if values and all(_int_kind(k) for k in kinds):
        return lambda v: str(int(v))
    if values and all(_int_kind(k) or issubclass(k, float | np.floating) for k in kinds):
        return _csv_float
    return _csv_text


def _int_kind(k: type) -> bool:
    return issubclass(k, int | np.integer) and not issubclass(k, bool | np.bool_)


def _frame(table: pd.DataFrame | Table) -> pd.DataFrame:
    return table.to_frame() if isinstance(table, Table) else table


class RunResult:
    """One policy's run: its summary, per-job table and cluster time series (DataFrames,
    built on first read when given as :class:`Table` rows)."""

    def __init__(
        self,
        policy: str,
        summary: dict[str, Any],
        jobs: pd.DataFrame | Table,
        series: pd.DataFrame | Table,
        run_dir: Path | None = None,
    ) -> None:
        self.policy = policy
        self.summary = summary
        self._jobs = jobs
        self._series = series
        self.run_dir = run_dir

    @property
    def jobs(self) -> pd.DataFrame:
        self._jobs = _frame(self._jobs)
        return self._jobs

    @jobs.setter
    def jobs(self, value: pd.DataFrame | Table) -> None:
        self._jobs = value

    @property
    def series(self) -> pd.DataFrame:
        self._series = _frame(self._series)
        return self._series

    @series.setter
    def series(self, value: pd.DataFrame | Table) -> None:
        self._series = value

    def __repr__(self) -> str:
        return f"RunResult(policy={self.policy!r}, jobs={len(self._jobs)}, run_dir={self.run_dir})"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(df: pd.DataFrame | Table, path: Path) -> None:
    """``df`` as CSV at ``path`` (no index), atomically."""
    if isinstance(df, Table):
        atomic_write(path, df.write_csv)
    else:
        atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_json(obj: Any, path: Path) -> None:
    """``obj`` as indented JSON with sorted keys at ``path``, atomically."""

    def _w(p: Path) -> None:
        p.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")

    atomic_write(path, _w)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def save_result(result: RunResult, run_dir: Path) -> RunResult:
    """Write ``jobs.csv``, ``timeseries.csv`` and, last, ``summary.json`` into ``run_dir``."""
    write_csv(result._jobs, run_dir / "jobs.csv")
    write_csv(result._series, run_dir / "timeseries.csv")
    write_json(result.summary, run_dir / "summary.json")
    result.run_dir = run_dir
    return result
