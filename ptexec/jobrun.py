"""The life cycle of one job in the executor: wait for workers, train step by step, move at
step boundaries, evaluate, checkpoint, finish; recover when a worker dies under it.

:class:`JobLifecycle` runs a job as a coroutine. It sends requests to the job's workers and
yields them (a batch of :class:`~ptexec.replicas.Reply`); the event loop resumes it with their
results once all have arrived (:meth:`JobLifecycle.resume`). When it has nothing to send it
yields :data:`WAIT` and is resumed when something it may wait for changed (a new worker set, a
rejection, a worker let go). The data-parallel step and the moves are the exchanges of
:mod:`ptexec.replicas`, the same code ``WorkerPool.train_step``/``resize`` run.

What a job needs from the driver is :class:`JobEnv`; what is known about a job while and after
it runs is :class:`JobRun` (the per-job columns of the run's tables are read from it).

A worker that dies under the job (a request raises ``WorkerDied``) is reported to the driver
(``JobEnv.worker_lost``, with the handle that died, so a late report never hits a restarted
worker); the job drops its other replicas and continues from the freshest state the driver
has: the state it took at its last move, else its last checkpoint, else the start. At most
``checkpoint_every`` steps are lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptexec.health import WorkerHealth
from ptexec.jobs import ExecJob, TaskCatalog
from ptexec.leases import WorkerLeases
from ptexec.prompt_bank import ExecPromptBank, prompt_arrays
from ptexec.replicas import Reply, WorkerHandle, attach, data_parallel_step, detach
from ptexec.train import EvalResult, load_checkpoint
from ptexec.tuning import TuningConfig
from ptexec.workers import JobSetup, WorkerDied, WorkerError, WorkerPool, state_to_bytes
from ptsim.core.estimator import READING_CAP
from ptsim.core.state import ClusterState, ReadingsFn
from ptsim.core.types import JobSpec, JobState

WAIT = object()
"""Yielded by a job coroutine: resume me when something I may be waiting for changed."""

JobCoroutine = Generator[Any, Any, None]


@dataclass
class JobRun:
    """What the driver knows about one job while and after it runs."""

    job: ExecJob
    target: tuple[tuple[int, ...], int] | None = None  # latest Reconfigure not carried out
    epoch: int = -1  # the state's epoch the job trains under
    workers: tuple[int, ...] = ()  # workers the job's replicas are attached to
    state_bytes: bytes | None = None  # the job state, when the driver holds it (moves)
    state_fresh: bool = False  # state_bytes holds the current step
    setup: JobSetup | None = None
    step: int = 0
    reached: bool = False
    done: bool = False
    rejected: bool = False
    curve: list[tuple[int, float, int, float]] = field(default_factory=list)
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)
    exec_pause_s: float = 0.0
    load_s: float = 0.0
    eval_s: float = 0.0  # wall time spent in held-out evaluations
    checkpoint_s: float = 0.0  # wall time spent writing checkpoints
    train_s: float = 0.0  # wall time spent in data-parallel steps
    checkpoint: Path | None = None
    checkpoint_step: int = 0
    steps_lost: int = 0
    restarts: int = 0
    prompt_dir: str | None = None
    bank_entry: str | None = None

    @property
    def job_id(self) -> str:
        return self.job.job_id


@dataclass
class JobEnv:
    """What a job's life cycle uses of the driver: the cluster state it reports progress to,
    the workers (pool, health, leases), the driver's clock and its run-wide settings, and the
    driver's callbacks."""

    state: ClusterState
    pool: WorkerPool
    health: WorkerHealth
    leases: WorkerLeases
    now: Callable[[], float]
    run_dir: Path
    tasks: TaskCatalog
    bank: ExecPromptBank | None
    checkpoint_every: int | None
    worker_lost: Callable[[WorkerHandle], None]
    """A worker died under a job: the handle the job was talking to (stale reports, about a
    worker already restarted, are the driver's to ignore)."""
    background: Callable[[int, Reply], None]
    """Hand the driver a request whose reply nobody waits for (failures are ignored)."""
    request_decision: Callable[[], None]
    count_event: Callable[[], None]
    """One more event (a completion) for the run's statistics."""
    on_step: Callable[[str, int], Any] | None = None
    on_job_done: Callable[[str], Any] | None = None
    on_checkpoint: Callable[[JobRun], Any] | None = None
    """Called after each checkpoint is written (``ptexec.resume`` journals it)."""


