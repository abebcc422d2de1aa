"""ElasticFlow-style baseline (``elasticflow``): slotted, deadline-aware elastic scheduling with
admission control, after ElasticFlow (Gu et al., ASPLOS'23, "ElasticFlow: An Elastic Serverless
Training Platform for Distributed Deep Learning").

What was read (the public artifact ``pkusys/ElasticFlow``; no code was copied, only facts and
algorithms were taken):

- ``ElasticFlow/scheduler/scheduler.py``: ``ef_sim_jobs_access_control`` (the ``ef-accessctrl``
  scheduler), ``estimate_all_jobs``, ``ef_sim_allocation``, ``allocate_free_gpus``,
  ``get_marginal`` and the event loop's slot merging and overhead charging;
- ``ElasticFlow/scheduler/utils.py``: ``get_next_level``/``get_last_level`` (GPU levels are the
  throughput table's columns), ``align_to_time_slot``, ``get_allocation_time`` (GPU-time of a
  plan), ``estimate_overhead``;
- ``ElasticFlow/scheduler/jobs.py`` (``run_all_jobs``, acceptance counting) and ``models.py``
  (``get_max_gpu``: the per-model cap; for GPT-2 16 GPUs at batch 128 and 32 at batch 256,
  exactly where its A100 throughput stops improving; otherwise at most ``min(batch, 64)``);
- ``ElasticFlow/scheduler/cluster.py`` (``elastic_placement``/``release_job_res``: node groups
  of 1/2/4 GPUs inside an 8-GPU node, whole nodes for 8 GPUs and more) and ``log.py``
  (``log_final_result``: deadline-satisfactory ratio = accepted / (accepted + declined), where a
  job admitted but finished after its deadline counts as declined; ``scheduling_result``: the
  communicator cache behind ``in_cache``);
- ``ElasticFlow/scheduler/throughputs_A100/gpt2.csv`` and ``throughputs_T4/*.csv`` (layout
  ``global_batch_size,1,2,4,8,16,32,64``, iterations per second), ``run_fig8a.sh``,
  ``run_fig8b.sh``, ``run_fig10.sh`` (slot 60 s in simulation, 240 s on the testbed),
  ``plot_figure/scripts/plot_fig8a.py``/``plot_fig8b.py`` (the published ratios) and the
  README (``docs/elasticflow.md`` lists them).

Facts taken (and where this module follows them):

1. **Slots.** Decisions happen at slot boundaries (``scheduling_slot``, 60 s in the simulation
   runs); arrivals within a slot wait for the next decision. Here boundaries are the grid
   ``k x slot_s`` (the artifact merges events less than one slot apart, which is the same rule
   up to the grid's origin).
2. **Minimum satisfactory share and admission control.** At every decision the artifact
   re-plans all admitted jobs from scratch, in deadline order, against a step function of future
   free GPUs that starts as "the whole cluster" (``estimate_all_jobs``). For one job
   (``ef_sim_allocation``): for each GPU level ``q`` in ascending order, walk the slots backward
   from the one holding the deadline, each slot giving ``min(q, largest level <= free GPUs)``
   GPUs (the deadline's slot counts only up to the deadline); at the first ``q`` whose slots
   suffice, the job gets ``q``'s allocation from the slot where the backward sum first reaches
   the remaining iterations onward, and the previous level's allocation before it; it is then
   walked forward and stops where the iterations are done. That reservation is subtracted from
   the free-GPU function. A job no level can finish in time takes the most it can get in every
   slot until it finishes, past its deadline. Newcomers are admitted only if the plan with them
   still meets its deadlines; a rejected job is declined (an SLO violation).
3. **Work conservation** (``allocate_free_gpus``): the GPUs left free now go out one level at a
   time: jobs holding no GPU first (deadline order), then by ``marginal_gputime`` = (GPU-time of
   the plan one level up - GPU-time of the current plan) / GPUs added, sorted *descending* (the
   job whose GPU-time grows most per added GPU first). The paper's text says "diminishing
   returns"; ``handout_order="paper"`` serves the smallest increase first instead.
4. **GPU counts** are the throughput table's columns (powers of two) from 1 up to the job's
   maximum, never more than the free GPUs.
5. **Buddy placement**: jobs are placed largest first; a job of fewer GPUs than a node takes an
   aligned block inside one node, a job of a node or more takes whole nodes.
6. **Overheads** (``estimate_overhead``, charged by the artifact at the end of every scheduling
   event to every job holding GPUs, and taken from its training time until the next event in
   ``run_all_jobs``): 2 s (7 s on clusters of 256 GPUs or more); plus 2 (log2 n + 1) s when the
   job's GPU rank range is not in the communicator cache; plus 27 s (47 s at >= 256 GPUs) for
   such a job at every ``scheduling_slot``-th event (a trainer restart, after which the cache is
   emptied). A changed GPU set is driver mechanics here (cold start 2 s,
   ``reconfig_per_level_s`` 2 in ``conf/profile/elasticflow_*.yaml``); the base charged to a job
   that keeps its GPUs is ``event_pause_s`` (``Decision.pause``), skipped, as the artifact's
   deadline check skips it, for a job planned to finish within the slot. Its planner
   (``ef_sim_allocation``) steps a job up where its free-GPU function changes, not at a slot
   (``switch_at="free_change"``). docs/elasticflow.md says what is not matched.

Where this module differs, on purpose (each documented in docs/elasticflow.md):

- The marginal GPU-time of a job one level up is computed as if the job ran at that level from
  now to its end (``n' R / thr(n') - n R / thr(n)``); the artifact re-plans the job's later
  slots against the free-GPU function for it. The order of the hand-out is the same in the
  common case (a job whose plan is flat from now) and the computation is O(1) per job.
- ``admission="each"`` (default) tests newcomers one at a time in deadline order and rejects
  one only if it cannot finish in time or would make a job that can finish in time miss; the
  artifact (``admission="batch"``) declines all newcomers of a decision together whenever any
  planned job, admitted ones included, would miss.
- Placement is sticky: a job keeps its GPUs when its count does not change, shrinks inside its
  block and grows into the enclosing block when it can, because here every GPU a job gains pays
  a cold start and every change of GPU set a reconfiguration pause.
- No warm pool and no sharing: a GPU a job gains is always a free GPU (a cold start); with
  ``replicas=released`` GPUs a job gives up (shrink, finish) are released at once, with the
  default ``dedicated`` they stay provisioned (idle) until a job takes them. When a grow needs
  GPUs another job gives up at the same boundary, the policy releases them first and finishes
  the move ``_PHASE_GAP_S`` later, once they are free.

- Re-planning happens at the boundaries that follow an event (``replan="events"``): an
  arrival, a completion, or a planned step-up of some job's allocation, as the artifact's event
  loop does; ``replan="every_slot"`` re-plans at every boundary.

Planning cost: a re-plan plans every admitted job once, in deadline order (per job, a pass over
the runs of its slots with the same fitting level, or over its slots when those runs are many or
a sum is too close to call); with ``admission="each"`` each newcomer adds one pass over the jobs
with later deadlines, re-planning those it changes. The compiled build (``./dev native``) runs
the innermost of these as C kernels (``_efkernel.c``: a plan on runs, the pass over the jobs
that keep their plans, and three helpers), each the plain-loop version of a function below that
stays its definition (``_Kernels``). Measured numbers: docs/elasticflow.md section 4 and
benchmarks/README.md.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import importlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from mypy_extensions import mypyc_attr

from ptsim.core.policy import POLICIES, InitChooser, PolicyContext
from ptsim.core.profiles import ProfileSet
from ptsim.core.types import (
    Decision,
    InitChoice,
    JobSpec,
    JobView,
    Snapshot,
    expected_iterations,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_PHASE_GAP_S = 1e-3
"""Delay of the second step of a boundary decision: GPUs released in the first step are free
by then, so grows that need them pay a cold start (never a warm hand-over)."""

_TOL = 1e-9
_RUNS_MIN_SLOTS = 64
"""Plans over at least this many slots are computed on runs of slots with the same fitting
level (``_Planner._plan_runs``)..."""
_RUNS_MAX = 64
"""... unless the fitting level changes more often than this over the slots up to the deadline."""
_LevelChange = Callable[[IntArray, IntArray, IntArray, IntArray, int, int], bool]
"""``_level_change``'s signature: (table, cur, slots, delta, lo, hi)."""
_Reserve = Callable[[IntArray, IntArray], None]
_Swap = Callable[[IntArray, IntArray, IntArray, IntArray], bool]
_Plus = Callable[[IntArray, IntArray, int], IntArray]
_Without = Callable[[IntArray, IntArray, int, int], tuple[IntArray, IntArray]]
_Summary = Callable[[IntArray, IntArray, bool, int], tuple[IntArray, IntArray, int, IntArray]]
_PlanRuns = Callable[
    [IntArray, IntArray, int, IntArray, FloatArray, float, float, float, bool, bool, int],
    "tuple[IntArray, int, int, float] | bool | None",
]

_Scan = Callable[
    [
        "_Columns",
        int,
        IntArray,
        IntArray,
        IntArray,
        IntArray,
        IntArray,
        int,
        bool,
    ],
    tuple[int, int],
]
"""``_scan``'s signature."""
_Plan = tuple[bool, IntArray]
"""One job's plan: whether it meets its deadline, and its GPUs per slot from slot 0 on."""
_Columns = tuple[list[_Plan], list[int], list[int], list[int], list[IntArray]]
"""``_Lane.cols``: its plans, kmax, top, tops and tables (the lists themselves)."""


@dataclass(frozen=True, slots=True)
class _Kernels:
    """The compiled build's kernels (``_efkernel.c``): the same answers as the Python
    definitions below (``_level_change``, ``_Planner._plan_runs_py``, ``_reserve``,
    ``_summary``, ``_scan``, ``_swap``, ``_plus``, ``_without``) from plain loops."""

    level_change: _LevelChange
    plan_runs: _PlanRuns
    reserve: _Reserve
    summary: _Summary
    scan: _Scan
    swap: _Swap
    plus: _Plus
    without: _Without


def _load_kernels() -> _Kernels | None:
    """The kernels when the compiled build made them, else None (pure Python; a stale build's
    refusal is raised, not taken for a pure package, as the estimator's and seeding's are)."""
    try:
        mod = importlib.import_module("ptsim.core.policies._efkernel")
    except ModuleNotFoundError:
        return None
    return _Kernels(
        mod.level_change,
        mod.plan_runs,
        mod.reserve,
        mod.summary,
        mod.scan,
        mod.swap,
        mod.plus,
        mod.without,
    )


