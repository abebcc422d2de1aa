"""The run record both drivers produce, and how it is written to files.

A driver (the SimPy simulator, ``ptsim/simulator.py``, or the real executor,
``ptexec/driver.py``) ends a run with a :class:`RunOutcome`: the core's ``ClusterState`` at the
end, the cluster time series, the driver's own :class:`RunStats` and the policy's name.
``ptsim.metrics`` turns an outcome into the per-job table, the time series table and the
summary; a :class:`RunResult` holds those, and :func:`save_result` writes them
(``jobs.csv``, ``timeseries.csv``, then ``summary.json``). Every file goes through
:func:`atomic_write`: a reader never sees a partial file.

Nothing here knows which driver ran: this module imports neither simpy nor hydra nor torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptsim.core.state import ClusterState, SeriesRow


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


@dataclass
class RunResult:
    """One policy's run: its summary, per-job table and cluster time series."""

    policy: str
    summary: dict[str, Any]
    jobs: pd.DataFrame
    series: pd.DataFrame
    run_dir: Path | None = None


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


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV at ``path`` (no index), atomically."""
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
    write_csv(result.jobs, run_dir / "jobs.csv")
    write_csv(result.series, run_dir / "timeseries.csv")
    write_json(result.summary, run_dir / "summary.json")
    result.run_dir = run_dir
    return result