class JobLifecycle:
    """One job's coroutine in the executor (see the module doc), and the bookkeeping of what
    it waits for."""

    def __init__(self, job: ExecJob, env: JobEnv) -> None:
        self.run = JobRun(job)
        self.env = env
        self._proc: JobCoroutine | None = self._life()
        self._replicas: dict[int, WorkerHandle] = {}  # the handles the job attached to
        self._waiting: list[Reply] | None = None
        self._wait_signal = False
        self._signal = False
        self._send(None)

    @property
    def active(self) -> bool:
        """Whether the coroutine still runs (a finished job may still be storing its
        prompt and detaching)."""
        return self._proc is not None

    # -- what the driver tells the job ----------------------------------------------------

    def reconfigure(self, gpus: tuple[int, ...], epoch: int) -> None:
        """The state gave the job worker set ``gpus`` under ``epoch``: move at the next step
        boundary."""
        self.run.target = (gpus, epoch)
        self._signal = True

    def reject(self) -> None:
        """The state rejected the job."""
        self.run.rejected = True
        self._signal = True

    def kick(self) -> None:
        """Something the job may be waiting for changed (a worker was let go)."""
        if self._wait_signal:
            self._signal = True

    # -- resuming ---------------------------------------------------------------------------

    def resume(self) -> bool:
        """Resume the coroutine as long as its replies have all arrived or it was signalled;
        True when it made progress."""
        progressed = False
        while self._proc is not None:
            if self._waiting is not None:
                try:
                    if not all(p.ready() for p in self._waiting):
                        break
                    results = [p.result() for p in self._waiting]
                except WorkerError as exc:
                    self._send(None, exc)
                    progressed = True
                    continue
                self._send(results)
            elif self._wait_signal:
                if not self._signal:
                    break
                self._signal = False
                self._send(None)
            else:
                break
            progressed = True
        return progressed

    def _send(self, value: Any, exc: BaseException | None = None) -> None:
        assert self._proc is not None
        self._waiting = None
        self._wait_signal = False
        try:
            out = self._proc.send(value) if exc is None else self._proc.throw(exc)
        except StopIteration:
            self._proc = None
            return
        if out is WAIT:
            self._wait_signal = True
        else:
            self._waiting = list(out)

    # -- the life cycle -----------------------------------------------------------------------

    def _life(self) -> JobCoroutine:
        """Train until done; after a worker's death, recover and go on."""
        run = self.run
        while True:
            try:
                yield from self._train()
                return
            except WorkerDied as died:
                self.env.worker_lost(died.worker)
                for g in self._mine():
                    h = self._handle(g)
                    if not h.alive():
                        self.env.worker_lost(h)
                yield from self._recover()
                if run.done:  # died while storing or detaching: the job itself is over
                    self._finished()
                    return

    def _train(self) -> JobCoroutine:
        run, env = self.run, self.env
        jid = run.job_id
        cfg = run.job.tuning
        while True:
            if run.rejected:
                return
            if run.target is not None:
                gpus, epoch = run.target
                run.target = None
                yield from self._move(gpus)
                if run.target is not None or not gpus:
                    continue
                if env.state.job_resumed(jid, epoch, env.now()) is None:
                    continue  # stale: a newer reconfiguration is on its way
                run.epoch = epoch
                if run.step == 0 and not run.evals and (yield from self._evaluate()):
                    yield from self._finish()
                    return
            if not run.workers or run.target is not None or not self._training():
                if run.target is None:
                    yield WAIT
                continue
            world = len(run.workers)
            t0 = env.now()
            avg = yield from data_parallel_step(self._handles(run.workers))
            run.step += 1
            run.state_fresh = False
            now = env.now()
            run.train_s += now - t0
            run.curve.append((run.step, now, world, float(avg.loss)))
            env.state.set_progress(jid, float(run.step), now)
            if env.on_step is not None:
                env.on_step(jid, run.step)
            every = cfg.checkpoint_every or env.checkpoint_every
            if every and run.step % every == 0:
                d = env.run_dir / "checkpoints" / jid
                t0 = env.now()
                (path,) = yield [self._handle(run.workers[0]).request("checkpoint", str(d))]
                run.checkpoint, run.checkpoint_step = Path(path), run.step
                run.checkpoint_s += env.now() - t0
                if env.on_checkpoint is not None:
                    env.on_checkpoint(run)
            if run.step % cfg.eval_every == 0 or run.step >= cfg.max_steps:
                done = yield from self._evaluate()
                if done or run.step >= cfg.max_steps:
                    yield from self._finish()
                    return

    def _handle(self, gid: int) -> WorkerHandle:
        """The handle the job attached to on worker ``gid`` (never a restarted worker's: a
        request to a dead handle fails at once with ``WorkerDied``)."""
        h = self._replicas.get(gid)
        return h if h is not None else self.env.pool[gid]

    def _handles(self, gids: tuple[int, ...]) -> list[WorkerHandle]:
        return [self._handle(g) for g in gids]

    def _mine(self) -> list[int]:
        """Workers the job has replicas on or is attaching to."""
        return sorted(set(self.run.workers) | set(self.env.leases.held_by(self.run.job_id)))

    def _training(self) -> bool:
        """Whether the state has the job running under the epoch it trains with."""
        rec = self.env.state.job(self.run.job_id)
        return rec.epoch == self.run.epoch and rec.state is JobState.RUNNING

    def _evaluate(self) -> Generator[Any, Any, bool]:
        """Held-out evaluation on rank 0; True when the target is met."""
        run, env = self.run, self.env
        t0 = env.now()
        (ev,) = yield [self._handle(run.workers[0]).request("evaluate")]
        assert isinstance(ev, EvalResult)
        now = env.now()
        run.eval_s += now - t0
        run.evals.append((ev.step, now, ev.accuracy, ev.loss))
        if run.job.tuning.target_met(ev.accuracy, ev.loss):
            run.reached = True
        # the evaluation is the job's new accuracy reading (``accuracy_reading``): the state
        # refreshes what the policies see of it
        env.state.set_progress(run.job_id, float(run.step), now)
        return run.reached

    def _move(self, gpus: tuple[int, ...]) -> JobCoroutine:
        """Move the job to workers ``gpus`` at a step boundary: ``replicas.resize`` in two
        halves, with a wait between for new workers another job still holds."""
        run, env = self.run, self.env
        jid = run.job_id
        old = run.workers
        if old and set(old) == set(gpus):
            return
        t0 = env.now()
        if old:
            run.state_bytes = yield from detach(self._handles(old))
            run.state_fresh = True
            run.workers = ()
            self._replicas = {}
            for w in old:
                env.leases.free(w)
        if not gpus:
            run.exec_pause_s += env.now() - t0
            return
        while not all(env.leases.usable(g, jid) for g in gpus):
            if run.target is not None or run.rejected:
                return
            yield WAIT
        t1 = env.now()
        for g in gpus:
            env.leases.hold(g, jid)
        self._replicas = {g: env.pool[g] for g in gpus}
        if run.setup is None and env.bank is not None and env.bank.pending(jid):
            # the planned bank lookup runs now, on the job's first worker, inside its first
            # start's pause (as ptsim charges it); other jobs go on meanwhile
            init = yield from env.bank.lookup(jid, self._handle(gpus[0]), env.now)
            env.state.init_realised(jid, init)
        yield from attach(self._handles(gpus), self._setup(), run.state_bytes)
        run.workers = tuple(gpus)
        run.exec_pause_s += (t1 - t0 if old else 0.0) + env.now() - t1

    def _setup(self) -> JobSetup:
        run, env = self.run, self.env
        if run.setup is None:
            job = run.job
            init = env.state.job(run.job_id).init
            prompt = head = None
            source = None
            if init is not None and init.source is not None and env.bank is not None:
                prompt, head = prompt_arrays(*env.bank.tensors(init.source))
                source = init.source
            run.setup = JobSetup(
                job.job_id,
                job.model,
                env.tasks.get(job.task),
                job.tuning,
                job.kind,
                prompt,
                head,
                source,
            )
        return run.setup

    def _finish(self) -> JobCoroutine:
        """The job is done: tell the state (its GPUs become warm-idle), save its prompt (and
        add it to the bank), let its workers go, then ask the policy."""
        run, env = self.run, self.env
        jid = run.job_id
        while True:
            now = env.now()
            env.state.set_progress(jid, float(run.step), now)
            if env.state.job_finished(jid, run.epoch, now, iterations=float(run.step)):
                break
            if run.target is None:
                yield WAIT
                continue
            gpus, epoch = run.target
            run.target = None
            if gpus and env.state.job_resumed(jid, epoch, env.now()) is not None:
                run.epoch = epoch
        run.done = True
        env.count_event()
        rank0 = self._handle(run.workers[0])
        task = run.job.task
        (stored,) = yield [rank0.request("store", str(env.run_dir / "prompts"), jid, task)]
        run.prompt_dir = str(stored.path)
        if env.bank is not None and env.bank.should_store(run.reached):
            eid = env.bank.entry_id_for(run.job)
            (entry,) = yield [rank0.request("store", str(env.bank.store.root), eid, task)]
            env.bank.add(entry, run.job)
            run.bank_entry = eid
        yield from detach(self._handles(run.workers))
        workers, run.workers = run.workers, ()
        self._replicas = {}
        for w in workers:
            env.leases.free(w)
        self._finished()

    def _finished(self) -> None:
        # the policy hears of the completion once the prompt is in the bank and the workers
        # are free (the finish time is when the target was met)
        self.env.request_decision()
        if self.env.on_job_done is not None:
            self.env.on_job_done(self.run.job_id)

    def _recover(self) -> JobCoroutine:
        """After a worker died under the job: drop the other replicas and continue from the
        freshest state the driver has (the last move's, else the last checkpoint, else the
        start)."""
        run, env = self.run, self.env
        jid = run.job_id
        for g in self._mine():
            if env.leases.holder(g) != jid:
                continue  # a dead worker: the driver already took it from the job
            h = self._handle(g)
            if env.health.current(h) and h.alive():
                try:
                    env.background(g, h.request("detach"))
                except WorkerDied:
                    env.worker_lost(h)
                    env.leases.lost(g)
                    continue
                env.leases.free(g)
            else:
                env.leases.lost(g)
        run.workers = ()
        self._replicas = {}
        run.restarts += 1
        if not run.state_fresh:
            if run.checkpoint is not None:
                run.state_bytes = state_to_bytes(load_checkpoint(run.checkpoint))
                back_to = run.checkpoint_step
            else:
                run.state_bytes = None
                back_to = 0
            run.steps_lost += run.step - back_to
            run.step = back_to
            run.curve = [c for c in run.curve if c[0] <= back_to]
            run.evals = [e for e in run.evals if e[0] <= back_to]
            run.state_fresh = True
            env.state.set_progress(jid, float(back_to), env.now())
        yield from ()


