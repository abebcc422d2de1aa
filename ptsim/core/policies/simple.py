"""Two simple policies that exercise the driver: ``fifo`` and ``edf``.

Each job gets exactly the GPU count it asked for (``num_gpus``), never resized; jobs wait in
arrival order (fifo) or deadline order (edf). GPUs are taken warm-first (same model), then free,
then warm of another model; idle warm GPUs are released after ``keep_alive_s``. No admission
control, no Prompt Bank.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from mypy_extensions import mypyc_attr

from ptsim.core.policies.common import GpuPool, keep_alive_release
from ptsim.core.policies.planning import OrderedQueue
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.types import Decision, JobView, Snapshot


@dataclass(frozen=True)
class SimpleConfig:
    """Knobs of fifo and edf.

    - ``keep_alive_s``: how long an idle warm GPU is kept before release.
    - ``backfill``: let later jobs start when the head of the queue does not fit (otherwise the
      head blocks the queue).
    """

    keep_alive_s: float = 60.0
    backfill: bool = False

    def __post_init__(self) -> None:
        if self.keep_alive_s < 0:
            raise ValueError("keep_alive_s must be >= 0")


@mypyc_attr(allow_interpreted_subclasses=True)
class _Ordered:
    """Start queued jobs in a fixed order at their requested GPU count."""

    name = "ordered"

    def __init__(self, ctx: PolicyContext, cfg: SimpleConfig) -> None:
        self.cfg = cfg
        self.queue = OrderedQueue(self.sort_key)

    def order(self, job: JobView) -> tuple[float, float, str]:
        raise NotImplementedError

    def sort_key(self, job: JobView) -> tuple[object, ...]:
        """A key that sorts jobs as ``order`` does, unique per job and ending with its id
        (subclasses give a cheaper one)."""
        return self.order(job)

    def decide(self, snap: Snapshot) -> Decision:
        pool = GpuPool(snap)
        alloc: dict[str, tuple[int, ...]] = {}
        self.queue.update(snap)
        for job in self.queue:
            need = job.spec.num_gpus
            if pool.available(job.spec.model) < need:
                if self.cfg.backfill:
                    continue
                break
            alloc[job.job_id] = tuple(pool.take(job.spec.model, need))
        release, next_due = keep_alive_release(snap, pool, self.cfg.keep_alive_s)
        return Decision(allocations=alloc, release=release, wake_at=next_due)


@mypyc_attr(allow_interpreted_subclasses=True)
class Fifo(_Ordered):
    name = "fifo"
    sort_key = attrgetter("spec.arrival", "spec.job_id")  # type: ignore[assignment]

    def order(self, job: JobView) -> tuple[float, float, str]:
        return (job.spec.arrival, 0.0, job.job_id)


@mypyc_attr(allow_interpreted_subclasses=True)
class Edf(_Ordered):
    name = "edf"
    sort_key = attrgetter("spec.deadline", "spec.arrival", "spec.job_id")  # type: ignore[assignment]

    def order(self, job: JobView) -> tuple[float, float, str]:
        return (job.spec.deadline, job.spec.arrival, job.job_id)


@POLICIES.register("fifo", SimpleConfig, "first come, first served at the requested GPU count")
def make_fifo(ctx: PolicyContext, cfg: SimpleConfig) -> Fifo:
    return Fifo(ctx, cfg)


@POLICIES.register("edf", SimpleConfig, "earliest deadline first at the requested GPU count")
def make_edf(ctx: PolicyContext, cfg: SimpleConfig) -> Edf:
    return Edf(ctx, cfg)
