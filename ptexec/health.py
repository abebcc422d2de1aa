"""The worker-health monitor: which of the pool's workers are up, noticing deaths, restarting.

:class:`WorkerHealth` knows nothing of jobs or the cluster state; it reports what it sees
(:meth:`WorkerHealth.poll`: workers found dead, workers back up) and the driver decides what a
death means for the jobs. A death is noticed three ways, all leading to
:meth:`WorkerHealth.mark_dead`: a worker's pipe breaks while the monitor reads it, the OS
reports the process gone (checked every ``check_every_s``), or a job's request fails with
``WorkerDied``. The last can arrive late, after the worker was already restarted: a death is
identified by the worker *handle* that died, so a late report about an old process never
touches the new one.

A dead worker is restarted on the same device at once, without waiting; while it boots it is
not *up* (work for it waits), and a worker that dies ``max_respawns`` times in a row while
starting ends the run with an error.
"""

from __future__ import annotations

from ptexec.replicas import Reply, WorkerHandle
from ptexec.workers import WorkerError, WorkerPool

ALIVE_CHECK_S = 0.2
"""How often the monitor asks the OS whether workers still run (a broken pipe is noticed at
once)."""

MAX_RESPAWNS = 3
"""A worker that dies this many times while starting ends the run with an error."""


class WorkerHealth:
    """Which workers of ``pool`` are up, booting or dead; restarts the dead ones."""

    def __init__(
        self,
        pool: WorkerPool,
        *,
        check_every_s: float = ALIVE_CHECK_S,
        max_respawns: int = MAX_RESPAWNS,
    ) -> None:
        self.pool = pool
        self.check_every_s = check_every_s
        self.max_respawns = max_respawns
        n = len(pool)
        self._alive = [True] * n
        self._booting: dict[int, Reply] = {}
        self._respawns = [0] * n
        self._checked = 0.0
        self.deaths: list[tuple[float, int]] = []
        """(driver time, worker id) of every death noticed."""

    def up(self, gid: int) -> bool:
        """Whether worker ``gid`` is running and not (re)starting: work may be sent to it."""
        return self._alive[gid] and gid not in self._booting

    def ok(self, gid: int) -> bool:
        """Whether worker ``gid`` is believed alive and its process still answers."""
        return self._alive[gid] and self.pool[gid].alive()

    def current(self, worker: WorkerHandle) -> bool:
        """Whether ``worker`` is still the pool's handle for its id (not replaced by a
        restart)."""
        return self.pool[worker.wid] is worker

    def mark_dead(self, gid: int, now: float, worker: WorkerHandle | None = None) -> bool:
        """Record worker ``gid``'s death and restart it. ``worker``: the handle that was seen
        to die (``None``: the current one). Returns False when the death was already known
        (or ``worker`` has since been replaced): nothing to do."""
        if worker is not None and not self.current(worker):
            return False
        if not self._alive[gid]:
            return False
        self._alive[gid] = False
        self.deaths.append((now, gid))
        self._booting[gid] = self.pool.respawn(gid)
        return True

    def poll(self, now: float) -> tuple[list[int], list[int]]:
        """Read what every up worker has sent (so replies are not left in the pipes) and
        notice deaths; collect finished restarts. Returns (workers that died, workers that are
        up again); the dead ones are already being restarted."""
        check = now - self._checked >= self.check_every_s
        if check:
            self._checked = now
        died: list[int] = []
        for g, w in enumerate(self.pool.workers):
            if not self.up(g):
                continue
            broken = False
            try:
                w.drain()
            except WorkerError:
                broken = True
            if (broken or check) and not w.alive() and self.mark_dead(g, now, w):
                died.append(g)
        back: list[int] = []
        for g, p in sorted(self._booting.items()):
            try:
                if not p.ready():
                    continue
                self.pool[g].boot_s = float(p.result())
            except WorkerError:
                self._respawns[g] += 1
                if self._respawns[g] > self.max_respawns:
                    raise WorkerError(
                        f"worker {g}: died {self._respawns[g]} times while starting; giving up"
                    ) from None
                self._booting[g] = self.pool.respawn(g)
                continue
            del self._booting[g]
            self._alive[g] = True
            back.append(g)
        return died, back

    def wait(self, timeout: float) -> None:
        """Sleep until an up or booting worker has something to read, or ``timeout``."""
        wids = [g for g in range(len(self.pool)) if self._alive[g] or g in self._booting]
        self.pool.wait(wids, timeout)


__all__ = ["ALIVE_CHECK_S", "MAX_RESPAWNS", "WorkerHealth"]
