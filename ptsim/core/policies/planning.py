"""Prediction helpers shared by the deadline-aware policies: when would a job finish on n GPUs,
given where those GPUs come from?

The model mirrors the mechanics the core's ``ClusterState`` charges (``ptsim.core.state``):

- a GPU already ready for the job, or an idle warm GPU of the job's model, trains at once;
- a free GPU pays the model's cold start, a warm GPU of another model its reload, a GPU
  pre-warming the model the rest of its load (counted as a cold start, an upper bound: the
  snapshot does not say whether a load in flight is a cold start or a reload);
- a job that starts pays the hand-over plus its Prompt Bank lookup; a running job whose GPU set
  changes pays the reconfiguration pause of its new ready count, and again when late GPUs join;
- with ``Mechanics.start_partial`` a job trains on its ready GPUs while the others load.

Several late GPUs are treated as joining together at the latest of their ready times (one
pause); the state may pause the job once per distinct ready time, so the prediction is slightly
optimistic when pre-warms and cold starts mix.

API (small on purpose; other policies may import it):

- ``counts_for(spec, mode, cap)`` (``candidate_counts(lo, hi, mode, cap)``): the GPU counts a
  job may use (``any`` or ``pow2``).
- ``meets(now, finish, deadline, margin)``: finish within the deadline with a safety margin.
- ``pick_count(counts, finish, now, deadline, margin, ...)`` -> ``CountPick``: the smallest
  count whose predicted finish meets the deadline (or the best-ranked one that does), and the
  fastest count, for a caller's fallback when none meets it.
- ``Supply`` / ``pool_supply(...)``: GPUs a ``GpuPool`` would hand out, as ready-now plus the
  ready times of the rest, in the pool's own take order.
- ``Predictor``: rates and predicted finish times from a ``ProfileSet``.
- ``planned_window``: bounds on ``planned_remaining`` over a time window, so that a policy can
  skip re-evaluating a job whose tests the bounds settle.
- ``remaining_iters`` / ``lookup_due``: a job's remaining work and pending lookup time, counting
  an initial prompt chosen in the decision being built (``types.expected_iterations``).
- ``ArrivalTracker``: which jobs of a snapshot are new; pruning per-job state of jobs gone.
- ``OrderedQueue``: a snapshot's queued jobs in a fixed order, kept from what changed.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ptsim.core.estimator import (
    moments_at,
    planned_at,
    planned_bounds,
    planned_exact,
    posterior_moments_exps,
)
from ptsim.core.policies.common import GpuPool
from ptsim.core.profiles import ProfileSet
from ptsim.core.types import InitChoice, JobSpec, JobView, Snapshot, expected_iterations

COUNT_MODES = ("any", "pow2")
"""``any``: every count in [min_gpus, max_gpus]; ``pow2``: the powers of two in that range."""


@lru_cache(maxsize=4096)
def candidate_counts(lo: int, hi: int, mode: str, cap: int) -> tuple[int, ...]:
    """GPU counts in ``[lo, min(hi, cap)]``, ascending: all of them (``any``) or the powers of
    two (``pow2``; if the range holds none, its lower end). Empty if ``lo > cap``."""
    if mode not in COUNT_MODES:
        raise ValueError(f"unknown GPU count mode {mode!r}; known: {', '.join(COUNT_MODES)}")
    top = min(hi, cap)
    if lo > top:
        return ()
    if mode == "any":
        return tuple(range(lo, top + 1))
    pows = tuple([n for n in [1 << k for k in range(top.bit_length())] if lo <= n <= top])
    return pows or (lo,)


def counts_for(spec: JobSpec, mode: str, cap: int) -> tuple[int, ...]:
    """``candidate_counts`` of a job on a cluster of ``cap`` GPUs."""
    return candidate_counts(spec.min_gpus, spec.max_gpus, mode, cap)


def meets(now: float, finish: float, deadline: float, margin: float) -> bool:
    """True if the predicted time to finish, inflated by ``margin`` (0.1 = 10%), still ends by
    the deadline: ``now + (finish - now) * (1 + margin) <= deadline``."""
    return now + (finish - now) * (1.0 + margin) <= deadline + 1e-9


@dataclass(frozen=True, slots=True)
class CountPick:
    """What ``pick_count`` found: ``meeting``, the count chosen among those whose predicted
    finish meets the deadline (0: none does), and ``fastest``, the count that finishes soonest
    (0: none finishes before ``pick_count``'s ``beat``)."""

    meeting: int
    fastest: int

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        meeting: int,
        fastest: int,
    ) -> None:
        object.__setattr__(self, "meeting", meeting)
        object.__setattr__(self, "fastest", fastest)


