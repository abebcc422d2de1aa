"""Building blocks shared by policies: a pool of GPUs that can be handed out within one
decision, and keep-alive release of idle warm GPUs."""

from __future__ import annotations

from collections.abc import Iterable

from ptsim.core.types import GpuState, Snapshot


class GpuPool:
    """The GPUs a policy may hand out in one decision: idle warm GPUs per model, GPUs
    pre-warming a model for no job, and free GPUs. Taking removes them from the pool."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        self._warm: dict[str, list[int]] = {}  # copied from the snapshot on first use
        self.prewarming: dict[str, list[int]] = {}
        for gid in snap.prewarming:
            model = snap.gpus[gid].model
            if model is not None:
                self.prewarming.setdefault(model, []).append(gid)
        self.free: list[int] = list(snap.free)
        self._free_by_node: dict[int, list[int]] | None = None

    def warm(self, model: str) -> list[int]:
        """The idle warm GPUs of ``model`` still in the pool, ascending."""
        got = self._warm.get(model)
        if got is None:
            got = self._warm[model] = list(self._snap.warm_idle_of(model))
        return got

    def warm_models(self) -> list[str]:
        return sorted(set(self._snap.warm_idle) | set(self._warm))

    def available(self, model: str, allow_reload: bool = True) -> int:
        """How many GPUs ``take`` could hand out for ``model``."""
        n = len(self.free) + self.warm_count(model)
        if allow_reload:
            n += sum(len(self.warm(m)) for m in self.warm_models() if m != model)
        return n

    def warm_count(self, model: str) -> int:
        return len(self.warm(model)) + len(self.prewarming.get(model, ()))

    def take(self, model: str, n: int, allow_reload: bool = True) -> list[int]:
        """Up to ``n`` GPUs for ``model``: warm ones of the model first, then pre-warming ones,
        then free ones (cold start, packed onto the fullest-free node first), then warm GPUs of
        another model (reload)."""
        out: list[int] = []
        for src in (self.warm(model), self.prewarming.get(model)):
            while src and len(out) < n:
                out.append(src.pop(0))
        if len(out) < n and self.free:
            out.extend(self._take_free(n - len(out)))
        if allow_reload and len(out) < n:
            for m in self.warm_models():
                src = self.warm(m)
                while m != model and src and len(out) < n:
                    out.append(src.pop(0))
        return out

    def _take_free(self, n: int) -> list[int]:
        if self._free_by_node is None:  # grouped once per decision, then kept in step
            self._free_by_node = {}
            for gid in self.free:
                self._free_by_node.setdefault(self._snap.gpus[gid].node, []).append(gid)
        by_node = self._free_by_node
        order = sorted(by_node, key=lambda nd: (-len(by_node[nd]), nd))
        out: list[int] = []
        for nd in order:
            gids = by_node[nd]
            k = min(n - len(out), len(gids))
            out.extend(gids[:k])
            del gids[:k]
            if not gids:
                del by_node[nd]
            if len(out) == n:
                break
        taken = set(out)
        self.free = [g for g in self.free if g not in taken]
        return out

    def pop_free(self) -> int:
        """The lowest-id free GPU still in the pool, taken out of it (the pool must have one)."""
        gid = self.free.pop(0)
        if self._free_by_node is not None:
            self._free_by_node[self._snap.gpus[gid].node].remove(gid)
            if not self._free_by_node[self._snap.gpus[gid].node]:
                del self._free_by_node[self._snap.gpus[gid].node]
        return gid

    def give_back(self, gids: Iterable[int]) -> None:
        """Return GPUs taken in this decision (not yet applied) to the pool."""
        for gid in sorted(gids):
            g = self._snap.gpus[gid]
            if g.state is GpuState.FREE:
                self.free.append(gid)
                if self._free_by_node is not None:
                    self._free_by_node.setdefault(g.node, []).append(gid)
            elif g.state is GpuState.WARM and g.model is not None:
                self.warm(g.model).append(gid)
            elif g.model is not None:
                self.prewarming.setdefault(g.model, []).append(gid)


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
