"""The executor driver: real prompt tuning on a pool of workers, scheduled by ptsim's policies on
the wall clock. It is the SimPy driver's twin (``ptsim/simulator.py``); both own the core's
``ClusterState``, show the policy the same ``Snapshot`` and apply its ``Decision`` through the
same state.

The "GPUs" of the state are the pool's workers (gid = worker id; one node). Time is
``time.monotonic()`` since the run started. The policy is asked at arrivals, GPU-ready events
(a model load finished), completions and its own ``wake_at`` times, coalesced into one decision
per loop turn. The actions the state returns become real work:

- ``LoadModel``: ``load`` on the worker, without waiting; when the report arrives the driver
  calls ``gpu_ready`` with the action's token, so the measured load is the real cold start.
- ``ReleaseGpu``: ``release`` on the worker (the model is unloaded).
- ``Reconfigure``: at the job's next step boundary the job moves to its new worker set: the
  state (prompt, optimizer, step, RNG, history) is taken from rank 0 and every old replica
  detached, then the new set is attached from it; then ``job_resumed``.

A work order for a worker that another job still holds (it gives the worker up at its next step
boundary) waits until that job lets go. Each job runs as a small coroutine that sends requests
to its workers and yields the ``Pending`` replies; the loop resumes it when they have all
arrived, so many jobs train at once on different workers. Each step is data parallel: every
worker computes its shard's gradient, the driver averages them and every worker applies the
average. Progress is reported with ``set_progress`` (iterations = optimizer steps); rank 0
evaluates every ``eval_every`` steps on the held-out split; the job is done when its target is
met (``reached_target``) or its step budget is spent (finished, ``reached_target=False``).

Worker death: rank 0 checkpoints every ``checkpoint_every`` steps. When a worker process dies,
the driver takes its GPU away from the job and releases it through the state (driver-issued
decisions, not the policy's), restarts the process, and the job resumes from its last
checkpoint (or from the state it had when it was last moved) on whatever workers the policy
gives it next: at most ``checkpoint_every`` steps are lost.

Pauses: the state charges modelled pauses (``pause_s``: hand-over, reconfiguration, bank lookup)
for the policies' predictions; the executor does not sleep them, it measures what the real
moves took (``exec_pause_s``). A bank lookup runs inside the policy's ``decide`` (in the driver
process), so its real time passes before the job starts.
"""

from __future__ import annotations

import functools
import heapq
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_connections
from pathlib import Path
from typing import Any

import torch

from ptexec.jobs import ExecJob, TaskCatalog
from ptexec.prompt_bank import ExecPromptBank, prompt_arrays
from ptexec.train import EvalResult, ShardGrad, average_grads, load_checkpoint
from ptexec.workers import JobSetup, LoadReport, Pending, WorkerError, WorkerPool, state_to_bytes
from ptsim.core.policy import POLICIES, Policy, PolicyContext
from ptsim.core.profiles import ProfileSet
from ptsim.core.state import ClusterState, SeriesRecorder
from ptsim.core.types import (
    Action,
    Decision,
    GpuState,
    InitChoice,
    InvalidRequest,
    JobSpec,
    JobState,
    LoadModel,
    Reconfigure,
    RejectJob,
    ReleaseGpu,
)
from ptsim.outcome import RunOutcome, RunStats

WAIT = object()
"""Yielded by a job coroutine: resume me when something I may be waiting for changed."""

ALIVE_CHECK_S = 0.2
"""How often the driver asks the OS whether idle workers still run (a broken pipe is noticed
at once)."""

MAX_RESPAWNS = 3
"""A worker that dies this many times while starting ends the run with an error."""

PolicyFactory = Callable[[PolicyContext], Policy]
StepHook = Callable[[str, int, "Executor"], Any]


