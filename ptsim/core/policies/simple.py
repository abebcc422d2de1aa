"""Two simple policies that exercise the driver: ``fifo`` and ``edf``.

Each job gets exactly the GPU count it asked for (``num_gpus``), never resized; jobs wait in
arrival order (fifo) or deadline order (edf). GPUs are taken warm-first (same model), then free,
then warm of another model; idle warm GPUs are released after ``keep_alive_s``. No admission
control, no Prompt Bank.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from operator import attrgetter

from ptsim.core.policies.common import GpuPool, keep_alive_release
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


class _Ordered:
    """Start queued jobs in a fixed order at their requested GPU count."""

    name = "ordered"

    def __init__(self, ctx: PolicyContext, cfg: SimpleConfig) -> None:
        self.cfg = cfg
        self._seq = -2  # the snapshot the queue below was last brought up to date with
        self._keys: list[tuple[object, ...]] = []  # queued jobs' sort keys, ascending
        self._views: dict[str, JobView] = {}  # queued jobs' latest views

    def order(self, job: JobView) -> tuple[float, float, str]:
        raise NotImplementedError

    def sort_key(self, job: JobView) -> tuple[object, ...]:
        """A key that sorts jobs as ``order`` does, unique per job (subclasses give a cheaper
        one)."""
        return self.order(job)

    def _track_queue(self, snap: Snapshot) -> None:
        """Bring the ordered queue up to date: from what changed since the previous snapshot
        when the snapshots follow each other (``Snapshot.changed``/``left``), else from
        ``snap.queued``."""
        keys, views = self._keys, self._views
        incremental = snap.seq >= 0 and snap.seq == self._seq + 1
        if incremental:
            for job_id in snap.left:
                view = views.pop(job_id, None)
                if view is not None:
                    del keys[bisect_left(keys, self.sort_key(view))]
            for view in snap.changed:
                job_id = view.spec.job_id
                if view.gpus:
                    old = views.pop(job_id, None)
                    if old is not None:
                        del keys[bisect_left(keys, self.sort_key(old))]
                else:
                    if job_id not in views:
                        insort(keys, self.sort_key(view))
                    views[job_id] = view
        self._seq = snap.seq
        if not incremental or len(views) != len(snap.queued):
            self._views = {j.spec.job_id: j for j in snap.queued}
            self._keys = sorted(self.sort_key(j) for j in snap.queued)

    def decide(self, snap: Snapshot) -> Decision:
        pool = GpuPool(snap)
        alloc: dict[str, tuple[int, ...]] = {}
        self._track_queue(snap)
        views = self._views
        for key in self._keys:
            job = views[str(key[-1])]
            need = job.spec.num_gpus
            if pool.available(job.spec.model) < need:
                if self.cfg.backfill:
                    continue
                break
            alloc[job.job_id] = tuple(pool.take(job.spec.model, need))
        release, next_due = keep_alive_release(snap, pool, self.cfg.keep_alive_s)
        return Decision(allocations=alloc, release=release, wake_at=next_due)


class Fifo(_Ordered):
    name = "fifo"
    sort_key = attrgetter("spec.arrival", "spec.job_id")  # type: ignore[assignment]

    def order(self, job: JobView) -> tuple[float, float, str]:
        return (job.spec.arrival, 0.0, job.job_id)


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