def curve_rows(run: JobRun) -> list[dict[str, Any]]:
    """A job's loss curve: one row per step (training loss) with the held-out evaluation
    where one was made at that step (step 0 included)."""
    evals = {s: (t, a, lo) for s, t, a, lo in run.evals}
    rows: list[dict[str, Any]] = []
    if 0 in evals:
        t, a, lo = evals[0]
        rows.append(_curve_row(0, t, run.curve[0][2] if run.curve else 1, math.nan, a, lo))
    for step, t, world, loss in run.curve:
        e = evals.get(step)
        rows.append(_curve_row(step, t, world, loss, *(e[1:] if e else (math.nan, math.nan))))
    return rows


def _curve_row(
    step: int, t: float, world: int, loss: float, acc: float, eloss: float
) -> dict[str, Any]:
    return {
        "step": step,
        "time_s": t,
        "workers": world,
        "train_loss": loss,
        "heldout_accuracy": acc,
        "heldout_loss": eloss,
    }


def target_fraction(
    tuning: TuningConfig, first: tuple[float, float], now: tuple[float, float]
) -> float | None:
    """The fraction of the way from the first held-out (accuracy, loss) to the job's target at
    ``now``'s, clamped to [0, ``READING_CAP``] (``ptsim.core.estimator``); the larger of the
    two when both an accuracy and a loss target are set; None when the first evaluation already
    met every target."""
    (acc0, loss0), (acc, loss) = first, now
    fractions = []
    if tuning.target_accuracy is not None and tuning.target_accuracy > acc0:
        fractions.append((acc - acc0) / (tuning.target_accuracy - acc0))
    if tuning.target_loss is not None and loss0 > tuning.target_loss:
        fractions.append((loss0 - loss) / (loss0 - tuning.target_loss))
    if not fractions or any(math.isnan(f) for f in fractions):
        return None
    return min(max(max(fractions), 0.0), READING_CAP)


