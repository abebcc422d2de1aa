"""Replaying a recorded trace: cut a window out of it and bring it to a target offered load.

``replay_window`` keeps the jobs that arrive in ``[window_start_s, window_start_s + window_s)``
(times shifted so that the window starts at 0) and, when a target ``load`` is given, thins the
jobs at random (a lower load) or compresses the arrival times (a higher load). Offered load is
measured as the generator measures it (``generator.offered_load``) over the window's length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ptsim.core.profiles import ProfileSet
from ptsim.core.types import JobSpec
from ptsim.trace.generator import offered_load

REPLAY_KEYS = ("load", "trace", "window_s", "window_start_s")
"""The ``workload`` config keys that apply to a replayed trace (besides ``name``)."""


@dataclass(frozen=True)
class ReplaySpec:
    """How a trace is replayed.

    - ``window_start_s``: start of the window, in the trace's seconds.
    - ``window_s``: its length; ``None`` = up to and including the last arrival.
    - ``load``: target offered load on the cluster over the window; ``None`` = as recorded.
    """

    window_start_s: float = 0.0
    window_s: float | None = None
    load: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.window_start_s) or self.window_start_s < 0:
            raise ValueError(f"workload.window_start_s must be >= 0, got {self.window_start_s}")
        if self.window_s is not None and not self.window_s > 0:
            raise ValueError(f"workload.window_s must be > 0, got {self.window_s}")
        if self.load is not None and not self.load > 0:
            raise ValueError(f"workload.load must be > 0, got {self.load}")


def replay_window(
    jobs: Sequence[JobSpec],
    spec: ReplaySpec,
    profiles: ProfileSet,
    num_gpus: int,
    rng: np.random.Generator,
    source: str = "the trace",
) -> list[JobSpec]:
    """The jobs of ``jobs`` (sorted by arrival) that ``spec`` keeps, in arrival order.

    Window: jobs arriving in ``[start, start + window_s)``, arrival and deadline shifted by
    ``-start``. Load: with ``L0`` the window's offered load on ``num_gpus`` GPUs (over
    ``window_s``, or over the span from ``start`` to the last arrival), a target ``L < L0``
    keeps each job with probability ``L / L0`` (one ``rng.random()`` per job, in arrival
    order); ``L > L0`` multiplies every arrival time by ``L0 / L`` and keeps each job's
    deadline the same time after its arrival. Errors name ``source`` and the config key.
    """
    start = spec.window_start_s
    end = math.inf if spec.window_s is None else start + spec.window_s
    kept = [
        replace(j, arrival=j.arrival - start, deadline=j.deadline - start)
        for j in jobs
        if start <= j.arrival < end
    ]
    if not kept:
        what = f"[{start:g}, {end:g}) s" if spec.window_s is not None else f"from {start:g} s"
        keys = "workload.window_start_s" + (
            " / workload.window_s" if spec.window_s is not None else ""
        )
        raise ValueError(f"{keys}: no job of {source} arrives {what}")
    if spec.load is None:
        return kept
    span = spec.window_s if spec.window_s is not None else kept[-1].arrival
    if span <= 0:
        raise ValueError(
            f"workload.load: the arrivals of {source} span 0 s; give workload.window_s"
        )
    recorded = offered_load(kept, profiles, num_gpus, span)
    if spec.load < recorded:
        keep = rng.random(len(kept)) < spec.load / recorded
        kept = [j for j, k in zip(kept, keep, strict=True) if k]
        if not kept:
            raise ValueError(f"workload.load: {spec.load:g} keeps no job of {source}")
        return kept
    factor = recorded / spec.load
    return [
        replace(j, arrival=j.arrival * factor, deadline=j.arrival * factor + j.deadline - j.arrival)
        for j in kept
    ]
