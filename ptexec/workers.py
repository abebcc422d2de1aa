"""A pool of long-lived worker processes, one per device: the executor's warm pool.

Each worker (a ``spawn``-started process) owns one device: a CUDA GPU, or a CPU slot running
torch with ``threads`` threads (default 1). It keeps at most one base model loaded; a model
stays loaded between jobs (the worker is *warm*) until another model is asked for or the
worker is released. Loading is timed with ``perf_counter`` and reported as the cold start.
A worker holds at most one job replica (:class:`~ptexec.train.TuningJob`) at a time.

Commands (the :class:`Worker` handle's methods; each is a request with one reply, so a caller
can send to several workers and then collect):

==============  =============================================================================
``load``        load a model (no-op when it is already loaded: ``cold=False``)
``attach``      build a job replica from a :class:`JobSetup` and, optionally, a job state
``grad``        gradient of this replica's shard (rank, world) of the job's next step
``apply``       apply an averaged gradient (every replica applies the same)
``step``        both at once for a job on this worker alone (one message per step)
``evaluate``    held-out (or train) accuracy and loss of the replica's current prompt
``state``       the job state (prompt, optimizer, step, RNG, history) without detaching
``detach``      the job state, and drop the replica (the model stays warm)
``checkpoint``  write the job state into a directory
``store``       add the replica's prompt to a :class:`~ptexec.bank_store.PromptStore`
``release``     drop job and model (the device is given back)
``info``        what the worker holds
==============  =============================================================================

Per-step messages carry only the step's shard spec and prompt-sized float32 arrays; job states
travel as ``torch.save`` bytes. What several workers do together for one job (the data-parallel
step, attaching, detaching, resizing) is written once, in :mod:`ptexec.replicas`;
:meth:`WorkerPool.train_step`, :meth:`WorkerPool.attach` and :meth:`WorkerPool.resize` run those
exchanges to completion (the profiler and tests), the executor's jobs run the same exchanges
inside its event loop. Rank 0 keeps the authoritative evaluation history, so evaluate and
checkpoint on rank 0.

A worker whose pipe breaks is dead for the driver at once (:class:`WorkerDied`, and
:meth:`Worker.alive` is false), even before the OS reports the process's exit.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_connections
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ptexec.models import ModelKind
from ptexec.tasks import TextTask
from ptexec.train import EvalResult, ShardGrad, TuningConfig, average_grads

TASK_CACHE = 4  # tokenised tasks a worker keeps


class WorkerError(RuntimeError):
    """A command failed in a worker (the message carries the worker's traceback tail), or
    the worker process died (:class:`WorkerDied`)."""


class WorkerDied(WorkerError):
    """The worker process is gone: its pipe broke or was closed. ``worker`` is the handle
    that died (a respawned worker has a new handle, so a late report of an old death can be
    told apart from the new process)."""

    def __init__(self, message: str, worker: Worker) -> None:
        super().__init__(message)
        self.worker = worker

    @property
    def wid(self) -> int:
        return self.worker.wid


@dataclass(frozen=True)
class JobSetup:
    """What a worker needs to build a job replica: the job's id, base model (name and kind),
    task data, tuning config and, for a warm start, the initial prompt (and head)."""

    job_id: str
    model: str
    task: TextTask
    config: TuningConfig = field(default_factory=TuningConfig)
    kind: ModelKind | None = None
    init_prompt: npt.NDArray[np.float32] | None = None
    init_head: dict[str, npt.NDArray[np.float32]] | None = None
    init_source: str | None = None

    def __post_init__(self) -> None:
        if self.init_prompt is not None:
            object.__setattr__(self, "init_prompt", _as_array(self.init_prompt))
        if self.init_head is not None:
            object.__setattr__(
                self, "init_head", {k: _as_array(v) for k, v in self.init_head.items()}
            )


def _as_array(x: Any) -> npt.NDArray[np.float32]:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy().copy()
    return np.asarray(x, dtype=np.float32)


@dataclass(frozen=True)
class LoadReport:
    """Outcome of ``load``: the model key now held, whether it was a cold start, and how long
    the load took (0 when warm)."""

    wid: int
    model: str
    cold: bool
    load_s: float


@dataclass(frozen=True)
class AttachReport:
    """Outcome of ``attach``: the job's step after attaching, the time it took (state
    transfer excluded), and the load it needed (``None`` when the model was warm)."""

    wid: int
    job_id: str
    step: int
    attach_s: float
    load: LoadReport | None


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker holds: device, process id, model key, job id, boot time (imports)."""

    wid: int
    device: str
    pid: int
    model: str | None
    job: str | None
    step: int | None
    boot_s: float