def pick_count(
    counts: Sequence[int],
    finish: Callable[[int], float],
    now: float,
    deadline: float,
    margin: float,
    *,
    above: int = 0,
    up_to: int | None = None,
    beat: float = math.inf,
    rank: Callable[[int], float] | None = None,
) -> CountPick:
    """A GPU count for a job among ``counts`` (ascending) in ``(above, up_to]``, given its
    predicted finish ``finish(n)`` on each.

    ``meeting``: the smallest count whose finish ``meets`` the deadline with ``margin``; with
    ``rank``, the one of those with the highest ``rank(n)`` (positive; a tie keeps the smaller
    count). ``fastest``: the count with the soonest finish, if it is before ``beat`` (a finish
    must be 1e-9 s sooner to beat a smaller count). Without ``rank`` the search stops at the
    first count that meets the deadline, so ``fastest`` is over the counts up to it; a caller
    reads it when ``meeting`` is 0."""
    best, best_rank = 0, -1.0
    fastest, fastest_at = 0, beat
    for n in counts:
        if n <= above:
            continue
        if up_to is not None and n > up_to:
            break
        f = finish(n)
        if f < fastest_at - 1e-9:
            fastest, fastest_at = n, f
        if meets(now, f, deadline, margin):
            if rank is None:
                return CountPick(n, fastest)
            r = rank(n)
            if r > best_rank * (1 + 1e-12):
                best, best_rank = n, r
    return CountPick(best, fastest)


@dataclass(frozen=True, slots=True)
class Supply:
    """GPUs for one job in the order they would be taken: ``ready`` of them can train at once,
    the others become ready at ``late`` (absolute times, take order)."""

    ready: int
    late: tuple[float, ...]

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        ready: int,
        late: tuple[float, ...],
    ) -> None:
        object.__setattr__(self, "ready", ready)
        object.__setattr__(self, "late", late)

    def split(self, n: int) -> tuple[int, float]:
        """For the first ``n`` GPUs: how many are ready now, and when the last other one is
        ready (``-inf`` when all are ready now)."""
        if n <= self.ready:
            return n, -math.inf
        return self.ready, max(self.late[: n - self.ready])


def pool_supply(
    snap: Snapshot,
    pool: GpuPool,
    profiles: ProfileSet,
    model: str,
    limit: int,
    *,
    held_ready: int = 0,
    allow_reload: bool = True,
    pad_cold: bool = False,
) -> Supply:
    """Up to ``limit`` GPUs for a job of ``model``, in ``GpuPool.take`` order: the job's own
    ``held_ready`` ready GPUs, idle warm GPUs of the model, GPUs pre-warming it, free GPUs (cold
    start), warm GPUs of another model (reload). ``pad_cold`` pretends further free GPUs exist
    beyond the pool (for a policy that sizes a job before it looks for room). The pool is only
    read."""
    now = snap.now
    ready = held_ready + min(len(pool.warm(model)), max(0, limit - held_ready))
    late: list[float] = []
    need = limit - ready
    if need > 0:
        load = profiles.cold_start(model)
        gpus = snap.gpus
        for gid in pool.prewarming(model)[:need]:
            late.append(max(now, gpus[gid].since + load))
        need = limit - ready - len(late)
        if need > 0:
            k = min(need, len(pool.free))
            late.extend([now + load] * k)
            need -= k
        if need > 0 and allow_reload:
            reload = now + profiles.reload(model)
            for m in pool.warm_models():
                if m != model and need > 0:
                    k = min(need, len(pool.warm(m)))
                    late.extend([reload] * k)
                    need -= k
        if need > 0 and pad_cold:
            late.extend([now + load] * need)
    return Supply(ready, tuple(late))


