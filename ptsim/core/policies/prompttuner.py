"""PromptTuner's Workload Scheduler (Gao et al., arXiv 2603.05087; DESIGN.md section 4), with the
Prompt Bank lookup for every new job.

What the paper states, and what this policy does for it:

- Prompt Bank: every new job gets its initial prompt from the bank (``ctx.bank.choose``); the
  lookup's assessment time is charged by the driver on the job's first start, and the policy
  counts it in the job's predicted finish. Off with ``bank=False`` or when the run has no bank.
- Deadline-aware, cost-minimising allocation: each job gets the smallest GPU count whose
  predicted finish meets its deadline. Warm GPUs (model loaded) are reused across jobs of the
  same LLM so most jobs start without a cold start. Allocations are revisited as jobs progress.
- A warm pool of GPUs per LLM, so that arrivals find loaded GPUs.

The rest is ours, each choice a knob of ``PromptTunerConfig``:

- Order: earliest deadline first (``order="edf"``) or least slack (``"least_slack"``). Jobs that
  cannot meet their deadline even in the best case (warm GPUs now, fastest count) are planned
  after the others (``defer_hopeless``): an EDF queue that serves them first lets them drag
  feasible jobs past their deadlines too.
- Prediction (``planning.Predictor``): remaining iterations at the profile's step time, plus the
  cold start of free GPUs, the reload of warm GPUs of another model, the rest of the load of
  GPUs pre-warming the model, the hand-over and Prompt Bank lookup at the first start and the
  reconfiguration pause on later changes; a job trains on its ready GPUs while others load.
  A finish "meets" the deadline when the time to it, inflated by ``safety_margin``, fits.
- GPU sources: warm GPUs of the job's model, then GPUs pre-warming it, then free GPUs (cold
  start), then warm GPUs of another model (reload; ``allow_reload``), the order of
  ``common.GpuPool.take``.
- No count meets the deadline: the fastest count the pool can give (``hopeless="fastest"``) or
  the job's minimum (``"min"``). Never rejects unless ``reject_hopeless`` (off by default).
- Elasticity (``elasticity``): after queued jobs are placed, leftover GPUs go to running jobs
  at risk (predicted finish misses the deadline with the margin), each grown to the smallest
  count that meets it again, counting the pause and any cold start (if none does, to the count
  that finishes soonest, when that beats staying put and ``hopeless="fastest"``). A running job
  shrinks to the smallest count that meets its deadline with the margin plus
  ``shrink_hysteresis``, if the GPU-seconds saved over its remaining run, net of the pause, pay
  for the freed GPUs' idle time (``keep_alive_s`` each with the warm pool on), and at most once
  per ``min_rescale_interval_s``. Growth happens only at risk and shrinking only well ahead, so
  the band between them stops thrashing. Off: a job keeps the count chosen at its start.
  A job's iterations are what the estimator says (``ptsim.core.estimator``: the prior from the
  convergence model, truncated at the steps done, refined by accuracy readings), so a job
  that runs past its expected length looks longer and falls behind, and one whose accuracy
  climbs fast looks shorter and gets ahead; when they are uncertain, the at-risk and shrink
  tests and the growth plan use the expected remaining plus ``uncertainty_z`` standard
  deviations of it.
- Re-planning at every event and every ``replan_s`` seconds (a fixed grid, so wake-ups from
  different decisions coincide).
- Warm pool (``warm_pool``): per model, an exponentially weighted arrival rate (time constant
  ``rate_window_s``, from the arrivals seen in snapshots) times the model's cold start gives the
  expected arrivals in the next cold-start window; the ``pool_quantile`` quantile of a Poisson
  count with that mean, times the mean GPU count the policy gave that model's jobs, is the
  pool's target size (at least ``pool_min`` for a model that has had arrivals). Free GPUs (then
  idle GPUs beyond another model's target, by reload) are pre-warmed up to the target when no
  job is waiting for GPUs; idle warm GPUs beyond it are released once idle ``keep_alive_s``.
  Off: no pre-warming, and idle warm GPUs are released in the decision that finds them idle
  (after queued jobs had their pick: a job that ends still hands its GPUs over).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from mypy_extensions import mypyc_attr

from ptsim.core.policies.common import GpuPool
from ptsim.core.policies.planning import (
    COUNT_MODES,
    ArrivalTracker,
    PlannedWindow,
    Predictor,
    counts_for,
    lookup_due,
    meets,
    pick_count,
    planned_remaining,
    planned_window,
    pool_supply,
    remaining_iters,
)
from ptsim.core.policy import POLICIES, InitChooser, PolicyContext
from ptsim.core.types import (
    Decision,
    InitChoice,
    JobSpec,
    JobState,
    JobView,
    Snapshot,
    expected_iterations,
)

ORDERS = ("edf", "least_slack")
HOPELESS = ("fastest", "min")

# what ``_running`` found a running job to be for a window of time (``_Window``)
_QUIET, _AT_RISK, _CHECK = 0, 1, 2
_TOL_S = 1e-3  # a bound must settle a test by this many seconds (far above rounding error)
_MAX_WINDOW_S = 3600.0

_Window = tuple[JobView, float, float, int, float]
"""(the view it holds for, from, until, kind, a lower bound on the job's planned remaining
throughout): kind ``_QUIET`` (not at risk, no shrink: nothing to do), ``_AT_RISK`` (at risk
throughout) or ``_CHECK`` (re-evaluate the job at every decision until then)."""
_EXPIRY_PER_S = 2.0  # buckets per second of window end (a power of two: exact scaling)


def _bucket(t: float) -> int:
    """``_Expiry``'s bucket of time ``t``: never decreasing in ``t``, all ``_Expiry`` needs."""
    return int(t * _EXPIRY_PER_S)