_KERNELS = _load_kernels()
_HANDOUT_ORDERS = ("artifact", "paper")
_ADMISSION_MODES = ("each", "batch")
_REPLAN_MODES = ("events", "every_slot", "jobs")
_REPLICA_MODES = ("released", "dedicated")
_TIMING_MODES = ("grid", "artifact")
_SWITCH_MODES = ("slot", "free_change")


@dataclass(frozen=True)
class ElasticFlowConfig:
    """Knobs of the ElasticFlow-style policy.

    - ``slot_s``: slot length [s]; decisions happen at multiples of it (ElasticFlow: 60 s in
      simulation, 240 s on its testbed).
    - ``handout_order``: how idle GPUs are handed out, one power-of-two level at a time, to jobs
      that already hold GPUs (jobs holding none are always served first, in deadline order):
      ``artifact`` = largest marginal GPU-time per added GPU first (ElasticFlow's code),
      ``paper`` = smallest first (diminishing returns, the paper's text).
    - ``admission``: ``each`` = newcomers tested one at a time in deadline order, rejected if
      they cannot meet their deadline or would make an admitted job that can meet its deadline
      miss it; ``batch`` = the artifact's rule: all newcomers of a decision are planned
      together and all are rejected if any planned job (admitted ones included) would miss.
    - ``cap_by_profile``: cap a job's GPU count where its throughput stops improving (the first
      power of two that is not faster than the one before) and at its batch size (at least one
      sample per GPU), as ElasticFlow's per-model maxima do; the job's ``max_gpus`` and the
      cluster size cap it always.
    - ``replan``: ``events`` = re-plan at a boundary only after an arrival, a completion, or
      when a job's planned allocation steps above what it holds (ElasticFlow's scheduling
      events); ``every_slot`` = re-plan at every boundary (follows progress, moves more);
      ``jobs`` = only after an arrival or a completion (every decision of ElasticFlow's
      simulator falls at one in the published traces' logs: its step-up events never fire).
    - ``bank``: ask the Prompt Bank (when the run has one) for each admitted job's initial
      prompt (an ablation; ElasticFlow has no bank). Admission then plans with the iterations
      the bank's choice is expected to need.
    - ``replicas``: what happens to a GPU a job gives up (it shrinks or finishes).
      ``released``: it is released at once (ElasticFlow's serverless design: a job's workers
      exist only while it runs). ``dedicated``: it stays provisioned as an idle replica of its
      model (a serverful deployment that does not scale in, as the PromptTuner authors'
      earlier prototype ran ElasticFlow); a job that later takes it still pays a cold start
      (no sharing across jobs: the replica is released and loaded again for the job).
    - ``timing``: when decisions happen. ``grid``: at multiples of ``slot_s``. ``artifact``:
      as ElasticFlow's simulator merges its events: an event (arrival, completion, planned
      step-up) less than one slot after the last decision is decided one slot after it, a
      later one at once (so the decision times are the last one + ``slot_s`` or an event's
      own time). Needs ``replan=events`` or ``jobs``.
    - ``event_pause_s``: ElasticFlow mode: at every re-plan, every job that has trained and
      keeps or shrinks its GPUs stops training for this long (``Decision.pause``), as
      ElasticFlow's simulator charges every running job at every scheduling event (2 s, 7 s on
      clusters of 256 GPUs or more; docs/elasticflow.md). A job that gains GPUs pays their cold
      start and the reconfiguration pause instead. 0 (the default) = off.
    """

    slot_s: float = 60.0
    handout_order: str = "artifact"
    admission: str = "each"
    cap_by_profile: bool = True
    replan: str = "events"
    bank: bool = False
    replicas: str = "dedicated"
    timing: str = "grid"
    event_pause_s: float = 0.0
    switch_at: str = "slot"

    def __post_init__(self) -> None:
        if not self.slot_s > 10 * _PHASE_GAP_S:
            raise ValueError(f"slot_s must be > {10 * _PHASE_GAP_S:g} s")
        if self.handout_order not in _HANDOUT_ORDERS:
            raise ValueError(f"handout_order must be one of {', '.join(_HANDOUT_ORDERS)}")
        if self.admission not in _ADMISSION_MODES:
            raise ValueError(f"admission must be one of {', '.join(_ADMISSION_MODES)}")
        if self.replan not in _REPLAN_MODES:
            raise ValueError(f"replan must be one of {', '.join(_REPLAN_MODES)}")
        if self.replicas not in _REPLICA_MODES:
            raise ValueError(f"replicas must be one of {', '.join(_REPLICA_MODES)}")
        if self.timing not in _TIMING_MODES:
            raise ValueError(f"timing must be one of {', '.join(_TIMING_MODES)}")
        if self.timing == "artifact" and self.replan == "every_slot":
            raise ValueError("timing=artifact needs replan=events or jobs")
        if self.switch_at not in _SWITCH_MODES:
            raise ValueError(f"switch_at must be one of {', '.join(_SWITCH_MODES)}")
        if not 0.0 <= self.event_pause_s < math.inf:
            raise ValueError("event_pause_s must be a finite time >= 0")


# ---------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True, slots=True)
class _Levels:
    """The GPU counts a job may hold (ascending) and its iterations per second at each, with a
    leading 0 for "no GPU" (``thr_ext[0] == 0``, ``counts_ext[0] == 0``)."""

    counts: IntArray
    counts_ext: IntArray
    thr_ext: FloatArray
    monotone: bool  # rates never fall as the level rises
    top: int  # the largest count (0 if none)
    counts_t: tuple[int, ...]  # ``counts`` and ``thr_ext`` as Python numbers (scalar lookups)
    thr_t: tuple[float, ...]
    # index into counts_ext of the largest level that fits f free GPUs, for f = 0 .. the
    # cluster's GPUs (``fit_table.take(free, mode="clip")`` = ``counts.searchsorted(free,
    # "right")`` for every integer: counts never exceed the cluster)
    fit_table: IntArray
    # ``min(fit_table, q)`` by level q, made when first asked for (``_Planner.fit_upto``)
    upto: dict[int, IntArray] = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class _Item:
    """One job as the planner sees it."""

    job_id: str
    order: tuple[float, float, str]  # deadline, arrival, id
    deadline: float
    remaining: float
    levels: _Levels
    held: int  # GPUs it holds now
    gpus: tuple[int, ...] = ()  # which (``()`` where the caller does not place it)

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        job_id: str,
        order: tuple[float, float, str],
        deadline: float,
        remaining: float,
        levels: _Levels,
        held: int,
        gpus: tuple[int, ...] = (),
    ) -> None:
        self.job_id = job_id
        self.order = order
        self.deadline = deadline
        self.remaining = remaining
        self.levels = levels
        self.held = held
        self.gpus = gpus


class _Free:
    """Free GPUs per slot from the decision on: a growable step function (slot 0 starts now),
    ``total`` in every slot, or ``arr`` in its first slots when given (not copied)."""

    __slots__ = ("arr", "total")

    def __init__(self, total: int, length: int = 0, arr: IntArray | None = None) -> None:
        self.total = total
        self.arr: IntArray = np.full(max(length, 1), total, dtype=np.int64) if arr is None else arr

    def ensure(self, length: int) -> None:
        if length > len(self.arr):
            grow = max(length, 2 * len(self.arr)) - len(self.arr)
            self.arr = np.concatenate([self.arr, np.full(grow, self.total, dtype=np.int64)])

    def copy(self) -> _Free:
        return _Free(self.total, arr=self.arr.copy())


