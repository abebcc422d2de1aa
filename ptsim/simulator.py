"""The SimPy driver: replays a trace on a simulated cluster under one policy.

The driver owns a ``ClusterState`` (the core's bookkeeping) and turns the actions it returns into
SimPy delays: model loads are timeouts, a job trains in a stretch of SimPy callbacks that a
reconfiguration stops (``_Stretch``; the state keeps the remaining work). The policy is asked at
arrivals, completions, GPU-ready events and its own wake-up times; events at the same instant are
coalesced into one decision. Runs drain: no arrivals after the trace, and the run ends when every
job is done or rejected, or at the hard horizon (reported).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import simpy
from simpy.events import URGENT
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from ptsim.core.estimator import EstimatorSettings
from ptsim.core.policy import Policy
from ptsim.core.profiles import ProfileSet
from ptsim.core.state import (
    ClusterState,
    IterationsFn,
    PriorFn,
    ReadingsFn,
    ReadingsUntilFn,
    SeriesRecorder,
)
from ptsim.core.types import (
    Action,
    InvalidRequest,
    JobSpec,
    JobState,
    LoadModel,
    Reconfigure,
)
from ptsim.outcome import RunOutcome, RunStats

# first-generation threshold of Python's cyclic collector during a run (its default is 700)
_GC_GEN0 = 20_000


@contextmanager
def _long_lived_gc() -> Iterator[None]:
    """Run a simulation with the objects that exist before it (the trace, the profiles, the
    policy and its bank) out of the cyclic collector's scans and with fewer, larger young
    collections; the collector's settings are restored afterwards.

    Why: a run allocates millions of short-lived objects while its live set (job views,
    records, bank entries) keeps growing, and each full collection walks all of it: in
    prompttuner's 6 h of the day benchmark the collector took ~2.8 s of ~35 s of CPU with the
    default settings and ~0.6 s with these. Collection only frees unreachable objects, so the
    results are the same (the settings are the process's: runs in threads of one process share
    them, which can change their speed, never their results)."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], _GC_GEN0), max(before[1], 10), max(before[2], 10))
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run a simulation with numpy's BLAS on one thread; the library's setting is restored
    afterwards.

    Why: the simulator is single-threaded, but OpenBLAS keeps a thread per core, and after a
    call it splits between them (a Prompt Bank re-clustering's nearest-medoid product over
    every entry) those threads spin, waiting for the next one: in the overloaded prompttuner
    day (6 h window, compiled) they took 8% of the process's CPU samples (perf, cpu-clock) on
    a 2-core machine, CPU time the run is charged for and that a sweep's other runs could
    use. OpenBLAS splits a product's rows and columns between threads, not its sums, so the
    numbers are the same on one thread (the golden tables and byte comparisons check it)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class Simulation:
    """One run of ``jobs`` under ``policy`` on ``num_nodes`` x ``gpus_per_node`` GPUs.

    ``iterations`` gives a job's realised iterations from its initial prompt (default: the
    trace's); ``prior`` what the policies may know of them (the estimator's prior; default:
    known exactly), ``estimator`` the estimator's settings and ``readings`` simulated accuracy
    readings (``readings_until``: where they next change); ``on_job_done`` is called with
    each finished job (the bank's online growth); ``on_progress`` with 1 per finished job (a
    progress bar).
    """

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        policy: Policy,
        profiles: ProfileSet,
        *,
        num_nodes: int,
        gpus_per_node: int = 8,
        iterations: IterationsFn | None = None,
        on_job_done: Callable[[JobSpec], Any] | None = None,
        horizon_s: float | None = None,
        series_interval_s: float = 0.0,
        on_progress: Callable[[int], Any] | None = None,
        prior: PriorFn | None = None,
        estimator: EstimatorSettings | None = None,
        readings: ReadingsFn | None = None,
        readings_until: ReadingsUntilFn | None = None,
    ) -> None:
        if not jobs:
            raise ValueError("the trace has no jobs")
        self.jobs = sorted(jobs, key=lambda j: (j.arrival, j.job_id))
        self.policy = policy
        self.profiles = profiles
        kw: dict[str, Any] = {} if iterations is None else {"iterations": iterations}
        if prior is not None:
            kw["prior"] = prior
        if estimator is not None:
            kw["estimator"] = estimator
        if readings is not None:
            kw["readings"] = readings
        if readings_until is not None:
            kw["readings_until"] = readings_until
        self.state = ClusterState(num_nodes, gpus_per_node, profiles, **kw)
        for spec in self.jobs:
            profiles.model(spec.model)  # fail before running on an unknown model
        last_deadline = max(j.deadline for j in self.jobs)
        self.horizon_s = horizon_s if horizon_s is not None else 2.0 * last_deadline + 86400.0
        self._on_progress = on_progress
        self._on_job_done = on_job_done
        self.env = simpy.Environment()
        self.stats = RunStats(horizon_s=self.horizon_s)
        self.series = SeriesRecorder(series_interval_s)
        self._decision_pending = False
        self._wakes: set[float] = set()
        self._procs: dict[str, _Stretch] = {}  # each job's stretch of training
        self._arrived = 0
        self._finished = 0
        self._all_done = self.env.event()

    # ------------------------------------------------------------------ run

    def run(self) -> RunOutcome:
        """Run to completion (or the horizon) and return the outcome."""
        t0 = time.perf_counter()
        self.env.process(self._arrivals())
        horizon = self.env.timeout(self.horizon_s)
        with _long_lived_gc(), _one_blas_thread():
            self.env.run(until=self._all_done | horizon)
        now = float(self.env.now)
        self.stats.horizon_hit = not self._all_done.triggered
        self.stats.end_s = now
        self.state.close(now)
        self.series.record(self.state, now, force=True)
        self.stats.sim_wall_s = time.perf_counter() - t0
        return RunOutcome(self.state, self.series.rows, self.stats, self.policy.name)

    def _arrivals(self) -> Any:
        env = self.env
        for spec in self.jobs:
            if spec.arrival > env.now:
                yield env.timeout(spec.arrival - env.now)
            self.state.add_job(spec, float(env.now))
            self._arrived += 1
            self.stats.events += 1
            self._request_decision()

    # ------------------------------------------------------------------ decisions

    def _request_decision(self) -> None:
        if not self._decision_pending:
            self._decision_pending = True
            self.env.timeout(0).callbacks.append(self._decide)

    def _wake(self, event: simpy.Event) -> None:
        """A wake-up the policy asked for: decided after every other event of its instant (the
        decision sees them all, and one decision answers them all), whenever it was asked."""
        now = float(self.env.now)
        self._wakes.discard(now)
        self.stats.events += 1
        if self._decision_pending or self.env.peek() <= now:
            self._request_decision()
        else:
            self._decide(event)

    def _decide(self, _event: simpy.Event | None = None) -> None:
        """Ask the policy and carry out its decision.

        The cyclic collector does not run inside ``policy.decide``: a decision's temporaries
        (a re-plan's items, plans and lists) are alive until it returns, so a collection in
        the middle walks all of them, and after it they are gone by reference counting and
        the next collection walks only what the decision kept. Collection only frees
        unreachable objects: the results are the same (the setting is the process's, as in
        ``_long_lived_gc``)."""
        self._decision_pending = False
        now = float(self.env.now)
        t0 = time.perf_counter()
        snap = self.state.snapshot(now)
        collecting = gc.isenabled()
        gc.disable()
        try:
            decision = self.policy.decide(snap)
        finally:
            if collecting:
                gc.enable()
        del snap
        self.stats.decide_wall_s += time.perf_counter() - t0
        self.stats.decisions += 1
        self._carry_out(self.state.apply(decision, now))
        self._retime()
        wake = decision.wake_at
        if wake is not None and wake > now and wake not in self._wakes:
            self._wakes.add(wake)
            self.env.timeout(wake - now).callbacks.append(self._wake)
        self.series.record(self.state, now)
        self._check_done()

    def _check_done(self) -> None:
        if (
            self._arrived == len(self.jobs)
            and self.state.live_jobs == 0
            and not self._all_done.triggered
        ):
            self._all_done.succeed()

    # ------------------------------------------------------------------ mechanics

    def _carry_out(self, actions: list[Action]) -> None:
        env, profiles = self.env, self.profiles
        for act in actions:
            kind = type(act)
            if kind is LoadModel:
                assert isinstance(act, LoadModel)
                delay = profiles.reload(act.model) if act.reload else profiles.cold_start(act.model)
                # the load's GPU and token ride on the timeout (``_loaded``)
                env.timeout(delay, (act.gid, act.token)).callbacks.append(self._loaded)
            elif kind is Reconfigure:
                assert isinstance(act, Reconfigure)
                proc = self._procs.pop(act.job, None)
                if proc is not None and proc.is_alive:
                    proc.interrupt()
                if act.gpus:
                    self._procs[act.job] = self._train(act.job, act.epoch, act.pause_s)
            elif kind is InvalidRequest and len(self.stats.invalid) < 100:
                assert isinstance(act, InvalidRequest)
                self.stats.invalid.append(f"t={env.now:.3f}: {act.what}")
            # ReleaseGpu and RejectJob need no simulated work: the state already applied them

    def _loaded(self, event: simpy.Event) -> None:
        """A model load finished: ``event.value`` is its (GPU, token)."""
        gid, token = cast(tuple[int, int], event.value)
        self.stats.events += 1
        actions = self.state.gpu_ready(gid, token, float(self.env.now))
        if actions:
            self._carry_out(actions)
        self._retime()
        self._request_decision()

    def _train(self, job_id: str, epoch: int, pause_s: float) -> _Stretch:
        """Start a stretch of training: after ``pause_s`` the job resumes (``job_resumed``) and
        finishes when its work is done, unless stopped first."""
        return _Stretch(self, job_id, epoch, pause_s, None)

    def _finish(self, job_id: str, epoch: int) -> None:
        if self.state.job_finished(job_id, epoch, float(self.env.now)):
            self._procs.pop(job_id, None)
            self.stats.events += 1
            self._finished += 1
            if self._on_job_done is not None:
                self._on_job_done(self.state.job(job_id).spec)
            if self._on_progress is not None:
                self._on_progress(1)
            self._retime()
            self._request_decision()

    def _retime(self) -> None:
        """Contention: jobs whose rate changed (a neighbour started or stopped training) finish
        at their new rate (``ClusterState.retimed``)."""
        if not self.state.retimed:
            return
        for job_id, epoch in dict.fromkeys(self.state.take_retimed()):
            rec = self.state.job(job_id)
            if rec.epoch != epoch or rec.state is not JobState.RUNNING:
                continue
            proc = self._procs.pop(job_id, None)
            if proc is not None and proc.is_alive:
                proc.interrupt()
            left = max(0.0, rec.iters_needed - rec.iters_done) / rec.rate
            self._procs[job_id] = _Stretch(self, job_id, epoch, 0.0, left)


