"""The executor's Ray backend: the same workers as Ray actors, on a local Ray started for the run
or on an existing cluster (``executor.backend=ray``, ``executor.ray.address``).

Each actor (:class:`_RayWorkerActor`) holds the worker runtime of ``ptexec/workers.py``
(``_WorkerRuntime``): the same commands, the same warm model kept between jobs, the same job
replica. One actor per worker slot: with ``num_gpus=1`` each actor gets a GPU of the cluster
(Ray sets ``CUDA_VISIBLE_DEVICES``, so the actor trains on ``cuda:0``), otherwise a CPU slot
(``num_cpus=1``).

The driver side is :class:`RayWorkerPool` (a :class:`~ptexec.workers.WorkerPool`) of
:class:`RayWorker` handles (a :class:`~ptexec.workers.Worker`). A request is an actor method
call; its :class:`RayReply` wraps the ``ObjectRef``, so replies and the gradients of a
data-parallel step travel through Ray (its task transport and object store): the exchanges of
``ptexec/replicas.py`` are unchanged, and so are the driver, the policies, the health monitor and
the outputs.

Deaths: an actor whose process or node dies fails its pending calls with ``RayActorError``; the
handle turns that into ``WorkerDied`` and :meth:`RayWorker.alive` is false from then on. An idle
actor is probed with a ``ping`` call at most every :data:`PING_EVERY_S`. The health monitor then
calls :meth:`RayWorkerPool.respawn`, which creates a fresh actor for the slot wherever the
cluster has room: on another node when a node left, or, if none has room, as soon as a node
joins (until then the slot is *booting*, so no work starts on it).

Ray is optional (the ``ray`` extra). Choosing this backend without it raises
:class:`~ptsim.ray_tasks.RayMissing` with one line saying how to install it. Connecting (an
existing cluster, or a local Ray started for the run) is :func:`ptsim.ray_tasks.connect`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ptexec.workers import Worker, WorkerDied, WorkerError, WorkerPool, error_line
from ptsim.ray_tasks import RayMissing, connect
from ptsim.ray_tasks import require_ray as _require_ray

PING_EVERY_S = 0.2
"""How often an actor is probed for life (a failed call is noticed at once)."""

WHAT = "executor.backend=ray"


def require_ray() -> Any:
    """The ``ray`` module, or :class:`~ptsim.ray_tasks.RayMissing` (one line: how to install
    it)."""
    return _require_ray(WHAT)


def _actor_class() -> Any:
    """The Ray actor class (built lazily so this module imports without Ray)."""
    ray = require_ray()

    class _RayWorkerActor:
        """One worker slot: the worker runtime of ``ptexec/workers.py`` in a Ray actor."""

        def __init__(self, wid: int, device: str, threads: int) -> None:
            t0 = time.perf_counter()
            import torch

            torch.set_num_threads(threads)
            if device.startswith("cuda"):
                torch.cuda.set_device(torch.device(device))
            import peft  # noqa: F401  (boot: imports are part of the start, not the loads)
            import transformers  # noqa: F401

            from ptexec.workers import _WorkerRuntime

            self.rt = _WorkerRuntime(wid, device, time.perf_counter() - t0)
            self.handlers = self.rt.handlers()

        def boot(self) -> tuple[bool, Any]:
            return True, self.rt.boot_s

        def ping(self) -> int:
            return os.getpid()

        def call(self, cmd: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
            try:
                return True, self.handlers[cmd](*_writable(args))
            except Exception as exc:  # reported to the caller, the actor lives on
                return False, error_line(exc)

    return ray.remote(max_restarts=0, max_task_retries=0)(_RayWorkerActor)


def _writable(x: Any) -> Any:
    """``x`` with read-only numpy arrays (Ray hands out object-store arrays read-only)
    copied, looking into tuples and lists: torch warns about, and must not write into, them."""
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        return x.copy()
    if isinstance(x, tuple | list):
        return type(x)(_writable(v) for v in x)
    return x


def _dead_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as E

    return (E.RayActorError, E.WorkerCrashedError, E.ObjectLostError, E.OwnerDiedError)


class RayReply:
    """A call to an actor whose reply may not have arrived yet (a ``replicas.Reply``)."""

    def __init__(self, worker: RayWorker, ref: Any, cmd: str) -> None:
        self.worker = worker
        self.ref = ref
        self.cmd = cmd

    def ready(self) -> bool:
        ray = require_ray()
        done, _ = ray.wait([self.ref], num_returns=1, timeout=0)
        return bool(done)

    def result(self, timeout: float | None = None) -> Any:
        ray = require_ray()
        from ray.exceptions import GetTimeoutError

        w = self.worker
        try:
            ok, payload = ray.get(self.ref, timeout=timeout)
        except GetTimeoutError:
            raise TimeoutError(f"worker {w.wid}: no reply to {self.cmd} in {timeout} s") from None
        except _dead_errors() as exc:
            w._arrived(self.ref)
            raise w._died(type(exc).__name__) from None
        w._arrived(self.ref)
        if not ok:
            raise WorkerError(f"worker {w.wid} ({w.device}) {self.cmd}: {payload}")
        return _writable(payload)


class RayWorker(Worker):
    """Handle on one worker actor: the :class:`~ptexec.workers.Worker` commands, sent as
    actor calls."""

    def __init__(self, wid: int, device: str, actor: Any) -> None:
        self.wid = wid
        self.device = device
        self.actor = actor
        self.boot_s = 0.0
        self._dead = False
        self._inflight: list[Any] = []  # refs sent whose results have not arrived yet
        self._ping: Any = None
        self._pinged = 0.0

    @property
    def connection(self) -> Any:
        raise NotImplementedError("a Ray worker has no pipe; RayWorkerPool.wait uses ray.wait")

    @property
    def pid(self) -> int:
        """The actor's process id (on its node)."""
        pid: int = require_ray().get(self.actor.ping.remote())
        return pid

    def _died(self, why: object) -> WorkerDied:
        self._dead = True
        return WorkerDied(f"worker {self.wid} ({self.device}): died ({why})", self)

    def _probe(self) -> None:
        """Notice the actor's death: collect the last ping, send a new one when due."""
        if self._dead:
            return
        ray = require_ray()
        if self._ping is not None:
            done, _ = ray.wait([self._ping], num_returns=1, timeout=0)
            if not done:
                return
            try:
                ray.get(self._ping)
            except _dead_errors():
                self._dead = True
                return
            self._ping = None
        now = time.monotonic()
        if now - self._pinged >= PING_EVERY_S:
            self._pinged = now
            self._ping = self.actor.ping.remote()

    def alive(self) -> bool:
        self._probe()
        return not self._dead

    def close(self) -> None:
        self._dead = True

    def request(self, cmd: str, *args: Any) -> RayReply:  # type: ignore[override]
        if self._dead:
            raise self._died("actor gone")
        ref = self.actor.call.remote(cmd, args)
        self._inflight.append(ref)
        return RayReply(self, ref, cmd)

    def _arrived(self, ref: Any) -> None:
        """Stop tracking a call whose reply was read (a pool used without the health monitor,
        e.g. by ``ptexec profile``, never drains)."""
        if ref in self._inflight:
            self._inflight.remove(ref)

    def _refs(self) -> list[Any]:
        return [*self._inflight, *([] if self._ping is None else [self._ping])]

    def drain(self) -> int:
        """Forget the calls whose replies have arrived (their :class:`RayReply` still reads
        them) and probe the actor; raises :class:`WorkerDied` if it is gone."""
        self._probe()
        if self._dead:
            raise self._died("actor gone")
        if not self._inflight:
            return 0
        ray = require_ray()
        done, rest = ray.wait(self._inflight, num_returns=len(self._inflight), timeout=0)
        self._inflight = list(rest)
        return len(done)