class _Planner:
    """Minimum-satisfactory-share planning of jobs in deadline order at one decision."""

    def __init__(
        self,
        now: float,
        slot_s: float,
        switch_at: str = "slot",
        kernels: _Kernels | None = _KERNELS,
    ) -> None:
        self.now = now
        self.slot = slot_s
        self.by_period = switch_at == "free_change"
        self.kernels = kernels
        # plans over at least this many slots try the runs of equal fitting level first
        # (compiled, that costs less than the slot-by-slot numpy at any length)
        self.runs_min = _RUNS_MIN_SLOTS if kernels is None else 2
        self.level_change: _LevelChange = _level_change if kernels is None else kernels.level_change
        self.scan: _Scan = _scan if kernels is None else kernels.scan
        self.reserve: _Reserve = _reserve if kernels is None else kernels.reserve
        self.summary: _Summary = _summary if kernels is None else kernels.summary
        self.swap: _Swap = _swap if kernels is None else kernels.swap
        self.plus: _Plus = _plus if kernels is None else kernels.plus
        self.without: _Without = _without if kernels is None else kernels.without
        # id(levels) -> (levels, gain of a whole slot per level); holding the levels keeps
        # their id from being reused while the planner lives
        self._gain: dict[int, tuple[_Levels, list[float]]] = {}
        self.shape: _Shape = _NO_SHAPE
        """What the last ``plan`` that met its deadline read of the free GPUs (``_Shape``);
        ``_NO_SHAPE`` when it did not, or had nothing left to do."""

    def fit_upto(self, lv: _Levels, q: int) -> IntArray:
        """``min(lv.fit_table, q)``: the fitting level of each free-GPU count, capped at ``q``."""
        hit = lv.upto.get(q)
        if hit is None:
            hit = lv.upto[q] = np.minimum(lv.fit_table, q)
        return hit

    def _slot_gain(self, lv: _Levels) -> list[float]:
        """Iterations of one whole slot at each level of ``lv`` (``thr_ext * slot``)."""
        hit = self._gain.get(id(lv))
        if hit is None:
            hit = self._gain[id(lv)] = (lv, (lv.thr_ext * self.slot).tolist())
        return hit[1]

    def plan(self, it: _Item, free: _Free, best_effort: bool = True) -> tuple[bool, IntArray]:
        """Reserve ``it``'s minimum satisfactory share in ``free``; return whether it meets its
        deadline and its GPUs per slot from now until it is done. A job that cannot meet it gets
        its best-effort plan, or (``best_effort`` false, for a caller that drops such a plan)
        no plan: ``(False, [])`` with ``free`` unchanged."""
        self.shape = _NO_SHAPE
        if it.remaining <= 0:
            return True, np.zeros(0, dtype=np.int64)
        need = it.remaining * (1.0 - 1e-12)
        lv = it.levels
        k_max = math.ceil((it.deadline - self.now) / self.slot - _TOL)
        if k_max > 0:
            free.ensure(k_max)
            last = it.deadline - self.now - (k_max - 1) * self.slot
            got = None
            if k_max >= self.runs_min:
                got = self._plan_runs(lv, need, last, k_max, free.arr)
            if got is None:
                # index (into counts_ext) of the largest level that fits each slot's free GPUs
                fits = lv.fit_table.take(free.arr[:k_max], mode="clip")
                got = self._plan_slots(lv, fits, need, last, k_max, free.arr)
            if got is not _NO_LEVEL:
                self.reserve(free.arr, got)
                return True, got
        if not best_effort:
            return False, _EMPTY
        return False, self._best_effort(it, free, need)

    def _plan_slots(
        self, lv: _Levels, fits: IntArray, need: float, last: float, k_max: int, free: IntArray
    ) -> IntArray:
        """``plan``'s reservation slot by slot: the GPUs per slot, or ``_NO_LEVEL`` (``free``:
        the free GPUs per slot, for ``switch_at=free_change``)."""
        top = len(lv.counts)
        if top == 0:
            return _NO_LEVEL
        # iterations per slot at ``min(level, what fits)`` for each level (row ``level - 1``;
        # the deadline's slot counts only up to the deadline)
        levels = np.arange(1, top + 1)
        table: FloatArray = lv.thr_ext[np.minimum(fits, levels[:, None])] * self.slot
        table[:, -1] = lv.thr_ext[np.minimum(int(fits[-1]), levels)] * last
        sums = table.sum(axis=1)  # each row summed as a 1-d array would be
        # the first level whose slots suffice; with rates that grow with the level, none does
        # if the top one does not (sums are monotone)
        if lv.monotone and not sums[-1] >= need:
            return _NO_LEVEL
        reached = sums >= need
        if not reached.any():
            return _NO_LEVEL
        q = int(reached.argmax()) + 1
        prev = table[q - 2] if q > 1 else None
        cur = table[q - 1]
        # the latest slot from which level q alone finishes the job in time
        back = cur[::-1].cumsum()
        behind = int(back.searchsorted(need))
        point = k_max - 1 - behind
        # the exact sum of level q's gains from that slot to the deadline is at least the
        # running sum there less its rounding (``behind + 1`` non-negative terms)
        slack = -math.inf
        if behind < k_max and not self.by_period:
            slack = float(back[behind]) * (1.0 - (behind + 2) * 2.3e-16) - need
        self.shape = (q, point, slack)
        if self.by_period and point > 0:  # back to where the free GPUs last changed
            changed = np.flatnonzero(free[1 : point + 1] != free[:point])
            point = int(changed[-1]) + 1 if changed.size else 0
        row, gain = np.minimum(fits, q), cur
        if point > 0:
            if prev is not None:
                row[:point] = np.minimum(fits[:point], q - 1)
                gain[:point] = prev[:point]
            else:
                row[:point] = 0
                gain[:point] = 0.0
        end = min(int(gain.cumsum().searchsorted(need)), k_max - 1)
        out: IntArray = lv.counts_ext[row[: end + 1]]
        return out

    def _plan_runs(
        self, lv: _Levels, need: float, last: float, k_max: int, free: IntArray
    ) -> IntArray | None:
        """``_plan_runs_py``, by the compiled kernel when there is one."""
        if self.kernels is None:
            return self._plan_runs_py(lv, need, last, k_max, free)
        got = self.kernels.plan_runs(
            lv.fit_table,
            free,
            k_max,
            lv.counts_ext,
            lv.thr_ext,
            self.slot,
            need,
            last,
            lv.monotone,
            self.by_period,
            _RUNS_MAX,
        )
        if got is None:
            return None
        if not isinstance(got, tuple):
            return _NO_LEVEL
        self.shape = (got[1], got[2], got[3])
        return got[0]

    def _plan_runs_py(
        self, lv: _Levels, need: float, last: float, k_max: int, free: IntArray
    ) -> IntArray | None:
        """``_plan_slots``'s result computed on the runs of slots with the same fitting level
        instead of slot by slot (``k_max`` >= 2), or None when the runs are many or a sum
        comes too close to ``need`` to be sure that the slot-by-slot floating-point sums
        compare with it the same way (``free``: the free GPUs per slot).

        Every decision of ``_plan_slots`` compares a sum of non-negative gains (its slots'
        floating-point values) with ``need``; any order of summing ``n`` such terms is within
        ``n`` units in the last place of the exact sum, so a sum computed per run that is
        further than that from ``need`` (with a margin) compares the same way."""
        top = len(lv.counts)
        if top == 0:
            return None
        fits = lv.fit_table.take(free[:k_max], mode="clip")
        body = fits[:-1]
        cuts = (body[1:] != body[:-1]).nonzero()[0]
        if len(cuts) >= _RUNS_MAX:
            return None
        starts = [0, *(cuts + 1).tolist()]
        vals = body[starts].tolist()
        lens = [b - a for a, b in zip(starts, [*starts[1:], k_max - 1], strict=True)]
        f_last = int(fits[-1])
        thr = lv.thr_t
        e = self._slot_gain(lv)  # the gain of a whole slot at each level
        runs = list(zip(vals, lens, strict=True))
        # slots per fitting level (the deadline's slot apart): a level's total is a sum over
        # the levels that fit, not over the runs (fewer roundings, same bound below)
        per = [0] * (top + 1)
        for v, n in runs:
            per[v] += n
        held = [(v, n) for v, n in enumerate(per) if n]
        whole = sum(n * e[v] for v, n in held) + thr[f_last] * last
        tol = (k_max + len(starts) + 64) * 2.3e-16
        tol *= max(need, whole)

        def reaches(level: int) -> bool | None:
            if level >= top:
                total = whole
            else:
                total = sum(n * e[min(v, level)] for v, n in held) + thr[min(f_last, level)] * last
            return None if abs(total - need) <= tol else total >= need

        q = -1
        full = True if not lv.monotone else reaches(top)
        if full is None:
            return None
        if full:
            for level in range(1, top + 1):
                ok = reaches(level)
                if ok is None:
                    return None
                if ok:
                    q = level
                    break
        if q <= 0:
            return _NO_LEVEL
        # backward from the deadline's slot at level q: the latest start
        back = [(thr[min(f_last, q)] * last, 1)]
        for i in range(len(runs) - 1, -1, -1):  # (not a generator over ``reversed``: mypyc)
            v, n = runs[i]
            back.append((e[min(v, q)], n))
        behind = _crossing(back, need, tol)
        if behind is None:
            return None
        point = k_max - 1 - behind
        # ``_crossing`` answered: level q's running sum there is at least need + tol, and with
        # rates that grow with the level it is within tol / 2 of its exact value
        slack = 0.5 * tol if lv.monotone and point >= 0 and not self.by_period else -math.inf
        shape = (q, point, slack)
        if self.by_period and point > 0:
            # back to where the free GPUs last changed: a change of fitting level is one, so
            # it is in the run holding ``point`` (or the deadline's slot) or at its start
            i = bisect.bisect_right(starts, min(point, k_max - 2)) - 1
            s0 = starts[i] if i >= 0 else 0
            changed = (free[s0 + 1 : point + 1] != free[s0:point]).nonzero()[0]
            point = s0 + int(changed[-1]) + 1 if changed.size else s0
        # forward: level q - 1 before that slot, q from it; the slot where the job is done
        steps: list[int] = []
        spans: list[int] = []
        for start, (v, n) in zip(starts, runs, strict=True):
            if start < point < start + n:
                steps.append(min(v, q - 1))
                spans.append(point - start)
                steps.append(min(v, q))
                spans.append(start + n - point)
            else:
                steps.append(min(v, q - 1) if start < point else min(v, q))
                spans.append(n)
        ahead = _crossing([(e[x], n) for x, n in zip(steps, spans, strict=True)], need, tol)
        if ahead is None:
            return None
        if ahead >= k_max - 1:  # done in the deadline's slot
            steps.append(min(f_last, q))
            spans.append(1)
        out: IntArray = lv.counts_ext[steps].repeat(spans)
        self.shape = shape
        return out if ahead >= k_max - 1 else out[: ahead + 1]

    def _best_effort(self, it: _Item, free: _Free, need: float) -> IntArray:
        """A job that cannot meet its deadline takes the most it can get (up to its cap) in
        every slot until it is done, past its deadline; returns its GPUs per slot."""
        lv = it.levels
        thr_cap = float(lv.thr_ext[-1])
        start, left = 0, need
        parts: list[IntArray] = []
        chunk = max(1, math.ceil(left / (thr_cap * self.slot)) + 1)
        while True:
            stop = start + chunk
            free.ensure(stop)
            window = free.arr[start:stop]
            fits = lv.fit_table.take(window, mode="clip")
            done = np.cumsum(lv.thr_ext[fits] * self.slot)
            if done[-1] >= left:
                end = int(done.searchsorted(left))
                parts.append(lv.counts_ext[fits[: end + 1]])
                free.arr[start : start + end + 1] -= parts[-1]
                return np.concatenate(parts)
            parts.append(lv.counts_ext[fits])
            free.arr[start:stop] -= parts[-1]
            left -= float(done[-1])
            start = stop
            chunk = max(chunk * 2, math.ceil(left / (thr_cap * self.slot)) + 1)

    def plan_all(self, items: Sequence[_Item], free: _Free) -> list[_Plan]:
        """Plan ``items`` (already in deadline order) one after another, each on what the plans
        before it leave of ``free``; the plans by position (``_Lane`` does it too, keeping each
        job's ``shape``)."""
        return [self.plan(it, free) for it in items]


_Shape = tuple[int, int, float]
"""Of a plan that meets its deadline: its level q (an index into ``counts_ext``: it reserves
``min(q, what fits)`` from its step point on, one level less before), its step point before
``switch_at=free_change`` moves it (the latest slot from which level q alone finishes in time),
and a lower bound on how far the exact sum of level q's gains from that point to the deadline
exceeds the work needed (``-inf``: unknown)."""
_NO_SHAPE: _Shape = (0, 0, -math.inf)

_NO_LEVEL: IntArray = np.zeros(0, dtype=np.int64)
"""``_plan_slots``' answer when no level meets the deadline (compared by identity)."""


def _crossing(runs: Sequence[tuple[float, int]], need: float, tol: float) -> int | None:
    """How many leading terms of a sequence of non-negative terms (``runs``: ``(value,
    repeats)``) have a running sum below ``need`` (what ``searchsorted(cumsum(terms), need)``
    gives), or None when the running sums next to the crossing are within ``tol`` of ``need``."""
    acc, count = 0.0, 0
    for v, n in runs:
        nxt = acc + v * n
        if nxt >= need:
            m = min(max(math.ceil((need - acc) / v) - 1, 0), n - 1)
            if acc + m * v < need - tol and acc + (m + 1) * v >= need + tol:
                return count + m
            return None
        acc, count = nxt, count + n
    return count if acc < need - tol else None


def _level_change(
    table: IntArray, cur: IntArray, slots: IntArray, delta: IntArray, lo: int, hi: int
) -> bool:
    """Whether ``table`` (indexed by free GPUs, clipped to its ends) differs between ``cur[s]``
    and ``cur[s] + delta[j]`` at some ``s = slots[j]`` (``slots`` ascending) with ``lo <= s <
    hi``."""
    n = len(slots)
    a = int(slots.searchsorted(lo)) if lo > 0 else 0
    b = n if n and hi > slots[n - 1] else int(slots.searchsorted(hi))
    if b <= a:
        return False
    at, by = (slots, delta) if b - a == n else (slots[a:b], delta[a:b])
    before = cur[at]
    return bool(_any(table.take(before, mode="clip") != table.take(before + by, mode="clip")))


