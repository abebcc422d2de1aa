"""Ray, where the project uses it: connecting to a cluster (or starting a local one) and running
independent calls as Ray tasks (:func:`ray_map`, the simulator sweeps' ``--backend ray``). The
executor's worker actors (``ptexec/ray_backend.py``) connect through :func:`connect` too.

Ray is optional (the ``ray`` extra); nothing here imports it until it is used, and using it
without Ray installed raises :class:`RayMissing` with one line saying how to install it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

INSTALL = "pip install 'ptsim[ray]' (or pip install 'ray==2.60.*')"


class RayMissing(ImportError):
    """Ray is not installed (one line saying how to install it)."""


def require_ray(what: str = "this") -> Any:
    """The ``ray`` module, or :class:`RayMissing` saying that ``what`` needs it."""
    try:
        import ray
    except ImportError:
        raise RayMissing(f"{what} needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_mb: int | None = None,
    what: str = "this",
) -> bool:
    """Connect to Ray: the cluster at ``address`` (``auto``: the one ``ray start`` started or
    joined on this machine; ``ray://host:10001``: Ray Client), or with ``address=None`` a local
    Ray started for this process (``num_cpus`` slots, ``object_store_mb`` of object store; its
    workers see this process's ``sys.path``). No dashboard, worker logs not forwarded. Returns
    True when this call connected (the caller shuts Ray down when done), False when Ray was
    already initialised."""
    ray = require_ray(what)
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address is None:
        kw["num_cpus"] = num_cpus
        if object_store_mb is not None:
            kw["object_store_memory"] = int(object_store_mb) * 1024 * 1024
        path = os.pathsep.join(p for p in sys.path if p)
        kw["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    ray.init(address=address, **kw)
    return True


def ray_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_in_flight: int | None = None,
    on_done: Callable[[int], Any] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` as Ray tasks (one CPU each), results in item order. At most
    ``max_in_flight`` tasks are submitted at a time (``None``: all); ``on_done(i)`` is called
    as item ``i`` finishes. ``fn`` must be a module-level function the Ray workers can import
    (on a cluster: the project installed on every node). A Ray this call started is shut down
    at the end."""
    ray = require_ray("--backend ray")
    owns = connect(address, num_cpus=num_cpus, what="--backend ray")
    try:
        mod = sys.modules.get(fn.__module__)
        if mod is not None and not hasattr(mod, "__path__") and "." not in fn.__module__:
            # a script module (experiments/runner.py): its code travels with the task, as the
            # Ray workers (on other nodes, too) cannot import it by name
            ray.cloudpickle.register_pickle_by_value(mod)
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        out: list[Any] = [None] * len(items)
        limit = len(items) if max_in_flight is None else max(1, max_in_flight)
        index: dict[Any, int] = {}
        nxt = 0
        while nxt < len(items) or index:
            while nxt < len(items) and len(index) < limit:
                index[task.remote(items[nxt])] = nxt
                nxt += 1
            done, _ = ray.wait(list(index), num_returns=1)
            for ref in done:
                i = index.pop(ref)
                out[i] = ray.get(ref)
                if on_done is not None:
                    on_done(i)
        return out
    finally:
        if owns:
            ray.shutdown()


__all__ = ["INSTALL", "RayMissing", "connect", "ray_map", "require_ray"]
