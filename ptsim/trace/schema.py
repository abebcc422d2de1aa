"""The canonical trace schema: one row per job, mapping 1:1 to ``ptsim.core.types.JobSpec``.

Times are seconds from the trace start (the first possible arrival, time 0). ``deadline_s`` is
absolute on that clock; a trace may give ``slo_s`` (relative: deadline = arrival + slo) instead.
See docs/traces.md for the full description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ptsim.core.types import JobSpec

Kind = Literal["str", "float", "int"]


@dataclass(frozen=True, slots=True)
class Column:
    """One trace column: its name, value kind, unit and JobSpec field."""

    name: str
    kind: Kind
    unit: str
    field: str
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("job_id", "str", "-", "job_id", "unique job id"),
    Column("arrival_s", "float", "s", "arrival", "submission time, from trace start, >= 0"),
    Column("model", "str", "-", "model", "LLM name (a profile's model)"),
    Column("task", "str", "-", "task", "task (dataset) name"),
    Column("deadline_s", "float", "s", "deadline", "absolute deadline, >= arrival_s"),
    Column("batch_size", "int", "samples", "batch_size", "global batch size, >= 1"),
    Column("iterations", "int", "iterations", "iterations", "iterations to target, >= 1"),
    Column("num_gpus", "int", "GPUs", "num_gpus", "GPUs requested"),
    Column("min_gpus", "int", "GPUs", "min_gpus", "fewest GPUs an elastic policy may use"),
    Column("max_gpus", "int", "GPUs", "max_gpus", "most GPUs an elastic policy may use"),
)
"""The columns a written trace has, in this order."""

SLO_COLUMN = Column("slo_s", "float", "s", "", "relative deadline (instead of deadline_s)")
"""Accepted by the loader in place of ``deadline_s``: deadline = arrival_s + slo_s."""

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)


def job_to_row(job: JobSpec) -> dict[str, str | float | int]:
    """The canonical row of one job."""
    return {c.name: getattr(job, c.field) for c in COLUMNS}


def job_from_row(row: Mapping[str, Any]) -> JobSpec:
    """The job of a canonical row (values by column name, ``deadline_s`` absolute)."""
    return JobSpec(**{c.field: row[c.name] for c in COLUMNS})