def _deadline(it: _Item) -> float:
    """``_sort_by_order``'s first key."""
    return it.deadline


def _sort_by_order(items: list[_Item]) -> None:
    """Sort ``items`` in place by ``order`` (deadline, arrival, id): by deadline alone first
    (float keys, which a sort compares without the tuples' generic comparison), then each run
    of equal deadlines by the whole order. The order is total (ids differ), so the result is
    the one sort by ``order`` gives."""
    items.sort(key=_deadline)
    n, i = len(items), 0
    while i < n:
        d, j = items[i].deadline, i + 1
        while j < n and items[j].deadline == d:
            j += 1
        if j - i > 1:
            items[i:j] = sorted(items[i:j], key=lambda it: it.order)
        i = j


def _merge_by_order(
    a: list[_Item], b: list[_Item], ra: list[_Plan], rb: list[_Plan]
) -> tuple[list[_Item], list[_Plan]]:
    """The items of ``a`` and ``b`` (each sorted by ``order``, no job in both) in one list
    sorted by ``order`` (what ``_sort_by_order`` gives for ``a + b``), and beside it the plans
    ``ra[i]`` of ``a[i]`` and ``rb[j]`` of ``b[j]`` in the same order."""
    if not b:
        return list(a), list(ra)
    out: list[_Item] = []
    rows: list[_Plan] = []
    j, nb = 0, len(b)
    for i, it in enumerate(a):
        d = it.deadline
        while j < nb:
            other = b[j]
            if other.deadline < d or (other.deadline == d and other.order < it.order):
                out.append(other)
                rows.append(rb[j])
                j += 1
            else:
                break
        out.append(it)
        rows.append(ra[i])
    out.extend(b[j:])
    rows.extend(rb[j:])
    return out, rows


def _remaining(view: JobView, now: float) -> float:
    """``view.remaining_at(now)``: for a job whose iterations are uncertain, the estimate's
    remaining computed without its 90th percentile (the same arithmetic, one quantile less)."""
    return view.remaining_sd_at(now)[0] if view.uncertain else view.remaining_at(now)


_EMPTY: IntArray = np.zeros(0, dtype=np.int64)
_INT_MAX = int(np.iinfo(np.int64).max)
_any = np.logical_or.reduce  # ``ndarray.any`` without its Python-level wrapper


class _Lane:
    """The admitted jobs (deadline order) at one decision and their plan without the current
    newcomer (those admitted so far included), by position ``i`` (``index``: a job's position
    by its id): ``plans[i]`` and ``shapes[i]`` (``_Planner.shape``; ``_NO_SHAPE`` for a plan
    that misses its deadline);
    ``tables[i]``, the fitting-level table a test of that plan reads (capped at the plan's
    level q where it meets its deadline); ``top[i]``, its largest GPU count; ``tops[i]``, the
    largest count of it and every later job (0 past the end); ``kmax[i]``, its slots up to the
    deadline (``_Planner.plan``'s ``k_max``); and ``movable[i]``, whether its plan's slack
    allows ``_Trial._moves``; ``cols``, the lists ``_scan`` reads, in one tuple. Built by
    planning ``items`` one after another on ``free`` (as ``_Planner.plan_all`` does), which
    it leaves with their reservations."""

    def __init__(self, items: Sequence[_Item], planner: _Planner, free: _Free) -> None:
        n = len(items)
        self.items = items
        self.planner = planner
        self.index = {it.job_id: i for i, it in enumerate(items)}
        self.top = [it.levels.top for it in items]
        self.tops = [0] * (n + 1)
        for i in range(n - 1, -1, -1):
            self.tops[i] = max(self.tops[i + 1], self.top[i])
        now, slot = planner.now, planner.slot
        self.kmax = [math.ceil((it.deadline - now) / slot - _TOL) for it in items]
        self.plans: list[_Plan] = []
        self.shapes: list[_Shape] = [_NO_SHAPE] * n
        self.tables: list[IntArray] = [_EMPTY] * n
        self.movable = [False] * n
        for i, it in enumerate(items):
            self.plans.append(planner.plan(it, free))
            self._set(i, planner.shape)
        # what ``_scan`` reads, in one tuple (the lists change in place, never replaced)
        self.cols: _Columns = (self.plans, self.kmax, self.top, self.tops, self.tables)

    def _set(self, i: int, shape: _Shape) -> None:
        it = self.items[i]
        shape = shape if self.plans[i][0] else _NO_SHAPE
        q = shape[0]
        self.shapes[i] = shape
        self.tables[i] = self.planner.fit_upto(it.levels, q) if q > 0 else it.levels.fit_table
        self.movable[i] = shape[2] > (self.kmax[i] + 8) * 4.6e-16 * it.remaining

    def update(
        self, plans: Mapping[str, tuple[bool, IntArray]], shapes: Mapping[str, _Shape]
    ) -> None:
        """Take the new plans of the jobs in ``shapes`` (those a newcomer's test re-planned)
        from ``plans``."""
        for job_id, shape in shapes.items():
            i = self.index[job_id]
            self.plans[i] = plans[job_id]
            self._set(i, shape)


_SCAN_END, _SCAN_ALL_KEPT, _SCAN_GROW, _SCAN_CHANGE, _SCAN_STEPS = 0, 1, 2, 3, 4


def _scan(
    cols: _Columns,
    start: int,
    cur: IntArray,
    diff: IntArray,
    nz: IntArray,
    dnz: IntArray,
    steps: IntArray,
    floor: int,
    check: bool,
) -> tuple[int, int]:
    """``_Trial.run``'s pass over the jobs from ``start`` while each keeps its plan for a
    reason seen without re-planning it: it sees no change of fitting level where the newcomer
    changes the free GPUs (``diff`` at ``nz``, ``dnz = diff[nz]``; none at all when its largest
    count is at most ``floor``) and, meeting its deadline, no change of where the free GPUs
    change (``steps``). Each kept job's plan is taken from ``cur`` (the lane still holds it).
    Returns ``(i, how)`` for the job where it stops: ``_SCAN_END`` past the last job,
    ``_SCAN_ALL_KEPT`` where no job from ``i`` on can see a change (``check``: test that
    first), ``_SCAN_GROW`` where ``cur`` is too short for the job, ``_SCAN_CHANGE`` where its
    fitting levels change, ``_SCAN_STEPS`` where a change of the free GPUs moves."""
    plans, kmax, top, tops, tables = cols  # ``_Lane.cols``
    n_steps = len(steps)
    for i in range(start, len(plans)):
        if check:
            if tops[i] <= floor and not n_steps:
                return i, _SCAN_ALL_KEPT
            check = False
        ok, row = plans[i]
        k_max = kmax[i]
        span = max(k_max, 0) if ok else max(k_max, len(row))
        if max(span, len(row)) > len(cur):
            return i, _SCAN_GROW
        if top[i] > floor and _level_change(tables[i], cur, nz, dnz, 0, span):
            return i, _SCAN_CHANGE
        if n_steps and ok and _moves_a_change(cur, diff, steps, k_max):
            return i, _SCAN_STEPS
        cur[: len(row)] -= row  # ``_reserve``
        if tops[i + 1] < tops[i]:
            check = True
    return len(plans), _SCAN_END


def _reserve(arr: IntArray, row: IntArray) -> None:
    """``arr[: len(row)] -= row``: take a plan's GPUs from free GPUs (``row`` no longer)."""
    arr[: len(row)] -= row


def _swap(cur: IntArray, diff: IntArray, old: IntArray, new: IntArray) -> bool:
    """A re-planned job reserves ``new`` instead of ``old``: give ``old`` back to ``cur`` (the
    free GPUs without the newcomer) and move the difference into ``diff``; whether ``diff``
    stayed as it was (``old`` and ``new`` of one length and equal)."""
    cur[: len(old)] -= old
    diff[: len(old)] += old
    diff[: len(new)] -= new
    return len(old) == len(new) and bool((old == new).all())


def _plus(a: IntArray, b: IntArray, n: int) -> IntArray:
    """``a[:n] + b[:n]``, a new array (``a`` and ``b`` of one length, at least ``n``)."""
    return a[:n] + b[:n]


def _without(arr: IntArray, row: IntArray, size: int, total: int) -> tuple[IntArray, IntArray]:
    """A newcomer's admission test from the free GPUs ``arr`` with its plan ``row``
    reserved: the free GPUs without it (``arr + row``, in ``size`` slots, ``total`` past
    ``arr``) and the difference it makes (``-row``, zero after), two new arrays (``size`` at
    least ``len(arr)`` and ``len(row)``)."""
    n = len(row)
    cur = np.full(size, total, dtype=np.int64)
    cur[: len(arr)] = arr
    cur[:n] += row
    diff = np.zeros(size, dtype=np.int64)
    diff[:n] -= row
    return cur, diff


def _summary(
    diff: IntArray, after: IntArray, by_period: bool, hi: int
) -> tuple[IntArray, IntArray, int, IntArray]:
    """Of a trial's ``diff``: the slots where it is not zero (``nz``), its values there, the
    least of ``after + min(diff, 0)`` there (``_INT_MAX`` when nowhere) and, with
    ``by_period``, the slots where it differs from the slot before (else none). ``diff`` is
    zero from slot ``hi`` on (a bound the caller knows, which the compiled kernel uses to
    skip the zeros; the answer is the same for any true bound)."""
    nz = diff.nonzero()[0]
    if len(nz):
        dnz = diff[nz]
        floor = int((after[nz] + np.minimum(dnz, 0)).min())
    else:
        dnz, floor = _EMPTY, _INT_MAX
    steps = (diff[1:] != diff[:-1]).nonzero()[0] + 1 if by_period else _EMPTY
    return nz, dnz, floor, steps


def _moves_a_change(cur: IntArray, diff: IntArray, steps: IntArray, k_max: int) -> bool:
    """Whether adding ``diff`` to ``cur`` makes or removes a change of the free GPUs (from the
    slot before) at one of the slots ``steps`` (ascending) before ``k_max``."""
    c = int(steps.searchsorted(k_max))
    if not c:
        return False
    at = steps[:c]
    was_change = cur[at] != cur[at - 1]
    now_change = cur[at] + diff[at] != cur[at - 1] + diff[at - 1]
    return bool(_any(was_change != now_change))