class Predictor:
    """Rates and predicted finish times of jobs, from the profiles a policy schedules with."""

    def __init__(self, profiles: ProfileSet) -> None:
        self.profiles = profiles
        self.mech = profiles.mechanics
        self._rates: dict[tuple[str, int, int], float] = {}
        self._max_rates: dict[tuple[str, int, int, int, str, int], float] = {}

    def rate(self, spec: JobSpec, n: int) -> float:
        """Iterations per second of the job on ``n`` GPUs."""
        key = (spec.model, n, spec.batch_size)
        r = self._rates.get(key)
        if r is None:
            r = self._rates[key] = self.profiles.iters_per_second(spec.model, n, spec.batch_size)
        return r

    def start_pause(self, lookup_s: float) -> float:
        """Pause before a job's first training step: hand-over plus the Prompt Bank lookup."""
        return self.mech.handover_s + lookup_s

    def finish(
        self,
        spec: JobSpec,
        remaining: float,
        now: float,
        n: int,
        ready: int,
        late_at: float,
        pause: float,
        late_pause: float,
    ) -> float:
        """Predicted finish of ``remaining`` iterations on ``n`` GPUs of which ``ready`` can
        train after ``pause`` and the others are all ready at ``late_at``, after which the job
        pauses ``late_pause`` and trains on all ``n``."""
        if remaining <= 0:
            return now
        if ready >= n:
            return now + pause + remaining / self.rate(spec, n)
        done_early = 0.0
        if ready > 0 and self.mech.start_partial:
            r_now = self.rate(spec, ready)
            done_early = max(0.0, late_at - now - pause) * r_now
            if done_early >= remaining:
                return now + pause + remaining / r_now
        return max(late_at, now) + late_pause + (remaining - done_early) / self.rate(spec, n)

    def start_finish(
        self,
        spec: JobSpec,
        remaining: float,
        now: float,
        n: int,
        supply: Supply,
        lookup_s: float,
        first: bool,
    ) -> float:
        """Predicted finish of a job that holds no GPU and starts on the first ``n`` GPUs of
        ``supply``: its first start pays the hand-over and ``lookup_s``; a restart the
        reconfiguration pause; late GPUs joining a job that already trains pay that pause."""
        ready, late_at = supply.split(n)
        mech = self.mech
        if ready > 0 and mech.start_partial:
            trains_on = min(ready, n)
            pause = self.start_pause(lookup_s) if first else mech.reconfig_pause(trains_on)
            late_pause = mech.reconfig_pause(n)
            if first and late_at < now + pause:  # joins during the first pause: it restarts
                late_pause = pause
        else:  # nothing trains before the last GPU is ready
            pause = late_pause = self.start_pause(lookup_s) if first else mech.reconfig_pause(n)
        return self.finish(spec, remaining, now, n, ready, late_at, pause, late_pause)

    def resize_finish(
        self, spec: JobSpec, remaining: float, now: float, n: int, supply: Supply
    ) -> float:
        """Predicted finish of a running job resized to the first ``n`` GPUs of ``supply`` (its
        own ready GPUs first): the state pauses it at once for its new ready count, and again
        for ``n`` when late GPUs join."""
        ready, late_at = supply.split(n)
        pause = self.mech.reconfig_pause(ready)
        return self.finish(
            spec, remaining, now, n, ready, late_at, pause, self.mech.reconfig_pause(n)
        )

    def max_rate(self, spec: JobSpec, mode: str, cap: int) -> float:
        """The highest rate of the job over its candidate counts (0 if it has none)."""
        key = (spec.model, spec.batch_size, spec.min_gpus, spec.max_gpus, mode, cap)
        r = self._max_rates.get(key)
        if r is None:
            counts = counts_for(spec, mode, cap)
            r = self._max_rates[key] = max((self.rate(spec, n) for n in counts), default=0.0)
        return r

    def best_case(
        self, spec: JobSpec, remaining: float, now: float, mode: str, cap: int, lookup_s: float
    ) -> float:
        """Earliest possible finish: warm GPUs now at the fastest candidate count."""
        fastest = self.max_rate(spec, mode, cap)
        if fastest <= 0:
            return math.inf
        return now + self.mech.handover_s + lookup_s + remaining / fastest


def remaining_iters(job: JobView, now: float, init: InitChoice | None = None) -> float:
    """Iterations the job still needs at ``now``; ``init`` is an initial prompt chosen in the
    decision being built (the snapshot does not know it yet), whose expected saving applies
    exactly as the cluster state applies it."""
    if init is not None and job.init is None:
        return expected_iterations(job.spec, init)
    return job.remaining_at(now)


def planned_remaining(job: JobView, now: float, z: float = 0.0) -> float:
    """Iterations to plan a running job's resizing on: the estimator's expected remaining plus
    ``z`` of its standard deviations (``z > 0``: plan for a job that runs longer than
    expected); ``remaining_at`` when the job's iterations are known exactly."""
    if not job.uncertain:
        return job.remaining_at(now)
    remaining, sd = job.remaining_sd_at(now)
    return remaining + z * sd


