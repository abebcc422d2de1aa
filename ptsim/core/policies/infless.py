"""INFless-style baseline (Yang et al., "INFless: A Native Serverless System for Low-Latency,
High-Throughput Inference", ASPLOS'22), adapted to prompt tuning as the PromptTuner paper does:
function = LLM, invocation = tuning job (DESIGN.md section 4).

From INFless, as stated in DESIGN.md and issue 4:

- One configuration per invocation, chosen when it arrives and never changed: among the GPU
  counts whose predicted finish meets the deadline, the one with the best throughput per
  GPU-second (iterations per second / GPUs: INFless's resource-efficiency objective); if none
  meets it, the fastest. No admission control: nothing is rejected.
- Warm instances of the same function are reused: a job takes idle warm GPUs of its model first
  (``common.GpuPool.take``: warm, pre-warming, free, then warm GPUs of another model).
- Keep-alive and pre-warming by the Long-Short Term Histogram (LSTH), INFless's extension of
  the hybrid histogram policy of Shahrad et al. (ATC'20): per function, a histogram of idle
  gaps over the whole history (long) and one over a recent window (short), 1-minute bins over
  a 4-hour range; the head (5th percentile) and tail (99th percentile) of each are mixed with
  weight ``gamma`` (INFless default 0.5; 0.3-0.7 studied):
  pre-warm window = gamma*P5_long + (1-gamma)*P5_short, keep-alive = gamma*P99_long +
  (1-gamma)*P99_short, with a 10% margin (pre-warm 10% earlier, keep-alive 10% longer, as in
  ATC'20). A histogram with fewer than ``min_samples`` gaps falls back to a fixed keep-alive
  (ATC'20 falls back to a standard keep-alive when a histogram is not representative).
  Percentiles are read at bin granularity: the head rounded down to its bin's lower edge, the
  tail up to its upper edge (ATC'20); gaps beyond the range count in an overflow bin whose
  edge is the range (ATC'20 switches to ARIMA forecasts for such applications; we do not).
- No Prompt Bank (default initial prompt); ``bank=True`` is the "baselines with the bank"
  ablation.

Our adaptation, each a knob of ``InflessConfig``:

- Idle gap = the time between consecutive arrivals of jobs of the same model. ATC'20 measures
  an application's idle time from the end of one execution to the next invocation, which is
  ill-defined when many jobs of a model run at once. The gap between invocations describes the
  function's invocation pattern, which is what the histograms are for; it does not depend on
  the policy's own keep-alive decisions (a gap measured from a GPU going idle to its reuse
  would be cut short by our own releases), and it is read exactly from the snapshots' arrival
  times.
- Windows, following ATC'20's rule (an instance is alive from the pre-warm to the keep-alive
  window after its reference event). Short pre-warm window (at most the model's cold start
  with ``prewarm_lead``; 0 for a busy model): an idle warm GPU stays loaded ``keep-alive``
  seconds after it went idle, then is released. Long pre-warm window: GPUs are unloaded as soon
  as they go idle while no arrival is expected (before last arrival + pre-warm window - cold
  start); at that time one instance (the GPU count of the model's last configuration) is
  loaded, so it is ready when the next arrival may come, and it is released at last arrival +
  keep-alive. ``prewarm_lead=False`` loads at the window itself, as ATC'20 does (their load
  time is small next to a window; an LLM's is not).
- Queue: a job whose configuration does not fit waits; waiting jobs are served in arrival
  order (``order="fifo"``: INFless dispatches invocations as they come and has no deadline
  ordering) or by deadline (``"edf"``), and a job that does not fit does not block later ones.
- ``safety_margin`` (default 0: INFless compares its predicted latency with the SLO as is).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

from mypy_extensions import mypyc_attr

from ptsim.core.policies.common import GpuPool
from ptsim.core.policies.planning import (
    COUNT_MODES,
    ArrivalTracker,
    OrderedQueue,
    Predictor,
    counts_for,
    lookup_due,
    pick_count,
    pool_supply,
    remaining_iters,
)
from ptsim.core.policy import POLICIES, InitChooser, PolicyContext
from ptsim.core.types import Decision, GpuState, InitChoice, JobView, Snapshot

ORDERS = ("fifo", "edf")
INSTANCE_MODES = ("per_model", "per_config")

_EVICT_GAP_S = 1e-3
"""Delay of the decision that hands GPUs released for a waiting job (free by then) to it."""

Deployment = tuple[str, int]
"""A function deployment: (model, GPU count of its instances; 0 = any count, ``per_model``)."""

_ARRIVAL_ORDER = attrgetter("spec.arrival", "spec.job_id")
_DEADLINE_ORDER = attrgetter("spec.deadline", "spec.job_id")


@dataclass(frozen=True)
class InflessConfig:
    """Knobs of the ``infless`` policy (module docstring: what each one stands for).

    - ``bank``: look up each new job's initial prompt in the Prompt Bank (ablation; off).
    - ``order``: waiting jobs in arrival order (``fifo``) or by deadline (``edf``).
    - ``counts``: GPU counts a configuration may use: ``any`` in the job's range, or ``pow2``.
    - ``safety_margin``: predicted time to finish x (1 + margin) must fit before the deadline.
    - ``allow_reload``: take warm GPUs of another model (reload) when free ones run out.
    - ``gamma``: weight of the long-history histogram (1 - gamma: the recent window).
    - ``bin_s``, ``range_s``: histogram bin width and range (1 minute, 4 hours).
    - ``short_window_s``: the recent window of the short histogram (INFless does not fix it
      in the text we follow; 10 minutes is half the default 20-minute trace, so the two
      histograms differ within one run).
    - ``head_q``, ``tail_q``: percentiles for the pre-warm and keep-alive windows (5th, 99th).
    - ``window_margin``: pre-warm that much earlier, keep alive that much longer (10%).
    - ``min_samples``: gaps a histogram needs before it is used.
    - ``keep_alive_s``: fixed keep-alive while a model's long histogram has too few gaps.
    - ``prewarm_lead``: start a pre-warm one cold start before the pre-warm window.
    - ``instances``: what one deployment (instance pool) is. ``per_model``: one per model, all
      GPU configurations share its warm GPUs and its LSTH histograms. ``per_config``: one per
      (model, GPU count), as the PromptTuner authors' prototype deployed INFless: a job reuses
      only idle instances of its own configuration, and each configuration has its own LSTH
      histograms (gaps between arrivals of jobs given that configuration), keep-alive and
      pre-warm (one instance of its GPU count). Idle GPUs of another configuration of the
      same model are released for a job that cannot start otherwise (it then cold-starts).
    """

    bank: bool = False
    order: str = "fifo"
    counts: str = "any"
    safety_margin: float = 0.0
    allow_reload: bool = True
    gamma: float = 0.5
    bin_s: float = 60.0
    range_s: float = 4 * 3600.0
    short_window_s: float = 600.0
    head_q: float = 0.05
    tail_q: float = 0.99
    window_margin: float = 0.1
    min_samples: int = 10
    keep_alive_s: float = 60.0
    prewarm_lead: bool = True
    instances: str = "per_config"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.counts not in COUNT_MODES:
            raise ValueError(f"counts must be one of {', '.join(COUNT_MODES)}")
        if self.instances not in INSTANCE_MODES:
            raise ValueError(f"instances must be one of {', '.join(INSTANCE_MODES)}")
        if self.safety_margin < 0 or self.keep_alive_s < 0 or self.short_window_s <= 0:
            raise ValueError("safety_margin, keep_alive_s >= 0 and short_window_s > 0 needed")
        if not 0 <= self.gamma <= 1 or not 0 <= self.window_margin < 1:
            raise ValueError("gamma must be in [0, 1] and window_margin in [0, 1)")
        if not 0 < self.head_q <= self.tail_q <= 1:
            raise ValueError("need 0 < head_q <= tail_q <= 1")
        if self.bin_s <= 0 or self.range_s < self.bin_s or self.min_samples < 1:
            raise ValueError("need bin_s > 0, range_s >= bin_s and min_samples >= 1")


class Histogram:
    """Counts of gaps in fixed-width bins over ``[0, range)``, plus an overflow bin."""

    def __init__(self, bin_s: float, range_s: float) -> None:
        self.bin_s = bin_s
        self.bins = max(1, math.ceil(range_s / bin_s - 1e-9))
        self.range_s = self.bins * bin_s
        self.counts = [0] * (self.bins + 1)  # the last one is the overflow
        self.total = 0

    def index(self, gap: float) -> int:
        return min(self.bins, max(0, int(gap // self.bin_s)))

    def add(self, gap: float, k: int = 1) -> None:
        self.counts[self.index(gap)] += k
        self.total += k

    def _bin_of(self, q: float) -> int:
        need = q * self.total
        cum = 0
        for i, c in enumerate(self.counts):
            cum += c
            if c and cum >= need - 1e-9:
                return i
        return self.bins

    def head(self, q: float) -> float:
        """The ``q`` percentile rounded down to its bin's lower edge."""
        return min(self._bin_of(q), self.bins) * self.bin_s

    def tail(self, q: float) -> float:
        """The ``q`` percentile rounded up to its bin's upper edge (the range for overflow)."""
        return min(self._bin_of(q) + 1, self.bins) * self.bin_s


