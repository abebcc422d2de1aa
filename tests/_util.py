"""Small hand-built profiles and jobs shared by the driver and core tests, and the loader of the
benchmark scripts their tests use."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.types import JobSpec


def linear_profiles(
    models: tuple[str, ...] = ("m",),
    cold_start_s: float = 10.0,
    reload_s: float = 5.0,
    mechanics: Mechanics | None = None,
) -> ProfileSet:
    """Each model does 1 iteration/s per GPU at batch 16 (perfectly linear up to 8 GPUs)."""
    table = ThroughputTable((16,), (1, 2, 4, 8), np.array([[1.0, 2.0, 4.0, 8.0]]))
    return ProfileSet(
        {m: ModelProfile(m, 1e8, table, cold_start_s, reload_s, 0.25) for m in models},
        mechanics or Mechanics(handover_s=0.5, reconfig_s=2.0),
    )


def job(
    job_id: str,
    arrival: float,
    iters: int,
    deadline: float,
    gpus: int = 1,
    model: str = "m",
    task: str = "sst2",
    max_gpus: int = 8,
) -> JobSpec:
    return JobSpec(job_id, arrival, model, task, deadline, 16, iters, gpus, 1, max_gpus)


def patches(*modules: str) -> pytest.MarkDecorator:
    """Mark a test that replaces functions or methods of ``modules`` to observe them: compiled
    code (``python -m ptsim.tools.native build``) calls its own functions directly, so such a
    test runs only where those modules are pure Python (as in CI)."""
    compiled = [
        m
        for m in modules
        if str(getattr(importlib.import_module(m), "__file__", "")).endswith(
            tuple(EXTENSION_SUFFIXES)
        )
    ]
    return pytest.mark.skipif(
        bool(compiled), reason=f"patches compiled {', '.join(compiled)} (pure Python only)"
    )


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, monkeypatch: pytest.MonkeyPatch | None = None) -> ModuleType:
    """The script ``benchmarks/NAME.py`` as a module; with ``monkeypatch``, also registered in
    ``sys.modules`` under ``NAME`` for the test (a dataclass in the script looks it up there)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod
