"""Building blocks shared by policies: a pool of GPUs that can be handed out within one
decision (and the queue loop that hands them to waiting jobs), and keep-alive release of idle
warm GPUs."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter

from mypy_extensions import mypyc_attr

from ptsim.core.types import GpuState, JobView, Snapshot

_NODE = attrgetter("node")


@mypyc_attr(allow_interpreted_subclasses=True)
class GpuPool:
    """The GPUs a policy may hand out in one decision: idle warm GPUs per model, GPUs
    pre-warming a model for no job, and free GPUs. Taking removes them from the pool.

    Every list the pool shows (``warm``, ``prewarming``, ``free``) is ascending by GPU id and
    read-only to callers: GPUs come back through ``give_back`` and ``add_idle``, which keep
    that order."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        self._warm: dict[str, list[int]] = {}  # copied from the snapshot on first use
        self._prewarming: dict[str, list[int]] = {}
        for gid in snap.prewarming:
            model = snap.gpus[gid].model
            if model is not None:
                self._prewarming.setdefault(model, []).append(gid)
        self._free: list[int] = list(snap.free)
        self._free_by_node: dict[int, list[int]] | None = None

    # ------------------------------------------------------------------ reading

    def _warm_list(self, model: str) -> list[int]:
        got = self._warm.get(model)
        if got is None:
            got = self._warm[model] = list(self._snap.warm_idle_of(model))
        return got

    def warm(self, model: str) -> Sequence[int]:
        """The idle warm GPUs of ``model`` still in the pool, ascending."""
        return self._warm_list(model)

    def prewarming(self, model: str) -> Sequence[int]:
        """The GPUs pre-warming ``model`` for no job still in the pool, ascending."""
        return self._prewarming.get(model, ())

    @property
    def free(self) -> Sequence[int]:
        """The free GPUs still in the pool, ascending."""
        return self._free

    def warm_models(self) -> list[str]:
        """Models the pool keeps a warm list for, sorted: those with idle warm GPUs in the
        snapshot and any asked about or given back since (their lists may be empty now)."""
        return sorted(set(self._snap.warm_idle) | set(self._warm))

    def warm_count(self, model: str) -> int:
        """Idle warm plus pre-warming GPUs of ``model`` in the pool."""
        return len(self._warm_list(model)) + len(self._prewarming.get(model, ()))

    def available(self, model: str, allow_reload: bool = True) -> int:
        """How many GPUs ``take`` could hand out for ``model``."""
        n = len(self._free) + self.warm_count(model)
        if allow_reload:
            n += sum(len(self._warm_list(m)) for m in self.warm_models() if m != model)
        return n

    def size(self) -> int:
        """GPUs the pool still holds: free, idle warm of any model, and pre-warming."""
        n = len(self._free) + sum(len(v) for v in self._prewarming.values())
        return n + sum(len(self._warm_list(m)) for m in self.warm_models())

    # ------------------------------------------------------------------ taking

    def take(self, model: str, n: int, allow_reload: bool = True) -> list[int]:
        """Up to ``n`` GPUs for ``model``: warm ones of the model first, then pre-warming ones,
        then free ones (cold start, packed onto the fullest-free node first), then warm GPUs of
        another model (reload)."""
        out: list[int] = []
        for src in (self._warm_list(model), self._prewarming.get(model)):
            while src and len(out) < n:
                out.append(src.pop(0))
        if len(out) < n and self._free:
            out.extend(self._take_free(n - len(out)))
        if allow_reload and len(out) < n:
            for m in self.warm_models():
                src = self._warm_list(m)
                while m != model and src and len(out) < n:
                    out.append(src.pop(0))
        return out

    def _take_free(self, n: int) -> list[int]:
        if self._free_by_node is None:  # grouped once per decision, then kept in step
            self._free_by_node = self._group_free()
        by_node = self._free_by_node
        out: list[int] = []
        if not by_node:
            return out
        # nodes with the most free GPUs first, ties by node id: one level (free count) at a
        # time, so a take that one node satisfies does not sort every node
        for level in range(max(map(len, by_node.values())), 0, -1):
            for nd in sorted(nd for nd, gids in by_node.items() if len(gids) == level):
                gids = by_node[nd]
                k = min(n - len(out), len(gids))
                out.extend(gids[:k])
                del gids[:k]
                if not gids:
                    del by_node[nd]
                if len(out) == n:
                    break
            if len(out) == n:
                break
        free = self._free
        for gid in out:  # ascending list: delete in place
            del free[bisect_left(free, gid)]
        return out

    def _group_free(self) -> dict[int, list[int]]:
        """The free GPUs still in the pool by node, each list ascending."""
        free = self._free
        nodes = list(map(_NODE, map(self._snap.gpus.__getitem__, free)))
        by_node: dict[int, list[int]] = {}
        if nodes == sorted(nodes):  # the usual layout: runs of one node
            start, n = 0, len(nodes)
            while start < n:
                nd = nodes[start]
                end = bisect_right(nodes, nd, start)
                by_node[nd] = free[start:end]
                start = end
            return by_node
        for gid, nd in zip(self._free, nodes, strict=True):
            by_node.setdefault(nd, []).append(gid)
        return by_node

    def pop_free(self) -> int:
        """The lowest-id free GPU still in the pool, taken out of it (the pool must have one)."""
        gid = self._free.pop(0)
        if self._free_by_node is not None:
            node = self._snap.gpus[gid].node
            self._free_by_node[node].remove(gid)
            if not self._free_by_node[node]:
                del self._free_by_node[node]
        return gid

    def start_queued(
        self,
        queue: Iterable[JobView],
        fewest: Callable[[JobView], int],
        count: Callable[[JobView, int], int],
        allow_reload: bool = True,
    ) -> tuple[list[tuple[JobView, tuple[int, ...]]], bool]:
        """Start waiting jobs in the order of ``queue`` on GPUs taken from the pool.

        For each job, ``fewest(job)`` is the fewest GPUs it can start on (0: it never can, it
        is skipped). A job the pool cannot give that many (GPUs left, or GPUs ``take`` could
        hand its model) waits, and later jobs may still start. Otherwise ``count(job, avail)``
        says how many of the ``avail`` GPUs the pool could give it the job takes (0: it is
        skipped). ``queue`` is read lazily and no further once the pool is empty.

        Returns the started jobs with their GPUs, in start order, and whether a job was left
        waiting for GPUs."""
        started: list[tuple[JobView, tuple[int, ...]]] = []
        waiting = False
        left = self.size()
        avail_of: dict[str, int] = {}  # model -> self.available, until the next take
        for job in queue:
            least = fewest(job)
            if least <= 0:
                continue
            if left < least:
                waiting = True
                if left == 0:
                    break
                continue
            model = job.spec.model
            avail = avail_of.get(model)
            if avail is None:
                avail = avail_of[model] = self.available(model, allow_reload)
            if avail < least:
                waiting = True
                continue
            n = count(job, avail)
            if n <= 0:
                continue
            gids = self.take(model, n, allow_reload)
            avail_of.clear()  # what the pool can give each model changed
            started.append((job, tuple(gids)))
            left -= len(gids)
        return started, waiting

    def set_aside(self, model: str, gids: Iterable[int]) -> None:
        """Take idle warm or pre-warming GPUs of ``model`` out of the pool without handing them
        out (a policy that keeps them for someone else); ``give_back`` returns them."""
        drop = set(gids)
        for src in (self._warm_list(model), self._prewarming.get(model, [])):
            src[:] = [g for g in src if g not in drop]

    # ------------------------------------------------------------------ returning

    def give_back(self, gids: Iterable[int]) -> None:
        """Return GPUs taken in this decision (not yet applied) to the pool, each to the list
        it came from (by its state in the snapshot), in order."""
        for gid in sorted(gids):
            g = self._snap.gpus[gid]
            if g.state is GpuState.FREE:
                insort(self._free, gid)
                if self._free_by_node is not None:
                    insort(self._free_by_node.setdefault(g.node, []), gid)
            elif g.state is GpuState.WARM and g.model is not None:
                insort(self._warm_list(g.model), gid)
            elif g.model is not None:
                insort(self._prewarming.setdefault(g.model, []), gid)

    def add_idle(self, model: str, gids: Iterable[int]) -> None:
        """GPUs a job gives up in this decision (busy with ``model`` in the snapshot) join the
        pool as idle warm GPUs of ``model``, in order."""
        warm = self._warm_list(model)
        for gid in gids:
            insort(warm, gid)


def keep_alive_release(
    snap: Snapshot, pool: GpuPool, keep_alive_s: float
) -> tuple[tuple[int, ...], float | None]:
    """Idle warm GPUs still in ``pool`` that have been idle ``keep_alive_s`` or longer, and the
    next time another one will reach that age (None if none is idle)."""
    release: list[int] = []
    next_due: float | None = None
    for model in pool.warm_models():
        for gid in pool.warm(model):
            g = snap.gpus[gid]
            if g.state is not GpuState.WARM:
                continue
            due = g.since + keep_alive_s
            if due <= snap.now:
                release.append(gid)
            elif next_due is None or due < next_due:
                next_due = due
    return tuple(release), next_due