class _Expiry:
    """Jobs' window ends, to be taken once each has passed: ``due(now)`` returns every job
    pushed with an end before ``now`` and not returned yet (in no particular order: ``_running``
    treats each alone), ``push`` adds one. Kept in buckets of end time (``_bucket``), so a push
    and a take cost a dictionary step rather than a heap's ~10 tuple comparisons each (a job
    gets a window at every reading, and ~1 s ones near a threshold)."""

    def __init__(self) -> None:
        self._buckets: dict[int, list[tuple[float, str]]] = {}
        self._lo = 0  # no entry sits in a bucket below this one

    def clear(self) -> None:
        self._buckets.clear()
        self._lo = 0

    def push(self, end: float, job_id: str) -> None:
        if end == math.inf:
            return  # never due
        b = _bucket(end)
        got = self._buckets.get(b)
        if got is None:
            if not self._buckets or b < self._lo:
                self._lo = b
            self._buckets[b] = [(end, job_id)]
        else:
            got.append((end, job_id))

    def due(self, now: float) -> list[str]:
        """The jobs whose window ends before ``now``. A bucket below ``now``'s holds only ends
        before ``now`` (``_bucket`` never decreases), so only ``now``'s own bucket is sorted
        through."""
        buckets = self._buckets
        out: list[str] = []
        if not buckets:
            return out
        top = _bucket(now)
        lo = self._lo
        if top - lo > len(buckets):  # a long gap: visit the buckets, not the indices
            for b in sorted([k for k in buckets if k < top]):
                for e in buckets.pop(b):
                    out.append(e[1])
        else:
            while lo < top:
                got = buckets.pop(lo, None)
                if got is not None:
                    for e in got:
                        out.append(e[1])
                lo += 1
        self._lo = top
        cur = buckets.get(top)
        if cur is not None:
            keep: list[tuple[float, str]] = []
            for e in cur:
                if e[0] < now:
                    out.append(e[1])
                else:
                    keep.append(e)
            if not keep:
                del buckets[top]
            elif len(keep) < len(cur):
                buckets[top] = keep
        return out


def _eligible(job: JobView) -> bool:
    """Whether ``_running`` evaluates a running job: not queued, not in the middle of a change."""
    return job.state is JobState.RUNNING and job.ready_gpus == len(job.gpus) and job.rate > 0


@dataclass(frozen=True)
class PromptTunerConfig:
    """Knobs of the ``prompttuner`` policy (module docstring: what each design choice is).

    - ``bank``: look up each new job's initial prompt in the Prompt Bank (ablation switch).
    - ``order``: queue order, ``edf`` or ``least_slack``.
    - ``counts``: GPU counts a job may get: ``any`` in its range, or ``pow2``.
    - ``safety_margin``: predicted time to finish x (1 + margin) must fit before the deadline.
    - ``hopeless``: count for a job no count can save: ``fastest`` or ``min``.
    - ``defer_hopeless``: plan jobs that cannot make it even in the best case after the others.
    - ``reject_hopeless``: reject such jobs at admission instead (counted as violations).
    - ``elasticity``: grow jobs at risk and shrink jobs well ahead (ablation switch).
    - ``uncertainty_z``: a running job whose iterations are uncertain is re-planned on the
      estimator's expected remaining plus this many of its standard deviations.
    - ``shrink_hysteresis``: extra margin a smaller count must meet before a job shrinks.
    - ``min_rescale_interval_s``: a job shrinks at most once per this many seconds.
    - ``replan_s``: re-plan at least this often while jobs are live.
    - ``warm_pool``: keep a forecast-sized warm pool per model (ablation switch).
    - ``keep_alive_s``: idle warm GPUs beyond the pool's target are released after this long.
    - ``rate_window_s``: time constant of the exponentially weighted arrival rate.
    - ``pool_quantile``: quantile of the Poisson arrival count over a cold-start window that
      the pool covers.
    - ``pool_min``: warm GPUs kept per model that has had arrivals, whatever the forecast.
    - ``allow_reload``: take warm GPUs of another model (reload) when free ones run out.
    """

    bank: bool = True
    order: str = "edf"
    counts: str = "any"
    safety_margin: float = 0.1
    hopeless: str = "fastest"
    defer_hopeless: bool = True
    reject_hopeless: bool = False
    elasticity: bool = True
    uncertainty_z: float = 1.0
    shrink_hysteresis: float = 0.25
    min_rescale_interval_s: float = 30.0
    replan_s: float = 5.0
    warm_pool: bool = True
    keep_alive_s: float = 60.0
    rate_window_s: float = 120.0
    pool_quantile: float = 0.8
    pool_min: int = 0
    allow_reload: bool = True

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.counts not in COUNT_MODES:
            raise ValueError(f"counts must be one of {', '.join(COUNT_MODES)}")
        if self.hopeless not in HOPELESS:
            raise ValueError(f"hopeless must be one of {', '.join(HOPELESS)}")
        if self.safety_margin < 0 or self.shrink_hysteresis < 0 or self.uncertainty_z < 0:
            raise ValueError("safety_margin, shrink_hysteresis and uncertainty_z must be >= 0")
        if self.replan_s <= 0 or self.rate_window_s <= 0:
            raise ValueError("replan_s and rate_window_s must be > 0")
        if self.keep_alive_s < 0 or self.min_rescale_interval_s < 0 or self.pool_min < 0:
            raise ValueError("keep_alive_s, min_rescale_interval_s and pool_min must be >= 0")
        if not 0 < self.pool_quantile < 1:
            raise ValueError("pool_quantile must be in (0, 1)")


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(Poisson(mean) <= k) >= q."""
    if mean <= 0:
        return 0
    k, pmf = 0, math.exp(-mean)
    cdf = pmf
    while cdf < q and k < 100_000:
        k += 1
        pmf *= mean / k
        cdf += pmf
    return k


class Demand:
    """Per model: an exponentially weighted arrival rate (time constant ``window_s``) and the
    mean GPU count of its jobs' starts (exponentially weighted, factor ``alpha``)."""

    def __init__(self, window_s: float, alpha: float = 0.2) -> None:
        self.window_s = window_s
        self.alpha = alpha
        self._level: dict[str, tuple[float, float]] = {}  # model -> (rate, at time)
        self._gpus: dict[str, float] = {}

    def arrival(self, model: str, t: float) -> None:
        rate, at = self._level.get(model, (0.0, t))
        t = max(t, at)
        self._level[model] = (rate * math.exp(-(t - at) / self.window_s) + 1.0 / self.window_s, t)

    def rate(self, model: str, now: float) -> float:
        """Arrivals per second of ``model`` at ``now``."""
        level = self._level.get(model)
        if level is None:
            return 0.0
        rate, at = level
        return rate * math.exp(-max(0.0, now - at) / self.window_s)

    def started(self, model: str, gpus: int) -> None:
        old = self._gpus.get(model)
        self._gpus[model] = gpus if old is None else old + self.alpha * (gpus - old)

    def mean_gpus(self, model: str) -> float:
        return self._gpus.get(model, 1.0)

    def models(self) -> list[str]:
        return sorted(self._level)


