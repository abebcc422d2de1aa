"""The executor driver: real prompt tuning on a pool of workers, scheduled by ptsim's policies on
the wall clock. It is the SimPy driver's twin (``ptsim/simulator.py``); both own the core's
``ClusterState``, show the policy the same ``Snapshot`` and apply its ``Decision`` through the
same state.

The "GPUs" of the state are the pool's workers (gid = worker id; one node). Time is
``time.monotonic()`` since the run started. A run is made of named pieces, each in its module:

- :class:`~ptexec.loop.WallClockLoop` (``ptexec/loop.py``): the wall-clock loop. Arrivals,
  the policy's wake-up times, one coalesced decision per turn, the time series, sleeping on
  the workers, the horizon.
- :class:`~ptexec.health.WorkerHealth` (``ptexec/health.py``): the worker-health monitor.
  Notices dead workers (broken pipe, process gone, or a job's failed request) and restarts
  them.
- :class:`~ptexec.leases.WorkerLeases` (``ptexec/leases.py``): which job holds each worker;
  work orders for a held worker wait until it is let go.
- :class:`~ptexec.jobrun.JobLifecycle` (``ptexec/jobrun.py``): one job's life as a coroutine
  (wait for workers, train, move, evaluate, checkpoint, finish, recover from a worker's death);
  what is known of a job is its :class:`~ptexec.jobrun.JobRun`.
- ``ptexec/replicas.py``: the data-parallel step and the resize of one job's replicas, the same
  code ``WorkerPool.train_step``/``resize`` (and so ``ptexec profile``) run.

:class:`Executor` (here) composes them, is the loop's host, and dispatches the actions the
state returns:

- ``LoadModel``: ``load`` on the worker, without waiting; when the report arrives the driver
  calls ``gpu_ready`` with the action's token, so the measured load is the real cold start.
- ``ReleaseGpu``: ``release`` on the worker (the model is unloaded).
- ``Reconfigure``/``RejectJob``: handed to the job's life cycle, which moves at its next step
  boundary (then ``job_resumed``) or stops.

A work order for a worker that another job still holds waits until that job lets go.

Worker death: rank 0 checkpoints every ``checkpoint_every`` steps. When a worker process dies,
the driver takes its GPU away from the job that held it and releases it through the state
(driver-issued decisions, not the policy's), the health monitor restarts the process, and the
job resumes from its last checkpoint (or from the state it had when it was last moved) on
whatever workers the policy gives it next: at most ``checkpoint_every`` steps are lost.

Pauses: the state charges modelled pauses (``pause_s``: hand-over, reconfiguration, bank lookup,
a policy's ``Decision.pause``) for the policies' predictions; the executor does not sleep them,
it measures what the real moves took (``exec_pause_s``). A bank lookup is planned in the
policy's ``decide`` (which returns at once) and runs at the job's first start on its first
worker, as an exchange like the others (``ptexec.prompt_bank``): it never holds up another job
or the loop.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptexec.faults import Injector
from ptexec.health import WorkerHealth
from ptexec.jobrun import (
    WAIT,
    JobEnv,
    JobLifecycle,
    JobRun,
    curve_rows,
    final_eval,
    readings_of,
)
from ptexec.jobs import ExecJob, TaskCatalog, nominal_deadlines
from ptexec.leases import WorkerLeases
from ptexec.loop import WallClock, WallClockLoop
from ptexec.prompt_bank import ExecPromptBank
from ptexec.replicas import Reply, WorkerHandle
from ptexec.workers import LoadReport, WorkerDied, WorkerError, WorkerPool
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
    LoadModel,
    Reconfigure,
    RejectJob,
    ReleaseGpu,
)
from ptsim.outcome import RunOutcome, RunStats

if TYPE_CHECKING:
    from ptsim.convergence_io import ConvergenceSetup

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
class ExecOutcome(RunOutcome):
    """A finished executor run: what ``ptsim.metrics`` reads (state, series, stats, policy)
    plus the executor's own records."""

    runs: dict[str, JobRun] = field(default_factory=dict)
    loads: list[LoadRecord] = field(default_factory=list)
    worker_deaths: list[tuple[float, int]] = field(default_factory=list)
    bank: ExecPromptBank | None = None
    boot_s: list[float] = field(default_factory=list)
    decide_s: list[float] = field(default_factory=list)
    startup_s: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    faults: list[tuple[float, int, str | None]] = field(default_factory=list)
    """(driver time, worker, job it held) of every worker killed on purpose (``faults``)."""
    convergence: ConvergenceSetup | None = None
    """The convergence model the state planned with (``None``: iterations known exactly)."""