class PlannedWindow:
    """``planned_remaining(job, t0, z)`` of a job whose accuracy reading stays the same until
    ``end`` (the last time before its next reading; inf: none), with what the estimator's
    posterior at ``t0`` gives cheaply for later times up to ``end``: bounds over a window
    (:meth:`bounds`), the exact value (:meth:`at`) and the same for a later start
    (:meth:`moved`). Built by :func:`planned_window` from the job's iterations done
    (``done0``, counted at ``at``) and rate, its iterations done at ``t0`` (``d0``), the count
    at which its reading changes (``until``), and the posterior's moments and tail exponents."""

    __slots__ = (
        "_at",
        "_d0",
        "_done0",
        "_exps",
        "_m",
        "_rate",
        "_t0",
        "_until",
        "_z",
        "end",
        "planned",
    )

    def __init__(
        self,
        t0: float,
        d0: float,
        done0: float,
        at: float,
        rate: float,
        until: float,
        end: float,
        z: float,
        moments: tuple[float, float, float, float],
        exps: tuple[float, float],
    ) -> None:
        self._t0, self._d0 = t0, d0
        self._done0, self._at, self._rate = done0, at, rate
        self._until, self.end, self._z, self._m = until, end, z, moments
        self._exps = exps  # ``estimator.tail_exps`` of the posterior
        self.planned = planned_at(moments, d0, z)

    def bounds(self, t1: float) -> tuple[float, float] | None:
        """Bounds (low, high) on ``planned_remaining(job, t, z)`` for every ``t`` in
        ``[t0, t1]``, ``t1 <= end`` (None: no cheap bound)."""
        d1 = self._done0 + self._rate * (t1 - self._at)
        if d1 >= self._until or t1 < self._t0:
            return None
        return planned_bounds(self._m, self._d0, d1, self._z, self._exps)

    def at(self, t: float) -> float | None:
        """``planned_remaining(job, t, z)`` for ``t0 <= t`` before the next reading, the same
        floating-point value (None: not cheaply: past the reading, or the far tail)."""
        d = self._done0 + self._rate * (t - self._at)
        if d >= self._until or d < self._d0:
            return None
        m = self._m
        return planned_exact(m[0], m[1], self._exps, d, self._z)

    def moved(self, t: float) -> PlannedWindow | None:
        """What :func:`planned_window` returns at ``t``, ``t0 <= t`` before the next reading,
        without reading the accuracy or deriving the posterior again (None: not cheaply)."""
        d = self._done0 + self._rate * (t - self._at)
        if d >= self._until or d < self._d0:
            return None
        moments = moments_at(self._m, d, self._exps)
        if moments is None:
            return None
        return PlannedWindow(
            t,
            d,
            self._done0,
            self._at,
            self._rate,
            self._until,
            self.end,
            self._z,
            moments,
            self._exps,
        )


def planned_window(job: JobView, t0: float, z: float) -> PlannedWindow | None:
    """``planned_remaining(job, t0, z)`` with a way to bound it later (``PlannedWindow``).
    None when the job's iterations are not uncertain, it does not train, its readings do not
    say when they change, or the estimator's bounds do not apply
    (``estimator.posterior_moments``)."""
    prior = job.prior
    rate = job.rate
    if prior is None or prior.sigma <= 0.0 or rate <= 0.0:
        return None
    done0 = job.iters_done
    at = job.progress_at
    d0 = done0 + rate * (t0 - at)  # as ``JobView.remaining_sd_at`` computes the count done
    frac, frac_at = job.progress_fraction, done0
    until = math.inf
    end = math.inf
    readings = job.readings
    if readings is not None:
        until_of = job.readings_until
        if until_of is None:
            return None
        until = until_of(d0)
        end = at + (until - done0) / rate - 1e-6
        got = readings(d0)
        if got is not None:
            frac, frac_at = got
    post = posterior_moments_exps(prior, d0, frac, job.estimator, frac_at)
    if post is None:
        return None
    return PlannedWindow(t0, d0, done0, at, rate, until, end, z, post[0], post[1])