class _Trial:
    """The admission test of one newcomer, reusing the plan without it.

    Planning is sequential: each job's plan is a function of its own inputs and of the free
    GPUs the jobs before it left, and only through the largest level that fits each slot it
    looks at (``_Planner.plan``: the slots up to its deadline, and for a job that cannot meet
    it the slots of its best-effort plan). With the newcomer reserved, the free GPUs seen by the
    jobs after it differ from those of the plan without it by ``diff`` (zero in most slots). A
    job whose fitting levels do not change in the slots where ``diff`` is not zero keeps its
    plan without being re-planned, and ``diff`` stays as it is; a job whose levels change is
    re-planned and ``diff`` updated. Once every remaining job's largest count fits in both
    versions of every slot where ``diff`` is not zero, all the rest keep their plans. With
    ``switch_at=free_change`` a plan that meets its deadline also depends on where the free GPUs
    change in its slots: a job is re-planned too when the newcomer makes or removes such a
    change there (possible only where ``diff`` itself changes), and the rest keep their plans
    only once ``diff`` is zero. The result is the same plan as re-planning every job after the
    newcomer."""

    def __init__(
        self,
        planner: _Planner,
        trial: _Free,
        row: IntArray,
        lane: _Lane,
        rest_free: _Free,
    ) -> None:
        """``trial``: the free GPUs the jobs before the newcomer leave, with the newcomer's
        plan ``row`` reserved (not changed here)."""
        self.planner = planner
        self.lane = lane  # the plan without the newcomer
        self.shapes: dict[str, _Shape] = {}  # ``_Planner.shape`` of the jobs re-planned
        self.rest_free = rest_free
        self.total = trial.total
        size = max(len(trial.arr), len(rest_free.arr))
        # free GPUs before the job, plan without; with the newcomer minus without
        self.cur, self.diff = planner.without(trial.arr, row, size, self.total)
        # free GPUs after every job, plan without (only read: not copied when long enough)
        after = rest_free.arr
        self.after = after if len(after) == size else self._pad(after, size)
        self.hi = len(row)  # ``diff`` is zero from this slot on
        self.nz: IntArray = _EMPTY  # the slots where ``diff`` is not zero (``run``) ...
        self.dnz: IntArray = _EMPTY  # ... and ``diff`` there
        self.plan: dict[str, tuple[bool, IntArray]] = {}  # the new plans of the jobs re-planned
        self.final = rest_free  # with the newcomer: set by a ``run`` that admits it

    def _pad(self, arr: IntArray, size: int) -> IntArray:
        if len(arr) >= size:
            return arr.copy()
        return np.concatenate([arr, np.full(size - len(arr), self.total, dtype=np.int64)])

    def _grow(self, size: int) -> None:
        if size > len(self.cur):
            size = max(size, 2 * len(self.cur))
            self.cur = self._pad(self.cur, size)
            self.after = self._pad(self.after, size)
            self.diff = np.concatenate([self.diff, np.zeros(size - len(self.diff), dtype=np.int64)])

    def _moves(self, lv: _Levels, shape: _Shape, span: int) -> bool:
        """Whether a plan that meets its deadline (``shape``: level q, step point p, slack)
        can change when the free GPUs in its slots (those before ``span``) go from ``cur`` to
        ``cur + diff``, given that ``min(fitting level, q)`` changes in some of them (where
        ``diff`` is not zero: ``nz``). It cannot if that happens only
        before p and ``min(fitting level, q - 1)`` changes nowhere: the levels below q are
        summed as before, the sum of level q from p to the deadline (which sets p) is as before
        and, the slack being larger than the rounding of any sum of the job's slots, level q's
        sum over all its slots still reaches the work needed; the reservation (level q - 1
        before p, q from p) is the same. The caller checks the slack against the job's slots."""
        q, point = shape[0], shape[1]
        change, planner = self.planner.level_change, self.planner
        if change(planner.fit_upto(lv, q), self.cur, self.nz, self.dnz, point, span):
            return True
        if q <= 1:
            return False
        return change(planner.fit_upto(lv, q - 1), self.cur, self.nz, self.dnz, 0, min(point, span))

    def run(self, start: int) -> bool:
        """Plan the lane's jobs from ``start`` with the newcomer in ``trial``; False as soon as a
        job that meets its deadline without the newcomer would miss it with it.

        Where ``diff`` is not zero (``nz``), every job still to plan sees, with and without the
        newcomer, at least the free GPUs the plan without the newcomer leaves after all of them
        plus ``diff`` where it is negative: ``floor``, their minimum over ``nz``. A job whose
        largest count is at most ``floor`` sees no change of fitting level anywhere. ``_scan``
        passes over the jobs that keep their plans for such reasons; the others get a closer
        look here."""
        planner, lane = self.planner, self.lane
        scan = planner.scan
        items, plans, tops = lane.items, lane.plans, lane.tops
        by_period = planner.by_period
        fresh = False  # nz, dnz, floor and steps describe ``diff`` as it is
        check = True
        dnz: IntArray = _EMPTY
        steps: IntArray = _EMPTY
        floor = 0
        i = start
        while i < len(items):
            if not fresh:
                # the slots where the newcomer changes the free GPUs and (``switch_at``
                # free_change) where a change of the free GPUs may come or go
                self.nz, dnz, floor, steps = planner.summary(
                    self.diff, self.after, by_period, self.hi
                )
                self.dnz = dnz
                self.hi = int(self.nz[-1]) + 1 if len(self.nz) else 0
                fresh = check = True
            i, how = scan(lane.cols, i, self.cur, self.diff, self.nz, dnz, steps, floor, check)
            if how == _SCAN_END:
                break
            if how == _SCAN_ALL_KEPT:  # no job left can see a change
                fin = self._pad(self.rest_free.arr, len(self.diff))
                fin[: len(self.diff)] += self.diff
                self.final = _Free(self.total, arr=fin)
                return True
            # a closer look at job i (``_scan`` has tested ``check`` for it)
            check = False
            it = items[i]
            was = plans[i]
            row = was[1]
            k_max = lane.kmax[i]
            span = max(k_max, 0) if was[0] else max(k_max, len(row))
            if how == _SCAN_GROW:
                self._grow(max(span, len(row)))
            cur, diff = self.cur, self.diff
            replan = how == _SCAN_STEPS
            if how == _SCAN_CHANGE or (how == _SCAN_GROW and lane.top[i] > floor):
                replan = how == _SCAN_CHANGE or planner.level_change(
                    lane.tables[i], cur, self.nz, dnz, 0, span
                )
                if replan and lane.movable[i]:
                    replan = self._moves(it.levels, lane.shapes[i], span)
            if not replan and how != _SCAN_STEPS and len(steps) and was[0]:
                # a plan that meets its deadline steps up where the free GPUs last change in
                # its first ``k_max`` slots: re-plan if the newcomer moves such a change
                replan = _moves_a_change(cur, diff, steps, k_max)
            i += 1
            if replan:
                # the free GPUs with the newcomer; a job that met its deadline is planned
                # without a best-effort plan (a miss ends the test), which reads its first
                # ``k_max`` slots only
                part = was[0] and 0 < k_max <= len(cur)
                trial = _Free(self.total, arr=planner.plus(cur, diff, k_max if part else len(cur)))
                got = planner.plan(it, trial, best_effort=not was[0])
                self.shapes[it.job_id] = planner.shape
                size = len(self.cur)
                self._grow(len(trial.arr))
                cur, diff = self.cur, self.diff
                # with the newcomer the job now reserves got[1] instead of row; the summary
                # still describes ``diff`` if the plan is the same and nothing grew
                if not planner.swap(cur, diff, row, got[1]) or len(cur) != size:
                    fresh = False
                self.hi = max(self.hi, len(row), len(got[1]))
                check = True  # as after a new summary
                if not got[0] and was[0]:
                    return False  # it would make a job that meets its deadline miss it
                self.plan[it.job_id] = got
                continue
            planner.reserve(cur, row)
            if tops[i] < tops[i - 1]:
                check = True
        fin = self._pad(self.rest_free.arr, max(len(self.cur), len(self.rest_free.arr)))
        fin[: len(self.diff)] += self.diff
        self.final = _Free(self.total, arr=fin)
        return True


# ---------------------------------------------------------------------------------------------
# placement


_NOTHING: Mapping[int, int] = {}
_NOTHING_PENDING: Mapping[str, tuple[int, ...]] = {}
_POP8: Final = tuple(bin(m).count("1") for m in range(256))


def _bits(mask: int) -> int:
    """The set bits of ``mask`` (>= 0): ``mask.bit_count()``, which compiled code calls as a
    Python method."""
    n = 0
    while mask:
        n += _POP8[mask & 255]
        mask >>= 8
    return n


@dataclass(frozen=True, slots=True)
class _Topology:
    """The cluster's nodes as the placer sees them: each node's GPUs (ascending gid), where
    each GPU sits (node, bit) and each node's full mask. Nodes are numbered 0, 1, ... in
    ascending order of their ids, so the placer keeps its per-node state in lists. The same
    for every decision of a run, so the policy builds it once (``matches`` checks a snapshot
    against it)."""

    gpn: int
    gids: tuple[int, ...]  # every GPU's gid, in the snapshot's order
    node_of: tuple[int, ...]  # and its node id
    nodes: list[list[int]]  # each node's GPUs, by node number
    where: dict[int, tuple[int, int]]  # gid -> (node number, bit)
    full: list[int]
    width: int
    zeros: list[int]  # 0 per node (copied for the placer's per-node masks and counts)

    @staticmethod
    def of(snap: Snapshot) -> _Topology:
        gids = tuple(g.gid for g in snap.gpus)
        node_of = tuple(g.node for g in snap.gpus)
        by_node: dict[int, list[int]] = {}
        for gid, n in zip(gids, node_of, strict=True):
            by_node.setdefault(n, []).append(gid)
        nodes = [sorted(members) for _, members in sorted(by_node.items())]
        where: dict[int, tuple[int, int]] = {}
        for n, members in enumerate(nodes):
            for bit, gid in enumerate(members):
                where[gid] = (n, 1 << bit)
        full = [(1 << len(members)) - 1 for members in nodes]
        width = max(len(members) for members in nodes)
        zeros = [0] * len(nodes)
        return _Topology(snap.gpus_per_node, gids, node_of, nodes, where, full, width, zeros)

    def matches(self, snap: Snapshot) -> bool:
        gpus = snap.gpus
        if snap.gpus_per_node != self.gpn or len(gpus) != len(self.gids):
            return False
        return all(
            g.gid == gid and g.node == n
            for g, gid, n in zip(gpus, self.gids, self.node_of, strict=True)
        )