# ---------------------------------------------------------------------------------------------
# Serialisation of job states


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """A job state (see :meth:`TuningJob.state_dict`) as bytes."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`state_to_bytes`."""
    state: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state


# ---------------------------------------------------------------------------------------------
# The worker process


class _WorkerRuntime:
    """Everything one worker process holds, and its command handlers."""

    def __init__(self, wid: int, device: str, boot_s: float) -> None:
        self.wid = wid
        self.device = device
        self.boot_s = boot_s
        self.loaded: Any = None  # LoadedModel
        self.job: Any = None  # TuningJob
        self.encoded: OrderedDict[tuple[str, str, str, int], Any] = OrderedDict()

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "load": self.load,
            "attach": self.attach,
            "grad": self.grad,
            "apply": self.apply,
            "step": self.step,
            "evaluate": self.evaluate,
            "state": self.state,
            "detach": self.detach,
            "checkpoint": self.checkpoint,
            "store": self.store,
            "release": self.release,
            "info": self.info,
        }

    def _need_job(self) -> Any:
        if self.job is None:
            raise RuntimeError(f"worker {self.wid}: no job attached")
        return self.job

    def load(self, model: str, kind: ModelKind | None = None) -> LoadReport:
        from ptexec.models import load_model, resolve_model

        want = kind if kind is not None else resolve_model(model).kind
        if self.loaded is not None and self.loaded.name == model and self.loaded.kind == want:
            return LoadReport(self.wid, self.loaded.key, False, 0.0)
        if self.job is not None:
            raise RuntimeError(
                f"worker {self.wid}: job {self.job.job_id} is attached; detach before loading"
            )
        self._unload()
        t0 = time.perf_counter()
        self.loaded = load_model(model, kind=want, device=self.device)
        return LoadReport(self.wid, self.loaded.key, True, time.perf_counter() - t0)

    def _unload(self) -> None:
        self.loaded = None
        self.encoded.clear()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def attach(self, setup: JobSetup, state: bytes | None = None) -> AttachReport:
        from ptexec.train import TuningJob, encode_key, encode_task

        if self.job is not None:
            raise RuntimeError(f"worker {self.wid}: job {self.job.job_id} already attached")
        report = self.load(setup.model, setup.kind)
        t0 = time.perf_counter()
        key = encode_key(self.loaded, setup.task, setup.config)
        enc = self.encoded.get(key)
        if enc is None:
            enc = encode_task(self.loaded, setup.task, setup.config)
            self.encoded[key] = enc
            while len(self.encoded) > TASK_CACHE:
                self.encoded.popitem(last=False)
        else:
            self.encoded.move_to_end(key)
        job = TuningJob(
            self.loaded,
            setup.task,
            setup.config,
            job_id=setup.job_id,
            init_prompt=None if setup.init_prompt is None else torch.from_numpy(setup.init_prompt),
            init_head=None
            if setup.init_head is None
            else {k: torch.from_numpy(v) for k, v in setup.init_head.items()},
            init_source=setup.init_source,
            encoded=enc,
        )
        if state is not None:
            job.load_state_dict(state_from_bytes(state))
        self.job = job
        return AttachReport(
            self.wid,
            setup.job_id,
            job.step,
            time.perf_counter() - t0,
            report if report.cold else None,
        )

    def grad(self, rank: int, world: int) -> tuple[int, float, npt.NDArray[np.float32], int, int]:
        job = self._need_job()
        g = job.grad_step_shard(job.shard_indices(rank, world))
        return job.step, g.loss, g.grad.numpy(), g.n, g.correct

    def apply(self, grad: npt.NDArray[np.float32], loss: float | None) -> int:
        job = self._need_job()
        job.apply_grad(torch.from_numpy(grad), loss)
        return int(job.step)

    def step(self) -> tuple[int, float, int, int]:
        """A whole step of a job this worker runs alone (world 1): the gradient of the full
        global batch, applied at once. One message instead of two; the same numbers as
        ``grad(0, 1)`` then ``apply``."""
        job = self._need_job()
        g = job.grad_step_shard(job.shard_indices(0, 1))
        avg = average_grads([g])
        job.apply_grad(avg.grad, avg.loss)
        return int(job.step), avg.loss, avg.n, avg.correct

    def evaluate(self, split: str = "heldout", max_examples: int | None = -1) -> EvalResult:
        result: EvalResult = self._need_job().evaluate(split, max_examples)
        return result

    def state(self) -> bytes:
        return state_to_bytes(self._need_job().state_dict())

    def detach(self) -> bytes:
        data = self.state()
        self.job = None
        return data

    def checkpoint(self, directory: str) -> str:
        return str(self._need_job().save_checkpoint(directory))

    def store(self, root: str, entry_id: str | None = None) -> Any:
        from ptexec.bank_store import PromptStore

        return PromptStore(root).add(self._need_job(), entry_id=entry_id)

    def release(self) -> None:
        self.job = None
        self._unload()

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            self.wid,
            self.device,
            os.getpid(),
            None if self.loaded is None else self.loaded.key,
            None if self.job is None else self.job.job_id,
            None if self.job is None else int(self.job.step),
            self.boot_s,
        )


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a worker process starts: it inherits the disposition (and Python
    keeps it), so Ctrl-C in a terminal reaches the driver only, never a worker's imports."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _worker_main(conn: Connection, wid: int, device: str, threads: int) -> None:
    """Entry point of a worker process: serve requests until ``shutdown`` or EOF."""
    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    import peft  # noqa: F401  (boot: imports are part of the worker's start, not its loads)
    import transformers  # noqa: F401

    rt = _WorkerRuntime(wid, device, time.perf_counter() - t0)
    handlers = rt.handlers()
    conn.send((0, True, rt.boot_s))
    while True:
        try:
            rid, cmd, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if cmd == "shutdown":
            conn.send((rid, True, None))
            break
        try:
            fn = handlers[cmd]
            conn.send((rid, True, fn(*args)))
        except Exception as exc:  # reported to the caller, the worker lives on
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
            conn.send((rid, False, f"{type(exc).__name__}: {exc} (at {where})"))
    conn.close()