class Executor:
    """One run of ``jobs`` on ``pool`` under a policy (a registry name with ``params``, or a
    factory taking the ``PolicyContext``): the composition of the pieces (module doc) and the
    dispatcher of the state's actions.

    ``profiles`` are what the policy plans with (measured by ``ptexec profile`` or at the start
    of the run); ``run_dir`` receives checkpoints and each job's tuned prompt (``prompts/``);
    ``bank`` is the run's Prompt Bank (``None``: every job starts from its default prompt).
    ``on_step(job_id, step, executor)`` is called after every step (progress, tests);
    ``on_job_done(job_id)`` after every completion. ``faults`` kills workers on purpose
    (``ptexec.faults``): each loop turn, a kill that is due takes a worker that holds a job.
    ``convergence`` (``ptsim.convergence_io.load_convergence``) gives the state the model's
    prior and estimator settings, as ptsim's run does, and each job's held-out evaluations are
    its accuracy readings (``ptexec.jobrun.readings_of``), so the policies plan on the
    estimator's estimate; ``None``: each job's ``iterations`` known exactly.
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
        faults: Injector | None = None,
        convergence: ConvergenceSetup | None = None,
    ) -> None:
        if not jobs:
            raise ValueError("no jobs to run")
        ids = [j.job_id for j in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate job ids")
        for j in jobs:
            unknown = sorted(set(j.after) - set(ids))
            if unknown:
                raise ValueError(f"job {j.job_id}: after {unknown[0]!r}, which is not a job")
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
        self.runs: dict[str, JobRun] = {}
        self.convergence = convergence
        if convergence is None:
            self.state = ClusterState(1, n, profiles, iterations=self._budget)
        else:
            self.state = ClusterState(
                1,
                n,
                profiles,
                iterations=self._budget,
                prior=convergence.model.job_prior,
                estimator=convergence.estimator,
                readings=readings_of(self.runs),
            )
        if bank is not None:
            bank.plan_with({m: profiles.model(m).eval_s for m in sorted(self._model_of)})
        ctx = PolicyContext(profiles, bank)
        if isinstance(policy, str):
            self.policy: Policy = POLICIES.build(policy, ctx, params or {})
        else:
            self.policy = policy(ctx)
        last = max(nominal_deadlines(self.jobs).values())
        self.horizon_s = horizon_s if horizon_s is not None else 2.0 * last + 600.0
        self.stats = RunStats(horizon_s=self.horizon_s)
        self.series = SeriesRecorder(series_interval_s)
        self.clock = WallClock()
        self.loop = WallClockLoop(self, self.clock, self.jobs, self.horizon_s)
        self.health = WorkerHealth(pool)
        self.leases = WorkerLeases(self.health, self._kick)
        self.env = JobEnv(
            state=self.state,
            pool=pool,
            health=self.health,
            leases=self.leases,
            now=self.now,
            run_dir=self.run_dir,
            tasks=self.tasks,
            bank=bank,
            checkpoint_every=checkpoint_every,
            worker_lost=self._worker_lost,
            background=self._background_request,
            request_decision=self.loop.request_decision,
            count_event=self.count_event,
            on_step=None if on_step is None else self._on_step,
            on_job_done=on_job_done,
        )
        self.lives: dict[str, JobLifecycle] = {}
        self.loads: list[LoadRecord] = []
        self._load_pending: list[tuple[int, int, Reply, LoadRecord]] = []
        self._background: list[tuple[int, Reply, bool]] = []
        self.faults = faults
        self.decide_s: list[float] = []  # wall time of every policy decision
        self.on_arrive: Callable[[JobRun], Any] | None = None
        """Called with a job's record when it arrives (``ptexec.resume`` restores it)."""

    @property
    def worker_deaths(self) -> list[tuple[float, int]]:
        """(driver time, worker id) of every worker death."""
        return self.health.deaths

    def now(self) -> float:
        """Seconds since the run started (the driver's clock)."""
        return self.clock.now()

    def _budget(self, spec: JobSpec, init: InitChoice) -> float:
        """Iterations the state may count for a job: its step budget (the realised count
        replaces it when the job finishes)."""
        return float(self._by_id[spec.job_id].tuning.max_steps)

    def _on_step(self, jid: str, step: int) -> None:
        assert self.on_step is not None
        self.on_step(jid, step, self)

    # ------------------------------------------------------------------ run

    def run(self) -> ExecOutcome:
        """Run every job to completion (or the horizon) and return the outcome."""
        if self.release_at_start:
            for w in self.pool.workers:
                w.call("release")
        for j in self.jobs:
            self.tasks.get(j.task)
        wall0 = time.perf_counter()
        self.clock.start()
        self.stats.horizon_hit = self.loop.run()
        end = self.now()
        for r in self.runs.values():
            if not r.done and not r.rejected and r.job_id in self.state.jobs:
                self.state.set_progress(r.job_id, float(r.step), end)
        if self.bank is not None:
            for jid in sorted(self.runs):
                self.bank.cancel(jid)  # planned lookups of jobs that never started
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
            faults=[] if self.faults is None else list(self.faults.kills),
            decide_s=self.decide_s,
            convergence=self.convergence,
        )

    # ------------------------------------------------------------------ the loop's host

    def arrive(self, job: ExecJob, now: float) -> None:
        """A job arrives: the state queues it and its life cycle starts (it waits for
        workers)."""
        self.state.add_job(job.spec, now)
        life = JobLifecycle(job, self.env)
        self.lives[job.job_id] = life
        self.runs[job.job_id] = life.run
        if self.on_arrive is not None:
            self.on_arrive(life.run)

    def poll(self) -> bool:
        """Injected faults, worker health, finished loads, background replies, then the
        jobs."""
        self._inject_fault()
        progressed = self._check_workers()
        progressed |= self._poll_background()
        progressed |= self.resume_jobs()
        return progressed

    def resume_jobs(self) -> bool:
        """Resume every job whose replies have all arrived or that was signalled; tell the
        loop of every job that is over (its successors may arrive)."""
        progressed = False
        for jid in sorted(self.lives):
            life = self.lives[jid]
            progressed |= life.resume()
            if not life.active and jid not in self.loop.over:
                self.loop.job_over(jid, self.now())
                progressed = True
        return progressed

    def decide(self, now: float) -> float | None:
        """Ask the policy on the snapshot at ``now`` and carry out what the state makes of
        its decision; returns the policy's wake-up time."""
        t0 = time.perf_counter()
        decision = self.policy.decide(self.state.snapshot(now))
        took = time.perf_counter() - t0
        self.stats.decide_wall_s += took
        self.decide_s.append(took)
        self.stats.decisions += 1
        self._carry_out(self.state.apply(decision, self.now()))
        # re-rated jobs (a contended profile): the executor measures when a job finishes,
        # it has nothing to re-time
        self.state.take_retimed()
        return decision.wake_at

    def record(self, now: float, force: bool = False) -> None:
        self.series.record(self.state, now, force=force)

    def count_event(self) -> None:
        self.stats.events += 1

    def settled(self) -> bool:
        """No live job, and no job still storing its prompt or detaching."""
        return self.state.live_jobs == 0 and not any(x.active for x in self.lives.values())

    def sleep(self, timeout: float) -> None:
        self.health.wait(timeout)

    # ------------------------------------------------------------------ actions

    def _carry_out(self, actions: Sequence[Action]) -> None:
        for act in actions:
            if isinstance(act, LoadModel):
                self.leases.order(act.gid, functools.partial(self._start_load, act))
            elif isinstance(act, ReleaseGpu):
                self.leases.order(act.gid, functools.partial(self._release_worker, act.gid))
            elif isinstance(act, Reconfigure):
                self.lives[act.job].reconfigure(tuple(act.gpus), act.epoch)
            elif isinstance(act, RejectJob):
                self.lives[act.job].reject()
                if self.bank is not None:
                    self.bank.cancel(act.job)
            elif isinstance(act, InvalidRequest) and len(self.stats.invalid) < 100:
                self.stats.invalid.append(f"t={self.now():.3f}: {act.what}")

    def _start_load(self, act: LoadModel) -> None:
        model, kind = self._model_of_id(act.model)
        rec = LoadRecord(act.gid, act.model, act.job, act.reload, self.now())
        try:
            p = self.pool[act.gid].request("load", model, kind)
        except WorkerDied:  # the health monitor notices it at its next poll
            rec.stale = True
            self.loads.append(rec)
            return
        self._load_pending.append((act.gid, act.token, p, rec))
        self.loads.append(rec)

    def _model_of_id(self, mid: str) -> tuple[str, Any]:
        try:
            return self._model_of[mid]
        except KeyError:
            name, _, kind = mid.partition(":")
            return name, (kind or None)

    def _release_worker(self, gid: int) -> None:
        with contextlib.suppress(WorkerDied):  # the health monitor notices it
            self._background.append((gid, self.pool[gid].request("release"), False))

    def _background_request(self, gid: int, reply: Reply) -> None:
        self._background.append((gid, reply, True))

    def _kick(self) -> None:
        for life in self.lives.values():
            life.kick()

    # ------------------------------------------------------------------ worker replies

    def _check_workers(self) -> bool:
        """Worker deaths and restarts (from the health monitor), and finished loads."""
        died, back = self.health.poll(self.now())
        for g in died:
            self._worker_died(g)
        for g in back:
            self.leases.free(g)
        progressed = bool(died or back)
        still: list[tuple[int, int, Reply, LoadRecord]] = []
        for gid, token, p, rec in self._load_pending:
            if not self.health.up(gid):
                rec.stale = True
                continue
            try:
                if not p.ready():
                    still.append((gid, token, p, rec))
                    continue
                report: LoadReport = p.result()
            except WorkerDied:
                rec.stale = True  # the health monitor deals with the death
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
            self.loop.request_decision()
            progressed = True
        self._load_pending = still
        return progressed

    def _poll_background(self) -> bool:
        """Collect replies nobody waits for (releases, detaches after a failure)."""
        still: list[tuple[int, Reply, bool]] = []
        progressed = False
        for gid, p, ignore in self._background:
            if not self.health.up(gid):
                continue
            try:
                if not p.ready():
                    still.append((gid, p, ignore))
                    continue
                p.result()
            except WorkerDied:
                pass  # the health monitor deals with it
            except WorkerError:
                if not ignore:
                    raise
            progressed = True
        self._background = still
        return progressed

    def _inject_fault(self) -> None:
        """Kill a worker (SIGKILL) when the fault plan says one is due: one that holds a job
        (or, with ``idle_ok``, any that is up). The health monitor notices the death as it
        would a real one."""
        if self.faults is None or not self.faults.due(self.now()):
            return
        n = len(self.pool)
        up = [g for g in range(n) if self.health.up(g) and self.pool[g].alive()]
        busy = [(g, h) for g in up if (h := self.leases.holder(g)) is not None]
        gid = self.faults.pick(self.now(), busy, up)
        if gid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pool[gid].proc.pid, signal.SIGKILL)

    def _worker_lost(self, worker: WorkerHandle) -> None:
        """A request found ``worker`` dead: unless that death is already known, record it
        (the health monitor restarts the worker) and take its GPU from the state."""
        if self.health.mark_dead(worker.wid, self.now(), worker):
            self._worker_died(worker.wid)

    def _worker_died(self, gid: int) -> None:
        """Worker ``gid``'s process is gone (the health monitor is restarting it): take its
        GPU from the job that held it and release it through the state (driver-issued
        decisions, not the policy's)."""
        now = self.now()
        self.leases.lost(gid)
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
        self._carry_out(actions)
        self._kick()
        self.loop.request_decision()


__all__ = [
    "WAIT",
    "ExecOutcome",
    "Executor",
    "JobRun",
    "LoadRecord",
    "curve_rows",
    "final_eval",
]
