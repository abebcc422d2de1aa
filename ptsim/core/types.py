"""Value types shared by the policies and both drivers: jobs, GPUs, snapshots, decisions, actions.

Everything here is immutable. Times are seconds on the driver's clock (simulated seconds in
ptsim, seconds since the run started in ptexec). Ids are plain strings (jobs) and ints (GPUs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from ptsim.core.estimator import (
    DEFAULT_ESTIMATOR,
    EstimatorSettings,
    IterEstimate,
    IterPrior,
    estimate,
    remaining_mean_sd,
)

EMPTY_MAP: Mapping[str, tuple[int, ...]] = MappingProxyType({})


class GpuState(StrEnum):
    """Life cycle of a GPU: free -> loading(model) -> warm(model) <-> busy(job) -> free."""

    FREE = "free"
    LOADING = "loading"
    WARM = "warm"
    BUSY = "busy"


class JobState(StrEnum):
    """Life cycle of a job as the core sees it."""

    QUEUED = "queued"  # admitted or waiting, holds no GPU
    STARTING = "starting"  # holds GPUs, waiting for loads or a reconfiguration pause
    RUNNING = "running"  # training on all of its ready GPUs
    DONE = "done"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a user submitted: one prompt-tuning job.

    ``iterations`` is the number of iterations the job needs to reach its target when it starts
    from the default initial prompt (simulation); the executor uses ``target`` instead.
    ``num_gpus`` is the count the user asked for (the trace's value); ``min_gpus``/``max_gpus`` the
    range an elastic policy may use.
    """

    job_id: str
    arrival: float
    model: str
    task: str
    deadline: float
    batch_size: int
    iterations: int
    num_gpus: int = 1
    min_gpus: int = 1
    max_gpus: int = 8

    def __post_init__(self) -> None:
        if not self.job_id:
            raise ValueError("job_id must be non-empty")
        if self.arrival < 0:
            raise ValueError(f"job {self.job_id}: arrival {self.arrival} < 0")
        if self.deadline < self.arrival:
            raise ValueError(f"job {self.job_id}: deadline {self.deadline} before arrival")
        if self.batch_size < 1 or self.iterations < 1:
            raise ValueError(f"job {self.job_id}: batch_size and iterations must be >= 1")
        if not 1 <= self.min_gpus <= self.max_gpus:
            raise ValueError(f"job {self.job_id}: need 1 <= min_gpus <= max_gpus")
        if not self.min_gpus <= self.num_gpus <= self.max_gpus:
            raise ValueError(f"job {self.job_id}: num_gpus outside [min_gpus, max_gpus]")


@dataclass(frozen=True, slots=True)
class InitChoice:
    """The initial prompt chosen for a job (by the Prompt Bank, or the default one).

    ``source`` is the bank entry id (``None`` for the default prompt); ``source_task`` its task;
    ``layout`` the bank layout the lookup searched (``"none"`` without a lookup);
    ``assessments`` the number of score assessments the lookup made; ``lookup_s`` their cost in
    seconds, charged on the job's first GPU; ``expected_saving`` the fraction of iterations it is
    expected to save against the default prompt (what the convergence model predicts; 0 when
    unknown, as in the executor). ``expected_iterations`` turns it into an iteration estimate.
    """

    source: str | None = None
    source_task: str | None = None
    layout: str = "none"
    assessments: int = 0
    lookup_s: float = 0.0
    expected_saving: float = 0.0


DEFAULT_INIT = InitChoice()