@dataclass(frozen=True, slots=True)
class Windows:
    """Pre-warm and keep-alive windows of one model, in seconds after the reference event."""

    prewarm_s: float
    keep_alive_s: float


class Lsth:
    """INFless's Long-Short Term Histogram of one function's idle gaps.

    ``observe(t, gap)`` records a gap that ended at time ``t``; ``windows(now)`` mixes the
    long histogram (every gap) and the short one (gaps that ended within ``short_window_s``)
    into pre-warm and keep-alive windows, or returns None while the long histogram has fewer
    than ``min_samples`` gaps. When only the short one is too thin, the long one is used alone.
    """

    def __init__(
        self,
        *,
        bin_s: float = 60.0,
        range_s: float = 4 * 3600.0,
        short_window_s: float = 600.0,
        gamma: float = 0.5,
        head_q: float = 0.05,
        tail_q: float = 0.99,
        margin: float = 0.1,
        min_samples: int = 10,
    ) -> None:
        self.long = Histogram(bin_s, range_s)
        self.short = Histogram(bin_s, range_s)
        self.short_window_s = short_window_s
        self.gamma = gamma
        self.head_q, self.tail_q = head_q, tail_q
        self.margin = margin
        self.min_samples = min_samples
        self._recent: deque[tuple[float, float]] = deque()
        self._cache: tuple[float, Windows | None] | None = None

    def observe(self, t: float, gap: float) -> None:
        self.long.add(gap)
        self.short.add(gap)
        self._recent.append((t, gap))
        self._cache = None

    def _expire(self, now: float) -> None:
        recent = self._recent
        while recent and recent[0][0] < now - self.short_window_s:
            _, gap = recent.popleft()
            self.short.add(gap, -1)
            self._cache = None

    def windows(self, now: float) -> Windows | None:
        recent = self._recent
        if recent and recent[0][0] < now - self.short_window_s:
            self._expire(now)
        if self._cache is not None:
            return self._cache[1]
        out: Windows | None = None
        if self.long.total >= self.min_samples:
            g = self.gamma if self.short.total >= self.min_samples else 1.0
            head = g * self.long.head(self.head_q) + (1 - g) * self.short.head(self.head_q)
            tail = g * self.long.tail(self.tail_q) + (1 - g) * self.short.tail(self.tail_q)
            out = Windows((1 - self.margin) * head, (1 + self.margin) * tail)
        self._cache = (now, out)
        return out


