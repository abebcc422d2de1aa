"""What the workers holding one job's replicas do together, written once: the data-parallel
step, attaching, detaching and resizing.

Each is an *exchange*: a generator that yields a batch of requests already sent to workers
(:class:`Reply` objects), is sent back their results in the same order, and returns its value.
An exchange never waits by itself, so the same code runs in two ways:

- inside the executor's event loop, a job's coroutine (:mod:`ptexec.jobrun`) runs it with
  ``yield from`` and the loop resumes it when every reply has arrived, so many jobs train at
  once;
- :func:`run_exchange` runs it to completion, blocking: ``WorkerPool.train_step``, ``attach``
  and ``resize``, which ``ptexec profile`` times. The profile therefore measures the code path
  jobs run.

The exchanges see workers only through :class:`WorkerHandle` (``request`` returning a
:class:`Reply`), the interface another kind of worker (e.g. a Ray actor) has to offer.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, Protocol, TypeVar

import torch

from ptexec.train import ShardGrad, average_grads
from ptexec.workers import AttachReport, JobSetup, WorkerError

T = TypeVar("T")


class Reply(Protocol):
    """A request sent to a worker, whose reply may not have arrived yet."""

    def ready(self) -> bool:
        """Whether the reply has arrived (never blocks)."""
        ...

    def result(self, timeout: float | None = None) -> Any:
        """The reply (waits for it); raises ``WorkerError`` when the command failed and
        ``WorkerDied`` when the worker is gone."""
        ...


class WorkerHandle(Protocol):
    """The driver's side of one worker: what exchanges and the executor need of it."""

    wid: int
    device: str

    def request(self, cmd: str, *args: Any) -> Reply:
        """Send command ``cmd`` (see ``ptexec.workers``) without waiting for its reply."""
        ...

    def alive(self) -> bool:
        """Whether the worker can still answer."""
        ...


Exchange = Generator[list[Reply], list[Any], T]
"""Yields batches of sent requests, receives their results, returns a value."""


def run_exchange(exchange: Exchange[T]) -> T:
    """Run an exchange to completion, waiting for each batch of replies in turn."""
    try:
        batch = next(exchange)
        while True:
            batch = exchange.send([r.result() for r in batch])
    except StopIteration as stop:
        value: T = stop.value
        return value


def data_parallel_step(workers: Sequence[WorkerHandle]) -> Exchange[ShardGrad]:
    """One data-parallel step of the job attached to ``workers`` (rank = position): every
    worker computes its shard's gradient, the driver averages them (weighted by shard size)
    and every worker applies the average. Returns the global batch's loss and gradient. A job
    on one worker takes the step in one message (``step``), and the gradient returned is
    empty."""
    world = len(workers)
    if world == 1:
        ((_, loss, n, correct),) = yield [workers[0].request("step")]
        return ShardGrad(loss, torch.zeros(0), n, correct)
    replies = yield [w.request("grad", r, world) for r, w in enumerate(workers)]
    steps = sorted({s for s, *_ in replies})
    if len(steps) != 1:
        wids = [w.wid for w in workers]
        raise WorkerError(f"workers {wids} hold the job at different steps {steps}")
    parts = [ShardGrad(lo, torch.from_numpy(g), n, c) for _, lo, g, n, c in replies]
    avg = average_grads(parts)
    yield [w.request("apply", avg.grad.numpy(), avg.loss) for w in workers]
    return avg


def detach(workers: Sequence[WorkerHandle]) -> Exchange[bytes]:
    """Drop the job's replicas from ``workers`` (their models stay warm) and return the job
    state (prompt, optimizer, step, RNG, history) of rank 0, ``workers[0]``."""
    if not workers:
        raise ValueError("detach: no workers")
    states = yield [w.request("detach") for w in workers]
    data: bytes = states[0]
    return data


def attach(
    workers: Sequence[WorkerHandle], setup: JobSetup, state: bytes | None = None
) -> Exchange[list[AttachReport]]:
    """Build replicas of ``setup``'s job on ``workers``, all from ``state`` (``None``: the
    job's start); a worker loads the model first when it is not warm, and says so."""
    reports: list[AttachReport] = yield [w.request("attach", setup, state) for w in workers]
    return reports


def resize(
    old: Sequence[WorkerHandle], new: Sequence[WorkerHandle], setup: JobSetup
) -> Exchange[list[AttachReport]]:
    """Move a job from workers ``old`` to workers ``new`` at a step boundary: :func:`detach`
    every old replica (state from rank 0), then :func:`attach` the new set from that state
    (workers in both sets are re-attached too). The executor runs the same two halves with a
    wait between them, for new workers another job still holds."""
    if not new:
        raise ValueError("resize: the new worker set is empty")
    data = yield from detach(old)
    reports = yield from attach(new, setup, data)
    return reports


__all__ = [
    "Exchange",
    "Reply",
    "WorkerHandle",
    "attach",
    "data_parallel_step",
    "detach",
    "resize",
    "run_exchange",
]