def expected_iterations(spec: JobSpec, init: InitChoice) -> float:
    """Iterations to target expected for ``spec`` started from ``init``: the default prompt's
    count less the choice's expected saving, at least 1. The cluster state tells policies this
    estimate once the initial prompt is set; a policy that chooses the prompt itself uses it for
    the decision being built."""
    return max(1.0, spec.iterations * (1.0 - init.expected_saving))


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as a policy sees it. ``model`` is set when loading or warm or busy; ``job`` when
    the GPU is held by (busy for, or loading for) a job."""

    gid: int
    node: int
    state: GpuState
    model: str | None = None
    job: str | None = None
    since: float = 0.0

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        gid: int,
        node: int,
        state: GpuState,
        model: str | None = None,
        job: str | None = None,
        since: float = 0.0,
    ) -> None:
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "job", job)
        object.__setattr__(self, "since", since)


@dataclass(frozen=True, slots=True)
class JobView:
    """One live job as a policy sees it."""

    spec: JobSpec
    state: JobState
    gpus: tuple[int, ...]
    ready_gpus: int  # how many of ``gpus`` hold the model and can train
    iters_done: float  # at time ``progress_at``
    progress_at: float
    rate: float  # iterations per second while running, else 0
    iters_estimate: float  # estimated total iterations to target (the true count is hidden)
    init: InitChoice | None  # None until an initial prompt is chosen
    first_start: float | None  # when the job first trained, if it has
    rescales: int
    # what is known of the iterations before training (None: ``iters_estimate`` exactly)
    prior: IterPrior | None = None
    # fraction of the way from the initial held-out accuracy to the target, when measured
    # (at ``iters_done``; reported by the executor)
    progress_fraction: float | None = None
    estimator: EstimatorSettings = DEFAULT_ESTIMATOR
    # the simulator's accuracy readings: iterations done -> (fraction, iterations at the last
    # evaluation), or None before the first (a noisy reading; never the true count)
    readings: Callable[[float], tuple[float, float] | None] | None = None
    # where ``readings`` next changes: iterations done -> a count up to which (exclusive) it
    # answers as at that many done (None: unknown; a policy caching estimates must re-read)
    readings_until: Callable[[float], float] | None = None

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        spec: JobSpec,
        state: JobState,
        gpus: tuple[int, ...],
        ready_gpus: int,
        iters_done: float,
        progress_at: float,
        rate: float,
        iters_estimate: float,
        init: InitChoice | None,
        first_start: float | None,
        rescales: int,
        prior: IterPrior | None = None,
        progress_fraction: float | None = None,
        estimator: EstimatorSettings = DEFAULT_ESTIMATOR,
        readings: Callable[[float], tuple[float, float] | None] | None = None,
        readings_until: Callable[[float], float] | None = None,
    ) -> None:
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "gpus", gpus)
        object.__setattr__(self, "ready_gpus", ready_gpus)
        object.__setattr__(self, "iters_done", iters_done)
        object.__setattr__(self, "progress_at", progress_at)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "iters_estimate", iters_estimate)
        object.__setattr__(self, "init", init)
        object.__setattr__(self, "first_start", first_start)
        object.__setattr__(self, "rescales", rescales)
        object.__setattr__(self, "prior", prior)
        object.__setattr__(self, "progress_fraction", progress_fraction)
        object.__setattr__(self, "estimator", estimator)
        object.__setattr__(self, "readings", readings)
        object.__setattr__(self, "readings_until", readings_until)

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def uncertain(self) -> bool:
        """Whether the iterations to target are uncertain (a prior with a spread)."""
        return self.prior is not None and self.prior.sigma > 0.0

    def done_at(self, now: float) -> float:
        """Iterations done by ``now``, extrapolated at the current rate (capped at the
        estimate when the iterations are known exactly)."""
        done = self.iters_done + self.rate * (now - self.progress_at)
        return done if self.uncertain else min(self.iters_estimate, done)

    def remaining_at(self, now: float) -> float:
        """Estimated iterations still needed at ``now`` (:meth:`estimate_at`'s remaining)."""
        if self.uncertain:
            return self.estimate_at(now).remaining
        return max(0.0, self.iters_estimate - self.done_at(now))

    def estimate_at(self, now: float) -> IterEstimate:
        """The estimator's view of the job at ``now`` (``ptsim.core.estimator.estimate`` of its
        prior, the iterations done by then and the last accuracy reading): expected total and
        remaining, the remaining's standard deviation and 90th percentile."""
        prior = self.prior if self.prior is not None else IterPrior(max(self.iters_estimate, 1.0))
        done = self.iters_done + self.rate * (now - self.progress_at)
        if self.readings is not None:
            got = self.readings(done)
            if got is not None:
                return estimate(prior, done, got[0], self.estimator, got[1])
        return estimate(prior, done, self.progress_fraction, self.estimator, self.iters_done)

    def remaining_sd_at(self, now: float) -> tuple[float, float]:
        """:meth:`estimate_at`'s (remaining, remaining_sd) at ``now``, without the percentile."""
        prior = self.prior if self.prior is not None else IterPrior(max(self.iters_estimate, 1.0))
        done = self.iters_done + self.rate * (now - self.progress_at)
        if self.readings is not None:
            got = self.readings(done)
            if got is not None:
                return remaining_mean_sd(prior, done, got[0], self.estimator, got[1])
        return remaining_mean_sd(
            prior, done, self.progress_fraction, self.estimator, self.iters_done
        )


@dataclass(frozen=True)
class Snapshot:
    """The cluster at one instant: what every policy decides from.

    ``gpus`` is indexed by gid. ``jobs`` holds live jobs (not done, not rejected) in arrival
    order; ``queued`` those of them that hold no GPU. ``free`` and ``warm_idle`` are the gids of
    free GPUs, of idle warm GPUs per model and of GPUs loading a model for no job (pre-warming),
    ascending. The cluster state keeps these indexes so that policies need not scan every GPU
    and job; ``seq``, ``changed`` and ``left`` say what changed since its previous snapshot.
    """

    now: float
    gpus: tuple[GpuView, ...]
    jobs: Sequence[JobView]
    gpus_per_node: int
    free: tuple[int, ...]
    warm_idle: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: EMPTY_MAP)
    queued: Sequence[JobView] = ()
    prewarming: tuple[int, ...] = ()
    # for policies that work incrementally: ``seq`` numbers the state's snapshots (-1: not
    # numbered), ``changed`` holds the views of the live jobs whose view changed (or that
    # arrived) since snapshot ``seq - 1`` and ``left`` the ids of the jobs that left since then
    seq: int = -1
    changed: tuple[JobView, ...] = ()
    left: tuple[str, ...] = ()
    # ``jobs_by_id`` once built (an attribute, not ``functools.cached_property``: the compiled
    # build's classes have no ``__dict__`` and would rebuild the mapping at every access)
    _by_id: Mapping[str, JobView] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        now: float,
        gpus: tuple[GpuView, ...],
        jobs: Sequence[JobView],
        gpus_per_node: int,
        free: tuple[int, ...],
        warm_idle: Mapping[str, tuple[int, ...]] = EMPTY_MAP,
        queued: Sequence[JobView] = (),
        prewarming: tuple[int, ...] = (),
        seq: int = -1,
        changed: tuple[JobView, ...] = (),
        left: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "gpus", gpus)
        object.__setattr__(self, "jobs", jobs)
        object.__setattr__(self, "gpus_per_node", gpus_per_node)
        object.__setattr__(self, "free", free)
        object.__setattr__(self, "warm_idle", warm_idle)
        object.__setattr__(self, "queued", queued)
        object.__setattr__(self, "prewarming", prewarming)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "changed", changed)
        object.__setattr__(self, "left", left)
        object.__setattr__(self, "_by_id", None)

    @property
    def num_gpus(self) -> int:
        return len(self.gpus)

    @property
    def jobs_by_id(self) -> Mapping[str, JobView]:
        """The live jobs by id (built at the first access, then kept)."""
        got = self._by_id
        if got is None:
            got = MappingProxyType({j.job_id: j for j in self.jobs})
            object.__setattr__(self, "_by_id", got)
        return got

    def warm_idle_of(self, model: str) -> tuple[int, ...]:
        return self.warm_idle.get(model, ())