class RayWorkerPool(WorkerPool):
    """Worker actors on a Ray cluster, one per slot (see the module doc). The pool methods
    (``load``, ``attach``, ``train_step``, ``resize``, ``info``) are :class:`WorkerPool`'s.

    ``num_workers`` actors; ``devices`` (optional) names each one's device; ``num_gpus`` is the
    GPUs each actor asks Ray for (``None``: 1 when the cluster has GPUs, else 0 and one CPU).
    ``address``/``num_cpus``/``object_store_mb``: see :func:`ptsim.ray_tasks.connect`; a Ray
    this pool started is shut down by :meth:`close`.
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        devices: Sequence[str] | None = None,
        threads: int = 1,
        address: str | None = None,
        num_gpus: float | None = None,
        num_cpus: int | None = None,
        object_store_mb: int | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        ray = require_ray()
        self.threads = threads
        self.start_timeout = start_timeout
        self.workers: list[Worker] = []
        self._owns_ray = connect(
            address, num_cpus=num_cpus, object_store_mb=object_store_mb, what=WHAT
        )
        try:
            if num_gpus is None:
                has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
                num_gpus = 1.0 if has_gpu else 0.0
            self.num_gpus = float(num_gpus)
            n = len(devices) if devices else num_workers
            if n < 1:
                raise ValueError("worker pool needs at least one device")
            default = "cuda:0" if self.num_gpus > 0 else "cpu"
            devs = [default if d.startswith("cuda") else d for d in devices] if devices else []
            self._devices = devs or [default] * n
            self._cls = _actor_class()
            for wid, dev in enumerate(self._devices):
                self.workers.append(self._spawn(wid, dev))
            boots = [RayReply(w, w.actor.boot.remote(), "boot") for w in self._ray_workers()]
            for w, b in zip(self._ray_workers(), boots, strict=True):
                try:
                    w.boot_s = float(b.result(start_timeout))
                except TimeoutError:
                    raise WorkerError(
                        f"Ray could not start worker {w.wid} in {start_timeout:.0f} s: each "
                        f"needs {self._resources()}, the cluster has "
                        f"{ray.available_resources()} free"
                    ) from None
        except BaseException:
            self.close()
            raise

    def _ray_workers(self) -> list[RayWorker]:
        return [w for w in self.workers if isinstance(w, RayWorker)]

    def _resources(self) -> dict[str, float]:
        if self.num_gpus > 0:
            return {"num_gpus": self.num_gpus, "num_cpus": 1.0}
        return {"num_cpus": 1.0}

    def _spawn(self, wid: int, device: str) -> RayWorker:
        actor = self._cls.options(**self._resources()).remote(wid, device, self.threads)
        return RayWorker(wid, device, actor)

    def respawn(self, wid: int) -> RayReply:  # type: ignore[override]
        """Replace worker ``wid`` by a fresh actor (on whatever node has room), without
        waiting: the returned reply resolves to its boot time once it is up. The old actor is
        killed if it still runs."""
        ray = require_ray()
        old = self.workers[wid]
        assert isinstance(old, RayWorker)
        with contextlib.suppress(Exception):
            ray.kill(old.actor, no_restart=True)
        old.close()
        w = self._spawn(wid, old.device)
        self.workers[wid] = w
        ref = w.actor.boot.remote()
        w._inflight.append(ref)
        return RayReply(w, ref, "boot")

    def wait(self, wids: Sequence[int], timeout: float) -> None:
        """Sleep until a call to one of workers ``wids`` returns (or fails) or ``timeout``
        seconds pass (the executor's idle wait)."""
        ray = require_ray()
        refs = [r for g in wids for r in self._ray_worker(g)._refs()]
        if refs:
            ray.wait(refs, num_returns=1, timeout=timeout)
        elif timeout > 0:
            time.sleep(timeout)

    def _ray_worker(self, wid: int) -> RayWorker:
        w = self.workers[wid]
        assert isinstance(w, RayWorker)
        return w

    def close(self, timeout: float = 10.0) -> None:
        """Kill every actor; shut Ray down if this pool started it."""
        with contextlib.suppress(ImportError):
            import ray

            for w in self._ray_workers():
                with contextlib.suppress(Exception):
                    ray.kill(w.actor, no_restart=True)
                w.close()
            self.workers = []
            if getattr(self, "_owns_ray", False):
                self._owns_ray = False
                ray.shutdown()


__all__ = [
    "PING_EVERY_S",
    "WHAT",
    "RayMissing",
    "RayReply",
    "RayWorker",
    "RayWorkerPool",
    "require_ray",
]
