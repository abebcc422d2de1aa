"""The cluster state: the one place that checks a policy's decision, applies it, and says what
mechanical work follows. Both drivers own one ``ClusterState`` and feed it their events; neither
re-implements the bookkeeping.

It is deterministic and clock-free: every method takes ``now`` from the driver. It is mutated in
place (copying every GPU and job record per event would dominate a 100k-job simulation); what it
hands to policies is an immutable ``Snapshot``.

Cost is provisioned GPU-seconds: a GPU counts from the moment it starts loading until it is
released, whether loading, busy or warm-idle.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import cast, overload

from mypy_extensions import mypyc_attr

from ptsim.core.estimator import DEFAULT_ESTIMATOR, EstimatorSettings, IterPrior, expected_total
from ptsim.core.profiles import ProfileSet
from ptsim.core.types import (
    DEFAULT_INIT,
    Action,
    Decision,
    GpuState,
    GpuView,
    InitChoice,
    InvalidRequest,
    JobSpec,
    JobState,
    JobView,
    LoadModel,
    Reconfigure,
    RejectJob,
    ReleaseGpu,
    Snapshot,
    expected_iterations,
)

IterationsFn = Callable[[JobSpec, InitChoice], float]
"""Realised iterations to target of a job started from an initial prompt (the driver's model);
deterministic in its arguments (a job's default-prompt count is asked for as well, to measure
the saving)."""

PriorFn = Callable[[JobSpec, InitChoice], IterPrior]
"""What may be known of a job's iterations before it trains, given its initial prompt (the
estimator's prior; the policies see the estimate, never the realised count)."""


ReadingsFn = Callable[[JobSpec, float, float], tuple[float, float] | None]
"""The simulator's accuracy readings: (job, its true iterations, iterations done) -> (fraction of
the way to the target accuracy, iterations at the last evaluation), or None before the first."""

ReadingsUntilFn = Callable[[JobSpec, float], float]
"""Where the simulator's readings next change: (job, iterations done) -> a count up to which
(exclusive) ``ReadingsFn`` gives the same answer as at that many done (its next evaluation)."""


def _base_iterations(spec: JobSpec, init: InitChoice) -> float:
    return float(spec.iterations)


def exact_prior(spec: JobSpec, init: InitChoice) -> IterPrior:
    """The prior of a driver without a convergence model: the job's iterations less the
    expected saving, known exactly."""
    return IterPrior(expected_iterations(spec, init), 0.0)


@dataclass(frozen=True, slots=True)
class FullEvals:
    """The full held-out evaluations ahead of a job's running stretch (screened evaluations,
    ``Mechanics.full_eval_margin``): after each of ``steps`` the job spends ``seconds`` more;
    between them it steps at ``rate`` iterations per second."""

    steps: tuple[float, ...]
    seconds: float
    rate: float


class _Gpu:
    __slots__ = ("gid", "index", "job", "model", "node", "since", "state", "token")

    def __init__(self, gid: int, node: int) -> None:
        self.gid = gid
        self.node = node
        self.state = GpuState.FREE
        self.model: str | None = None
        self.job: str | None = None
        self.since = 0.0
        self.token = 0  # bumped on every load start/cancel so stale load completions are ignored
        self.index: _Index | None = None  # the index it is in (``ClusterState._set_gpu``)


class _Index:
    """The GPUs of one index (free, warm-idle with one model, pre-warming) as an ascending
    list, and as a tuple built from it only when a snapshot asks after a change."""

    __slots__ = ("frozen", "gids")

    def __init__(self, gids: list[int]) -> None:
        self.gids = gids
        self.frozen: tuple[int, ...] | None = None

    def add(self, gid: int) -> None:
        insort(self.gids, gid)
        self.frozen = None

    def remove(self, gid: int) -> None:
        del self.gids[bisect_left(self.gids, gid)]
        self.frozen = None

    def as_tuple(self) -> tuple[int, ...]:
        got = self.frozen
        if got is None:
            got = self.frozen = tuple(self.gids)
        return got


_CHUNK = 64
"""Most views per chunk of ``_Views``. A snapshot copies one reference per chunk and rebuilds
the tuples of the chunks changed since the last one (each a reference per view, and the old
tuple's release), so the chunk trades the one against the other; it is also memory traffic: a
rebuilt chunk touches every view in it, most of them cold. Measured side by side on the
overloaded day (``benchmarks/ab_bench.py``, compiled): 64 against 256 takes 5.7% off
prompttuner, 6.6% off infless and 11% off edf; 32 is no better than 64 (benchmarks/README.md,
thirteenth pass)."""


class JobViews(Sequence[JobView]):
    """An immutable sequence of job views made of tuples (``Snapshot.jobs``, ``queued``):
    the state shares the tuples of the parts that did not change between snapshots."""

    __slots__ = ("_flat", "_len", "_parts")

    def __init__(self, parts: tuple[tuple[JobView, ...], ...], n: int) -> None:
        self._parts = parts
        self._len = n  # sum(map(len, parts))
        self._flat: tuple[JobView, ...] | None = None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[JobView]:
        return chain.from_iterable(self._parts)

    def __reversed__(self) -> Iterator[JobView]:
        return chain.from_iterable(map(reversed, reversed(self._parts)))

    def _tuple(self) -> tuple[JobView, ...]:
        flat = self._flat
        if flat is None:
            flat = self._flat = tuple(chain.from_iterable(self._parts))
        return flat

    @overload
    def __getitem__(self, i: int) -> JobView: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[JobView, ...]: ...
    def __getitem__(self, i: int | slice) -> JobView | tuple[JobView, ...]:
        return self._tuple()[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JobViews | tuple | list):
            return self._tuple() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        return f"JobViews({self._tuple()!r})"


class _Chunk:
    __slots__ = ("at", "frozen", "views")

    def __init__(self) -> None:
        self.views: dict[str, JobView | None] = {}
        self.frozen: tuple[JobView, ...] | None = None
        self.at = 0  # its place among the chunks at the last ``freeze``


class _Views:
    """Job id -> view (None: to be built) in insertion order, like a dict, kept in chunks of
    at most ``size`` views, each with its tuple kept until it changes: ``freeze`` costs
    O(chunks) C-level copying plus the views of the chunks changed since the last one, not
    O(views)."""

    __slots__ = ("_chunks", "_dirty", "_parts", "_size", "_where")

    def __init__(self, size: int = _CHUNK) -> None:
        self._size = size
        self._chunks: list[_Chunk] = []
        self._where: dict[str, _Chunk] = {}
        # the chunks' tuples at the last ``freeze`` (None: chunks came or went since), and the
        # chunks changed since
        self._parts: list[tuple[JobView, ...]] | None = []
        self._dirty: dict[_Chunk, None] = {}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._where

    def __len__(self) -> int:
        return len(self._where)

    def set(self, job_id: str, view: JobView | None) -> None:
        """Set a job's view: in place if it has one, else at the end."""
        chunk = self._where.get(job_id)
        if chunk is None:
            chunks = self._chunks
            if not chunks or len(chunks[-1].views) >= self._size:
                chunks.append(_Chunk())
                self._parts = None
            chunk = self._where[job_id] = chunks[-1]
        chunk.views[job_id] = view
        chunk.frozen = None
        self._dirty[chunk] = None

    def pop(self, job_id: str) -> None:
        """Drop a job's view, if it has one."""
        chunk = self._where.pop(job_id, None)
        if chunk is None:
            return
        del chunk.views[job_id]
        chunk.frozen = None
        self._dirty[chunk] = None
        if not chunk.views:
            self._chunks.remove(chunk)
            self._parts = None
        elif len(self._chunks) > 2 * len(self._where) // self._size + 8:
            self._compact()

    def _compact(self) -> None:
        """Refill the chunks in order (amortised: sparse chunks outnumber full ones 2 to 1)."""
        views = [(j, v) for c in self._chunks for j, v in c.views.items()]
        self._chunks, self._where = [], {}
        for job_id, view in views:
            self.set(job_id, view)
        self._parts = None

    def freeze(self) -> JobViews:
        """The views in order (each must be built)."""
        parts = self._parts
        if parts is None:
            parts = self._parts = []
            for at, chunk in enumerate(self._chunks):
                chunk.at = at
                got = chunk.frozen
                if got is None:
                    got = chunk.frozen = cast(tuple[JobView, ...], tuple(chunk.views.values()))
                parts.append(got)
        else:
            for chunk in self._dirty:
                got = chunk.frozen = cast(tuple[JobView, ...], tuple(chunk.views.values()))
                parts[chunk.at] = got
        self._dirty.clear()
        return JobViews(tuple(parts), len(self._where))


@dataclass(slots=True)
class JobRecord:
    """Everything the state tracks for one job; the per-job metrics are read from here."""

    spec: JobSpec
    state: JobState = JobState.QUEUED
    gpus: list[int] = field(default_factory=list)
    ready: set[int] = field(default_factory=set)
    init: InitChoice | None = None
    iters_needed: float = 0.0  # true iterations to target (realised when the init is chosen)
    iters_default: float = 0.0  # true iterations the default prompt would need (same job draw)
    iters_estimate: float = 0.0  # what policies are told (the prior's median)
    prior: IterPrior | None = None  # set with the initial prompt
    progress_fraction: float | None = None  # last accuracy reading, from the driver
    readings: Callable[[float], tuple[float, float] | None] | None = None  # simulated readings
    readings_until: Callable[[float], float] | None = None  # where ``readings`` next changes
    iters_done: float = 0.0  # at ``progress_at``
    progress_at: float = 0.0
    rate: float = 0.0  # iterations per second while RUNNING
    busy_share: float = 0.0  # contention the rate was set for (ProfileSet.train_step_time)
    full_evals: FullEvals | None = None  # full evaluations in the running stretch (``rate``)
    epoch: int = 0  # bumped on every reconfiguration
    running_gpus: int = 0  # GPU count of the last resume
    active: tuple[int, ...] = ()  # the GPUs of the last Reconfigure issued
    first_start: float | None = None
    first_gpu: float | None = None  # when it was first given a GPU (its queueing ended)
    first_ready: float | None = None  # when its first GPUs were ready (its first pause began)
    finish: float | None = None
    rescales: int = 0
    cold_starts: int = 0
    warm_hits: int = 0
    gpu_seconds: float = 0.0
    pause_s: float = 0.0  # pause charged (hand-over, reconfiguration, bank lookup, step-0 eval)
    pause_until: float = 0.0  # end of the pause in progress (or of the last one)
    lookup_paid: bool = False
    started_once: bool = False
    view: JobView | None = None  # cached, cleared on change
    # the last estimated total and what it was estimated from (prior, readings, iterations
    # done, reading): a view rebuilt without a change of these reuses it
    estimate_memo: tuple[IterPrior, object, float, float | None, float] | None = None


@dataclass
class Totals:
    """Cluster-wide counters (GPU-seconds by state, events of interest)."""

    gpu_seconds: dict[GpuState, float] = field(default_factory=lambda: dict.fromkeys(GpuState, 0.0))
    cold_starts: int = 0
    reloads: int = 0
    warm_hits: int = 0
    prewarms: int = 0
    releases: int = 0
    invalid: int = 0
    rescales: int = 0


@mypyc_attr(allow_interpreted_subclasses=True)
class ClusterState:
    """GPUs on nodes, live and finished jobs, and the rules that keep them consistent."""

    def __init__(
        self,
        num_nodes: int,
        gpus_per_node: int,
        profiles: ProfileSet,
        iterations: IterationsFn = _base_iterations,
        prior: PriorFn = exact_prior,
        estimator: EstimatorSettings = DEFAULT_ESTIMATOR,
        readings: ReadingsFn | None = None,
        readings_until: ReadingsUntilFn | None = None,
    ) -> None:
        if num_nodes < 1 or gpus_per_node < 1:
            raise ValueError("need at least one node with at least one GPU")
        self.profiles = profiles
        self.mech = profiles.mechanics
        self.gpus_per_node = gpus_per_node
        self._iterations = iterations
        self._prior = prior
        self.estimator = estimator
        self._readings = readings
        self._readings_until = readings_until
        self._gpus = [_Gpu(g, g // gpus_per_node) for g in range(num_nodes * gpus_per_node)]
        self._views: list[GpuView] = [GpuView(g.gid, g.node, g.state) for g in self._gpus]
        self._stale_views: dict[int, None] = {}  # GPUs changed since their view was built
        self.jobs: dict[str, JobRecord] = {}  # every job ever added, arrival order
        self._live: dict[str, JobRecord] = {}
        self._queued: dict[str, None] = {}
        # the views of the live and of the queued jobs in the snapshot's order; None for a job
        # touched since the last snapshot (which builds it)
        self._live_views = _Views()
        self._queued_views = _Views()
        # the GPU indexes (a sorted insert or delete per change of a GPU's state)
        self._free = _Index(list(range(len(self._gpus))))
        self._warm_idle: dict[str, _Index] = {}
        self._prewarming = _Index([])
        for g in self._gpus:
            g.index = self._free
        # the snapshot's tuples, kept until a GPU (job) view changes; job views are built when
        # a snapshot needs them, from the record as it stood at its last ``_touch``
        self._gpu_tuple: tuple[GpuView, ...] | None = None
        self._jobs_tuple: JobViews | None = None
        self._queued_tuple: JobViews | None = None
        self._touched: list[str] = []  # jobs whose view changed since the last snapshot
        self._snapshots = 0
        self.counts: dict[GpuState, int] = dict.fromkeys(GpuState, 0)
        self.counts[GpuState.FREE] = len(self._gpus)
        self.totals = Totals()
        self._contention = profiles.contention
        self.retimed: list[tuple[str, int]] = []
        """(job, epoch) of running jobs whose rate changed under contention (a neighbour started
        or stopped training): a driver that times completions re-times them
        (:meth:`take_retimed`)."""

    # ------------------------------------------------------------------ queries

    @property
    def num_gpus(self) -> int:
        return len(self._gpus)

    @property
    def live_jobs(self) -> int:
        return len(self._live)

    @property
    def queued_count(self) -> int:
        return len(self._queued)

    def gpu(self, gid: int) -> GpuView:
        if self._stale_views:
            self._refresh_gpu_views()
        return self._views[gid]

    def _refresh_gpu_views(self) -> None:
        """Rebuild the views of the GPUs changed since they were last built."""
        views, gpus = self._views, self._gpus
        for gid in self._stale_views:
            g = gpus[gid]
            views[gid] = GpuView(gid, g.node, g.state, g.model, g.job, g.since)
        self._stale_views.clear()

    def job(self, job_id: str) -> JobRecord:
        return self.jobs[job_id]

    def progress(self, rec: JobRecord, now: float) -> float:
        """Iterations done by ``now`` (extrapolated while running; a stretch with full
        evaluations ahead steps at their ``rate`` and stands still during each)."""
        if rec.state is JobState.RUNNING:
            full = rec.full_evals
            if full is None:
                return rec.iters_done + rec.rate * (now - rec.progress_at)
            pos, left = rec.iters_done, now - rec.progress_at
            for step in full.steps:
                if step <= pos:
                    continue
                reach = (step - pos) / full.rate
                if left <= reach:
                    return pos + left * full.rate
                pos, left = step, left - reach
                if left <= full.seconds:
                    return pos
                left -= full.seconds
            return pos + left * full.rate
        return rec.iters_done

    def snapshot(self, now: float) -> Snapshot:
        """An immutable picture of the cluster for a policy."""
        warm = {m: ix.as_tuple() for m, ix in sorted(self._warm_idle.items()) if ix.gids}
        gpus = self._gpu_tuple
        if gpus is None:
            if self._stale_views:
                self._refresh_gpu_views()
            gpus = self._gpu_tuple = tuple(self._views)
        changed: list[JobView] = []
        left: list[str] = []
        if self._touched:  # build the views of the jobs touched since the last snapshot
            live, live_views, queued_views = self._live, self._live_views, self._queued_views
            for job_id in dict.fromkeys(self._touched):
                rec = live.get(job_id)
                if rec is None:
                    left.append(job_id)
                    continue
                view = self._view(rec)
                live_views.set(job_id, view)
                if job_id in queued_views:
                    queued_views.set(job_id, view)
                changed.append(view)
            self._touched.clear()
        # (every view is built now: a view is None only for a job touched since the last one)
        jobs = self._jobs_tuple
        if jobs is None:
            jobs = self._jobs_tuple = self._live_views.freeze()
        queued = self._queued_tuple
        if queued is None:
            queued = self._queued_tuple = self._queued_views.freeze()
        self._snapshots += 1
        return Snapshot(
            now=now,
            gpus=gpus,
            jobs=jobs,
            gpus_per_node=self.gpus_per_node,
            free=self._free.as_tuple(),
            warm_idle=warm,
            queued=queued,
            prewarming=self._prewarming.as_tuple(),
            seq=self._snapshots - 1,
            changed=tuple(changed),
            left=tuple(left),
        )

    def _view(self, rec: JobRecord) -> JobView:
        if rec.view is None:
            rec.view = JobView(
                spec=rec.spec,
                state=rec.state,
                gpus=tuple(rec.gpus),
                ready_gpus=len(rec.ready),
                iters_done=rec.iters_done,
                progress_at=rec.progress_at,
                rate=rec.rate if rec.state is JobState.RUNNING else 0.0,
                iters_estimate=self._estimate_total(rec),
                init=rec.init,
                first_start=rec.first_start,
                rescales=rec.rescales,
                prior=rec.prior,
                progress_fraction=rec.progress_fraction,
                estimator=self.estimator,
                readings=rec.readings,
                readings_until=rec.readings_until,
            )
        return rec.view

    def _estimate_total(self, rec: JobRecord) -> float:
        """The estimated total iterations at the job's recorded progress."""
        prior = rec.prior
        if prior is None or prior.sigma == 0.0:
            return max(rec.iters_estimate, rec.iters_done)
        memo = rec.estimate_memo
        if (
            memo is not None
            and memo[0] is prior
            and memo[1] is rec.readings
            and memo[2] == rec.iters_done
            and memo[3] == rec.progress_fraction
        ):
            return memo[4]
        got = rec.readings(rec.iters_done) if rec.readings is not None else None
        if got is not None:
            total = expected_total(prior, rec.iters_done, got[0], self.estimator, got[1])
        else:
            total = expected_total(prior, rec.iters_done, rec.progress_fraction, self.estimator)
        rec.estimate_memo = (prior, rec.readings, rec.iters_done, rec.progress_fraction, total)
        return total

    def _touch(self, rec: JobRecord) -> None:
        """The job's view changed: drop the cached one in the live and queued indexes (the
        next snapshot builds it from the record as it stands then; every change of what a view
        shows is followed by a touch)."""
        rec.view = None
        self._jobs_tuple = None
        job_id = rec.spec.job_id
        self._touched.append(job_id)
        queued = self._queued_views
        if job_id in self._queued or job_id in queued:
            self._queued_tuple = None  # (a job leaving the queue is still in its views)
        if job_id in self._live:
            self._live_views.set(job_id, None)
            if job_id in self._queued:
                queued.set(job_id, None)
            else:
                queued.pop(job_id)
        else:
            self._live_views.pop(job_id)
            queued.pop(job_id)

    # ------------------------------------------------------------------ GPU transitions

    def _set_gpu(
        self, g: _Gpu, state: GpuState, model: str | None, job: str | None, now: float
    ) -> None:
        """Move a GPU to a new state, charging the time spent in the old one."""
        old = g.state
        gid = g.gid
        counts = self.counts
        if old is not GpuState.FREE:
            dt = now - g.since
            self.totals.gpu_seconds[old] += dt
            if g.job is not None:
                self.jobs[g.job].gpu_seconds += dt
        if g.index is not None:
            g.index.remove(gid)
        counts[old] -= 1
        g.state, g.model, g.job, g.since = state, model, job, now
        counts[state] += 1
        index = g.index = self._index(g)
        if index is not None:
            index.add(gid)
        self._stale_views[gid] = None
        self._gpu_tuple = None

    def _index(self, g: _Gpu) -> _Index | None:
        """The free / warm-idle / pre-warming index the GPU belongs in, if any (``_set_gpu``
        keeps it in ``g.index``)."""
        state = g.state
        if state is GpuState.FREE:
            return self._free
        if state is GpuState.WARM:
            if g.model is None:
                return None
            index = self._warm_idle.get(g.model)
            if index is None:
                index = self._warm_idle[g.model] = _Index([])
            return index
        if state is GpuState.LOADING and g.job is None:
            return self._prewarming
        return None

    def _start_load(self, g: _Gpu, model: str, job: str | None, now: float) -> LoadModel:
        reload = g.state is not GpuState.FREE
        if reload:
            self.totals.reloads += 1
        else:
            self.totals.cold_starts += 1
        g.token += 1
        self._set_gpu(g, GpuState.LOADING, model, job, now)
        return LoadModel(g.gid, model, job, g.token, reload)

    # ------------------------------------------------------------------ job transitions

    def add_job(self, spec: JobSpec, now: float) -> None:
        """A job arrives (``now`` is its arrival on the driver's clock)."""
        if spec.job_id in self.jobs:
            raise ValueError(f"duplicate job id {spec.job_id!r}")
        self.profiles.model(spec.model)  # unknown model: fail loudly, listing the known ones
        rec = JobRecord(spec=spec, progress_at=now)
        rec.iters_needed = rec.iters_estimate = rec.iters_default = float(spec.iterations)
        self.jobs[spec.job_id] = rec
        self._live[spec.job_id] = rec
        self._queued[spec.job_id] = None
        self._touch(rec)

    def _settle(self, rec: JobRecord, now: float) -> None:
        """Fold running progress into ``iters_done``; the job stops training."""
        if rec.state is JobState.RUNNING:
            rec.iters_done = min(rec.iters_needed, self.progress(rec, now))
        rec.progress_at = now
        rec.rate = 0.0

    def _choose_init(self, rec: JobRecord, init: InitChoice) -> None:
        rec.init = init
        rec.iters_needed = max(1.0, float(self._iterations(rec.spec, init)))
        rec.iters_default = (
            rec.iters_needed
            if init.source_task is None
            else max(1.0, float(self._iterations(rec.spec, DEFAULT_INIT)))
        )
        rec.prior = self._prior(rec.spec, init)
        rec.iters_estimate = rec.prior.median
        if self._readings is not None:
            rec.readings = partial(self._readings, rec.spec, rec.iters_needed)
            if self._readings_until is not None:
                rec.readings_until = partial(self._readings_until, rec.spec)

    def _reconfigure(self, rec: JobRecord, now: float) -> Reconfigure | None:
        """The job's GPUs changed: if the set it trains on changes, stop it and say on which
        GPUs it trains next (None when that set is unchanged)."""
        # (``rec.ready`` is a subset of ``rec.gpus``)
        ready: tuple[int, ...]
        if len(rec.ready) == len(rec.gpus):
            ready = tuple(rec.gpus)
        elif self.mech.start_partial:
            ready = tuple(g for g in rec.gpus if g in rec.ready)
        else:
            ready = ()
        if not rec.gpus:
            self._queued[rec.spec.job_id] = None
        if ready == rec.active:
            if not ready:
                rec.state = JobState.STARTING if rec.gpus else JobState.QUEUED
            self._touch(rec)
            return None
        was_running = rec.state is JobState.RUNNING
        self._settle(rec, now)
        rec.epoch += 1
        rec.active = ready
        rec.state = JobState.STARTING if rec.gpus else JobState.QUEUED
        self._touch(rec)
        if was_running and self._contention:
            self._recontend(now)
        if not ready:
            return Reconfigure(rec.spec.job_id, (), rec.epoch, 0.0, False)
        first = not rec.started_once
        if first:
            if rec.first_ready is None:
                rec.first_ready = now
            if rec.init is None:
                # the policies see the job as it stood before the default prompt is chosen
                # (until its next change): its view is built now
                self._view(rec)
                self._choose_init(rec, DEFAULT_INIT)
            assert rec.init is not None
            base = self.mech.handover_s + (0.0 if rec.lookup_paid else rec.init.lookup_s)
            base += self.profiles.start_overhead(rec.spec.model)
            rec.lookup_paid = True
        else:
            base = self.mech.reconfig_pause(len(ready))
        # a change during a pause extends that pause, never restarts it: several GPUs ready at
        # one instant cost one pause, and the bank lookup is paid once
        end = max(now + base, rec.pause_until)
        rec.pause_s += end - max(now, rec.pause_until)
        rec.pause_until = end
        return Reconfigure(rec.spec.job_id, ready, rec.epoch, end - now, first)

    def init_realised(self, job_id: str, init: InitChoice) -> None:
        """The driver ran the job's planned bank lookup (the executor runs it on the job's
        first GPU during its first start's pause): record what it chose and really cost.
        The charged pause and the iteration count stay as planned; the tables report the
        realised choice."""
        rec = self.jobs[job_id]
        if rec.init is None:
            raise ValueError(f"init for {job_id}: no planned initial prompt to realise")
        rec.init = init
        self._touch(rec)

    def job_resumed(self, job_id: str, epoch: int, now: float) -> float | None:
        """The pause of reconfiguration ``epoch`` is over: the job trains. Returns the seconds
        until it reaches its target at the new rate, or None if the epoch is stale."""
        rec = self.jobs[job_id]
        if rec.epoch != epoch or rec.state is not JobState.STARTING:
            return None
        ready = [g for g in rec.gpus if g in rec.ready]
        if not ready:
            return None
        n = len(ready)
        if rec.started_once and n != rec.running_gpus:
            rec.rescales += 1
            self.totals.rescales += 1
        if not rec.started_once:
            rec.started_once = True
            rec.first_start = now
        rec.running_gpus = n
        rec.state = JobState.RUNNING
        rec.progress_at = now
        rec.busy_share = self._busy_share(rec) if self._contention else 0.0
        rec.rate = self._stretch_rate(rec, n, rec.busy_share)
        self._touch(rec)
        if self._contention:
            self._recontend(now, rec)
        return max(0.0, rec.iters_needed - rec.iters_done) / rec.rate

    def _stretch_rate(self, rec: JobRecord, gpus: int, share: float) -> float:
        """The job's rate for the running stretch starting at its recorded progress: the
        profile's, or, with full held-out evaluations ahead (``rec.full_evals``, set here),
        the stretch's average, so that it reaches its target when the last one ends."""
        spec = rec.spec
        rate = self.profiles.iters_per_second(spec.model, gpus, spec.batch_size, share)
        rec.full_evals = None
        full = self.profiles.full_eval_time(spec.model, share)
        left = rec.iters_needed - rec.iters_done
        if full <= 0.0 or left <= 0.0:
            return rate
        steps = self._full_eval_steps(rec)
        rec.full_evals = FullEvals(steps, full, rate)
        return left / (left / rate + full * len(steps))

    def _full_eval_steps(self, rec: JobRecord) -> tuple[float, ...]:
        """The steps after the job's progress (up to its target) whose held-out evaluation
        also runs the full evaluation: those whose accuracy reading is within
        ``Mechanics.full_eval_margin`` of the target, and the last (it meets the target)."""
        every, done, total = self.mech.eval_every, rec.iters_done, rec.iters_needed
        near: list[float] = []
        if self.mech.full_eval_margin > 0.0 and rec.readings is not None:
            threshold = 1.0 - self.mech.full_eval_margin
            k = math.floor(done / every) + 1
            while k * every < total:
                got = rec.readings(float(k * every))
                if got is not None and got[0] >= threshold:
                    near.append(float(k * every))
                k += 1
        near.append(total)
        return tuple(near)

    # ------------------------------------------------------------------ contention

    def _busy_gpus(self) -> set[int]:
        """The GPUs running jobs train on."""
        busy: set[int] = set()
        for other in self._live.values():
            if other.state is JobState.RUNNING:
                busy.update(other.active)
        return busy

    def _busy_share(self, rec: JobRecord, busy: set[int] | None = None) -> float:
        """The fraction of the other GPUs on the job's nodes that train another job (``busy``:
        :meth:`_busy_gpus`, when the caller has it)."""
        mine = set(rec.active)
        gpn = self.gpus_per_node
        others = [
            gid
            for node in sorted({g // gpn for g in mine})
            for gid in range(node * gpn, (node + 1) * gpn)
            if gid not in mine
        ]
        if not others:
            return 0.0
        if busy is None:
            busy = self._busy_gpus()
        return sum(g in busy for g in others) / len(others)

    def _recontend(self, now: float, skip: JobRecord | None = None) -> None:
        """A job started or stopped training: re-rate every other running job whose share of
        busy neighbours changed (progress folded in at the old rate)."""
        busy = self._busy_gpus()  # re-rating changes rates, not which jobs train
        for rec in list(self._live.values()):
            if rec is skip or rec.state is not JobState.RUNNING:
                continue
            share = self._busy_share(rec, busy)
            if share == rec.busy_share:
                continue
            self._settle(rec, now)
            rec.busy_share = share
            rec.rate = self._stretch_rate(rec, rec.running_gpus, share)
            self._touch(rec)
            self.retimed.append((rec.spec.job_id, rec.epoch))

    def take_retimed(self) -> list[tuple[str, int]]:
        """The (job, epoch) pairs re-rated since the last call (see ``retimed``)."""
        out, self.retimed = self.retimed, []
        return out

    def set_progress(
        self,
        job_id: str,
        iters_done: float,
        now: float,
        progress_fraction: float | None = None,
    ) -> None:
        """A driver that measures progress (the executor) reports it, with the fraction of
        the way from the initial held-out accuracy to the target at the last evaluation when
        it has one (the estimator uses it; ``None`` keeps the previous reading)."""
        rec = self.jobs[job_id]
        rec.iters_done = iters_done
        rec.progress_at = now
        if progress_fraction is not None:
            rec.progress_fraction = progress_fraction
        self._touch(rec)

    def job_finished(
        self, job_id: str, epoch: int, now: float, iterations: float | None = None
    ) -> bool:
        """The job reached its target; its GPUs become warm-idle. False if the epoch is stale.

        A driver that learns the iterations only by training (the executor) passes the count it
        took as ``iterations``; the simulator's were realised when the initial prompt was set.
        """
        rec = self.jobs[job_id]
        if rec.epoch != epoch or rec.state is not JobState.RUNNING:
            return False
        self._settle(rec, now)
        if iterations is not None:
            rec.iters_needed = float(iterations)
            if rec.init is None or rec.init.source_task is None:
                rec.iters_default = rec.iters_needed  # the default prompt's count is this one
        rec.iters_done = rec.iters_needed
        rec.state = JobState.DONE
        rec.finish = now
        for gid in rec.gpus:
            g = self._gpus[gid]
            if g.state is GpuState.BUSY:
                self._set_gpu(g, GpuState.WARM, g.model, None, now)
            else:  # still loading for the job: keeps loading as a pre-warm
                self._set_gpu(g, GpuState.LOADING, g.model, None, now)
        rec.gpus, rec.ready = [], set()
        del self._live[job_id]
        self._touch(rec)
        if self._contention:
            self._recontend(now)
        return True

    def gpu_ready(self, gid: int, token: int, now: float) -> list[Action]:
        """A model load finished on ``gid``; stale tokens (cancelled loads) are ignored."""
        g = self._gpus[gid]
        if g.token != token or g.state is not GpuState.LOADING:
            return []
        if g.job is None:
            self._set_gpu(g, GpuState.WARM, g.model, None, now)
            return []
        rec = self.jobs[g.job]
        self._set_gpu(g, GpuState.BUSY, g.model, g.job, now)
        rec.ready.add(gid)
        act = self._reconfigure(rec, now)
        return [act] if act else []

    # ------------------------------------------------------------------ decisions

    def apply(self, d: Decision, now: float) -> list[Action]:
        """Check a policy's decision against the invariants, apply what holds, and return the
        mechanical actions (plus an ``InvalidRequest`` for each refused part).

        The phases run in this order: initial prompts, rejections, allocations (checked as a
        whole, then GPUs taken from jobs, then given to jobs, then the jobs whose GPU set
        changed reconfigured), pauses, releases, pre-warms."""
        out: list[Action] = []
        if d.init:
            self._apply_inits(d, out)
        if d.reject:
            self._apply_rejects(d, now, out)
        if d.allocations:
            plans = self._check_allocations(d, out)
            changed = self._take_from_jobs(plans, now)
            self._give_to_jobs(plans, now, out, changed)
            for rec in changed.values():
                act = self._reconfigure(rec, now)
                if act:
                    out.append(act)
        if d.pause:
            self._apply_pauses(d, now, out)
        if d.release:
            self._apply_releases(d, now, out)
        if d.prewarm:
            self._apply_prewarms(d, now, out)
        return out

    def _refuse(self, out: list[Action], what: str) -> None:
        """Count a refused part of a decision and report it as an ``InvalidRequest``."""
        self.totals.invalid += 1
        out.append(InvalidRequest(what))

    def _apply_inits(self, d: Decision, out: list[Action]) -> None:
        """Set the initial prompts of ``d.init`` (by job id); refuses one for a job that is not
        live or already has one."""
        for job_id, init in sorted(d.init.items()):
            rec = self._live.get(job_id)
            if rec is None or rec.init is not None:
                self._refuse(out, f"init for {job_id}: not a live job without an initial prompt")
            else:
                self._choose_init(rec, init)
                self._touch(rec)

    def _apply_rejects(self, d: Decision, now: float, out: list[Action]) -> None:
        """Reject the jobs of ``d.reject`` (a ``RejectJob`` each); refuses a job that is not
        live, holds GPUs or has already run."""
        for job_id in d.reject:
            rec = self._live.get(job_id)
            if rec is None or rec.gpus or rec.started_once:
                self._refuse(
                    out, f"reject {job_id}: only a live job that never ran and holds no GPU"
                )
                continue
            rec.state = JobState.REJECTED
            rec.finish = now
            del self._live[job_id]
            self._queued.pop(job_id, None)
            self._touch(rec)
            out.append(RejectJob(job_id))

    def _check_allocations(self, d: Decision, out: list[Action]) -> dict[str, tuple[int, ...]]:
        """The allocations of ``d`` that hold, by job id (ascending), each as its GPU set
        without duplicates. Refuses one for a job that is not live, with duplicate or unknown
        GPU ids, a count outside the job's range, a GPU given to two jobs, or a GPU held by
        another job that does not give it up in this decision."""
        n = len(self._gpus)
        plans: dict[str, tuple[int, ...]] = {}
        claimed: dict[int, str] = {}
        for job_id, gids in sorted(d.allocations.items()):
            rec = self._live.get(job_id)
            if rec is None:
                self._refuse(out, f"allocation for {job_id}: not a live job")
                continue
            gset = tuple(dict.fromkeys(gids))
            if len(gset) != len(gids) or any(not 0 <= g < n for g in gset):
                self._refuse(out, f"allocation for {job_id}: duplicate or unknown GPU ids")
                continue
            if gset and not rec.spec.min_gpus <= len(gset) <= rec.spec.max_gpus:
                self._refuse(out, f"allocation for {job_id}: {len(gset)} GPUs outside its range")
                continue
            clash = [g for g in gset if g in claimed]
            if clash:
                self._refuse(out, f"allocation for {job_id}: GPU {clash[0]} given to two jobs")
                continue
            for gid in gset:
                claimed[gid] = job_id
            plans[job_id] = gset
        # GPUs given up in this decision may be taken by another job in the same decision.
        for job_id, gset in list(plans.items()):
            for gid in gset:
                holder = self._gpus[gid].job
                if holder is not None and holder != job_id and claimed.get(gid) != holder:
                    giving_up = holder in plans and gid not in plans[holder]
                    if not giving_up:
                        self._refuse(
                            out, f"allocation for {job_id}: GPU {gid} is held by job {holder}"
                        )
                        del plans[job_id]
                        break
        return plans

    def _take_from_jobs(
        self, plans: dict[str, tuple[int, ...]], now: float
    ) -> dict[str, JobRecord]:
        """Take from each planned job the GPUs outside its new set (a busy one becomes
        warm-idle, one still loading for it keeps loading as a pre-warm), first, so that GPUs
        can move between jobs in one decision. Returns the jobs that lost GPUs, by job id."""
        changed: dict[str, JobRecord] = {}
        for job_id, gset in plans.items():
            rec = self._live[job_id]
            keep = set(gset)
            for gid in [x for x in rec.gpus if x not in keep]:
                g = self._gpus[gid]
                if g.state is GpuState.BUSY:
                    self._set_gpu(g, GpuState.WARM, g.model, None, now)
                else:
                    self._set_gpu(g, GpuState.LOADING, g.model, None, now)
                rec.ready.discard(gid)
                rec.gpus.remove(gid)
                changed[job_id] = rec
        return changed

    def _give_to_jobs(
        self,
        plans: dict[str, tuple[int, ...]],
        now: float,
        out: list[Action],
        changed: dict[str, JobRecord],
    ) -> None:
        """Give each planned job the GPUs of its new set it does not hold: a warm GPU of its
        model is a hand-over, a GPU pre-warming its model is adopted (both warm hits), any
        other starts a load (``LoadModel``: a cold start or a reload). Adds the jobs that
        gained GPUs to ``changed``; a job that holds GPUs leaves the queue."""
        for job_id, gset in plans.items():
            rec = self._live[job_id]
            model = rec.spec.model
            for gid in gset:
                if gid in rec.gpus:
                    continue
                g = self._gpus[gid]
                if g.state is GpuState.WARM and g.model == model:
                    self._set_gpu(g, GpuState.BUSY, model, job_id, now)
                    rec.ready.add(gid)
                    rec.warm_hits += 1
                    self.totals.warm_hits += 1
                elif g.state is GpuState.LOADING and g.model == model:
                    self._set_gpu(g, GpuState.LOADING, model, job_id, now)  # adopt a pre-warm
                    rec.warm_hits += 1
                    self.totals.warm_hits += 1
                else:
                    out.append(self._start_load(g, model, job_id, now))
                    rec.cold_starts += 1
                rec.gpus.append(gid)
                if rec.first_gpu is None:
                    rec.first_gpu = now
                changed[job_id] = rec
            if rec.gpus:
                self._queued.pop(job_id, None)

    def _apply_pauses(self, d: Decision, now: float, out: list[Action]) -> None:
        """Pause the jobs of ``d.pause`` on the GPUs they train on (a ``Reconfigure`` on the
        same set, whose pause ends the given seconds after the end of any pause in progress);
        refuses a job that is not live, has not trained yet or is waiting for GPUs, and a
        negative or non-finite pause."""
        for job_id, secs in sorted(d.pause.items()):
            rec = self._live.get(job_id)
            if rec is None or not rec.started_once or not rec.active:
                self._refuse(out, f"pause {job_id}: not a live job training on its GPUs")
                continue
            if not 0.0 <= secs < float("inf"):
                self._refuse(out, f"pause {job_id}: {secs} s is not a finite time >= 0")
                continue
            if secs == 0.0:
                continue
            self._settle(rec, now)
            rec.epoch += 1
            rec.state = JobState.STARTING
            rec.pause_until = max(now, rec.pause_until) + secs
            rec.pause_s += secs
            self._touch(rec)
            out.append(Reconfigure(job_id, rec.active, rec.epoch, rec.pause_until - now, False))

    def _apply_releases(self, d: Decision, now: float, out: list[Action]) -> None:
        """Free the GPUs of ``d.release`` (a ``ReleaseGpu`` each; a load in flight is
        cancelled); refuses an unknown GPU or one that is not warm-idle or pre-warming."""
        n = len(self._gpus)
        for gid in d.release:
            if not 0 <= gid < n:
                self._refuse(out, f"release {gid}: no such GPU")
                continue
            g = self._gpus[gid]
            if g.job is not None or g.state in (GpuState.FREE, GpuState.BUSY):
                self._refuse(out, f"release {gid}: not warm-idle or pre-warming")
                continue
            g.token += 1  # cancels a load in flight
            self._set_gpu(g, GpuState.FREE, None, None, now)
            self.totals.releases += 1
            out.append(ReleaseGpu(gid))

    def _apply_prewarms(self, d: Decision, now: float, out: list[Action]) -> None:
        """Start loading the models of ``d.prewarm`` on their GPUs (a ``LoadModel`` for no
        job; nothing when the GPU is already warm with that model); refuses an unknown GPU or
        one that is not free or warm-idle, and fails loudly on an unknown model."""
        n = len(self._gpus)
        for gid, model in sorted(d.prewarm.items()):
            if not 0 <= gid < n:
                self._refuse(out, f"prewarm {gid}: no such GPU")
                continue
            g = self._gpus[gid]
            if g.job is not None or g.state not in (GpuState.FREE, GpuState.WARM):
                self._refuse(out, f"prewarm {gid}: not free or warm-idle")
                continue
            if g.state is GpuState.WARM and g.model == model:
                continue
            self.profiles.model(model)
            self.totals.prewarms += 1
            out.append(self._start_load(g, model, None, now))

    # ------------------------------------------------------------------ end of run

    def close(self, now: float) -> None:
        """Charge every provisioned GPU up to ``now`` (the end of the run)."""
        self._refresh_gpu_views()
        for g in self._gpus:
            if g.state is not GpuState.FREE:
                dt = now - g.since
                self.totals.gpu_seconds[g.state] += dt
                if g.job is not None:
                    self.jobs[g.job].gpu_seconds += dt
                g.since = now
        for rec in self._live.values():
            self._settle(rec, now)

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (used by tests)."""
        holders: dict[int, str] = {}
        for rec in self._live.values():
            for gid in rec.gpus:
                assert gid not in holders, f"GPU {gid} held by {holders[gid]} and {rec.spec.job_id}"
                holders[gid] = rec.spec.job_id
                g = self._gpus[gid]
                assert g.job == rec.spec.job_id, f"GPU {gid} does not point back to its job"
            assert rec.ready <= set(rec.gpus)
        for g in self._gpus:
            if g.job is not None:
                assert holders.get(g.gid) == g.job, f"GPU {g.gid} points to a non-holder"
            assert (g.state is GpuState.FREE) == (g.gid in self._free.gids)
            index = self._index(g)
            assert g.index is index, f"GPU {g.gid} in the wrong index"
            assert index is None or g.gid in index.gids, f"GPU {g.gid} missing from its index"
        indexed = [self._free, self._prewarming, *self._warm_idle.values()]
        assert sum(len(ix.gids) for ix in indexed) == sum(
            self._index(g) is not None for g in self._gpus
        ), "a GPU left in an index it does not belong to"
        for ix in indexed:
            assert ix.gids == sorted(set(ix.gids)), "an index out of order"
        assert sum(self.counts.values()) == len(self._gpus)


SERIES_COLUMNS = ("time_s", "free", "loading", "warm", "busy", "live_jobs", "queued_jobs")
SeriesRow = tuple[float, int, int, int, int, int, int]


class SeriesRecorder:
    """The cluster time series both drivers write: GPUs per state and live/queued jobs, one row
    per instant at which they changed (the last change at an instant wins), at most one row per
    ``interval_s`` apart from forced ones (the first and last)."""

    def __init__(self, interval_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self.rows: list[SeriesRow] = []

    def record(self, state: ClusterState, now: float, force: bool = False) -> None:
        c = state.counts
        row = (
            now,
            c[GpuState.FREE],
            c[GpuState.LOADING],
            c[GpuState.WARM],
            c[GpuState.BUSY],
            state.live_jobs,
            state.queued_count,
        )
        rows = self.rows
        if rows and rows[-1][0] == now:
            rows[-1] = row
        elif force or not rows or now - rows[-1][0] >= self.interval_s:
            if rows and rows[-1][1:] == row[1:] and not force:
                return
            rows.append(row)
