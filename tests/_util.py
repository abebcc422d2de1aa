"""Small hand-built profiles and jobs shared by the driver and core tests."""

from __future__ import annotations

import numpy as np

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