@mypyc_attr(allow_interpreted_subclasses=True)
class PromptTuner:
    """The PromptTuner policy (see the module docstring)."""

    name = "prompttuner"

    def __init__(self, ctx: PolicyContext, cfg: PromptTunerConfig) -> None:
        self.cfg = cfg
        self.profiles = ctx.profiles
        self.bank: InitChooser | None = ctx.bank if cfg.bank else None
        self.pred = Predictor(ctx.profiles)
        self.arrivals = ArrivalTracker()
        self.demand = Demand(cfg.rate_window_s)
        self._changed: dict[str, float] = {}  # job -> when this policy last set its GPUs
        # job -> (what the entry was computed from, queue key, time it becomes hopeless)
        self._queue_keys: dict[
            str, tuple[tuple[float, float, bool], tuple[float, float, str], float]
        ] = {}
        self._below: dict[tuple[str, int, int, int, int], tuple[float, float]] = {}
        # re-planning running jobs incrementally (``_running``)
        self._seq = -2  # the last snapshot's number
        self._pos: dict[str, int] = {}  # job -> its place in the snapshots' job order
        self._next_pos = 0
        self._windows: dict[str, _Window] = {}  # running job -> what it is until when
        self._expiry = _Expiry()  # running jobs' window ends
        self._check: dict[str, JobView] = {}  # running jobs to evaluate at this decision
        # running jobs at risk throughout their window, with a lower bound on the remaining
        self._risky: dict[str, tuple[JobView, float]] = {}
        self._top_rates: dict[tuple[str, int, int, int], float] = {}
        # running job -> (its view, the estimator's posterior at its last evaluation)
        self._seg: dict[str, tuple[JobView, PlannedWindow]] = {}
        # the queue in order, kept across decisions (``_track_queue``, ``_place_queued``):
        # queued job -> its view; those whose order entry is to be (re)computed; job -> (entry
        # version, when it becomes hopeless, order key); heaps of (key, version, job) of jobs
        # not hopeless when last looked at, and of hopeless jobs (stale versions are skipped)
        self._qview: dict[str, JobView] = {}
        self._qdirty: dict[str, None] = {}
        self._qent: dict[str, tuple[int, float, tuple[float, float, str]]] = {}
        self._qnorm: list[tuple[tuple[float, float, str], int, str]] = []
        self._qhope: list[tuple[tuple[float, float, str], int, str]] = []
        self._qver = 0

    # ------------------------------------------------------------------ helpers

    def _key(
        self, job: JobView, now: float, init: InitChoice | None = None
    ) -> tuple[float, float, str]:
        """Order: deadline, or slack (deadline - now - remaining work at the minimum count;
        ``now`` shifts every job alike, so queued jobs keep their order over time)."""
        spec = job.spec
        if self.cfg.order == "edf":
            return (spec.deadline, spec.arrival, job.job_id)
        rem = remaining_iters(job, now, init)
        slack = spec.deadline - now - rem / self.pred.rate(spec, spec.min_gpus)
        return (slack, spec.arrival, job.job_id)

    def _hopeless_at(self, job: JobView, now: float, cap: int, init: InitChoice | None) -> float:
        """When the job stops being able to meet its deadline even on warm GPUs at its fastest
        count, if it does not train until then (``init``: an initial prompt chosen for it in
        the decision being built)."""
        spec = job.spec
        rem = remaining_iters(job, now, init)
        best = self.pred.best_case(spec, rem, now, self.cfg.counts, cap, lookup_due(job, init))
        return spec.deadline - (best - now)

    def _hopeless(self, job: JobView, now: float, cap: int, init: InitChoice | None) -> bool:
        return now > self._hopeless_at(job, now, cap, init) + 1e-9

    def _queue_entry(
        self, job: JobView, now: float, cap: int, init: InitChoice | None
    ) -> tuple[bool, tuple[float, float, str], JobView]:
        """(hopeless, order key, job) of a queued job. A queued job does not progress, so the
        key and the time it becomes hopeless change only with its progress or initial prompt:
        they are cached per job (and filled in when the job arrives, so a decision that finds
        GPUs to hand out does not compute them for the whole queue at once)."""
        if init is not None and job.init is None:  # the state will set this estimate
            needed = max(job.iters_done, expected_iterations(job.spec, init))
        else:
            needed = job.iters_estimate
        token = (job.iters_done, needed, job.first_start is None)
        hit = self._queue_keys.get(job.job_id)
        if hit is None or hit[0] != token:
            key = self._key(job, 0.0, init)
            at = self._hopeless_at(job, now, cap, init) if self.cfg.defer_hopeless else math.inf
            hit = self._queue_keys[job.job_id] = (token, key, at)
        return (now > hit[2] + 1e-9, hit[1], job)

    def _below_bound(self, spec: JobSpec, c: int, cap: int) -> tuple[float, float]:
        """(least pause, highest rate) over the job's candidate counts below ``c``: a lower
        bound on the time to finish at any smaller count (highest rate 0: there is none)."""
        key = (spec.model, spec.batch_size, spec.min_gpus, spec.max_gpus, c)
        hit = self._below.get(key)
        if hit is None:
            smaller = [m for m in counts_for(spec, self.cfg.counts, cap) if m < c]
            mech = self.profiles.mechanics
            hit = self._below[key] = (
                min((mech.reconfig_pause(m) for m in smaller), default=0.0),
                max((self.pred.rate(spec, m) for m in smaller), default=0.0),
            )
        return hit

    def _top_rate(self, spec: JobSpec, lo: int, hi: int) -> float:
        """The highest predicted rate of the job on any count in ``[lo, hi]``."""
        key = (spec.model, spec.batch_size, lo, hi)
        hit = self._top_rates.get(key)
        if hit is None:
            hit = self._top_rates[key] = max(self.pred.rate(spec, m) for m in range(lo, hi + 1))
        return hit

    def target(self, model: str, now: float) -> int:
        """Warm-pool target of ``model``: GPUs demanded by the arrivals expected, at the
        configured quantile, over the next cold-start window."""
        cfg = self.cfg
        expected = self.demand.rate(model, now) * self.profiles.cold_start(model)
        jobs = poisson_quantile(expected, cfg.pool_quantile)
        return max(cfg.pool_min, math.ceil(jobs * self.demand.mean_gpus(model) - 1e-9))

    # ------------------------------------------------------------------ decide

    def decide(self, snap: Snapshot) -> Decision:
        cfg = self.cfg
        now = snap.now
        cap = snap.num_gpus
        new = self.arrivals.update(snap)
        self.arrivals.prune(snap, self._changed)
        self.arrivals.prune(snap, self._queue_keys)
        for job in new:
            self._pos[job.spec.job_id] = self._next_pos
            self._next_pos += 1
        self.arrivals.prune(snap, self._pos)
        inits: dict[str, InitChoice] = {}
        reject: list[str] = []
        for job in new:
            self.demand.arrival(job.spec.model, job.spec.arrival)
            choice = None
            if self.bank is not None and job.init is None:
                choice = self.bank.choose(job.spec)
            if (
                cfg.reject_hopeless
                and not job.gpus
                and job.first_start is None
                and self._hopeless(job, now, cap, choice)
            ):
                reject.append(job.job_id)
                continue
            if choice is not None:
                inits[job.job_id] = choice
            if not job.gpus:
                self._queue_entry(job, now, cap, choice)

        incremental = snap.seq >= 0 and snap.seq == self._seq + 1
        self._seq = snap.seq
        self._track_queue(snap, incremental)
        pool = GpuPool(snap)
        alloc: dict[str, tuple[int, ...]] = {}
        at_risk: list[tuple[JobView, float | None, float]] = []
        carried = 0
        freed: set[int] = set()
        if cfg.elasticity:
            at_risk, carried = self._running(snap, pool, alloc, freed, incremental)
        waiting = self._place_queued(snap, pool, alloc, inits, set(reject))
        if (at_risk or carried) and pool.size() > 0:
            risky = itertools.islice(self._risky.values(), carried)
            at_risk.extend((job, None, low) for job, low in risky)
            self._grow(snap, pool, alloc, at_risk)
        prewarm, release, due = self._warm_pool(snap, pool, waiting, freed)

        wake = due
        if snap.jobs:
            grid = (math.floor(now / cfg.replan_s + 1e-9) + 1) * cfg.replan_s
            wake = grid if wake is None else min(wake, grid)
        return Decision(
            allocations=alloc,
            reject=tuple(reject),
            init=inits,
            prewarm=prewarm,
            release=release,
            wake_at=wake,
        )

    def _running(
        self,
        snap: Snapshot,
        pool: GpuPool,
        alloc: dict[str, tuple[int, ...]],
        freed: set[int],
        incremental: bool,
    ) -> tuple[list[tuple[JobView, float | None, float]], int]:
        """Shrink running jobs well ahead of schedule (the GPUs they give up go back to
        ``pool`` as warm GPUs of their model, and into ``freed``); return the running jobs at
        risk evaluated now, each with its ``planned_remaining`` when it was computed (uncertain
        jobs) and a lower bound on it (0 when unknown), and how many of those at risk
        throughout their window are carried over from earlier decisions: the first that many
        of ``_risky`` (job view, a lower bound on its planned remaining), which adds the jobs
        this decision classifies at risk after them (they are among those evaluated now). The
        carried ones are not copied out: most decisions do not read them (no GPU to grow
        with), and an overloaded cluster has hundreds.

        Incremental: a job's tests depend on its estimate, which moves as it trains, but a job
        whose tests are settled over a window of time by bounds on its remaining (``_window``)
        is classified once for that window (nothing to do, or at risk throughout). A decision
        evaluates only the jobs whose view changed (``Snapshot.changed``), whose window ended,
        or that are near a threshold, in the snapshot's job order; the outcome of every test is
        the one evaluating every job would give."""
        cfg = self.cfg
        now = snap.now
        pred = self.pred
        mech = self.profiles.mechanics
        margin = cfg.safety_margin
        ahead_margin = margin + cfg.shrink_hysteresis
        idle_cost = cfg.keep_alive_s if cfg.warm_pool else 0.0
        grow = 1.0 + margin
        windows, check, risky, expiry = self._windows, self._check, self._risky, self._expiry
        segs = self._seg
        z = cfg.uncertainty_z

        # (no nested functions here: compiled, each call's closures would be a reference
        # cycle, ~3 objects a decision left for the cyclic collector)
        if incremental:
            for job_id in snap.left:
                self._forget(job_id)
            for job in snap.changed:
                job_id = job.spec.job_id
                self._forget(job_id)
                if _eligible(job):
                    check[job_id] = job
        else:  # not the next snapshot of the same state: start from scratch
            windows.clear()
            check.clear()
            risky.clear()
            expiry.clear()
            segs.clear()
            for job in snap.jobs:
                if _eligible(job):
                    check[job.spec.job_id] = job
        for job_id in expiry.due(now):
            w = windows.get(job_id)
            if w is not None and w[2] < now:
                del windows[job_id]  # (the job is not in ``check`` or ``risky`` any more)
                risky.pop(job_id, None)
                check[job_id] = w[0]
        carried = len(risky)  # (those classified below go after them: they are evaluated)
        at_risk: list[tuple[JobView, float | None, float]] = []
        cap = snap.num_gpus
        for job_id in sorted(check, key=self._pos.__getitem__):
            job = check[job_id]
            spec = job.spec
            # predicted finish at the current count: where the current run ends (an uncertain
            # count is planned on its estimate plus ``uncertainty_z`` standard deviations)
            planned: float | None = None
            new_window = job_id not in windows
            got = None
            prior = job.prior
            if prior is not None and prior.sigma > 0.0:  # ``job.uncertain``
                # the same planned remaining as ``planned_remaining``: from the posterior of the
                # job's last evaluation while its accuracy reading is the same, else afresh
                seg = segs.get(job_id)
                if seg is not None and seg[0] is job:
                    if new_window:
                        got = seg[1].moved(now)
                    else:
                        planned = seg[1].at(now)
                if new_window:
                    if got is None:  # and what bounds it later
                        got = planned_window(job, now, z)
                    if got is not None:
                        segs[job_id] = (job, got)
                        planned = got.planned
                if planned is None:
                    planned = planned_remaining(job, now, z)
                finish = now + planned / job.rate
            else:
                finish = job.progress_at + (job.iters_estimate - job.iters_done) / job.rate
            if new_window:
                w = windows[job_id] = self._window(job, now, finish - now, cap, got)
                expiry.push(w[2], job_id)
                if w[3] == _QUIET:  # from now on: nothing to do now either
                    del check[job_id]
                    continue
                if w[3] == _AT_RISK:  # at risk from now on (so its finish is ahead)
                    del check[job_id]
                    risky[job_id] = (job, w[4])
                    at_risk.append((job, planned, 0.0 if planned is None else planned))
                    continue
            if finish <= now:
                continue
            if now + (finish - now) * grow > spec.deadline + 1e-9:
                at_risk.append((job, planned, 0.0 if planned is None else planned))
                continue
            c = len(job.gpus)
            if c <= spec.min_gpus or now - self._changed.get(job.job_id, -math.inf) < (
                cfg.min_rescale_interval_s
            ):
                continue
            run_c = finish - now
            rem = run_c * job.rate
            least_pause, top_rate = self._below_bound(spec, c, cap)
            if top_rate <= 0 or not meets(
                now, now + least_pause + rem / top_rate, spec.deadline, ahead_margin
            ):
                continue  # no smaller count can be well ahead: skip the per-count check
            for m in counts_for(spec, cfg.counts, cap):
                if m >= c:
                    break
                pause = mech.reconfig_pause(m)
                run_m = rem / pred.rate(spec, m)
                if not meets(now, now + pause + run_m, spec.deadline, ahead_margin):
                    continue
                if c * run_c - m * (pause + run_m) - (c - m) * idle_cost <= 0:
                    continue
                alloc[job.job_id] = job.gpus[:m]
                self._changed[job.job_id] = now
                pool.add_idle(spec.model, job.gpus[m:])
                freed.update(job.gpus[m:])
                break
        return at_risk, carried

    def _forget(self, job_id: str) -> None:
        """Drop what ``_running`` keeps of a job: its window, its place among the jobs to
        evaluate and those at risk, and its last estimate (its expiry entry lapses)."""
        self._windows.pop(job_id, None)
        self._check.pop(job_id, None)
        self._risky.pop(job_id, None)
        self._seg.pop(job_id, None)

    def _window(
        self,
        job: JobView,
        now: float,
        run_s: float,
        cap: int,
        planned: PlannedWindow | None,
    ) -> _Window:
        """What the running ``job``, predicted to finish ``run_s`` seconds from ``now``, is from
        now until some later time, for ``_running`` (``planned``: its ``planning.planned_window``
        when it has one): ``_QUIET`` if bounds on its time to finish
        show that it is not at risk and cannot shrink (no smaller count can be well ahead, or it
        changed too recently) at any time in the window, ``_AT_RISK`` if they show it at risk
        throughout, else ``_CHECK``. The window is longer the farther the job is from its
        tests' thresholds (a fraction of that distance in seconds), or up to the job's next
        accuracy reading when the bounds settle that.

        The at-risk test at a time t of the window compares t + p(t) / rate x g with the
        deadline (g = 1 + margin), p(t) the planned remaining at the count done by t, d(t) =
        d0 + rate (t - now). With M(d) = max(E[T | T > d], d), never decreasing in d, and
        ``high`` the upper bound on p from M at the window's end (``estimator.planned_bounds``):
        t - now + (M(d) - d) g / rate = (M(d) g - d (g - 1) - d0) / rate <= (M(d1) - d0) g /
        rate for g >= 1, so now + high / rate x g bounds the test's left side throughout (the
        time that passes is paid for by the work done in it; in the certain case the finish is
        fixed and t + (finish - t) g falls as t grows)."""
        cfg = self.cfg
        spec = job.spec
        rate = job.rate
        deadline = spec.deadline
        grow = 1.0 + cfg.safety_margin
        ahead = 1.0 + cfg.safety_margin + cfg.shrink_hysteresis
        c = len(job.gpus)
        least_pause, top_rate = (
            (0.0, 0.0) if c <= spec.min_gpus else self._below_bound(spec, c, cap)
        )
        changed = self._changed.get(spec.job_id, -math.inf)
        # distance to the at-risk threshold, and to the shrink filter's when that fails now
        gap = abs(deadline - (now + run_s * grow))
        if top_rate > 0:
            to_filter = now + (least_pause + run_s * rate / top_rate) * ahead - deadline
            if to_filter > 0:
                gap = min(gap, to_filter)
        length = min(gap / 1.5, _MAX_WINDOW_S)
        if length < 0.5:
            return (job, now, now + 1.0, _CHECK, 0.0)  # near a threshold: look again soon
        spans: tuple[float, ...] = (length, length / 4.0)
        if planned is not None and planned.end - now > length:
            spans = (planned.end - now, length, length / 4.0)
        uncertain = job.uncertain
        for span in spans:
            if uncertain:
                if planned is None:
                    break
                until = min(now + span, planned.end)
                got = planned.bounds(until)
                if got is None:
                    break
                low_rem, high = got
                low, high = low_rem / rate, high / rate
            else:  # the finish is fixed: the time to it falls as time passes
                until, low_rem = now + span, 0.0
                low, high = run_s - span, run_s
            if now + low * grow > deadline + _TOL_S and low > _TOL_S:
                if low_rem > 0 and self._never_grown(job, now, low_rem, cap):
                    return (job, now, until, _QUIET, low_rem)
                return (job, now, until, _AT_RISK, low_rem)
            # not at risk at any t in the window: t + planned(t) / rate * grow stays below
            # now + high * grow, as the job trains while time passes (see the doc above)
            if now + high * grow < deadline - _TOL_S and (
                top_rate <= 0
                or now + (least_pause + low * rate / top_rate) * ahead > deadline + _TOL_S
                or until - changed < cfg.min_rescale_interval_s - _TOL_S
                or self._never_shrunk(job, now, low * rate, high * rate, cap)
            ):
                return (job, now, until, _QUIET, low_rem)
        return (job, now, now + max(length / 8.0, 1.0), _CHECK, 0.0)

    def _never_shrunk(self, job: JobView, now: float, low: float, high: float, cap: int) -> bool:
        """Whether ``_running``'s per-count shrink test picks no count for the job at any time
        from ``now`` on while its remaining iterations stay in ``[low, high]``: for each smaller
        count, either it is not well ahead even at ``low`` from ``now``, or its GPU-seconds
        saved net of the pause do not pay for the freed GPUs' idle time even at the best end."""
        cfg = self.cfg
        spec = job.spec
        rate = job.rate
        c = len(job.gpus)
        ahead = 1.0 + cfg.safety_margin + cfg.shrink_hysteresis
        idle_cost = cfg.keep_alive_s if cfg.warm_pool else 0.0
        mech = self.profiles.mechanics
        tol = _TOL_S * (1.0 + c * high / rate)
        for m in counts_for(spec, cfg.counts, cap):
            if m >= c:
                break
            pause = mech.reconfig_pause(m)
            rate_m = self.pred.rate(spec, m)
            if now + (pause + low / rate_m) * ahead > spec.deadline + _TOL_S:
                continue  # never well ahead on m
            per_iter = c / rate - m / rate_m  # saving = rem * per_iter - fixed costs
            best = per_iter * (high if per_iter > 0 else low)
            if best - m * pause - (c - m) * idle_cost < -tol:
                continue  # never pays on m
            return False
        return True

    def _never_grown(self, job: JobView, now: float, low_rem: float, cap: int) -> bool:
        """Whether ``_grow`` skips the job at risk at every time from ``now`` on while its
        planned remaining stays above ``low_rem``, whatever the pool holds: no larger count
        trains faster than its own, and even the fastest one would miss the deadline (so,
        at risk, it does nothing at all and ``_running`` need not list it)."""
        cfg = self.cfg
        spec = job.spec
        counts = counts_for(spec, cfg.counts, cap)
        c = len(job.gpus)
        if not counts or counts[-1] <= c:
            return True  # ``_grow``: no count above its own
        top = self._top_rate(spec, c, counts[-1])  # at least that over any smaller limit
        return (
            top <= job.rate
            and (low_rem / top - 1e-6) * (1.0 + cfg.safety_margin)
            > spec.deadline - now + 1e-9 + 2 * _TOL_S
        )

    def _track_queue(self, snap: Snapshot, incremental: bool) -> None:
        """Keep the queued jobs' views (``_qview``) from what changed since the previous
        snapshot; jobs that joined the queue or whose view changed get their order entry
        recomputed at the next placement (``_qdirty``)."""
        qview, dirty, qent = self._qview, self._qdirty, self._qent
        if incremental:
            for job_id in snap.left:
                if qview.pop(job_id, None) is not None:
                    dirty.pop(job_id, None)
                    qent.pop(job_id, None)
            for job in snap.changed:
                job_id = job.spec.job_id
                if job.gpus:
                    if qview.pop(job_id, None) is not None:
                        dirty.pop(job_id, None)
                        qent.pop(job_id, None)
                else:
                    qview[job_id] = job
                    dirty[job_id] = None
                    qent.pop(job_id, None)
        if not incremental or len(qview) != len(snap.queued):  # start from the snapshot
            self._qview = {j.spec.job_id: j for j in snap.queued}
            self._qdirty = dict.fromkeys(self._qview)
            qent.clear()
            self._qnorm.clear()
            self._qhope.clear()

    def _place_queued(
        self,
        snap: Snapshot,
        pool: GpuPool,
        alloc: dict[str, tuple[int, ...]],
        inits: dict[str, InitChoice],
        rejected: set[str],
    ) -> bool:
        """Start queued jobs in order, each on the smallest count that meets its deadline.
        Returns True if a job is left waiting for GPUs."""
        cfg = self.cfg
        now = snap.now
        cap = snap.num_gpus
        pred = self.pred
        queued = snap.queued
        if not queued:
            return False
        if pool.size() == 0:
            return True
        entry = self._queue_entry
        qview, qent, norm, hope = self._qview, self._qent, self._qnorm, self._qhope
        push, pop = heapq.heappush, heapq.heappop
        # entries of jobs whose view changed since they were last computed (the others'
        # would be ``_queue_entry``'s cache hits); a job rejected now is not placed
        dirty = self._qdirty
        for job_id in [j for j in dirty if j not in rejected]:
            del dirty[job_id]
            _, key, _ = entry(qview[job_id], now, cap, inits.get(job_id))
            at = self._queue_keys[job_id][2]
            self._qver += 1
            qent[job_id] = (self._qver, at, key)
            push(norm, (key, self._qver, job_id))
        if len(norm) + len(hope) > 2 * len(qent) + 64:  # drop stale entries
            norm[:] = sorted((key, ver, job_id) for job_id, (ver, _, key) in qent.items())
            hope.clear()
        popped: list[tuple[bool, tuple[tuple[float, float, str], int, str]]] = []

        def in_order() -> Iterator[JobView]:
            """The queue by (hopeless now, key), as a heap of every queued job would give it:
            jobs not hopeless by key (those found hopeless move to the other heap: a job's
            hopeless time is fixed until its entry changes), then the hopeless by key."""
            while norm:
                item = pop(norm)
                job_id = item[2]
                ent = qent.get(job_id)
                if ent is None or ent[0] != item[1]:
                    continue  # stale
                if now > ent[1] + 1e-9:
                    push(hope, item)
                    continue
                popped.append((False, item))
                if job_id not in rejected:
                    yield qview[job_id]
            while hope:
                item = pop(hope)
                job_id = item[2]
                ent = qent.get(job_id)
                if ent is None or ent[0] != item[1]:
                    continue
                popped.append((True, item))
                if job_id not in rejected:
                    yield qview[job_id]

        def fewest(job: JobView) -> int:
            counts = counts_for(job.spec, cfg.counts, cap)
            return counts[0] if counts else 0  # none: more than the cluster has, never runs

        def count(job: JobView, avail: int) -> int:
            spec = job.spec
            counts = counts_for(spec, cfg.counts, cap)
            init = inits.get(job.job_id)
            first = job.first_start is None
            lookup = lookup_due(job, init)
            rem = remaining_iters(job, now, init)
            limit = min(counts[-1], avail)
            supply = pool_supply(
                snap, pool, self.profiles, spec.model, limit, allow_reload=cfg.allow_reload
            )
            got = pick_count(
                counts,
                partial(
                    pred.start_finish, spec, rem, now, supply=supply, lookup_s=lookup, first=first
                ),
                now,
                spec.deadline,
                cfg.safety_margin,
                up_to=limit,
            )
            if got.meeting:
                return got.meeting
            return got.fastest if cfg.hopeless == "fastest" else counts[0]

        started, waiting = pool.start_queued(in_order(), fewest, count, cfg.allow_reload)
        for hopeless, item in popped:  # (the started jobs leave with their next view)
            push(hope if hopeless else norm, item)
        for job, gids in started:
            alloc[job.job_id] = gids
            self._changed[job.job_id] = now
            self.demand.started(job.spec.model, len(gids))
        return waiting

    def _grow(
        self,
        snap: Snapshot,
        pool: GpuPool,
        alloc: dict[str, tuple[int, ...]],
        at_risk: list[tuple[JobView, float | None, float]],
    ) -> None:
        """Give leftover GPUs to running jobs at risk (with their planned remaining when
        known, and a lower bound on it), most urgent first."""
        cfg = self.cfg
        now = snap.now
        pred = self.pred
        avail_of: dict[str, int] = {}  # model -> pool.available, until the next take
        for job, planned, low_rem in sorted(at_risk, key=lambda jp: self._key(jp[0], now)):
            spec = job.spec
            c = len(job.gpus)
            counts = counts_for(spec, cfg.counts, snap.num_gpus)
            avail = avail_of.get(spec.model)
            if avail is None:
                avail = avail_of[spec.model] = pool.available(spec.model, cfg.allow_reload)
            limit = min(counts[-1] if counts else c, c + avail)
            if limit <= c:
                continue
            if planned is None and low_rem > 0:
                # the skip below, settled by the lower bound on the remaining: no count up to
                # ``limit`` is faster than staying put, nor fast enough for the deadline
                top = self._top_rate(spec, c, limit)
                if (
                    top <= job.rate
                    and (low_rem / top - 1e-6) * (1.0 + cfg.safety_margin)
                    > spec.deadline - now + 1e-9 + _TOL_S
                ):
                    continue
            if planned is None:  # at risk throughout its window: from its last posterior
                seg = self._seg.get(job.job_id)
                if seg is not None and seg[0] is job:
                    planned = seg[1].at(now)  # ``planned_remaining``'s value, or None
            rem = planned if planned is not None else planned_remaining(job, now, cfg.uncertainty_z)
            beat = now + rem / job.rate  # staying put
            if rem > 0:
                # no count up to ``limit`` trains faster than the top rate over [c, limit], and
                # pauses and loads only add time: when even that neither beats staying put nor
                # meets the deadline (with slack for rounding), no count is picked below
                low = now + rem / self._top_rate(spec, c, limit)
                if low >= beat and not meets(now, low - 1e-6, spec.deadline, cfg.safety_margin):
                    continue
            supply = pool_supply(
                snap,
                pool,
                self.profiles,
                spec.model,
                limit,
                held_ready=c,
                allow_reload=cfg.allow_reload,
            )
            got = pick_count(
                counts,
                partial(pred.resize_finish, spec, rem, now, supply=supply),
                now,
                spec.deadline,
                cfg.safety_margin,
                above=c,
                up_to=limit,
                beat=beat,
            )
            pick = got.meeting or (got.fastest if cfg.hopeless == "fastest" else 0)
            if pick == 0:
                continue
            extra = pool.take(spec.model, pick - c, cfg.allow_reload)
            avail_of.clear()
            alloc[job.job_id] = (*job.gpus, *extra)
            self._changed[job.job_id] = now
            if pool.size() == 0:
                break

    def _warm_pool(
        self, snap: Snapshot, pool: GpuPool, waiting: bool, freed: set[int]
    ) -> tuple[dict[int, str], tuple[int, ...], float | None]:
        """Pre-warm up to each model's target, release idle warm GPUs beyond it after the
        keep-alive (``freed`` GPUs, given up in this decision, are idle from now); returns
        (prewarm, release, next keep-alive due time)."""
        cfg = self.cfg
        now = snap.now
        gpus = snap.gpus

        def idle_since(g: int) -> float:
            return now if g in freed else gpus[g].since

        if not cfg.warm_pool:
            every = [g for m in pool.warm_models() for g in pool.warm(m)]
            return {}, tuple(sorted(every)), None
        models = sorted(set(self.demand.models()) | set(pool.warm_models()))
        want: dict[str, int] = {}
        excess: dict[str, list[int]] = {}
        for m in models:
            target = self.target(m, now)
            idle = pool.warm(m)
            have = len(idle) + len(pool.prewarming(m))
            if have < target:
                want[m] = target - have
            elif have > target and idle:
                # idle longest first; pre-warming GPUs are never the excess
                if freed:
                    ranked = [(now if g in freed else gpus[g].since, g) for g in idle]
                else:
                    ranked = [(gpus[g].since, g) for g in idle]
                ranked.sort()  # (by ``idle_since``, then id)
                excess[m] = [g for _, g in ranked[: min(len(idle), have - target)]]
        prewarm: dict[int, str] = {}
        if want and not waiting:
            donors = [g for m in sorted(excess) for g in excess[m]] if cfg.allow_reload else []
            for m in sorted(want):
                for _ in range(want[m]):
                    if pool.free:
                        prewarm[pool.pop_free()] = m
                    elif donors:
                        prewarm[donors.pop(0)] = m
                    else:
                        break
        release: list[int] = []
        due: float | None = None
        for m in sorted(excess):
            for g in excess[m]:
                if g in prewarm:
                    continue
                at = idle_since(g) + cfg.keep_alive_s
                if at <= now + 1e-9:
                    release.append(g)
                elif due is None or at < due:
                    due = at
        return prewarm, tuple(sorted(release)), due


@POLICIES.register("prompttuner", PromptTunerConfig, "PromptTuner: bank, EDF, elastic, warm pool")
def make_prompttuner(ctx: PolicyContext, cfg: PromptTunerConfig) -> PromptTuner:
    return PromptTuner(ctx, cfg)
