"""The policy toolkit on its own, on hand-built snapshots: ``GpuPool`` (what it holds, take
order, giving back in order, the queue loop), ``pool_supply``, ``Predictor``, ``pick_count`` and
the iteration estimate after an initial prompt."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import partial

import pytest

from ptsim.core.policies.common import GpuPool, keep_alive_release
from ptsim.core.policies.planning import (
    CountPick,
    Predictor,
    Supply,
    counts_for,
    lookup_due,
    pick_count,
    pool_supply,
    remaining_iters,
)
from ptsim.core.profiles import ProfileSet
from ptsim.core.types import (
    Decision,
    GpuState,
    GpuView,
    InitChoice,
    JobSpec,
    JobState,
    JobView,
    Snapshot,
    expected_iterations,
)
from ptsim.simulator import Simulation
from tests._policy_kit import check_run, curve_profiles, spec

F, L, W, B = GpuState.FREE, GpuState.LOADING, GpuState.WARM, GpuState.BUSY
# 1 GPU: 10 it/s, 2: 18, 3: 24, 4: 28; cold start 4 s, reload 2 s, hand-over 0.5 s, pause 2 s
PROF = curve_profiles({"a": [10.0, 18.0, 24.0, 28.0], "b": [5.0, 9.0]})


def snapshot(
    gpus: Sequence[tuple[GpuState, str | None, float]],
    *,
    per_node: int = 4,
    now: float = 2.0,
    jobs: Sequence[JobView] = (),
) -> Snapshot:
    """A snapshot of GPUs given as (state, model, since); a busy GPU belongs to job ``x``."""
    views = tuple(
        GpuView(gid, gid // per_node, st, m, "x" if st is B else None, since)
        for gid, (st, m, since) in enumerate(gpus)
    )
    warm: dict[str, list[int]] = {}
    for v in views:
        if v.state is W and v.model is not None:
            warm.setdefault(v.model, []).append(v.gid)
    return Snapshot(
        now=now,
        gpus=views,
        jobs=tuple(jobs),
        gpus_per_node=per_node,
        free=tuple(v.gid for v in views if v.state is F),
        warm_idle={m: tuple(g) for m, g in sorted(warm.items())},
        queued=tuple(j for j in jobs if not j.gpus),
        prewarming=tuple(v.gid for v in views if v.state is L),
    )


# node 0: warm a, warm a, pre-warming a (since 1 s: ready at 5 s), warm b; node 1: all free
MIXED = [(W, "a", 0.0), (W, "a", 1.0), (L, "a", 1.0), (W, "b", 0.0), *[(F, None, 0.0)] * 4]


def view(s: JobSpec, *, gpus: tuple[int, ...] = (), **kw: object) -> JobView:
    fields: dict[str, object] = dict(
        state=JobState.QUEUED if not gpus else JobState.RUNNING,
        gpus=gpus,
        ready_gpus=len(gpus),
        iters_done=0.0,
        progress_at=0.0,
        rate=0.0,
        iters_estimate=float(s.iterations),
        init=None,
        first_start=None,
        rescales=0,
    )
    fields.update(kw)
    return JobView(spec=s, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# GpuPool


def test_pool_shows_what_it_holds_per_source_ascending() -> None:
    pool = GpuPool(snapshot(MIXED))
    assert pool.warm_models() == ["a", "b"]
    assert list(pool.warm("a")) == [0, 1] and list(pool.warm("b")) == [3]
    assert list(pool.warm("c")) == []
    assert list(pool.prewarming("a")) == [2] and list(pool.prewarming("b")) == []
    assert list(pool.free) == [4, 5, 6, 7]
    assert pool.warm_count("a") == 3
    assert pool.available("a") == 8 and pool.available("a", allow_reload=False) == 7
    assert pool.available("b", allow_reload=False) == 5
    assert pool.size() == 8


def test_take_goes_warm_then_prewarming_then_free_then_reload() -> None:
    pool = GpuPool(snapshot(MIXED))
    assert pool.take("a", 8) == [0, 1, 2, 4, 5, 6, 7, 3]
    assert pool.size() == 0 and pool.available("a") == 0
    pool = GpuPool(snapshot(MIXED))
    assert pool.take("a", 8, allow_reload=False) == [0, 1, 2, 4, 5, 6, 7]
    assert list(pool.warm("b")) == [3] and pool.size() == 1


def test_free_gpus_are_packed_onto_the_fullest_free_node() -> None:
    # node 0 has 2 free GPUs, node 1 has 3, node 2 has 1
    gpus = [(F, None, 0.0), (B, "a", 0.0), (F, None, 0.0), (B, "a", 0.0)]
    gpus += [(F, None, 0.0), (F, None, 0.0), (B, "a", 0.0), (F, None, 0.0)]
    gpus += [(B, "a", 0.0), (B, "a", 0.0), (B, "a", 0.0), (F, None, 0.0)]
    pool = GpuPool(snapshot(gpus))
    assert pool.take("a", 2) == [4, 5]
    assert pool.take("a", 2) == [0, 2]  # now node 0 (2 free) beats node 1 (1 left)
    assert pool.pop_free() == 7
    assert pool.take("a", 5) == [11]
    assert list(pool.free) == []


def test_pop_free_keeps_the_node_grouping_in_step() -> None:
    pool = GpuPool(snapshot([(F, None, 0.0)] * 8))
    assert pool.take("a", 1) == [0]  # groups the free GPUs by node
    assert pool.pop_free() == 1
    assert pool.take("a", 3) == [4, 5, 6]  # node 1 has 4 free, node 0 only 2
    assert list(pool.free) == [2, 3, 7]


def test_give_back_returns_each_gpu_to_its_source_in_order() -> None:
    pool = GpuPool(snapshot(MIXED))
    got = pool.take("a", 8)
    pool.give_back([7, 3, 0, 2, 5])
    assert list(pool.warm("a")) == [0] and list(pool.warm("b")) == [3]
    assert list(pool.prewarming("a")) == [2] and list(pool.free) == [5, 7]
    pool.give_back([g for g in got if g in (1, 4, 6)])
    assert list(pool.warm("a")) == [0, 1] and list(pool.free) == [4, 5, 6, 7]
    assert pool.take("a", 6, allow_reload=False) == [0, 1, 2, 4, 5, 6]


def test_add_idle_keeps_the_warm_gpus_ascending() -> None:
    gpus = [(B, "a", 0.0), (B, "a", 0.0), (W, "a", 0.0), (B, "a", 0.0), (W, "a", 0.0)]
    pool = GpuPool(snapshot(gpus, per_node=8))
    assert list(pool.warm("a")) == [2, 4]
    pool.add_idle("a", (3, 0))
    assert list(pool.warm("a")) == [0, 2, 3, 4]
    pool.add_idle("c", (1,))
    assert pool.warm_models() == ["a", "c"] and list(pool.warm("c")) == [1]
    assert pool.take("a", 2) == [0, 2]


def test_keep_alive_release_only_idle_long_enough() -> None:
    gpus = [(W, "a", 0.0), (W, "a", 50.0), (W, "b", 20.0), (F, None, 0.0)]
    snap = snapshot(gpus, now=60.0)
    pool = GpuPool(snap)
    assert keep_alive_release(snap, pool, 40.0) == ((0, 2), 90.0)
    pool.take("a", 1)
    assert keep_alive_release(snap, pool, 40.0) == ((2,), 90.0)
    assert keep_alive_release(snap, GpuPool(snapshot([(F, None, 0.0)])), 40.0) == ((), None)


class _CountingPool(GpuPool):
    def __init__(self, snap: Snapshot) -> None:
        super().__init__(snap)
        self.asked: list[str] = []

    def available(self, model: str, allow_reload: bool = True) -> int:
        self.asked.append(model)
        return super().available(model, allow_reload)


def test_start_queued_lets_later_jobs_pass_one_that_does_not_fit() -> None:
    jobs = [
        view(spec("a2", 0, 100, 100, min_gpus=2)),  # 3 GPUs left, but only 1 for model a
        view(spec("a2-too", 1, 100, 100, min_gpus=2)),
        view(spec("never", 2, 100, 100)),
        view(spec("b1", 3, 100, 100, model="b")),
        view(spec("a1", 4, 100, 100)),
        view(spec("b4", 5, 100, 100, model="b", min_gpus=4)),  # 4 > 1 left
    ]
    gpus = [(W, "b", 0.0), (W, "b", 0.0), (F, None, 0.0), (B, "a", 0.0)]
    pool = _CountingPool(snapshot(gpus, jobs=jobs))
    asked: list[tuple[str, int]] = []

    def fewest(job: JobView) -> int:
        return 0 if job.job_id == "never" else job.spec.min_gpus

    def count(job: JobView, avail: int) -> int:
        asked.append((job.job_id, avail))
        return 1

    started, waiting = pool.start_queued(jobs, fewest, count, allow_reload=False)
    assert [(j.job_id, g) for j, g in started] == [("b1", (0,)), ("a1", (2,))]
    assert asked == [("b1", 3), ("a1", 1)] and waiting
    # one availability per model until a take changes the pool
    assert pool.asked == ["a", "b", "a"]
    assert list(pool.warm("b")) == [1] and pool.size() == 1


def test_start_queued_stops_reading_the_queue_once_the_pool_is_empty() -> None:
    read: list[str] = []
    jobs = [view(spec(f"j{i}", i, 100, 100)) for i in range(5)]

    def queue() -> Iterator[JobView]:
        for j in jobs:
            read.append(j.job_id)
            yield j

    pool = GpuPool(snapshot([(F, None, 0.0)] * 2))
    started, waiting = pool.start_queued(queue(), lambda j: 1, lambda j, avail: 1)
    assert [j.job_id for j, _ in started] == ["j0", "j1"] and waiting
    assert read == ["j0", "j1", "j2"]
    empty = GpuPool(snapshot([(F, None, 0.0)])).start_queued([], lambda j: 1, lambda j, a: 1)
    assert empty == ([], False)


# ---------------------------------------------------------------------------------------------
# pool_supply


def test_pool_supply_follows_take_order_with_ready_times() -> None:
    snap = snapshot(MIXED)  # now = 2: cold start ends at 6, reload at 4, the pre-warm at 5
    pool = GpuPool(snap)
    s = pool_supply(snap, pool, PROF, "a", 8)
    assert s == Supply(2, (5.0, 6.0, 6.0, 6.0, 6.0, 4.0))
    assert pool.size() == 8 and list(pool.warm("a")) == [0, 1]  # only read
    assert pool_supply(snap, pool, PROF, "a", 8, allow_reload=False) == Supply(
        2, (5.0, 6.0, 6.0, 6.0, 6.0)
    )
    assert pool_supply(snap, pool, PROF, "a", 9, allow_reload=False, pad_cold=True).late == (
        5.0,
        *[6.0] * 6,
    )
    assert pool_supply(snap, pool, PROF, "a", 1) == Supply(1, ())
    assert pool_supply(snap, pool, PROF, "a", 3, held_ready=2) == Supply(3, ())
    assert pool_supply(snap, pool, PROF, "a", 4, held_ready=3) == Supply(4, ())
    assert pool_supply(snap, pool, PROF, "b", 2) == Supply(1, (6.0,))


def test_pool_supply_sees_what_was_taken() -> None:
    snap = snapshot(MIXED)
    pool = GpuPool(snap)
    pool.take("a", 3)
    assert pool_supply(snap, pool, PROF, "a", 3) == Supply(0, (6.0, 6.0, 6.0))


def test_supply_split() -> None:
    s = Supply(2, (5.0, 6.0, 4.0))
    assert s.split(1) == (1, -math.inf) and s.split(2) == (2, -math.inf)
    assert s.split(3) == (2, 5.0) and s.split(5) == (2, 6.0)


# ---------------------------------------------------------------------------------------------
# Predictor


def test_predictor_rates_come_from_the_profiles() -> None:
    pred = Predictor(PROF)
    j = spec("j", 0, 100, 100)
    assert [pred.rate(j, n) for n in (1, 2, 3, 4)] == pytest.approx([10.0, 18.0, 24.0, 28.0])
    assert pred.max_rate(j, "any", 4) == pytest.approx(28.0)
    assert pred.max_rate(j, "any", 3) == pytest.approx(24.0)
    assert pred.max_rate(j, "pow2", 3) == pytest.approx(18.0)
    assert pred.start_pause(3.0) == pytest.approx(3.5)
    assert pred.best_case(j, 280.0, 10.0, "any", 4, 1.0) == pytest.approx(10.0 + 1.5 + 10.0)


def test_predictor_finish_all_ready_and_late() -> None:
    pred = Predictor(PROF)
    j = spec("j", 0, 100, 100)
    assert pred.finish(j, 0.0, 7.0, 2, 0, 9.0, 1.0, 1.0) == 7.0
    assert pred.finish(j, 180.0, 0.0, 2, 2, -math.inf, 1.0, 2.0) == pytest.approx(11.0)
    # one GPU trains from 1 s to 10 s (90 iterations), both after a 2 s pause at 10 s
    assert pred.finish(j, 1000.0, 0.0, 2, 1, 10.0, 1.0, 2.0) == pytest.approx(12.0 + 910 / 18)
    # done on the ready GPU before the late one arrives
    assert pred.finish(j, 50.0, 0.0, 2, 1, 10.0, 1.0, 2.0) == pytest.approx(6.0)
    # nothing ready: all of it after the last GPU and the late pause
    assert pred.finish(j, 180.0, 0.0, 2, 0, 10.0, 1.0, 2.0) == pytest.approx(22.0)


def test_predictor_waits_for_every_gpu_without_partial_start() -> None:
    pred = Predictor(curve_profiles({"a": [10.0, 18.0]}, start_partial=False))
    j = spec("j", 0, 100, 100)
    assert pred.finish(j, 1000.0, 0.0, 2, 1, 10.0, 1.0, 2.0) == pytest.approx(12.0 + 1000 / 18)
    supply = Supply(1, (10.0,))
    # first start: hand-over plus lookup once the last GPU is ready
    want = 10.0 + 0.5 + 3.0 + 1000 / 18
    assert pred.start_finish(j, 1000.0, 0.0, 2, supply, 3.0, True) == pytest.approx(want)


def test_predictor_start_and_resize() -> None:
    pred = Predictor(PROF)
    j = spec("j", 0, 100, 100)
    late = Supply(0, (4.0, 4.0))
    # first start on two cold GPUs: ready at 4, hand-over + 1 s lookup, then 18 it/s
    assert pred.start_finish(j, 180.0, 0.0, 2, late, 1.0, True) == pytest.approx(15.5)
    # a restart pays the reconfiguration pause (2 s) instead
    assert pred.start_finish(j, 180.0, 0.0, 2, late, 1.0, False) == pytest.approx(16.0)
    # one warm GPU: trains after the first pause (1.5 s); the second GPU is ready at 1 s,
    # during that pause, so the job restarts with the first pause again
    mixed = Supply(1, (1.0,))
    got = pred.start_finish(j, 180.0, 0.0, 2, mixed, 1.0, True)
    assert got == pytest.approx(1.0 + 1.5 + 180 / 18)
    # a running job on 1 ready GPU grown to 2 (one cold, ready at 4): pause 2 s at once,
    # 2 s of training at 10 it/s, then a 2 s pause and 18 it/s
    grow = Supply(1, (4.0,))
    assert pred.resize_finish(j, 200.0, 0.0, 2, grow) == pytest.approx(6.0 + 180 / 18)


# ---------------------------------------------------------------------------------------------
# pick_count


def test_pick_count_smallest_meeting_else_fastest() -> None:
    finish = {1: 100.0, 2: 60.0, 3: 45.0, 4: 50.0}.__getitem__
    got = pick_count((1, 2, 3, 4), finish, 0.0, 55.0, 0.0)
    assert (got.meeting, got.fastest) == (3, 3)
    got = pick_count((1, 2, 3, 4), finish, 0.0, 65.0, 0.0)
    assert (got.meeting, got.fastest) == (2, 2)
    got = pick_count((1, 2, 3, 4), finish, 0.0, 40.0, 0.0)
    assert (got.meeting, got.fastest) == (0, 3)
    # the margin inflates the time to finish: 45 x 1.2 = 54 > 50
    assert pick_count((1, 2, 3, 4), finish, 0.0, 50.0, 0.2).meeting == 0
    # bounds: counts in (above, up_to]
    got = pick_count((1, 2, 3, 4), finish, 0.0, 40.0, 0.0, above=1, up_to=2)
    assert (got.meeting, got.fastest) == (0, 2)
    # the fastest must beat ``beat`` (staying put)
    assert pick_count((1, 2, 3, 4), finish, 0.0, 40.0, 0.0, beat=45.0).fastest == 0
    assert pick_count((), finish, 0.0, 40.0, 0.0) == CountPick(0, 0)
    assert pick_count((1, 2), finish, 0.0, 400.0, 0.0, above=2) == CountPick(0, 0)


def test_pick_count_fastest_needs_to_beat_by_a_nanosecond() -> None:
    finish = {1: 50.0, 2: 50.0 - 1e-12, 3: 49.0}.__getitem__
    assert pick_count((1, 2), finish, 0.0, 10.0, 0.0).fastest == 1
    assert pick_count((1, 2, 3), finish, 0.0, 10.0, 0.0).fastest == 3


def test_pick_count_with_a_rank_takes_the_best_ranked_meeting_count() -> None:
    finish = {1: 100.0, 2: 60.0, 3: 45.0, 4: 40.0}.__getitem__
    eff = {1: 10.0, 2: 9.0, 3: 8.0, 4: 9.0}.__getitem__
    got = pick_count((1, 2, 3, 4), finish, 0.0, 70.0, 0.0, rank=eff)
    assert (got.meeting, got.fastest) == (2, 4)  # 2 and 4 tie: the smaller one
    assert pick_count((1, 2, 3, 4), finish, 0.0, 45.0, 0.0, rank=eff).meeting == 4
    assert pick_count((1, 2, 3, 4), finish, 0.0, 30.0, 0.0, rank=eff).meeting == 0


# ---------------------------------------------------------------------------------------------
# the iteration estimate after an initial prompt


def test_expected_iterations_and_what_policies_derive_from_it() -> None:
    j = spec("j", 0, 400, 100)
    bank = InitChoice(source="e1", lookup_s=2.0, expected_saving=0.25)
    assert expected_iterations(j, bank) == 300.0
    assert expected_iterations(j, InitChoice()) == 400.0
    assert expected_iterations(j, InitChoice(expected_saving=1.0)) == 1.0
    fresh = view(j)
    assert remaining_iters(fresh, 0.0) == 400.0 and lookup_due(fresh) == 0.0
    assert remaining_iters(fresh, 0.0, bank) == 300.0 and lookup_due(fresh, bank) == 2.0
    # a job whose prompt is already set ignores a new choice
    set_ = view(j, init=bank, iters_estimate=300.0)
    assert remaining_iters(set_, 0.0, InitChoice()) == 300.0 and lookup_due(set_) == 2.0
    started = view(j, init=bank, first_start=1.0, iters_estimate=300.0, iters_done=100.0)
    assert remaining_iters(started, 5.0) == 200.0 and lookup_due(started) == 0.0


# ---------------------------------------------------------------------------------------------
# a policy made of the toolkit alone (the sketch in docs/architecture.md, "Adding a policy")


class _ToolkitEdf:
    """Earliest deadline first, each job on the smallest count that meets its deadline."""

    name = "toolkit-edf"

    def __init__(self, profiles: ProfileSet) -> None:
        self.profiles = profiles
        self.pred = Predictor(profiles)

    def decide(self, snap: Snapshot) -> Decision:
        pool = GpuPool(snap)
        pred, now = self.pred, snap.now

        def count(job: JobView, avail: int) -> int:
            s = job.spec
            counts = counts_for(s, "any", snap.num_gpus)
            supply = pool_supply(snap, pool, self.profiles, s.model, min(counts[-1], avail))
            finish = partial(
                pred.start_finish,
                s,
                remaining_iters(job, now),
                now,
                supply=supply,
                lookup_s=lookup_due(job),
                first=job.first_start is None,
            )
            got = pick_count(counts, finish, now, s.deadline, 0.1, up_to=avail)
            return got.meeting or got.fastest

        queue = sorted(snap.queued, key=lambda j: (j.spec.deadline, j.job_id))
        started, _ = pool.start_queued(queue, lambda j: j.spec.min_gpus, count)
        release, due = keep_alive_release(snap, pool, 30.0)
        return Decision(allocations={j.job_id: g for j, g in started}, release=release, wake_at=due)


def test_a_policy_made_of_the_toolkit_runs_clean() -> None:
    # j0 meets its deadline on 1 GPU (4 s cold start + 0.5 s + 30 s); j1 needs 2 (1 GPU: 84.5 s)
    jobs = [spec("j0", 0.0, 300, 60.0), spec("j1", 1.0, 800, 60.0)]
    out = Simulation(jobs, _ToolkitEdf(PROF), PROF, num_nodes=1, gpus_per_node=4).run()
    check_run(out)
    recs = out.state.jobs
    assert {j: r.running_gpus for j, r in recs.items()} == {"j0": 1, "j1": 2}
    assert all(r.finish is not None and r.finish <= r.spec.deadline for r in recs.values())