@dataclass
class LoadRecord:
    """One model load on a worker: when it was asked for and done (driver clock), the time
    the worker measured, and for which job (``None``: a pre-warm)."""

    gid: int
    model: str
    job: str | None
    reload: bool
    issued_s: float
    ready_s: float = math.nan
    load_s: float = math.nan
    cold: bool = True
    stale: bool = False


@dataclass
class JobRun:
    """What the driver knows about one job while and after it runs."""

    job: ExecJob
    proc: Generator[Any, Any, None] | None = None
    waiting: list[Pending] | None = None
    wait_signal: bool = False
    signal: bool = False
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
class ExecOutcome(RunOutcome):
    """A finished executor run: what ``ptsim.metrics`` reads (state, series, stats, policy)
    plus the executor's own records."""

    runs: dict[str, JobRun] = field(default_factory=dict)
    loads: list[LoadRecord] = field(default_factory=list)
    worker_deaths: list[tuple[float, int]] = field(default_factory=list)
    bank: ExecPromptBank | None = None
    boot_s: list[float] = field(default_factory=list)
    seed: int = 0


class Executor:
    """One run of ``jobs`` on ``pool`` under a policy (a registry name with ``params``, or a
    factory taking the ``PolicyContext``).

    ``profiles`` are what the policy plans with (measured by ``ptexec profile`` or at the start
    of the run); ``run_dir`` receives checkpoints and each job's tuned prompt (``prompts/``);
    ``bank`` is the run's Prompt Bank (``None``: every job starts from its default prompt).
    ``on_step(job_id, step, executor)`` is called after every step (progress, tests);
    ``on_job_done(job_id)`` after every completion.
    """

    def __init__(
        self,
        jobs: Sequence[ExecJob],
        policy: str | PolicyFactory,
        pool: WorkerPool,
        profiles: ProfileSet,
        run_dir: Path,
        *,
        params: Mapping[str, Any] | None = None,
        tasks: TaskCatalog | None = None,
        bank: ExecPromptBank | None = None,
        checkpoint_every: int | None = None,
        horizon_s: float | None = None,
        series_interval_s: float = 0.0,
        release_at_start: bool = True,
        on_step: StepHook | None = None,
        on_job_done: Callable[[str], Any] | None = None,
    ) -> None:
        if not jobs:
            raise ValueError("no jobs to run")
        ids = [j.job_id for j in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate job ids")
        self.jobs = sorted(jobs, key=lambda j: (j.spec.arrival, j.job_id))
        self.pool = pool
        self.profiles = profiles
        self.run_dir = Path(run_dir)
        self.tasks = tasks if tasks is not None else TaskCatalog()
        self.bank = bank
        self.checkpoint_every = checkpoint_every
        self.release_at_start = release_at_start
        self.on_step = on_step
        self.on_job_done = on_job_done
        n = len(pool)
        for j in self.jobs:
            profiles.model(j.spec.model)  # unknown model: fail before running
            if j.spec.min_gpus > n:
                raise ValueError(
                    f"job {j.job_id} needs at least {j.spec.min_gpus} workers; the pool has {n}"
                )
        self._by_id = {j.job_id: j for j in self.jobs}
        self._model_of: dict[str, tuple[str, Any]] = {
            j.spec.model: (j.model, j.kind) for j in self.jobs
        }
        self.state = ClusterState(1, n, profiles, iterations=self._budget)
        ctx = PolicyContext(profiles, bank)
        if isinstance(policy, str):
            self.policy: Policy = POLICIES.build(policy, ctx, params or {})
        else:
            self.policy = policy(ctx)
        last = max(j.spec.deadline for j in self.jobs)
        self.horizon_s = horizon_s if horizon_s is not None else 2.0 * last + 600.0
        self.stats = RunStats(horizon_s=self.horizon_s)
        self.series = SeriesRecorder(series_interval_s)
        self.runs: dict[str, JobRun] = {}
        self.loads: list[LoadRecord] = []
        self.worker_deaths: list[tuple[float, int]] = []
        self._owner: list[str | None] = [None] * n
        self._alive = [True] * n
        self._booting: dict[int, Pending] = {}
        self._respawns = [0] * n
        self._alive_checked = 0.0
        self._deferred: dict[int, list[Callable[[], None]]] = {g: [] for g in range(n)}
        self._load_pending: list[tuple[int, int, Pending, LoadRecord]] = []
        self._background: list[tuple[int, Pending, bool]] = []
        self._wakes: list[float] = []
        self._decision_pending = False
        self._t0 = 0.0

    # ------------------------------------------------------------------ clock and helpers

    def now(self) -> float:
        """Seconds since the run started (the driver's clock)."""
        return time.monotonic() - self._t0

    def _budget(self, spec: JobSpec, init: InitChoice) -> float:
        """Iterations the state may count for a job: its step budget (the realised count
        replaces it when the job finishes)."""
        return float(self._by_id[spec.job_id].tuning.max_steps)

    def _request_decision(self) -> None:
        self._decision_pending = True

    # ------------------------------------------------------------------ run

    def run(self) -> ExecOutcome:
        """Run every job to completion (or the horizon) and return the outcome."""
        if self.release_at_start:
            for w in self.pool.workers:
                w.call("release")
        for j in self.jobs:
            self.tasks.get(j.task)
        wall0 = time.perf_counter()
        self._t0 = time.monotonic()
        pending = list(self.jobs)
        nxt = 0
        self.series.record(self.state, self.now(), force=True)
        while True:
            now = self.now()
            progressed = False
            while nxt < len(pending) and pending[nxt].spec.arrival <= now:
                self._arrive(pending[nxt], now)
                nxt += 1
                progressed = True
            progressed |= self._check_workers()
            progressed |= self._poll_background()
            progressed |= self._step_jobs()
            now = self.now()
            while self._wakes and self._wakes[0] <= now:
                heapq.heappop(self._wakes)
                self.stats.events += 1
                self._request_decision()
            if self._decision_pending:
                self._decide()
                progressed = True
                progressed |= self._step_jobs()
            self.series.record(self.state, self.now())
            if nxt == len(pending) and self.state.live_jobs == 0 and self._all_settled():
                break
            if self.now() >= self.horizon_s:
                self.stats.horizon_hit = True
                break
            if not progressed:
                self._idle(pending[nxt].spec.arrival if nxt < len(pending) else None)
        end = self.now()
        for r in self.runs.values():
            if not r.done and not r.rejected and r.job_id in self.state.jobs:
                self.state.set_progress(r.job_id, float(r.step), end)
        self.stats.end_s = end
        self.state.close(end)
        self.series.record(self.state, end, force=True)
        self.stats.sim_wall_s = time.perf_counter() - wall0
        return ExecOutcome(
            self.state,
            self.series.rows,
            self.stats,
            self.policy.name,
            runs=self.runs,
            loads=self.loads,
            worker_deaths=self.worker_deaths,
            bank=self.bank,
            boot_s=[w.boot_s for w in self.pool.workers],
        )

    def _all_settled(self) -> bool:
        """No job coroutine still doing post-completion work (storing prompts, detaching)."""
        return all(r.proc is None for r in self.runs.values())

    def _arrive(self, job: ExecJob, now: float) -> None:
        self.state.add_job(job.spec, now)
        run = JobRun(job)
        run.proc = self._proc(run)
        self.runs[job.job_id] = run
        self.stats.events += 1
        self._request_decision()
        self._send(run, None)

    def _idle(self, next_arrival: float | None) -> None:
        """Sleep until a worker replies, the next arrival or wake-up, or 50 ms at most."""
        now = self.now()
        until = now + 0.05
        if next_arrival is not None:
            until = min(until, next_arrival)
        if self._wakes:
            until = min(until, self._wakes[0])
        conns = [w.connection for g, w in enumerate(self.pool.workers) if self._alive[g]]
        conns += [self.pool.workers[g].connection for g in self._booting]
        timeout = max(0.0, until - now)
        if conns:
            wait_connections(conns, timeout)
        elif timeout > 0:
            time.sleep(timeout)

    # ------------------------------------------------------------------ decisions

    def _decide(self) -> None:
        self._decision_pending = False
        now = self.now()
        t0 = time.perf_counter()
        decision = self.policy.decide(self.state.snapshot(now))
        self.stats.decide_wall_s += time.perf_counter() - t0
        self.stats.decisions += 1
        self._carry_out(self.state.apply(decision, self.now()))
        wake = decision.wake_at
        if wake is not None and wake > now and wake not in self._wakes:
            heapq.heappush(self._wakes, wake)

    def _carry_out(self, actions: Sequence[Action]) -> None:
        for act in actions:
            if isinstance(act, LoadModel):
                self._on_worker(act.gid, functools.partial(self._start_load, act))
            elif isinstance(act, ReleaseGpu):
                self._on_worker(act.gid, functools.partial(self._release_worker, act.gid))
            elif isinstance(act, Reconfigure):
                run = self.runs[act.job]
                run.target = (tuple(act.gpus), act.epoch)
                run.signal = True
            elif isinstance(act, RejectJob):
                run = self.runs[act.job]
                run.rejected = True
                run.signal = True
            elif isinstance(act, InvalidRequest) and len(self.stats.invalid) < 100:
                self.stats.invalid.append(f"t={self.now():.3f}: {act.what}")

    def _on_worker(self, gid: int, op: Callable[[], None]) -> None:
        """Run a work order on a worker now, or once the job that still holds it lets go
        (or once a restarted worker is up)."""
        if self._owner[gid] is None and self._alive[gid] and gid not in self._booting:
            op()
        else:
            self._deferred[gid].append(op)

    def _start_load(self, act: LoadModel) -> None:
        model, kind = self._model_of_id(act.model)
        rec = LoadRecord(act.gid, act.model, act.job, act.reload, self.now())
        p = self.pool[act.gid].request("load", model, kind)
        self._load_pending.append((act.gid, act.token, p, rec))
        self.loads.append(rec)

    def _model_of_id(self, mid: str) -> tuple[str, Any]:
        try:
            return self._model_of[mid]
        except KeyError:
            name, _, kind = mid.partition(":")
            return name, (kind or None)

    def _release_worker(self, gid: int) -> None:
        self._background.append((gid, self.pool[gid].request("release"), False))

    def _free(self, gid: int) -> None:
        """A job let go of worker ``gid``: run the work orders that waited for it."""
        self._owner[gid] = None
        ops, self._deferred[gid] = self._deferred[gid], []
        for op in ops:
            if self._owner[gid] is None and self._alive[gid] and gid not in self._booting:
                op()
            else:
                self._deferred[gid].append(op)
        self._kick()

    def _kick(self) -> None:
        for r in self.runs.values():
            if r.wait_signal:
                r.signal = True

    # ------------------------------------------------------------------ worker replies

    def _check_workers(self) -> bool:
        """Collect finished loads and restarts; notice dead workers."""
        progressed = False
        now = self.now()
        check = now - self._alive_checked >= ALIVE_CHECK_S
        if check:
            self._alive_checked = now
        for g, w in enumerate(self.pool.workers):
            if self._alive[g] and g not in self._booting:
                broken = False
                try:
                    w.drain()
                except WorkerError:
                    broken = True
                if (broken or check) and not w.alive():
                    self._worker_died(g)
                    progressed = True
        for g, p in list(self._booting.items()):
            try:
                if not p.ready():
                    continue
                self.pool[g].boot_s = float(p.result())
            except WorkerError:
                self._respawns[g] += 1
                if self._respawns[g] > MAX_RESPAWNS:
                    raise WorkerError(
                        f"worker {g}: died {self._respawns[g]} times while starting; giving up"
                    ) from None
                self._booting[g] = self.pool.respawn(g)
                continue
            del self._booting[g]
            self._alive[g] = True
            self._free(g)
            progressed = True
        still: list[tuple[int, int, Pending, LoadRecord]] = []
        for gid, token, p, rec in self._load_pending:
            if not self._alive[gid]:
                rec.stale = True
                continue
            try:
                ready = p.ready()
            except WorkerError:
                ready = False
            if not ready:
                still.append((gid, token, p, rec))
                continue
            try:
                report: LoadReport = p.result()
            except WorkerError:
                if self.pool[gid].alive():
                    raise
                rec.stale = True
                continue
            now = self.now()
            rec.ready_s, rec.load_s, rec.cold = now, report.load_s, report.cold
            view = self.state.gpu(gid)
            if view.state is not GpuState.LOADING or view.model != rec.model:
                rec.stale = True
            if rec.job is not None and rec.job in self.runs and not rec.stale:
                self.runs[rec.job].load_s += report.load_s
            self.stats.events += 1
            self._carry_out(self.state.gpu_ready(gid, token, now))
            self._request_decision()
            progressed = True
        self._load_pending = still
        return progressed

    def _poll_background(self) -> bool:
        """Collect replies nobody waits for (releases, detaches after a failure)."""
        still: list[tuple[int, Pending, bool]] = []
        progressed = False
        for gid, p, ignore in self._background:
            if not self._alive[gid]:
                continue
            try:
                if not p.ready():
                    still.append((gid, p, ignore))
                    continue
                p.result()
            except WorkerError:
                if not ignore and self.pool[gid].alive():
                    raise
            progressed = True
        self._background = still
        return progressed

    def _worker_died(self, gid: int) -> None:
        """Worker ``gid``'s process is gone: take its GPU from the job that held it and
        release it through the state, and restart the process."""
        if not self._alive[gid]:
            return
        now = self.now()
        self._alive[gid] = False
        self.worker_deaths.append((now, gid))
        self._deferred[gid] = []
        self._owner[gid] = None
        view = self.state.gpu(gid)
        actions: list[Action] = []
        if view.job is not None:
            spec = self.state.job(view.job).spec
            rest = tuple(g for g in self.state.job(view.job).gpus if g != gid)
            keep = rest if len(rest) >= spec.min_gpus else ()
            actions += self.state.apply(Decision(allocations={view.job: keep}), now)
        if self.state.gpu(gid).state is not GpuState.FREE:
            actions += self.state.apply(Decision(release=(gid,)), now)
        actions = [a for a in actions if not (isinstance(a, ReleaseGpu) and a.gid == gid)]
        self._booting[gid] = self.pool.respawn(gid)
        self._carry_out(actions)
        self._kick()
        self._request_decision()

    # ------------------------------------------------------------------ job coroutines

    def _step_jobs(self) -> bool:
        """Resume every job coroutine whose replies have all arrived or that was signalled."""
        progressed = False
        for run in sorted(self.runs.values(), key=lambda r: r.job_id):
            while run.proc is not None:
                if run.waiting is not None:
                    try:
                        if not all(p.ready() for p in run.waiting):
                            break
                        results = [p.result() for p in run.waiting]
                    except WorkerError as exc:
                        self._send(run, None, exc)
                        progressed = True
                        continue
                    self._send(run, results)
                elif run.wait_signal:
                    if not run.signal:
                        break
                    run.signal = False
                    self._send(run, None)
                else:
                    break
                progressed = True
        return progressed

    def _send(self, run: JobRun, value: Any, exc: BaseException | None = None) -> None:
        assert run.proc is not None
        run.waiting = None
        run.wait_signal = False
        try:
            out = run.proc.send(value) if exc is None else run.proc.throw(exc)
        except StopIteration:
            run.proc = None
            return
        if out is WAIT:
            run.wait_signal = True
        else:
            run.waiting = list(out)

    def _proc(self, run: JobRun) -> Generator[Any, Any, None]:
        """One job's life: wait for workers, train step by step, finish; recover from a
        worker's death."""
        while True:
            try:
                yield from self._train(run)
                return
            except WorkerError:
                lost = [g for g in set(run.workers) | self._attaching(run) if not self._ok(g)]
                if not lost:
                    raise
                for g in lost:
                    self._worker_died(g)
                yield from self._recover(run)

    def _attaching(self, run: JobRun) -> set[int]:
        return {g for g, o in enumerate(self._owner) if o == run.job_id}

    def _ok(self, gid: int) -> bool:
        return self._alive[gid] and self.pool[gid].alive()

    def _train(self, run: JobRun) -> Generator[Any, Any, None]:
        jid = run.job_id
        cfg = run.job.tuning
        while True:
            if run.rejected:
                return
            if run.target is not None:
                gpus, epoch = run.target
                run.target = None
                yield from self._move(run, gpus)
                if run.target is not None or not gpus:
                    continue
                if self.state.job_resumed(jid, epoch, self.now()) is None:
                    continue  # stale: a newer reconfiguration is on its way
                run.epoch = epoch
                if run.step == 0 and not run.evals and (yield from self._evaluate(run)):
                    yield from self._finish(run)
                    return
            if not run.workers or run.target is not None or not self._training(run):
                if run.target is None:
                    yield WAIT
                continue
            world = len(run.workers)
            if world == 1:  # the worker computes and applies the step itself: one message
                ((_, loss, _, _),) = yield [self.pool[run.workers[0]].request("step")]
            else:
                replies = yield [
                    self.pool[w].request("grad", r, world) for r, w in enumerate(run.workers)
                ]
                if len({s for s, *_ in replies}) != 1:
                    raise WorkerError(f"job {jid}: replicas at different steps")
                parts = [ShardGrad(lo, torch.from_numpy(g), n, c) for _, lo, g, n, c in replies]
                avg = average_grads(parts)
                loss = avg.loss
                yield [self.pool[w].request("apply", avg.grad.numpy(), loss) for w in run.workers]
            run.step += 1
            run.state_fresh = False
            now = self.now()
            run.curve.append((run.step, now, world, float(loss)))
            self.state.set_progress(jid, float(run.step), now)
            if self.on_step is not None:
                self.on_step(jid, run.step, self)
            every = cfg.checkpoint_every or self.checkpoint_every
            if every and run.step % every == 0:
                d = self.run_dir / "checkpoints" / jid
                (path,) = yield [self.pool[run.workers[0]].request("checkpoint", str(d))]
                run.checkpoint, run.checkpoint_step = Path(path), run.step
            if run.step % cfg.eval_every == 0 or run.step >= cfg.max_steps:
                done = yield from self._evaluate(run)
                if done or run.step >= cfg.max_steps:
                    yield from self._finish(run)
                    return

    def _training(self, run: JobRun) -> bool:
        """Whether the state has the job running under the epoch it trains with."""
        rec = self.state.job(run.job_id)
        return rec.epoch == run.epoch and rec.state is JobState.RUNNING

    def _evaluate(self, run: JobRun) -> Generator[Any, Any, bool]:
        """Held-out evaluation on rank 0; True when the target is met."""
        t0 = self.now()
        (ev,) = yield [self.pool[run.workers[0]].request("evaluate")]
        assert isinstance(ev, EvalResult)
        now = self.now()
        run.eval_s += now - t0
        run.evals.append((ev.step, now, ev.accuracy, ev.loss))
        if run.job.tuning.target_met(ev.accuracy, ev.loss):
            run.reached = True
        return run.reached

    def _usable(self, gid: int, jid: str) -> bool:
        return (
            self._alive[gid]
            and gid not in self._booting
            and self._owner[gid] in (None, jid)
            and not self._deferred[gid]
        )

    def _move(self, run: JobRun, gpus: tuple[int, ...]) -> Generator[Any, Any, None]:
        """Move the job to workers ``gpus`` at a step boundary (state from rank 0)."""
        jid = run.job_id
        old = run.workers
        if old and set(old) == set(gpus):
            return
        t0 = self.now()
        if old:
            datas = yield [self.pool[w].request("detach") for w in old]
            run.state_bytes, run.state_fresh = datas[0], True
            run.workers = ()
            for w in old:
                self._free(w)
        if not gpus:
            run.exec_pause_s += self.now() - t0
            return
        while not all(self._usable(g, jid) for g in gpus):
            if run.target is not None or run.rejected:
                return
            yield WAIT
        t1 = self.now()
        for g in gpus:
            self._owner[g] = jid
        setup = self._setup(run)
        yield [self.pool[g].request("attach", setup, run.state_bytes) for g in gpus]
        run.workers = tuple(gpus)
        run.exec_pause_s += (t1 - t0 if old else 0.0) + self.now() - t1

    def _setup(self, run: JobRun) -> JobSetup:
        if run.setup is None:
            job = run.job
            init = self.state.job(run.job_id).init
            prompt = head = None
            source = None
            if init is not None and init.source is not None and self.bank is not None:
                prompt, head = prompt_arrays(*self.bank.tensors(init.source))
                source = init.source
            run.setup = JobSetup(
                job.job_id,
                job.model,
                self.tasks.get(job.task),
                job.tuning,
                job.kind,
                prompt,
                head,
                source,
            )
        return run.setup

    def _finish(self, run: JobRun) -> Generator[Any, Any, None]:
        """The job is done: tell the state (its GPUs become warm-idle), save its prompt (and
        add it to the bank), let its workers go, then ask the policy."""
        jid = run.job_id
        while True:
            now = self.now()
            self.state.set_progress(jid, float(run.step), now)
            if self.state.job_finished(jid, run.epoch, now, iterations=float(run.step)):
                break
            if run.target is None:
                yield WAIT
                continue
            gpus, epoch = run.target
            run.target = None
            if gpus and self.state.job_resumed(jid, epoch, self.now()) is not None:
                run.epoch = epoch
        run.done = True
        self.stats.events += 1
        rank0 = self.pool[run.workers[0]]
        (stored,) = yield [rank0.request("store", str(self.run_dir / "prompts"), jid)]
        run.prompt_dir = str(stored.path)
        if self.bank is not None and self.bank.should_store(run.reached):
            eid = self.bank.entry_id_for(run.job)
            (entry,) = yield [rank0.request("store", str(self.bank.store.root), eid)]
            self.bank.add(entry, run.job)
            run.bank_entry = eid
        yield [self.pool[w].request("detach") for w in run.workers]
        workers, run.workers = run.workers, ()
        for w in workers:
            self._free(w)
        # the policy hears of the completion once the prompt is in the bank and the workers
        # are free (the finish time is when the target was met)
        self._request_decision()
        if self.on_job_done is not None:
            self.on_job_done(jid)

    def _recover(self, run: JobRun) -> Generator[Any, Any, None]:
        """After a worker died under the job: drop the other replicas and continue from the
        freshest state the driver has (the last move's, else the last checkpoint, else the
        start)."""
        for g in sorted(set(run.workers) | self._attaching(run)):
            if self._ok(g):
                self._background.append((g, self.pool[g].request("detach"), True))
                self._free(g)
            elif self._owner[g] == run.job_id:
                self._owner[g] = None
        run.workers = ()
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
            self.state.set_progress(run.job_id, float(back_to), self.now())
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


def final_eval(run: JobRun) -> tuple[float, float]:
    """(accuracy, loss) of the job's last held-out evaluation (NaN when none)."""
    if not run.evals:
        return math.nan, math.nan
    _, _, acc, loss = run.evals[-1]
    return acc, loss


__all__ = [
    "WAIT",
    "ExecOutcome",
    "Executor",
    "JobRun",
    "LoadRecord",
    "curve_rows",
    "final_eval",
]