def accuracy_reading(run: JobRun, done: float) -> tuple[float, float] | None:
    """The job's accuracy reading after ``done`` steps, as the estimator takes it
    (``ptsim.core.estimator``, the cluster state's ``ReadingsFn``): (:func:`target_fraction` at
    its last held-out evaluation at or before ``done``, that evaluation's step). The first
    evaluation (step 0, at the job's first start) is the start of the way; None before a later
    one."""
    evals = run.evals
    if len(evals) < 2:
        return None
    s0, _, acc0, loss0 = evals[0]
    for step, _, acc, loss in reversed(evals):
        if step <= done:
            if step <= s0:
                return None
            f = target_fraction(run.job.tuning, (acc0, loss0), (acc, loss))
            return None if f is None else (f, float(step))
    return None


def readings_of(runs: Mapping[str, JobRun]) -> ReadingsFn:
    """The cluster state's ``ReadingsFn`` over these jobs' measured evaluations
    (:func:`accuracy_reading`; the ``total`` it is passed is not used: nothing is modelled).
    The executor plans with it; ``ptexec validate`` replays a run's in ptsim."""

    def reading(spec: JobSpec, total: float, done: float) -> tuple[float, float] | None:
        run = runs.get(spec.job_id)
        return None if run is None else accuracy_reading(run, done)

    return reading


def final_eval(run: JobRun) -> tuple[float, float]:
    """(accuracy, loss) of the job's last held-out evaluation (NaN when none)."""
    if not run.evals:
        return math.nan, math.nan
    _, _, acc, loss = run.evals[-1]
    return acc, loss


__all__ = [
    "WAIT",
    "JobEnv",
    "JobLifecycle",
    "JobRun",
    "accuracy_reading",
    "curve_rows",
    "final_eval",
    "readings_of",
    "target_fraction",
]