@dataclass(frozen=True)
class Decision:
    """What a policy wants, applied by the core's cluster state.

    - ``allocations``: job id -> the GPU set the job should hold from now on. Jobs not listed
      keep what they have; an empty tuple takes every GPU from the job (it goes back to the
      queue). GPUs the job gives up become warm-idle.
    - ``reject``: jobs refused at admission (counted as SLO violations).
    - ``init``: job id -> the initial prompt chosen for it (a job gets one once).
    - ``prewarm``: gid -> model to load on a free or warm-idle GPU with no job.
    - ``release``: warm-idle (or pre-warming) GPUs to hand back; they stop costing money.
    - ``wake_at``: when the policy wants to be asked again even if nothing happens.
    - ``pause``: job id -> seconds the job stops training now while keeping its GPUs (a
      per-decision overhead, as ElasticFlow's simulator charges every running job at every
      scheduling event); added to a pause already in progress. Only for a job that has
      trained and whose GPUs are all ready; applied after the allocations.
    """

    allocations: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    reject: tuple[str, ...] = ()
    init: Mapping[str, InitChoice] = field(default_factory=dict)
    prewarm: Mapping[int, str] = field(default_factory=dict)
    release: tuple[int, ...] = ()
    wake_at: float | None = None
    pause: Mapping[str, float] = field(default_factory=dict)

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        allocations: Mapping[str, tuple[int, ...]] | None = None,
        reject: tuple[str, ...] = (),
        init: Mapping[str, InitChoice] | None = None,
        prewarm: Mapping[int, str] | None = None,
        release: tuple[int, ...] = (),
        wake_at: float | None = None,
        pause: Mapping[str, float] | None = None,
    ) -> None:
        object.__setattr__(self, "allocations", {} if allocations is None else allocations)
        object.__setattr__(self, "reject", reject)
        object.__setattr__(self, "init", {} if init is None else init)
        object.__setattr__(self, "prewarm", {} if prewarm is None else prewarm)
        object.__setattr__(self, "release", release)
        object.__setattr__(self, "wake_at", wake_at)
        object.__setattr__(self, "pause", {} if pause is None else pause)


