"""Fault injection for ``ptexec run``: kill random workers at random times, from a seeded
generator, to show that a worker's death never loses a run.

``FaultPlan`` (the ``faults`` config group) says how many kills and how often; ``Injector``
turns it into a schedule: kill times with exponential gaps (mean ``mean_interval_s``) from
``start_s``, each victim drawn uniformly among the workers that hold a job at that moment (or
among all live workers when none does and ``idle_ok``). The driver asks ``due(now)`` every loop
turn and kills ``pick(...)`` with SIGKILL; its normal worker-death handling does the rest (the
job resumes from its last checkpoint on the workers the policy gives it next).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FaultPlan:
    """How many workers to kill and when (``kills`` = 0: no faults)."""

    kills: int = 0
    mean_interval_s: float = 5.0
    start_s: float = 1.0
    idle_ok: bool = False
    seed: int | None = None  # None: the run's seed

    def __post_init__(self) -> None:
        if self.kills < 0:
            raise ValueError("faults.kills must be >= 0")
        if self.mean_interval_s <= 0 or self.start_s < 0:
            raise ValueError("faults.mean_interval_s must be > 0 and faults.start_s >= 0")


@dataclass
class Injector:
    """The kill schedule of one run; ``kills`` records (time, worker, job) of each kill."""

    plan: FaultPlan
    seed: int
    kills: list[tuple[float, int, str | None]] = field(default_factory=list)
    _next: float = 0.0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(
            self.plan.seed if self.plan.seed is not None else self.seed
        )
        self._next = self.plan.start_s + float(self.rng.exponential(self.plan.mean_interval_s))

    @property
    def done(self) -> bool:
        return len(self.kills) >= self.plan.kills

    def due(self, now: float) -> bool:
        """Whether a kill is due at ``now``."""
        return not self.done and now >= self._next

    def pick(self, now: float, busy: Sequence[tuple[int, str]], alive: Sequence[int]) -> int | None:
        """The worker to kill now: one of ``busy`` (worker, job) pairs, else (``idle_ok``) one
        of ``alive``; None (try again later) when there is none. Records the kill."""
        if busy:
            gid, job = sorted(busy)[int(self.rng.integers(len(busy)))]
        elif self.plan.idle_ok and alive:
            gid, job = sorted(alive)[int(self.rng.integers(len(alive)))], None
        else:
            return None
        self.kills.append((now, gid, job))
        self._next = now + float(self.rng.exponential(self.plan.mean_interval_s))
        return gid


__all__ = ["FaultPlan", "Injector"]