@mypyc_attr(allow_interpreted_subclasses=True)
class Infless:
    """The INFless-style policy (see the module docstring)."""

    name = "infless"

    def __init__(self, ctx: PolicyContext, cfg: InflessConfig) -> None:
        self.cfg = cfg
        self.profiles = ctx.profiles
        self.bank: InitChooser | None = ctx.bank if cfg.bank else None
        self.pred = Predictor(ctx.profiles)
        self.arrivals = ArrivalTracker()
        self.config: dict[str, int] = {}  # job -> its GPU count, fixed at arrival
        self._hist: dict[Deployment, Lsth] = {}
        self._last_arrival: dict[Deployment, float] = {}
        self._last_count: dict[Deployment, int] = {}
        self._owner: dict[int, Deployment] = {}  # per_config: GPU -> the deployment it serves
        self._deps: list[Deployment] = []  # the keys of ``_last_arrival``, sorted
        self._dep_models: set[str] = set()  # and their models
        self._leads: dict[str, float] = {}  # model -> how long before a window a pre-warm starts
        self._fixed = Windows(0.0, cfg.keep_alive_s)  # while a history is too short
        self.queue = OrderedQueue(_ARRIVAL_ORDER if cfg.order == "fifo" else _DEADLINE_ORDER)
        self._unknown: set[str] = set()  # queued jobs that may have no configuration yet
        # queued jobs with a configuration: each one's deployment and queue key, and per
        # deployment its queued jobs' keys in queue order (a sub-queue)
        self._qdep: dict[str, tuple[Deployment, tuple[Any, ...]]] = {}
        self._sub: dict[Deployment, list[tuple[Any, ...]]] = {}

    def deployment(self, model: str, n: int) -> Deployment:
        """The deployment a job of ``model`` configured to ``n`` GPUs belongs to."""
        return (model, n if self.cfg.instances == "per_config" else 0)

    def deployment_of(self, gid: int, model: str) -> Deployment:
        """The deployment an idle or pre-warming GPU of ``model`` belongs to."""
        got = self._owner.get(gid)
        return got if got is not None and got[0] == model else (model, 0)

    def lsth(self, dep: Deployment) -> Lsth:
        h = self._hist.get(dep)
        if h is None:
            c = self.cfg
            h = self._hist[dep] = Lsth(
                bin_s=c.bin_s,
                range_s=c.range_s,
                short_window_s=c.short_window_s,
                gamma=c.gamma,
                head_q=c.head_q,
                tail_q=c.tail_q,
                margin=c.window_margin,
                min_samples=c.min_samples,
            )
        return h

    def windows(self, dep: Deployment, now: float) -> Windows:
        """The deployment's LSTH windows, or the fixed keep-alive while its history is too
        short."""
        w = self.lsth(dep).windows(now)
        return w if w is not None else self._fixed

    def configure(
        self, job: JobView, snap: Snapshot, pool: GpuPool, init: InitChoice | None
    ) -> int:
        """The job's one configuration: the feasible count with the best throughput per GPU,
        else the fastest count. GPUs beyond what the pool holds are assumed cold."""
        cfg = self.cfg
        spec = job.spec
        now = snap.now
        counts = counts_for(spec, cfg.counts, snap.num_gpus)
        if not counts:
            return spec.min_gpus  # more than the cluster has: it waits forever
        lookup = lookup_due(job, init)
        rem = remaining_iters(job, now, init)
        supply = pool_supply(
            snap,
            pool,
            self.profiles,
            spec.model,
            counts[-1],
            allow_reload=cfg.allow_reload,
            pad_cold=True,
        )
        pred = self.pred
        got = pick_count(
            counts,
            partial(pred.start_finish, spec, rem, now, supply=supply, lookup_s=lookup, first=True),
            now,
            spec.deadline,
            cfg.safety_margin,
            rank=lambda n: pred.rate(spec, n) / n,
        )
        return got.meeting or got.fastest or counts[0]

    def decide(self, snap: Snapshot) -> Decision:
        cfg = self.cfg
        new = self.arrivals.update(snap)
        self.arrivals.prune(snap, self.config)
        pool = GpuPool(snap)
        inits: dict[str, InitChoice] = {}
        for job in new:
            model = job.spec.model
            choice = None
            if self.bank is not None and job.init is None:
                choice = inits[job.job_id] = self.bank.choose(job.spec)
            if job.job_id not in self.config:
                self.config[job.job_id] = self.configure(job, snap, pool, choice)
            n = self.config[job.job_id]
            dep = self.deployment(model, n)
            last = self._last_arrival.get(dep)
            if last is not None:
                self.lsth(dep).observe(job.spec.arrival, max(0.0, job.spec.arrival - last))
            self._last_arrival[dep] = max(job.spec.arrival, last or 0.0)
            self._last_count[dep] = n

        alloc: dict[str, tuple[int, ...]] = {}
        waiting = False
        evict: list[int] = []
        queue = self.queue
        queue.update(snap)
        self._track_deployments(queue)
        if snap.queued:
            order = queue

            def configured(job: JobView) -> int:
                known = self.config.get(job.job_id)
                if known is None:  # live before this policy saw it arrive (not in a normal run)
                    known = self.config[job.job_id] = self.configure(job, snap, pool, None)
                return known

            if cfg.instances == "per_model":
                started, waiting = pool.start_queued(
                    order, configured, lambda job, _: self.config[job.job_id], cfg.allow_reload
                )
            else:
                started, waiting, evict = self._start_per_config(snap, order, pool, configured)
            alloc = {job.job_id: gids for job, gids in started}
            if cfg.instances == "per_config":
                for job, gids in started:
                    dep = self.deployment(job.spec.model, self.config[job.job_id])
                    self._owner.update(dict.fromkeys(gids, dep))

        prewarm, release, due = self._keep_alive(snap, pool, waiting)
        if evict:
            release = tuple(sorted({*release, *evict}))
            due = min(due, snap.now + _EVICT_GAP_S) if due is not None else snap.now + _EVICT_GAP_S
        return Decision(
            allocations=alloc, init=inits, prewarm=prewarm, release=release, wake_at=due
        )

    def _track_deployments(self, queue: OrderedQueue) -> None:
        """Follow the queue's changes: the deployment and key of each queued job with a
        configuration (``_qdep``), each deployment's sub-queue (``_sub``) and the queued jobs
        that may have none (``_unknown``)."""
        known, qdep, sub = self.config, self._qdep, self._sub
        if queue.rebuilt:
            qdep.clear()
            sub.clear()
            self._unknown = set()
        for job_id in queue.departed:
            got = qdep.pop(job_id, None)
            if got is not None:
                keys = sub[got[0]]
                del keys[bisect_left(keys, got[1])]
                if not keys:
                    del sub[got[0]]
        fresh = list(queue.joined)
        if self._unknown:
            fresh.extend(j for j in sorted(self._unknown) if j in queue and j not in qdep)
            self._unknown = set()
        key = queue.key
        for job_id in fresh:
            n = known.get(job_id)
            if n is None:
                self._unknown.add(job_id)
                continue
            view = queue.view(job_id)
            dep = self.deployment(view.spec.model, n)
            k = key(view)
            qdep[job_id] = (dep, k)
            if queue.rebuilt:
                sub.setdefault(dep, []).append(k)
            else:
                insort(sub.setdefault(dep, []), k)
        if queue.rebuilt:  # sorted once, not one insert at a time
            for keys in sub.values():
                keys.sort()

    def _start_per_config(
        self,
        snap: Snapshot,
        order: Iterable[JobView],
        pool: GpuPool,
        configured: Callable[[JobView], int],
    ) -> tuple[list[tuple[JobView, tuple[int, ...]]], bool, list[int]]:
        """``GpuPool.start_queued`` with one deployment per configuration: each job sees only
        the idle instances of its own deployment among its model's warm GPUs. A job that
        cannot start while idle GPUs of its model's other deployments would make up what it
        lacks gets them released (``evict``): they are free for it at the next decision.

        Returns what trying every job of ``order`` in turn (``_visit``) returns: the started
        jobs with their GPUs in start order, whether a job waited, and the GPUs released, in
        order. When every queued job has a configuration (a normal run) only the jobs that can
        change something are tried (``_start_merged``); otherwise every job is, in order."""
        if self._unknown or sum(map(len, self._sub.values())) != len(self.queue):
            return self._start_each(snap, order, pool, configured)  # not in a normal run
        return self._start_merged(snap, pool, configured)

    def _start_each(
        self,
        snap: Snapshot,
        order: Iterable[JobView],
        pool: GpuPool,
        configured: Callable[[JobView], int],
    ) -> tuple[list[tuple[JobView, tuple[int, ...]]], bool, list[int]]:
        """``_start_per_config`` by trying every job of ``order`` in turn."""
        started: list[tuple[JobView, tuple[int, ...]]] = []
        waiting = False
        evict: list[int] = []
        for job in order:
            got, wait, gone = self._visit(snap, job, configured(job), pool, configured)
            started.extend(got)
            waiting = waiting or wait
            evict.extend(gone)
        return started, waiting, evict

    def _start_merged(
        self, snap: Snapshot, pool: GpuPool, configured: Callable[[JobView], int]
    ) -> tuple[list[tuple[JobView, tuple[int, ...]]], bool, list[int]]:
        """``_start_per_config`` over the deployments' sub-queues merged in queue order, each
        walked only while its jobs can change something.

        What happens to a job depends only on its deployment and the pool, and a job that
        waits without releasing anything leaves the pool as it was: later jobs of that
        deployment wait too, with no effect, until the pool changes. So do the jobs of a
        deployment whose GPU count exceeds what the pool holds (the pool only shrinks during
        a walk). The walk tries the next job of each other deployment, lowest key first; a
        deployment whose job waited leaves the merge, and when a job starts or releases GPUs,
        every deployment that fits the pool rejoins at its first job past that one."""
        started: list[tuple[JobView, tuple[int, ...]]] = []
        evict: list[int] = []
        sub, view = self._sub, self.queue.view
        waiting = False
        after: tuple[Any, ...] | None = None  # key of the last job tried

        def merge(size: int) -> list[tuple[tuple[Any, ...], int, Deployment]]:
            """Each deployment that fits ``size`` GPUs at its first job past ``after``; notes
            a wait if one that does not fit has a job there."""
            nonlocal waiting
            heads: list[tuple[tuple[Any, ...], int, Deployment]] = []
            for dep, keys in sub.items():
                i = 0 if after is None else bisect_right(keys, after)
                if i == len(keys):
                    continue
                if dep[1] > size:
                    waiting = True
                else:
                    heads.append((keys[i], i, dep))
            heapq.heapify(heads)
            return heads

        heads = merge(pool.size())
        while heads:
            key, i, dep = heads[0]
            got, wait, gone = self._visit(snap, view(key[-1]), dep[1], pool, configured)
            after = key
            waiting = waiting or wait
            if got or gone:
                started.extend(got)
                evict.extend(gone)
                heads = merge(pool.size())
            elif wait:  # its deployment waits until the pool changes
                heapq.heappop(heads)
            else:  # skipped: the next job of its deployment
                keys = sub[dep]
                if i + 1 < len(keys):
                    heapq.heapreplace(heads, (keys[i + 1], i + 1, dep))
                else:
                    heapq.heappop(heads)
        return started, waiting, evict

    def _visit(
        self,
        snap: Snapshot,
        job: JobView,
        n: int,
        pool: GpuPool,
        configured: Callable[[JobView], int],
    ) -> tuple[list[tuple[JobView, tuple[int, ...]]], bool, list[int]]:
        """Try to start ``job`` (configured to ``n`` GPUs) on the pool without the idle GPUs
        of its model's other deployments: whether it started (and on what), whether it waits,
        and those idle GPUs released for it when they would make up what it lacks."""
        cfg = self.cfg
        model = job.spec.model
        dep = (model, n)  # self.deployment(model, n) with one deployment per configuration
        aside = [
            g
            for g in (*pool.warm(model), *pool.prewarming(model))
            if self.deployment_of(g, model) != dep
        ]
        pool.set_aside(model, aside)
        got, wait = pool.start_queued(
            [job], configured, lambda j, _: configured(j), cfg.allow_reload
        )
        gone: list[int] = []
        if wait:
            short = n - pool.available(model, cfg.allow_reload)
            idle = [g for g in aside if snap.gpus[g].state is GpuState.WARM]
            if 0 < short <= len(idle):
                gone = idle[:short]
                aside = [g for g in aside if g not in gone]
        pool.give_back(aside)
        return got, wait, gone

    def _keep_alive(
        self, snap: Snapshot, pool: GpuPool, waiting: bool
    ) -> tuple[dict[int, str], tuple[int, ...], float | None]:
        """LSTH keep-alive and pre-warming over the GPUs left in ``pool``."""
        cfg = self.cfg
        now = snap.now
        gpus = snap.gpus
        release: list[int] = []
        prewarm: dict[int, str] = {}
        due: float | None = None

        def later(t: float) -> None:
            nonlocal due
            if t > now and (due is None or t < due):
                due = t

        arrived = self._last_arrival
        if len(self._deps) != len(arrived):  # a deployment saw its first arrival
            self._deps = sorted(arrived)
            self._dep_models = {d[0] for d in arrived}
        deps: dict[Deployment, tuple[list[int], list[int]]] = {}  # idle warm, pre-warming
        for m in sorted(set(pool.warm_models()) | self._dep_models):
            for g in pool.warm(m):
                deps.setdefault(self.deployment_of(g, m), ([], []))[0].append(g)
            for g in pool.prewarming(m):
                deps.setdefault(self.deployment_of(g, m), ([], []))[1].append(g)
        # every deployment that has seen an arrival or holds a GPU, in order
        order = self._deps
        if any(d not in arrived for d in deps):
            order = sorted({*order, *deps})
        leads = self._leads
        none: tuple[list[int], list[int]] = ([], [])
        for dep in order:
            m = dep[0]
            warm, warming = deps.get(dep, none)
            w = self.windows(dep, now)
            last = arrived.get(dep)
            lead = leads.get(m)
            if lead is None:
                lead = leads[m] = self.profiles.cold_start(m) if cfg.prewarm_lead else 0.0
            unload_until = -math.inf
            if w.prewarm_s > lead and last is not None:
                unload_until = last + w.prewarm_s - lead
            # unloading: a GPU is alive from the pre-warm to the keep-alive window after the
            # last arrival; otherwise it stays loaded for the keep-alive after going idle
            keep = w.keep_alive_s - (w.prewarm_s if unload_until > -math.inf else 0.0)
            kept = 0
            for g in warm:
                end = gpus[g].since + keep
                if now < unload_until - 1e-9 or end <= now + 1e-9:
                    release.append(g)
                else:
                    kept += 1
                    later(end)
            if unload_until == -math.inf or last is None:
                continue
            if now < unload_until - 1e-9:
                later(unload_until)
                continue
            live_window = last + w.keep_alive_s
            if waiting or now >= live_window:
                continue
            if kept == 0 and not warming:
                for _ in range(self._last_count.get(dep, 1)):
                    if not pool.free:
                        break
                    gid = pool.pop_free()
                    prewarm[gid] = m
                    if cfg.instances == "per_config":
                        self._owner[gid] = dep
        return prewarm, tuple(sorted(release)), due


@POLICIES.register("infless", InflessConfig, "INFless-style: fixed config per job, LSTH keep-alive")
def make_infless(ctx: PolicyContext, cfg: InflessConfig) -> Infless:
    return Infless(ctx, cfg)