NO_DECISION = Decision()


# ---------------------------------------------------------------------------------------------
# Actions: the mechanical work a driver carries out after the state accepted a decision.


@dataclass(frozen=True, slots=True)
class LoadModel:
    """Start loading ``model`` on ``gid`` (a cold start, or a reload over another model).
    The driver calls ``ClusterState.gpu_ready(gid, token)`` when it is done."""

    gid: int
    model: str
    job: str | None
    token: int
    reload: bool

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        gid: int,
        model: str,
        job: str | None,
        token: int,
        reload: bool,
    ) -> None:
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "job", job)
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "reload", reload)


@dataclass(frozen=True, slots=True)
class ReleaseGpu:
    """Unload ``gid`` and give it back: it stops being provisioned."""

    gid: int


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Job ``job`` now trains on ``gpus`` (its ready GPUs): the driver stops what the job was
    doing, pauses ``pause_s`` (hand-over, reconfiguration and, on its first start, the bank
    lookup), then calls ``ClusterState.job_resumed(job, epoch, now)``. ``gpus`` empty means the
    job stopped training (it waits for GPUs)."""

    job: str
    gpus: tuple[int, ...]
    epoch: int
    pause_s: float
    first: bool

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        job: str,
        gpus: tuple[int, ...],
        epoch: int,
        pause_s: float,
        first: bool,
    ) -> None:
        object.__setattr__(self, "job", job)
        object.__setattr__(self, "gpus", gpus)
        object.__setattr__(self, "epoch", epoch)
        object.__setattr__(self, "pause_s", pause_s)
        object.__setattr__(self, "first", first)


@dataclass(frozen=True, slots=True)
class RejectJob:
    job: str


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A part of a decision the state refused (an invariant would have broken)."""

    what: str


Action = LoadModel | ReleaseGpu | Reconfigure | RejectJob | InvalidRequest
