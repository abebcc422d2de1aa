"""Traces: the canonical schema, its validating loader and writer, the default workload
generator, and converters from public trace formats. See docs/traces.md."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "WorkloadSpec": "ptsim.trace.generator",
    "generate_workload": "ptsim.trace.generator",
    "TraceError": "ptsim.trace.loader",
    "load_trace": "ptsim.trace.loader",
    "write_trace": "ptsim.trace.loader",
}


def __getattr__(name: str) -> Any:
    """The package's names, imported on first use (so ``ptsim.trace.cells`` and the loader do
    not pull in pandas for a command that only reads a job file)."""
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ptsim.trace' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


__all__ = ["TraceError", "WorkloadSpec", "generate_workload", "load_trace", "write_trace"]