# ---------------------------------------------------------------------------------------------
# The driver side


class Pending:
    """A request sent to a worker; :meth:`result` waits for its reply."""

    def __init__(self, worker: Worker, rid: int, cmd: str) -> None:
        self.worker = worker
        self.rid = rid
        self.cmd = cmd

    def ready(self) -> bool:
        """Whether the reply has arrived (never blocks)."""
        return self.worker._poll(self.rid)

    def result(self, timeout: float | None = None) -> Any:
        """The reply; raises :class:`WorkerError` if the command failed, TimeoutError if
        ``timeout`` seconds pass first."""
        return self.worker._wait(self.rid, self.cmd, timeout)


class Worker:
    """Handle on one worker process (see the module doc for the commands)."""

    def __init__(self, wid: int, device: str, proc: Any, conn: Connection) -> None:
        self.wid = wid
        self.device = device
        self.proc = proc
        self._conn = conn
        self._next = 1
        self._replies: dict[int, tuple[bool, Any]] = {}
        self._dead = False  # the pipe broke or was closed: the process is gone for us
        self.boot_s = 0.0

    # -- protocol ------------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The pipe to the worker process (for ``multiprocessing.connection.wait`` over several
        workers; read replies only through :class:`Pending`)."""
        return self._conn

    def alive(self) -> bool:
        """Whether the worker process is running and its pipe works. A broken pipe counts as
        death at once, before the OS reports the process's exit (which can come later)."""
        return not self._dead and bool(self.proc.is_alive())

    def _died(self, why: object) -> WorkerDied:
        self._dead = True
        return WorkerDied(f"worker {self.wid} ({self.device}): died ({why})", self)

    def close(self) -> None:
        """Close the pipe; any later request or read raises :class:`WorkerDied`."""
        self._dead = True
        with contextlib.suppress(OSError):
            self._conn.close()

    def request(self, cmd: str, *args: Any) -> Pending:
        """Send a command without waiting for its reply."""
        rid = self._next
        self._next += 1
        if self._dead:
            raise self._died("pipe closed")
        try:
            self._conn.send((rid, cmd, args))
        except (OSError, BrokenPipeError, EOFError) as exc:
            raise self._died(exc) from exc
        return Pending(self, rid, cmd)

    def drain(self) -> int:
        """Read every reply that has arrived, without blocking (the :class:`Pending` objects
        then find them); returns how many were read. Raises :class:`WorkerError` if the
        worker died."""
        n = 0
        while self._read_one(0):
            n += 1
        return n

    def call(self, cmd: str, *args: Any, timeout: float | None = None) -> Any:
        """Send a command and wait for its reply."""
        return self.request(cmd, *args).result(timeout)

    def _read_one(self, timeout: float | None) -> bool:
        if self._dead:
            raise self._died("pipe closed")
        try:
            if not self._conn.poll(timeout):
                return False
            rid, ok, payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._died(exc) from exc
        self._replies[rid] = (ok, payload)
        return True

    def _poll(self, rid: int) -> bool:
        if rid in self._replies:
            return True
        while self._read_one(0):
            if rid in self._replies:
                return True
        return False

    def _wait(self, rid: int, cmd: str, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while rid not in self._replies:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._read_one(left) and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"worker {self.wid}: no reply to {cmd} in {timeout} s")
        ok, payload = self._replies.pop(rid)
        if not ok:
            raise WorkerError(f"worker {self.wid} ({self.device}) {cmd}: {payload}")
        return payload

    # -- commands ------------------------------------------------------------------------------

    def load(self, model: str, kind: ModelKind | None = None) -> LoadReport:
        """Load ``model`` (a no-op reporting ``cold=False`` when it is already loaded)."""
        report: LoadReport = self.call("load", model, kind)
        return report

    def attach(self, setup: JobSetup, state: bytes | None = None) -> AttachReport:
        """Build a replica of ``setup``'s job (from ``state`` when given; loads the model
        first if needed)."""
        report: AttachReport = self.call("attach", setup, state)
        return report

    def grad(self, rank: int, world: int) -> tuple[int, ShardGrad]:
        """(step, gradient of shard ``rank`` of ``world`` of the job's next step)."""
        return _shard_grad(self.call("grad", rank, world))

    def apply(self, grad: torch.Tensor | npt.NDArray[np.float32], loss: float | None = None) -> int:
        """Apply an averaged gradient; returns the job's new step."""
        step: int = self.call("apply", _as_array(grad), loss)
        return step

    def evaluate(self, split: str = "heldout", max_examples: int | None = -1) -> EvalResult:
        result: EvalResult = self.call("evaluate", split, max_examples)
        return result

    def state(self) -> bytes:
        data: bytes = self.call("state")
        return data

    def detach(self) -> bytes:
        data: bytes = self.call("detach")
        return data

    def checkpoint(self, directory: str) -> str:
        path: str = self.call("checkpoint", str(directory))
        return path

    def store(self, root: str, entry_id: str | None = None) -> Any:
        """Add the replica's prompt to the store at ``root``; returns its ``StoredPrompt``."""
        return self.call("store", str(root), entry_id)

    def release(self) -> None:
        self.call("release")

    def info(self) -> WorkerInfo:
        info: WorkerInfo = self.call("info")
        return info