def lookup_due(job: JobView, init: InitChoice | None = None) -> float:
    """Prompt Bank lookup time the job's first start will be charged (0 once it has started);
    ``init`` as in ``remaining_iters``."""
    if job.first_start is not None:
        return 0.0
    chosen = init if init is not None and job.init is None else job.init
    return chosen.lookup_s if chosen is not None else 0.0


class ArrivalTracker:
    """Which live jobs of a snapshot the policy has not seen before (arrivals), in O(new jobs)
    per snapshot, and pruning of per-job state for jobs that left. State derived only from the
    snapshots it was shown.

    It relies on ``Snapshot.jobs`` listing live jobs in the order they were added (arrival
    order, as the cluster state keeps them): jobs added since the last snapshot are at its end.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def update(self, snap: Snapshot) -> list[JobView]:
        """The jobs of ``snap`` not seen in an earlier snapshot, in arrival order."""
        seen = self._seen
        new: list[JobView] = []
        for job in reversed(snap.jobs):
            if job.spec.job_id in seen:
                break
            new.append(job)
        new.reverse()
        seen.update(j.spec.job_id for j in new)
        if len(seen) > 2 * len(snap.jobs) + 64:  # forget jobs that left, amortised O(1)
            self._seen = {j.spec.job_id for j in snap.jobs}
        return new

    @staticmethod
    def prune(snap: Snapshot, per_job: dict[str, Any]) -> None:
        """Drop entries of jobs no longer live once ``per_job`` has grown past twice the live
        count (amortised O(1) per decision)."""
        if len(per_job) > 2 * len(snap.jobs) + 64:
            live = snap.jobs_by_id
            for jid in [k for k in per_job if k not in live]:
                del per_job[jid]


class OrderedQueue:
    """A snapshot's queued jobs (``Snapshot.queued``) in the order of ``key``, which must be
    unique per job and end with its job id (e.g. deadline, arrival, id). Kept from each
    snapshot's ``changed``/``left`` when the snapshots follow each other (``Snapshot.seq``),
    rebuilt from ``queued`` otherwise: O(changes x log queue) per snapshot instead of sorting
    the whole queue."""

    def __init__(self, key: Callable[[JobView], tuple[Any, ...]]) -> None:
        self.key = key
        self._seq = -2  # the snapshot the queue was last brought up to date with
        self._keys: list[tuple[Any, ...]] = []  # queued jobs' keys, ascending
        self._views: dict[str, JobView] = {}  # queued jobs' latest views
        self.joined: list[str] = []
        """Ids of the jobs that joined the queue at the last ``update`` (every job on a
        rebuild), in the order they were seen."""
        self.departed: list[str] = []
        """Ids of the jobs that left the queue at the last ``update`` (none on a rebuild)."""
        self.rebuilt = True
        """Whether the last ``update`` rebuilt the queue from ``Snapshot.queued``."""

    def update(self, snap: Snapshot) -> None:
        """Bring the queue up to date with ``snap``."""
        keys, views, key = self._keys, self._views, self.key
        joined: list[str] = []
        departed: list[str] = []
        incremental = snap.seq >= 0 and snap.seq == self._seq + 1
        if incremental:
            for job_id in snap.left:
                view = views.pop(job_id, None)
                if view is not None:
                    del keys[bisect_left(keys, key(view))]
                    departed.append(job_id)
            for view in snap.changed:
                job_id = view.spec.job_id
                if view.gpus:
                    old = views.pop(job_id, None)
                    if old is not None:
                        del keys[bisect_left(keys, key(old))]
                        departed.append(job_id)
                else:
                    if job_id not in views:
                        insort(keys, key(view))
                        joined.append(job_id)
                    views[job_id] = view
        self._seq = snap.seq
        self.rebuilt = not incremental or len(views) != len(snap.queued)
        if self.rebuilt:
            self._views = {j.spec.job_id: j for j in snap.queued}
            self._keys = sorted(key(j) for j in snap.queued)
            joined, departed = list(self._views), []
        self.joined, self.departed = joined, departed

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._views

    def view(self, job_id: str) -> JobView:
        """The latest view of a queued job."""
        return self._views[job_id]

    def __iter__(self) -> Iterator[JobView]:
        """The queued jobs in order (do not update the queue while iterating); lazily: a
        caller that stops early pays for the jobs it saw (a generator function, not a generator
        expression, which mypyc would build as a whole list)."""
        views = self._views
        for k in self._keys:
            yield views[k[-1]]

    def ids(self) -> list[str]:
        """The queued jobs' ids in order."""
        return [k[-1] for k in self._keys]
