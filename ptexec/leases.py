"""Which job holds each worker, and the work orders that wait for a worker to be let go.

The cluster state may give a worker to a new job (or tell it to load or release a model)
while the job that had it is still mid-step: that job lets go only at its next step boundary.
:class:`WorkerLeases` keeps the driver honest about it: a job *holds* a worker from the moment
it starts attaching to it until it has detached, and a work order (a load, a release) for a
held, dead or restarting worker runs only once the worker is free and up.
"""

from __future__ import annotations

from collections.abc import Callable

from ptexec.health import WorkerHealth

WorkOrder = Callable[[], None]


class WorkerLeases:
    """The holder of each of ``health``'s workers, and the work orders waiting for them.
    ``on_free`` is called whenever a worker is let go (jobs waiting for workers may go on)."""

    def __init__(self, health: WorkerHealth, on_free: Callable[[], None]) -> None:
        self.health = health
        self.on_free = on_free
        n = len(health.pool)
        self._holder: list[str | None] = [None] * n
        self._orders: dict[int, list[WorkOrder]] = {g: [] for g in range(n)}

    def holder(self, gid: int) -> str | None:
        """The job holding worker ``gid`` (``None``: nobody)."""
        return self._holder[gid]

    def held_by(self, jid: str) -> list[int]:
        """The workers job ``jid`` holds, in id order."""
        return [g for g, h in enumerate(self._holder) if h == jid]

    def usable(self, gid: int, jid: str) -> bool:
        """Whether job ``jid`` may attach to worker ``gid`` now: it is up, held by nobody else
        and no work order waits for it."""
        return self.health.up(gid) and self._holder[gid] in (None, jid) and not self._orders[gid]

    def hold(self, gid: int, jid: str) -> None:
        """Job ``jid`` takes worker ``gid``."""
        self._holder[gid] = jid

    def order(self, gid: int, op: WorkOrder) -> None:
        """Run a work order on worker ``gid`` now, or once it is free and up."""
        if self._holder[gid] is None and self.health.up(gid):
            op()
        else:
            self._orders[gid].append(op)

    def free(self, gid: int) -> None:
        """Worker ``gid`` is let go (or back up after a restart): run the orders that waited
        for it."""
        self._holder[gid] = None
        ops, self._orders[gid] = self._orders[gid], []
        for op in ops:
            self.order(gid, op)
        self.on_free()

    def lost(self, gid: int) -> None:
        """Worker ``gid`` died: nobody holds it and its waiting orders are void (the state
        re-plans it)."""
        self._holder[gid] = None
        self._orders[gid] = []


__all__ = ["WorkOrder", "WorkerLeases"]