class _Start(simpy.Event):
    """An event at the current instant that runs ``callback`` before any event of normal
    priority at this instant: what SimPy schedules to start a process (``Initialize``)."""

    def __init__(self, env: simpy.Environment, callback: Callable[[simpy.Event], None]) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = None
        self._ok = True
        env.schedule(self, URGENT)


class _Stretch:
    """A job's stretch of training on one GPU set, as SimPy callbacks.

    It runs what a SimPy process would (``_train``: a pause, ``job_resumed``, the work, then
    ``_finish``; or, re-timed under contention, only the rest of the work), scheduling the same
    events at the same points (a start event of urgent priority, then its timeouts), without a
    generator per stretch and the interruption and termination events of a process. ``stop``
    ends it at once; SimPy's interruption of a process, an urgent event at the current instant,
    takes effect before any of the process's timeouts could fire, so nothing else changes.
    """

    __slots__ = ("alive", "epoch", "job", "left", "pause_s", "sim")

    def __init__(
        self, sim: Simulation, job: str, epoch: int, pause_s: float, left: float | None
    ) -> None:
        self.sim, self.job, self.epoch = sim, job, epoch
        self.pause_s, self.left = pause_s, left
        self.alive = True
        _Start(sim.env, self._start)

    @property
    def is_alive(self) -> bool:
        return self.alive

    def interrupt(self) -> None:
        """Stop the stretch (a reconfiguration or a re-timing replaced it)."""
        self.alive = False

    def _start(self, _event: simpy.Event) -> None:
        if not self.alive:
            return
        env = self.sim.env
        if self.left is not None:  # re-timed: only the rest of the work
            env.timeout(self.left).callbacks.append(self._done)
        elif self.pause_s > 0:
            env.timeout(self.pause_s).callbacks.append(self._resume)
        else:
            self._resume(_event)

    def _resume(self, _event: simpy.Event) -> None:
        if not self.alive:
            return
        sim = self.sim
        left = sim.state.job_resumed(self.job, self.epoch, float(sim.env.now))
        if left is None:
            self.alive = False
            return
        sim._retime()
        sim.env.timeout(left).callbacks.append(self._done)

    def _done(self, _event: simpy.Event) -> None:
        if not self.alive:
            return
        self.alive = False
        self.sim._finish(self.job, self.epoch)