class _Placer:
    """Buddy placement on nodes of ``gpn`` GPUs: fewer than ``gpn`` GPUs take an aligned block
    of one node, more take whole nodes. Sticky: a job keeps, shrinks inside, or grows into the
    block it holds when it can; otherwise it prefers blocks that evict no other job, then the
    fullest node (so whole nodes stay free for large jobs), then GPUs that are free already.

    Each node's GPUs are bits of an int (bit i = the node's i-th GPU, ascending gid), so a block
    test is one AND."""

    def __init__(self, snap: Snapshot, topo: _Topology | None = None) -> None:
        if topo is None or not topo.matches(snap):
            topo = _Topology.of(snap)
        self.topo = topo
        self.gpn = topo.gpn
        self.nodes = topo.nodes
        self.where = topo.where
        self.full = topo.full
        self.width = topo.width
        zeros = topo.zeros
        self.claimed = zeros.copy()
        self.protected = zeros.copy()  # GPUs of jobs that keep holding GPUs
        self.free = free = zeros.copy()
        where = self.where
        for gid in snap.free:
            n, bit = where[gid]
            free[n] |= bit
        # how many of each node's GPUs are claimed or protected, and the nodes by that count
        # (to pack new jobs fast), each list ascending; brought up to date by
        # ``_best_packed`` itself (``moved``: the nodes whose count changed since;
        # ``sorted_as``: the list each node is in), which many decisions never call
        self.used = zeros.copy()
        self.bucket: list[list[int]] = [[] for _ in range(self.width + 1)]
        self.bucket[0] = list(range(len(self.nodes)))
        self.sorted_as = zeros.copy()
        self.moved: list[int] = []
        # per block size, a heap of each node's best block for a job holding nothing there
        # (``_best_any``), entries tagged with the node's version; nodes changed since the
        # heap last looked are re-scored before it answers
        self.version = zeros.copy()
        self.heaps: dict[int, list[tuple[tuple[int, int, int, int], int, int, int]]] = {}
        self.dirty: dict[int, set[int]] = {}

    def _masks(self, gids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for gid in gids:
            n, bit = self.where[gid]
            out[n] = out.get(n, 0) | bit
        return out

    def _touch(self, n: int) -> None:
        self.version[n] += 1
        for dirty in self.dirty.values():
            dirty.add(n)
        used = _bits(self.claimed[n] | self.protected[n])
        if used != self.used[n]:
            self.used[n] = used
            self.moved.append(n)

    def _file_moved(self) -> None:
        """File the nodes whose count changed under their count now (``bucket``)."""
        used, sorted_as, bucket = self.used, self.sorted_as, self.bucket
        for n in self.moved:
            now, was = used[n], sorted_as[n]
            if now != was:
                old = bucket[was]
                del old[bisect.bisect_left(old, n)]
                bisect.insort(bucket[now], n)
                sorted_as[n] = now
        self.moved.clear()

    def hold(self, claimed: Iterable[Sequence[int]], protected: Iterable[Sequence[int]]) -> None:
        """``claim`` each of ``claimed``, then ``protect`` each of ``protected``, in one pass
        (before the first ``place``)."""
        where, touched = self.where, set()
        for marks, groups in ((self.claimed, claimed), (self.protected, protected)):
            for gids in groups:
                for gid in gids:
                    n, bit = where[gid]
                    marks[n] |= bit
                    touched.add(n)
        for n in sorted(touched):
            self._touch(n)

    def claim(self, gids: Sequence[int]) -> None:
        """Mark GPUs as taken (by a job placed or kept as it is)."""
        self._claim_masks(self._masks(gids))

    def _claim_masks(self, masks: Mapping[int, int]) -> None:
        for n, m in masks.items():
            self.claimed[n] |= m
            self._touch(n)

    def protect(self, gids: Sequence[int], on: bool = True) -> None:
        """Mark GPUs as held (or no longer held) by a job that will hold GPUs: taking them
        evicts it."""
        for n, m in self._masks(gids).items():
            self.protected[n] = self.protected[n] | m if on else self.protected[n] & ~m
            self._touch(n)

    def _best_packed(
        self, size: int, own: Mapping[int, int]
    ) -> tuple[tuple[int, int, int, int], int, int] | None:
        """The eviction-free block in the fullest node (then one of GPUs free already, then
        the lowest node): what ``_best_in`` would pick for a job with nothing to keep."""
        if size < 1:
            raise ValueError(f"a block of {size} GPUs")
        unit = (1 << size) - 1
        if self.moved:
            self._file_moved()
        claimed_of, full_of, protected_of, free_of = (
            self.claimed,
            self.full,
            self.protected,
            self.free,
        )
        for used in range(self.width - size, -1, -1):
            # the least (GPUs still to free, node, block): nodes ascending, blocks ascending
            # in each, so a candidate is better only with fewer GPUs to free
            best_later, best_n, best_bm = -1, 0, 0
            for n in self.bucket[used]:
                full = full_of[n]
                blocked = claimed_of[n] | (protected_of[n] & ~own.get(n, 0))
                if _bits(full & ~blocked) < size:
                    continue
                later_mask = ~free_of[n]
                last = full.bit_length() - size
                off = 0
                while off <= last:
                    bm = unit << off
                    off += size
                    if blocked & bm:
                        continue
                    later = _bits(bm & later_mask)
                    if best_later < 0 or later < best_later:
                        best_later, best_n, best_bm = later, n, bm
                        if not later:
                            break
                if best_later == 0:
                    break
            if best_later >= 0:
                return ((0, 0, -used, best_later), best_n, best_bm)
        return None

    def _score(self, n: int, bm: int, own: int) -> tuple[int, int, int, int]:
        evict = _bits(self.protected[n] & bm & ~own)
        used = _bits(self.claimed[n] | self.protected[n])
        later = _bits(bm & ~own & ~self.free[n])
        return (evict, -_bits(bm & own), -used, later)

    def _best_in(
        self, nodes: Sequence[int], size: int, own: Mapping[int, int]
    ) -> tuple[tuple[int, int, int, int], int, int] | None:
        if size < 1:
            raise ValueError(f"a block of {size} GPUs")
        best: tuple[tuple[int, int, int, int], int, int] | None = None
        unit = (1 << size) - 1
        for n in nodes:
            claimed, full = self.claimed[n], self.full[n]
            if _bits(full & ~claimed) < size:
                continue
            mine = own.get(n, 0)
            others = self.protected[n] & ~mine
            used = -_bits(claimed | self.protected[n])
            later_mask = ~mine & ~self.free[n]
            last = full.bit_length() - size
            off = 0
            while off <= last:
                bm = unit << off
                off += size
                if claimed & bm:
                    continue
                score = (
                    _bits(others & bm),
                    -_bits(bm & mine),
                    used,
                    _bits(bm & later_mask),
                )
                if best is None or (score, n, bm) < best:
                    best = (score, n, bm)
        return best

    def _best_any(
        self, size: int, own: Mapping[int, int]
    ) -> tuple[tuple[int, int, int, int], int, int] | None:
        """What ``_best_in`` over every node gives: the nodes ``own`` holds GPUs of are scored
        directly, the others come from the heap of ``size``."""
        heap = self.heaps.get(size)
        if heap is None:
            heap = self.heaps[size] = []
            self.dirty[size] = set(range(len(self.nodes)))
        dirty = self.dirty[size]
        for n in sorted(dirty):
            got = self._best_in((n,), size, _NOTHING)
            if got is not None:
                heapq.heappush(heap, (*got, self.version[n]))
        dirty.clear()
        found = None
        held = []
        while heap:
            entry = heap[0]
            n = entry[1]
            if entry[3] != self.version[n]:
                heapq.heappop(heap)  # the node changed since: re-scored above
            elif n in own:
                held.append(heapq.heappop(heap))
            else:
                found = entry[:3]
                break
        for entry in held:
            heapq.heappush(heap, entry)
        mine = self._best_in(sorted(own), size, own) if own else None
        if found is None or (mine is not None and mine < found):
            return mine
        return found

    def _whole_nodes(self, count: int, own: Mapping[int, int]) -> list[int] | None:
        """The ``count`` unclaimed whole nodes for a job holding ``own`` (node -> mask): fewest
        evictions, then most of its own GPUs, then fewest GPUs still to free, then the lowest
        node; None if fewer are left."""
        scored = []
        for n, gids in enumerate(self.nodes):
            if len(gids) == self.gpn and not self.claimed[n]:
                evict, overlap, _, later = self._score(n, self.full[n], own.get(n, 0))
                scored.append((evict, overlap, later, n))
        if len(scored) < count:
            return None
        return [n for *_, n in sorted(scored)[:count]]

    def place(self, size: int, own: tuple[int, ...]) -> tuple[int, ...] | None:
        """``size`` GPUs for a job that holds ``own`` now; None if no block is left."""
        if size == 0:  # it gives up all it holds: taking that evicts nobody
            if own:
                self.protect(own, on=False)
            return ()
        chosen: list[int]
        if size <= self.gpn:
            mine = self._masks(own)
            best = None
            if len(own) == size and len(mine) == 1:
                # it keeps an aligned block of one node that nobody claimed: ``_best_in`` on
                # its node picks that block (the only one it overlaps fully, evicting nobody)
                ((n, m),) = mine.items()
                off = (m & -m).bit_length() - 1
                if off % size == 0 and m == ((1 << size) - 1) << off and not self.claimed[n] & m:
                    self._claim_masks(mine)
                    return tuple(sorted(own))
            if own:  # keep, shrink inside or grow around what it holds, evicting nobody
                best = self._best_in(sorted(mine), size, mine)
                if best is not None and not (best[0][0] == 0 and best[0][1] < 0):
                    best = None
            if best is None:
                best = self._best_packed(size, mine)
            if best is None:  # every free block would evict a job
                best = self._best_any(size, mine)
            if best is None:
                return None
            _, n, bm = best
            chosen = [g for i, g in enumerate(self.nodes[n]) if bm >> i & 1]
        else:
            if size % self.gpn:
                return None
            mine = self._masks(own)
            if len(own) == size and all(
                m == self.full[n] and len(self.nodes[n]) == self.gpn and not self.claimed[n]
                for n, m in mine.items()
            ):
                # it keeps whole nodes that nobody claimed: they score first (no eviction,
                # the largest overlap), so ``_whole_nodes`` would pick exactly them
                self._claim_masks(mine)
                return tuple(sorted(own))
            nodes = self._whole_nodes(size // self.gpn, mine)
            if nodes is None:
                return None
            chosen = [g for n in nodes for g in self.nodes[n]]
        self.claim(chosen)
        # what the job gives up is no longer protected: taking it evicts nobody
        keep = set(chosen)
        self.protect([g for g in own if g not in keep], on=False)
        return tuple(sorted(chosen))


_HandOut = tuple[int, float, tuple[float, float, str], int]


def _hand_out_entry(it: _Item, n: int, sign: float, idx: int, spare: int) -> _HandOut | None:
    """``_hand_out``'s heap entry for job ``idx`` holding ``n`` GPUs: its next level first if it
    holds none, else by the GPU-time its next level adds per GPU added (``sign`` -1: most
    first); None if it is at its top level or its next level needs more than ``spare`` GPUs
    (spare GPUs only become fewer: it would never get them)."""
    lv = it.levels.counts_t
    pos = bisect.bisect_right(lv, n)
    if pos >= len(lv) or lv[pos] - n > spare:
        return None
    if n == 0:
        return (0, 0.0, it.order, idx)
    nxt = lv[pos]
    thr_n = it.levels.thr_t[pos]  # thr_t is shifted by one
    thr_next = it.levels.thr_t[pos + 1]
    added = nxt * it.remaining / thr_next - n * it.remaining / thr_n
    return (1, sign * added / (nxt - n), it.order, idx)


# ---------------------------------------------------------------------------------------------
# the policy


@mypyc_attr(allow_interpreted_subclasses=True)
class ElasticFlow:
    """ElasticFlow-style slotted admission control with elastic, power-of-two allocations."""

    name = "elasticflow"

    def __init__(self, ctx: PolicyContext, cfg: ElasticFlowConfig) -> None:
        self.cfg = cfg
        self.profiles: ProfileSet = ctx.profiles
        self.bank: InitChooser | None = ctx.bank if cfg.bank else None
        self._levels: dict[tuple[str, int, int, int, int, int], _Levels] = {}
        # a live job's spec, the cluster it was sized for, its order and levels (``_item``)
        self._static: dict[str, tuple[JobSpec, int, int, tuple[float, float, str], _Levels]] = {}
        self._admitted: set[str] = set()
        self._pending: dict[str, tuple[int, ...]] = {}  # second step of the last boundary
        self._pending_at: float | None = None
        self._planned: dict[str, int] | None = None  # GPUs per job in the last plan
        self._next_change: float | None = None  # when a planned allocation steps up
        self._last_plan = -math.inf  # time of the last re-plan (timing=artifact)
        self._topology: _Topology | None = None  # the placer's view of the nodes

    # ------------------------------------------------------------------ helpers

    def levels(self, spec: JobSpec, total: int, gpn: int) -> _Levels:
        """The GPU counts ``spec`` may hold: powers of two from its ``min_gpus`` up to its cap
        (``max_gpus``, the cluster, whole nodes beyond one node and, with ``cap_by_profile``,
        its batch size and where its throughput stops improving)."""
        key = (spec.model, spec.batch_size, spec.min_gpus, spec.max_gpus, total, gpn)
        hit = self._levels.get(key)
        if hit is not None:
            return hit
        cap = min(spec.max_gpus, total)
        if self.cfg.cap_by_profile:
            cap = min(cap, spec.batch_size)
        counts: list[int] = []
        thr: list[float] = []
        n = 1
        while n <= cap:
            if n >= spec.min_gpus and (n <= gpn or n % gpn == 0):
                rate = self.profiles.iters_per_second(spec.model, n, spec.batch_size)
                if self.cfg.cap_by_profile and thr and rate <= thr[-1] * (1.0 + 1e-9):
                    break
                counts.append(n)
                thr.append(rate)
            n *= 2
        lv = _Levels(
            counts=np.asarray(counts, dtype=np.int64),
            counts_ext=np.asarray([0, *counts], dtype=np.int64),
            thr_ext=np.asarray([0.0, *thr], dtype=np.float64),
            monotone=all(b >= a for a, b in itertools.pairwise(thr)),
            top=counts[-1] if counts else 0,
            counts_t=tuple(counts),
            thr_t=(0.0, *[float(t) for t in thr]),
            fit_table=np.searchsorted(counts, np.arange(total + 1), side="right"),
        )
        self._levels[key] = lv
        return lv

    def _on_grid(self, now: float) -> bool:
        """Whether ``now`` is a decision time (with ``timing=artifact``: one slot or more after
        the last re-plan; the boundary re-plans only if an event is due)."""
        slot = self.cfg.slot_s
        if self.cfg.timing == "artifact":
            return now >= self._last_plan + slot - 1e-6
        return abs(now - round(now / slot) * slot) <= 1e-6

    def _next_boundary(self, now: float) -> float | None:
        """The next decision time to wake at (``timing=artifact``: one slot after the last
        re-plan, else the next planned step-up; arrivals and completions wake the policy
        themselves)."""
        slot = self.cfg.slot_s
        if self.cfg.timing == "artifact":
            due = [t for t in (self._last_plan + slot, self._next_change) if t is not None]
            later = [t for t in due if t > now + 1e-9]
            return min(later) if later else None
        k = math.floor(now / slot + 1e-9) + 1
        return k * slot

    def _quiet_wake(self, now: float) -> float | None:
        """The decision time to wake at after a boundary at which no event was due: the first
        one at which the plan's next step-up is due (``_event_due``), None if there is none.
        The boundaries between would find nothing due either: what else makes one due (an
        arrival, a completion, a change of a job's GPUs) comes with a decision of its own,
        which wakes the policy at the next boundary (``decide``)."""
        if self.cfg.timing == "artifact" or self._pending:
            return self._next_boundary(now)
        change = self._next_change
        if change is None:
            return None
        slot, due = self.cfg.slot_s, change - 1e-6
        first = math.floor(now / slot + 1e-9) + 1  # the next boundary, as ``_next_boundary``
        k = max(first, math.ceil(due / slot))
        while k > first and (k - 1) * slot >= due:  # (rounding either way)
            k -= 1
        while k * slot < due:
            k += 1
        return k * slot

    @staticmethod
    def _unheld(snap: Snapshot) -> list[int]:
        """Warm-idle and pre-warming GPUs: no job holds them."""
        out = [g for gids in snap.warm_idle.values() for g in gids]
        out.extend(snap.prewarming)
        return sorted(set(out))

    def _idle(self, snap: Snapshot) -> list[int]:
        """GPUs to release when no job needs them: every GPU no job holds (``released``), or
        none (``dedicated``: idle replicas stay provisioned)."""
        return [] if self.cfg.replicas == "dedicated" else self._unheld(snap)

    def _releases(
        self, snap: Snapshot, given_up: Sequence[int], wanted: Sequence[tuple[int, ...]]
    ) -> tuple[int, ...]:
        """What a decision releases: with ``released`` every GPU no job holds and those given
        up now; with ``dedicated`` only those of them that a job will take in the second step
        (it then loads them afresh: a cold start)."""
        out = set(self._unheld(snap)) | set(given_up)
        if self.cfg.replicas == "dedicated":
            out &= {g for target in wanted for g in target}
        return tuple(sorted(out))

    # ------------------------------------------------------------------ decide

    def decide(self, snap: Snapshot) -> Decision:
        now = snap.now
        if self._on_grid(now):
            return self._boundary(snap)
        if self._pending and self._pending_at is not None and now >= self._pending_at - 1e-12:
            return self._second_step(snap)
        wake = None
        if snap.jobs:
            wake = self._next_boundary(now)
            if self._pending_at is not None and self._pending and self._pending_at > now:
                wake = self._pending_at if wake is None else min(wake, self._pending_at)
        return Decision(release=tuple(self._idle(snap)), wake_at=wake)

    def _second_step(self, snap: Snapshot) -> Decision:
        """Finish the moves of the last boundary now that the GPUs it released are free."""
        free = set(snap.free)
        alloc: dict[str, tuple[int, ...]] = {}
        given_up: list[int] = []
        jobs = snap.jobs_by_id
        for job_id, target in sorted(self._pending.items()):
            view = jobs.get(job_id)
            if view is None:
                continue
            have = set(view.gpus)
            if all(g in have or g in free for g in target):
                alloc[job_id] = target
                free.difference_update(target)
                given_up.extend(g for g in view.gpus if g not in target)
        self._pending, self._pending_at = {}, None
        release = self._releases(snap, given_up, [])
        wake = self._next_boundary(snap.now) if snap.jobs else None
        return Decision(allocations=alloc, release=release, wake_at=wake)

    def _item(self, view: JobView, now: float, total: int, gpn: int, remaining: float) -> _Item:
        spec = view.spec
        hit = self._static.get(spec.job_id)
        if hit is None or hit[0] is not spec or hit[1] != total or hit[2] != gpn:
            order = (spec.deadline, spec.arrival, spec.job_id)
            hit = (spec, total, gpn, order, self.levels(spec, total, gpn))
            self._static[spec.job_id] = hit
        return _Item(
            job_id=spec.job_id,
            order=hit[3],
            deadline=spec.deadline,
            remaining=remaining,
            levels=hit[4],
            held=len(view.gpus),
            gpus=view.gpus,
        )

    def _event_due(self, snap: Snapshot) -> bool:
        """Whether this boundary needs a new plan: ElasticFlow re-plans at its events only
        (arrivals, completions, and the times a planned allocation steps up)."""
        if self.cfg.replan == "every_slot" or self._planned is None:
            return True
        if any(
            j.job_id not in self._admitted and not j.gpus and j.first_start is None
            for j in snap.queued
        ):
            return True  # a newcomer
        jobs = snap.jobs_by_id
        # before the second step of the last re-plan, its growing jobs hold what the first
        # step left them: no reason to re-plan at another decision of the same instant
        at = self._pending_at
        waiting = self._pending if at is not None and snap.now < at else _NOTHING_PENDING
        for job_id, held in self._planned.items():
            view = jobs.get(job_id)
            if view is None:
                return True  # a completion
            if len(view.gpus) != held and job_id not in waiting:
                return True  # a move that could not be carried out
        return self._next_change is not None and snap.now >= self._next_change - 1e-6

    def _boundary(self, snap: Snapshot) -> Decision:
        now = snap.now
        total, gpn = snap.num_gpus, snap.gpus_per_node
        if not self._event_due(snap):
            wake = self._quiet_wake(now) if snap.jobs else None
            return Decision(release=tuple(self._idle(snap)), wake_at=wake)
        if len(self._static) > 2 * len(snap.jobs) + 64:  # now and then: amortised
            live = snap.jobs_by_id
            self._static = {k: v for k, v in self._static.items() if k in live}
        self._last_plan = now
        planner = _Planner(now, self.cfg.slot_s, self.cfg.switch_at)

        admitted: list[_Item] = []
        finishing: list[_Item] = []  # no iterations left: keep what they hold until they end
        newcomers: list[_Item] = []
        inits: dict[str, InitChoice] = {}
        reject: list[str] = []
        was = self._admitted
        kept: set[str] = set()  # the live jobs admitted (those that left are forgotten)
        for view in snap.jobs:
            spec = view.spec
            if view.job_id in was or view.gpus or view.first_start is not None:
                # admitted earlier (a job that holds GPUs or ran was admitted by definition)
                kept.add(view.job_id)
                it = self._item(view, now, total, gpn, _remaining(view, now))
                (admitted if it.remaining > 0 else finishing).append(it)
                continue
            remaining = _remaining(view, now)
            if self.bank is not None and view.init is None:
                init = self.bank.choose(spec)
                inits[view.job_id] = init
                remaining = expected_iterations(spec, init)
            it = self._item(view, now, total, gpn, remaining)
            if len(it.levels.counts) == 0:
                reject.append(view.job_id)  # no allowed GPU count fits this cluster
                continue
            newcomers.append(it)
        self._admitted = kept
        _sort_by_order(admitted)
        _sort_by_order(newcomers)

        base_free = _Free(total)
        base_free.arr[0] -= sum(it.held for it in finishing)
        accepted, rejected, plan_items, plans, free = self._admit(
            planner, admitted, newcomers, base_free
        )
        reject.extend(rejected)
        for job_id in rejected:
            inits.pop(job_id, None)
        self._admitted.update(i.job_id for i in accepted)

        rows = [row for _, row in plans]
        counts = [int(row[0]) if row.size else 0 for row in rows]  # by position, as below
        spare = int(free.arr[0])
        self._hand_out(plan_items, counts, spare)
        decision, placed = self._apply_plan(snap, plan_items, finishing, counts, inits, reject)
        planned = {it.job_id: len(gids) for it, gids in zip(plan_items, placed, strict=True)}
        planned.update((it.job_id, it.held) for it in finishing)
        self._planned = planned
        # the first slot in which some job's plan steps above what it gets now (each row is
        # only read up to the earliest such slot found so far)
        first_up: int | None = None
        for row, gids in zip(rows, placed, strict=True):
            limit = len(row) if first_up is None else min(len(row), first_up)
            if limit > 1:
                above = row[1:limit] > len(gids)
                k = int(above.argmax())
                if above[k]:
                    first_up = k + 1
        due = first_up is not None and self.cfg.replan != "jobs"
        self._next_change = now + first_up * self.cfg.slot_s if first_up and due else None
        if self.cfg.timing == "artifact" and not self._pending and decision.wake_at is not None:
            decision = dataclasses.replace(decision, wake_at=self._next_boundary(now))
        if self.cfg.event_pause_s > 0.0:
            decision = self._event_pauses(snap, decision, plan_items)
        return decision

    def _event_pauses(self, snap: Snapshot, decision: Decision, items: Sequence[_Item]) -> Decision:
        """``decision`` with ``event_pause_s`` charged to every job that has trained, holds
        only ready GPUs, keeps (or, in this step, shrinks to) a set without new GPUs and is not
        expected to finish within the slot (ElasticFlow's deadline check takes the finish
        planned at a job's last scheduling event, which leaves out the overhead charged at that
        event)."""
        pause: dict[str, float] = {}
        for it in items:
            view = snap.jobs_by_id[it.job_id]
            if view.first_start is None or not view.gpus or view.ready_gpus != len(view.gpus):
                continue
            if it.job_id in self._pending:
                continue  # it grows 1 ms later: the grow's cold start and pause are its cost
            after = decision.allocations.get(it.job_id, view.gpus)
            if not after or not set(after) <= set(view.gpus):
                continue
            rate = self.profiles.iters_per_second(view.spec.model, len(after), view.spec.batch_size)
            if it.remaining <= rate * self.cfg.slot_s:
                continue  # planned to finish before the next decision
            pause[it.job_id] = self.cfg.event_pause_s
        return dataclasses.replace(decision, pause=pause)

    def _admit(
        self,
        planner: _Planner,
        admitted: list[_Item],
        newcomers: list[_Item],
        base: _Free,
    ) -> tuple[list[_Item], list[str], list[_Item], list[_Plan], _Free]:
        """Admission control: the newcomers admitted (in deadline order) and rejected; the
        admitted jobs and the admitted newcomers in deadline order and each one's plan by
        position; and the free GPUs that plan leaves."""
        if not newcomers:
            free = base.copy()
            return [], [], admitted, planner.plan_all(admitted, free), free
        if self.cfg.admission == "batch":
            merged = [*admitted, *newcomers]
            _sort_by_order(merged)
            free = base.copy()
            together = planner.plan_all(merged, free)
            if all(ok for ok, _ in together):
                return list(newcomers), [], merged, together, free
            free = base.copy()
            return (
                [],
                [i.job_id for i in newcomers],
                admitted,
                planner.plan_all(admitted, free),
                free,
            )
        accepted: list[_Item] = []
        accepted_plans: list[_Plan] = []
        rejected: list[str] = []
        running = base.copy()  # the reservations of the jobs before the current newcomer
        # the plan of the admitted jobs after the current newcomer, as things stand (the
        # newcomers admitted so far included), and the free GPUs it leaves: each newcomer's
        # test reuses it (``_Trial``) instead of re-planning those jobs from scratch; a job's
        # plan in the lane is final once a newcomer passes it (later ones plan after it)
        rest_free = running.copy()
        lane = _Lane(admitted, planner, rest_free)
        pos = 0
        for cand in newcomers:
            while pos < len(admitted) and admitted[pos].order < cand.order:
                # planned on exactly ``running`` as it is now when the lane's plan was made
                row = lane.plans[pos][1]
                running.ensure(len(row))
                planner.reserve(running.arr, row)
                pos += 1
            # planned on ``running``, which keeps its reservation if it is admitted
            size = len(running.arr)
            ok, row = planner.plan(cand, running, best_effort=False)  # rejected if it misses
            if ok:
                test = _Trial(planner, running, row, lane, rest_free)
                ok = test.run(pos)
                if ok:
                    accepted.append(cand)
                    accepted_plans.append((True, row))
                    rest_free = test.final
                    lane.update(test.plan, test.shapes)
                    continue
                running.arr[: len(row)] += row
            if len(running.arr) > size:  # as it was: the slots the plan looked at go
                running.arr = running.arr[:size]
            rejected.append(cand.job_id)
        items, plans = _merge_by_order(admitted, accepted, lane.plans, accepted_plans)
        return accepted, rejected, items, plans, rest_free

    def _hand_out(self, items: Sequence[_Item], counts: list[int], spare: int) -> None:
        """Work conservation: idle GPUs go out one level at a time until none can be used
        (``counts``: the GPUs of ``items[i]`` at ``i``, raised in place)."""
        if spare <= 0:
            return  # (a full cluster: the common case, so no entry is made)
        sign = -1.0 if self.cfg.handout_order == "artifact" else 1.0
        heap: list[_HandOut] = []
        for i, it in enumerate(items):
            if it.remaining > 0:
                entry = _hand_out_entry(it, counts[i], sign, i, spare)
                if entry is not None:
                    heap.append(entry)
        heapq.heapify(heap)  # entries differ (each has its job's index): pops as pushes would
        while heap and spare > 0:
            _, _, _, idx = heapq.heappop(heap)
            it = items[idx]
            n = counts[idx]
            lv = it.levels.counts_t
            nxt = lv[bisect.bisect_right(lv, n)]
            if nxt - n > spare:
                continue  # spare only shrinks: it will not fit later either
            counts[idx] = nxt
            spare -= nxt - n
            entry = _hand_out_entry(it, nxt, sign, idx, spare)
            if entry is not None:
                heapq.heappush(heap, entry)

    def _apply_plan(
        self,
        snap: Snapshot,
        items: Sequence[_Item],
        finishing: Sequence[_Item],
        counts: Sequence[int],
        inits: Mapping[str, InitChoice],
        reject: Sequence[str],
    ) -> tuple[Decision, list[tuple[int, ...]]]:
        """Place the counts of ``items`` (in deadline order; ``counts[i]`` for ``items[i]``,
        each holding ``gpus`` of ``snap``) on the cluster and split the changes into this
        step (shrinks and grows onto free GPUs) and a second step ``_PHASE_GAP_S`` later
        (grows onto GPUs released now); with the GPUs each item is placed on."""
        held = [it.gpus for it in items]  # what each holds now
        placer = _Placer(snap, self._topology)
        self._topology = placer.topo
        placer.hold(
            [it.gpus for it in finishing],
            [own for own, n in zip(held, counts, strict=True) if n > 0],
        )
        # larger counts first, then the jobs that keep their count, then deadline order:
        # ``items`` are in deadline order, which a stable sort keeps among equal ranks
        rank = [-2 * n - (len(own) == n) for own, n in zip(held, counts, strict=True)]
        placed: list[tuple[int, ...]] = [()] * len(items)
        moved: list[tuple[str, int]] = []  # the jobs whose GPUs change, and where
        for k in sorted(range(len(items)), key=rank.__getitem__):
            it, n, own = items[k], counts[k], held[k]
            got = placer.place(n, own)
            while got is None:  # fragmentation (only with nodes that are not a power of two)
                lv = it.levels.counts
                smaller = lv[lv < n]
                n = int(smaller[-1]) if smaller.size else 0
                got = placer.place(n, own)
            placed[k] = got
            if got != own and set(got) != set(own):
                moved.append((it.job_id, k))

        free_now = set(snap.free)
        alloc: dict[str, tuple[int, ...]] = {}
        pending: dict[str, tuple[int, ...]] = {}
        given_up: list[int] = []
        for job_id, k in sorted(moved):
            target = placed[k]
            own = held[k]
            keep = tuple(g for g in own if g in target)
            if all(g in free_now or g in own for g in target):
                alloc[job_id] = target
                given_up.extend(g for g in own if g not in target)
                continue
            pending[job_id] = target
            if len(keep) != len(own):
                spec = self._static[job_id][0]  # (``_item`` filed every item's spec)
                step = keep if keep and spec.min_gpus <= len(keep) <= spec.max_gpus else ()
                alloc[job_id] = step
                given_up.extend(g for g in own if g not in step)
        self._pending = pending
        self._pending_at = snap.now + _PHASE_GAP_S if pending else None
        release = self._releases(snap, given_up, list(pending.values()))
        live_after = len(snap.jobs) - len(reject)
        wake: float | None = None
        if pending:
            wake = snap.now + _PHASE_GAP_S
        elif live_after > 0:
            wake = self._next_boundary(snap.now)
        admitted_inits = {k: v for k, v in inits.items() if k in self._admitted}
        decision = Decision(
            allocations=alloc,
            reject=tuple(reject),
            init=admitted_inits,
            release=release,
            wake_at=wake,
        )
        return decision, placed


@POLICIES.register(
    "elasticflow",
    ElasticFlowConfig,
    "ElasticFlow-style: slotted admission control on minimum satisfactory shares, "
    "power-of-two elastic allocations, buddy placement, no warm pool",
)
def make_elasticflow(ctx: PolicyContext, cfg: ElasticFlowConfig) -> ElasticFlow:
    return ElasticFlow(ctx, cfg)