def _shard_grad(
    reply: tuple[int, float, npt.NDArray[np.float32], int, int],
) -> tuple[int, ShardGrad]:
    step, loss, grad, n, correct = reply
    return step, ShardGrad(loss, torch.from_numpy(grad), n, correct)


def default_devices(num_cpu_workers: int = 1) -> list[str]:
    """One device per worker: every CUDA GPU when there is one, else ``num_cpu_workers`` CPU
    slots."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * num_cpu_workers


class WorkerPool:
    """Worker processes, one per device (see the module doc). Use as a context manager, or
    call :meth:`close`.

    ``devices`` names each worker's device (default :func:`default_devices` with
    ``num_workers`` CPU slots); ``threads`` is torch's thread count in each worker.
    """

    def __init__(
        self,
        num_workers: int = 1,
        *,
        devices: Sequence[str] | None = None,
        threads: int = 1,
        start_timeout: float = 120.0,
    ) -> None:
        devs = list(devices) if devices is not None else default_devices(num_workers)
        if not devs:
            raise ValueError("worker pool needs at least one device")
        self.threads = threads
        self.start_timeout = start_timeout
        self.workers: list[Worker] = []
        try:
            for wid, dev in enumerate(devs):
                self.workers.append(self._spawn(wid, dev))
            for w in self.workers:
                w.boot_s = float(Pending(w, 0, "boot").result(start_timeout))
        except BaseException:
            self.close()
            raise

    def _spawn(self, wid: int, device: str) -> Worker:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main,
            args=(child, wid, device, self.threads),
            name=f"ptexec-worker-{wid}",
            daemon=True,
        )
        with _sigint_ignored():  # Ctrl-C is the driver's: it stops the workers itself
            proc.start()
        child.close()
        return Worker(wid, device, proc, parent)

    def respawn(self, wid: int) -> Pending:
        """Replace worker ``wid`` (typically one whose process died) by a fresh process on the
        same device, without waiting for it: the returned :class:`Pending` resolves to its
        boot time once it is up. The old process is terminated if it still runs."""
        old = self.workers[wid]
        if old.proc.is_alive():
            old.proc.terminate()
        old.proc.join(self.start_timeout)
        old.close()
        w = self._spawn(wid, old.device)
        self.workers[wid] = w
        return Pending(w, 0, "boot")

    def __len__(self) -> int:
        return len(self.workers)

    def __getitem__(self, wid: int) -> Worker:
        return self.workers[wid]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _gather(self, pending: Sequence[Pending]) -> list[Any]:
        return [p.result() for p in pending]

    def wait(self, wids: Sequence[int], timeout: float) -> None:
        """Sleep until one of workers ``wids`` has something to read (a reply, or its pipe
        broke) or ``timeout`` seconds pass (the executor's idle wait)."""
        conns = [self.workers[w].connection for w in wids if not self.workers[w]._dead]
        if conns:
            wait_connections(conns, timeout)
        elif timeout > 0:
            time.sleep(timeout)

    def load(
        self, wids: Sequence[int], model: str, kind: ModelKind | None = None
    ) -> list[LoadReport]:
        """Load ``model`` on several workers at once."""
        reports: list[LoadReport] = self._gather(
            [self.workers[w].request("load", model, kind) for w in wids]
        )
        return reports

    def attach(
        self, wids: Sequence[int], setup: JobSetup, state: bytes | None = None
    ) -> list[AttachReport]:
        """Build replicas of one job on several workers at once (all from ``state``):
        :func:`ptexec.replicas.attach`, run to completion."""
        from ptexec.replicas import attach, run_exchange

        return run_exchange(attach([self.workers[w] for w in wids], setup, state))

    def train_step(self, wids: Sequence[int]) -> ShardGrad:
        """One data-parallel step of the job attached to ``wids`` (rank = position):
        :func:`ptexec.replicas.data_parallel_step`, the exchange the executor's jobs run,
        run to completion."""
        from ptexec.replicas import data_parallel_step, run_exchange

        return run_exchange(data_parallel_step([self.workers[w] for w in wids]))

    def resize(self, old: Sequence[int], new: Sequence[int], setup: JobSetup) -> list[AttachReport]:
        """Move a job from workers ``old`` to workers ``new`` at a step boundary:
        :func:`ptexec.replicas.resize` (state from rank 0, every old replica detached, the
        new set attached from it), run to completion."""
        from ptexec.replicas import resize, run_exchange

        return run_exchange(
            resize([self.workers[w] for w in old], [self.workers[w] for w in new], setup)
        )

    def info(self) -> list[WorkerInfo]:
        infos: list[WorkerInfo] = self._gather([w.request("info") for w in self.workers])
        return infos

    def close(self, timeout: float = 10.0) -> None:
        """Stop every worker (politely, then by terminating the processes it started)."""
        for w in self.workers:
            with contextlib.suppress(WorkerError):
                w.request("shutdown")
        for w in self.workers:
            w.proc.join(timeout)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout)
            w.close()
        self.workers = []
