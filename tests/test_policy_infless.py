"""The infless policy through the real driver, and its Long-Short Term Histogram on its own.

Unless a test says otherwise: cold start 4 s; hand-over 0.5 s; reconfiguration pause 2 s.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from ptsim.core.policies.common import GpuPool
from ptsim.core.policies.infless import Histogram, InflessConfig, Lsth
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.types import (
    Decision,
    GpuState,
    GpuView,
    InitChoice,
    JobSpec,
    JobState,
    JobView,
    Snapshot,
)
from tests._policy_kit import (
    FakeBank,
    Recorder,
    check_run,
    curve_profiles,
    scenarios,
    simulate,
    spec,
)
from tests._util import patches

# 2 GPUs do more than twice the work of 1: throughput per GPU is 10, 12.5, 10, 8 on 1-4 GPUs
SUPER = curve_profiles({"a": [10.0, 25.0, 30.0, 32.0]})
CURVE = curve_profiles({"a": [10.0, 19.0, 27.0, 34.0], "b": [10.0]})


def counts_of(allocs: list[tuple[float, tuple[int, ...]]]) -> list[int]:
    return [len(g) for _, g in allocs]


# ------------------------------------------------------------------ the histogram on its own


def test_lsth_keep_alive_by_hand() -> None:
    """1-minute bins. Long history (8 gaps): 30, 90, 150, 250, 20, 40, 50, 100 s -> bins
    [4, 2, 1, 0, 1]; P5 (0.4 of 8) in bin 0 -> head 0; P99 (7.92) in bin 4 -> tail 300 s.
    Recent window (600 s before t=1300: the last 4 gaps) -> bins [3, 1]; head 0, P99 (3.96) in
    bin 1 -> tail 120 s. gamma 0.5: keep-alive = 1.1 x (0.5 x 300 + 0.5 x 120) = 231 s;
    pre-warm = 0.9 x 0 = 0."""
    h = Lsth(bin_s=60.0, range_s=4 * 3600.0, short_window_s=600.0, gamma=0.5, min_samples=4)
    for t, gap in [(100, 30), (200, 90), (300, 150), (400, 250)]:
        h.observe(t, gap)
    for t, gap in [(1000, 20), (1100, 40), (1200, 50), (1300, 100)]:
        h.observe(t, gap)
    w = h.windows(1300.0)
    assert w is not None
    assert w.keep_alive_s == pytest.approx(231.0)
    assert w.prewarm_s == 0.0
    # gamma weighs the long history: 0.3 -> 1.1 x (0.3 x 300 + 0.7 x 120) = 191.4 s
    h3 = Lsth(bin_s=60.0, short_window_s=600.0, gamma=0.3, min_samples=4)
    for t, gap in [(100, 30), (200, 90), (300, 150), (400, 250)]:
        h3.observe(t, gap)
    for t, gap in [(1000, 20), (1100, 40), (1200, 50), (1300, 100)]:
        h3.observe(t, gap)
    w3 = h3.windows(1300.0)
    assert w3 is not None and w3.keep_alive_s == pytest.approx(191.4)


def test_lsth_prewarm_window_and_fallbacks() -> None:
    """Gaps 130, 140, 250 s -> bins [0, 0, 2, 0, 1]: head = bin 2's lower edge 120 s, tail =
    bin 4's upper edge 300 s: pre-warm 0.9 x 120 = 108 s, keep-alive 1.1 x 300 = 330 s. Too few
    gaps: no windows. A thin recent window: the long history alone."""
    h = Lsth(min_samples=3)
    assert h.windows(0.0) is None
    for t, gap in [(10, 130), (20, 140), (30, 250)]:
        h.observe(t, gap)
    w = h.windows(30.0)
    assert w is not None
    assert w.prewarm_s == pytest.approx(108.0) and w.keep_alive_s == pytest.approx(330.0)
    # 700 s later the recent window is empty: the long histogram alone gives the same windows
    assert h.windows(730.0) == w
    assert Lsth(min_samples=4).windows(0.0) is None


def test_histogram_edges_and_overflow() -> None:
    hist = Histogram(60.0, 240.0)
    for gap in (0.0, 59.9, 60.0, 1e6):
        hist.add(gap)
    assert hist.counts == [2, 1, 0, 0, 1]
    assert hist.head(0.05) == 0.0
    assert hist.tail(0.99) == 240.0  # the overflow bin's edge is the range
    hist.add(1e6, -1)
    assert hist.tail(0.99) == 120.0


# ------------------------------------------------------------------ through the driver


def test_best_throughput_per_gpu_among_feasible() -> None:
    """1000 iterations each. Loose (1000 s): every count fits; 2 GPUs do the most work per
    GPU (12.5 it/s) -> 2 (not the smallest, 1). Tight (40 s): 1 GPU (104.5 s) and 2 (44.5 s)
    miss; 3 (37.8 s) and 4 (35.75 s) fit, 3 is the more efficient -> 3. Hopeless (20 s):
    nothing fits -> the fastest, 4."""
    jobs = [spec("loose", 0, 1000, 1000), spec("tight", 0, 1000, 40), spec("doomed", 0, 1000, 20)]
    out, rec = simulate(jobs, "infless", {}, SUPER, nodes=3)
    check_run(out)
    assert counts_of(rec.allocations("loose")) == [2]
    assert counts_of(rec.allocations("tight")) == [3]
    assert counts_of(rec.allocations("doomed")) == [4]
    # prompttuner, by contrast, gives the loose job its smallest sufficient count
    _, pt = simulate(jobs, "prompttuner", {"bank": False}, SUPER, nodes=3)
    assert counts_of(pt.allocations("loose")) == [1]


def test_never_resizes_a_running_job() -> None:
    """Contention on 4 GPUs: jobs queue, GPUs free up, an elastic policy would resize. infless
    sets each job's GPUs once (its arrival-time configuration) and never again. Jobs wait for
    every GPU before training (start_partial off), so any rescale would be a resize."""
    prof = curve_profiles({"a": [10.0, 19.0, 27.0, 34.0]}, start_partial=False)
    jobs = [spec(f"j{i}", 3.0 * i, 300 + 100 * i, 30 + 10 * (i % 4)) for i in range(12)]
    out, rec = simulate(jobs, "infless", {}, prof)
    check_run(out)
    for j in jobs:
        allocs = rec.allocations(j.job_id)
        assert len(allocs) == 1, (j.job_id, allocs)
        assert out.state.job(j.job_id).rescales == 0
    assert out.state.totals.rescales == 0
    assert len({len(a) for j in jobs for _, a in rec.allocations(j.job_id)}) > 1
    _, pt = simulate(jobs, "prompttuner", {"bank": False}, prof)
    assert any(len(pt.allocations(j.job_id)) > 1 for j in jobs)  # the elastic one does resize


def _release_ages(rec: Recorder, gid: int) -> list[float]:
    """How long ``gid`` had been idle in each decision that released it."""
    ages = []
    for snap, d in rec.log:
        if gid in d.release:
            ages.append(snap.now - snap.gpus[gid].since)
    return ages


REGULAR = [spec(f"r{i:02d}", 30.0 * i, 20, 100) for i in range(11)]
REGULAR.append(spec("later", 900.0, 20, 100, model="b"))  # keeps the run going


def test_keep_alive_follows_the_histogram() -> None:
    """A job every 30 s, each 2 s long on one GPU it reuses warm. After 10 gaps (all in bin 0)
    both histograms give keep-alive 1.1 x 60 = 66 s: the GPU is released 66 s after the last
    job ends. With too few samples (min_samples 50) the fixed keep-alive (200 s) applies. (A
    job of another model at t=900 keeps the run going past both.)"""
    out, rec = simulate(REGULAR, "infless", {"keep_alive_s": 200.0}, CURVE)
    check_run(out)
    assert out.state.totals.cold_starts == 2 and out.state.totals.warm_hits == 10
    gid = rec.allocations("r00")[0][1][0]
    assert _release_ages(rec, gid) == [pytest.approx(66.0)]
    fixed, rec2 = simulate(REGULAR, "infless", {"keep_alive_s": 200.0, "min_samples": 50}, CURVE)
    check_run(fixed)
    assert _release_ages(rec2, gid) == [pytest.approx(200.0)]


def test_prewarm_after_the_histogram_head() -> None:
    """A job every 300 s (2 s long): gaps in bin 5 -> pre-warm window 0.9 x 300 = 270 s (more
    than the 4 s cold start), keep-alive 1.1 x 360 = 396 s. Before 10 gaps the fixed 60 s
    keep-alive lets each GPU go and every job cold-starts; afterwards GPUs are unloaded when
    idle, one is loaded at last arrival + 270 - 4 s, and the next job finds it warm."""
    jobs = [spec(f"s{i:02d}", 300.0 * i, 20, 100) for i in range(14)]
    out, rec = simulate(jobs, "infless", {}, CURVE)
    check_run(out)
    st = out.state
    assert st.totals.prewarms == 3  # before jobs 11, 12 and 13
    for i in (11, 12, 13):
        r = st.job(f"s{i:02d}")
        assert r.warm_hits == 1 and r.cold_starts == 0
    for i in range(1, 10):
        assert st.job(f"s{i:02d}").cold_starts == 1
    prewarm_times = [s.now for s, d in rec.log if d.prewarm]
    assert prewarm_times == [pytest.approx(300.0 * i - 34.0) for i in (11, 12, 13)]


def test_one_deployment_per_configuration() -> None:
    """``instances=per_config`` (INFless as the PromptTuner authors' prototype deployed it):
    one 4-GPU node; x (loose: 2 GPUs, the best throughput per GPU) ends at about 8.5 s; y
    arrives at 20 s and is configured to 3 GPUs. One deployment per model: y reuses x's 2 idle
    GPUs (2 warm hits, 1 cold start). One per configuration: x's GPUs belong to deployment
    (a, 2), so y waits, one of them is released for it, and y cold-starts on 3 GPUs 1 ms
    later. Each deployment keeps its own histograms."""
    jobs = [spec("x", 0, 100, 1000), spec("y", 20, 1000, 40)]
    shared, rec_m = simulate(jobs, "infless", {"instances": "per_model"}, SUPER)
    own, rec_c = simulate(jobs, "infless", {"instances": "per_config"}, SUPER)
    for out, rec in ((shared, rec_m), (own, rec_c)):
        check_run(out)
        assert counts_of(rec.allocations("x")) == [2] and counts_of(rec.allocations("y")) == [3]
    y_m, y_c = shared.state.job("y"), own.state.job("y")
    assert (y_m.warm_hits, y_m.cold_starts) == (2, 1)
    assert (y_c.warm_hits, y_c.cold_starts) == (0, 3)
    x_gpus = rec_c.allocations("x")[0][1]
    evicted = [(s.now, d.release) for s, d in rec_c.log if d.release]
    assert evicted[0] == (pytest.approx(20.0), (x_gpus[0],))
    assert rec_c.allocations("y")[0][0] == pytest.approx(20.001)
    assert sorted(rec_m.inner._hist) == [("a", 0)]
    assert sorted(rec_c.inner._hist) == [("a", 2), ("a", 3)]


def test_bank_switch() -> None:
    """Off by default (INFless has no bank); bank=true asks it for each new job and the lookup
    is charged at the first start (4 s cold start + 0.5 s hand-over + 3 s)."""
    choice = InitChoice("e1", "t0", "two_layer", 3, 3.0, 0.25)
    jobs = [spec("j", 0, 100, 1000)]
    off_bank = FakeBank(choice)
    off, _ = simulate(jobs, "infless", {}, CURVE, bank=off_bank)
    check_run(off)
    assert off_bank.calls == [] and off.state.job("j").first_start == pytest.approx(4.5)
    on_bank = FakeBank(choice)
    on, rec = simulate(jobs, "infless", {"bank": True}, CURVE, bank=on_bank)
    check_run(on)
    assert on_bank.calls == ["j"] and rec.log[0][1].init == {"j": choice}
    assert on.state.job("j").init == choice
    assert on.state.job("j").first_start == pytest.approx(7.5)


def test_order_knob() -> None:
    """One GPU, two jobs at t=0: fifo serves the earlier arrival, edf the earlier deadline."""
    prof = curve_profiles({"a": [10.0]})
    jobs = [spec("first", 0.0, 100, 500), spec("urgent", 0.0, 100, 50)]
    _, fifo = simulate(jobs, "infless", {}, prof, gpus_per_node=1)
    _, edf = simulate(jobs, "infless", {"order": "edf"}, prof, gpus_per_node=1)
    assert fifo.allocations("first")[0][0] < fifo.allocations("urgent")[0][0]
    assert edf.allocations("urgent")[0][0] < edf.allocations("first")[0][0]


def test_config_rejects_bad_knobs() -> None:
    with pytest.raises(ValueError, match="gamma"):
        InflessConfig(gamma=1.5)
    with pytest.raises(ValueError, match="head_q"):
        InflessConfig(head_q=0.5, tail_q=0.4)


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios())
def test_invariants_under_random_traces(case: tuple) -> None:  # type: ignore[type-arg]
    """Random traces and clusters: invariants before every decision, no refused request,
    capacity, GPU-seconds conserved, every job done, and each job's GPUs set exactly once."""
    jobs, profiles, nodes, per_node = case
    for params in (
        {},
        {"order": "edf", "counts": "pow2", "bank": True, "min_samples": 1},
        {"instances": "per_config", "min_samples": 1},
    ):
        out, rec = simulate(
            jobs,
            "infless",
            params,
            profiles,
            nodes=nodes,
            gpus_per_node=per_node,
            bank=FakeBank(InitChoice(lookup_s=1.0)),
        )
        check_run(out)
        for j in jobs:
            assert len(rec.allocations(j.job_id)) == 1


def reference_walk(
    snap: Snapshot, policy: Any, pool: GpuPool, order: Any, allow_reload: bool = True
) -> tuple[list[tuple[str, tuple[int, ...]]], bool, list[int]]:
    """The per-configuration walk done the plain way: every queued job in ``order``, one at a
    time, with the idle GPUs of its model's other deployments set aside; a job that waits gets
    those of them that are warm released when they make up what it lacks."""
    started: list[tuple[str, tuple[int, ...]]] = []
    waiting = False
    evict: list[int] = []
    for job in sorted(snap.queued, key=order):
        model, n = job.spec.model, policy.config[job.job_id]
        aside = [
            g
            for g in (*pool.warm(model), *pool.prewarming(model))
            if policy.deployment_of(g, model) != (model, n)
        ]
        pool.set_aside(model, aside)
        got, wait = pool.start_queued([job], lambda _j, n=n: n, lambda _j, _a, n=n: n, allow_reload)
        started.extend((j.job_id, gids) for j, gids in got)
        if wait:
            waiting = True
            short = n - pool.available(model, allow_reload)
            idle = [g for g in aside if snap.gpus[g].state is GpuState.WARM]
            if 0 < short <= len(idle):
                evict.extend(idle[:short])
                aside = [g for g in aside if g not in idle[:short]]
        pool.give_back(aside)
    return started, waiting, evict


def random_snapshot(
    rng: np.random.Generator, seq: int, jobs: list[JobView], changed: list[JobView], left: list[str]
) -> Snapshot:
    """A cluster of random GPU states (free, warm, pre-warming, busy; few idle) with ``jobs``
    queued."""
    per_node = int(rng.integers(2, 9))
    gpus = []
    for gid in range(per_node * int(rng.integers(1, 4))):
        state = rng.choice(["free", "warm", "loading", "busy"], p=[0.1, 0.15, 0.05, 0.7])
        model = str(rng.choice(MODELS))
        if state == "free":
            gpus.append(GpuView(gid, gid // per_node, GpuState.FREE))
        elif state == "busy":
            gpus.append(GpuView(gid, gid // per_node, GpuState.BUSY, model, "running"))
        else:
            s = GpuState.WARM if state == "warm" else GpuState.LOADING
            gpus.append(GpuView(gid, gid // per_node, s, model, None, float(rng.integers(0, 9))))
    warm: dict[str, list[int]] = {}
    for g in gpus:
        if g.state is GpuState.WARM and g.model is not None:
            warm.setdefault(g.model, []).append(g.gid)
    return Snapshot(
        now=100.0,
        gpus=tuple(gpus),
        jobs=tuple(jobs),
        gpus_per_node=per_node,
        free=tuple(g.gid for g in gpus if g.state is GpuState.FREE),
        warm_idle={m: tuple(v) for m, v in warm.items()},
        queued=tuple(jobs),
        prewarming=tuple(g.gid for g in gpus if g.state is GpuState.LOADING),
        seq=seq,
        changed=tuple(changed),
        left=tuple(left),
    )


MODELS = ("a", "b", "c")


@pytest.mark.parametrize("order", ["fifo", "edf"])
@pytest.mark.parametrize("allow_reload", [True, False])
def test_merged_walk_equals_trying_every_job(order: str, allow_reload: bool) -> None:
    """Random queues and pools, followed over decisions (jobs join and leave the queue, now
    and then a missed snapshot): the walk over the deployments' merged sub-queues starts,
    waits and releases exactly what trying every queued job in turn does, in the same order."""
    profiles = curve_profiles({m: [10.0 * (k + 1) for k in range(8)] for m in MODELS})
    outcomes = {"started": 0, "waiting": 0, "evict": 0}
    for seed in range(150):
        rng = np.random.default_rng(seed)
        policy: Any = POLICIES.build(
            "infless", PolicyContext(profiles), {"order": order, "allow_reload": allow_reload}
        )
        key = attrgetter("spec.arrival", "spec.job_id")
        if order == "edf":
            key = attrgetter("spec.deadline", "spec.job_id")
        queued: list[JobView] = []
        seq, made = 0, 0
        for _ in range(6):
            left = [j.job_id for j in queued if rng.random() < 0.3]
            queued = [j for j in queued if j.job_id not in left]
            changed = []
            for _ in range(int(rng.integers(0, 25))):
                made += 1
                arrival = float(rng.integers(0, 50))  # ties broken by job id
                s = spec(f"j{made}", arrival, 100, float(rng.integers(0, 50)), model="a")
                s = JobSpec(s.job_id, s.arrival, str(rng.choice(MODELS)), "t", s.deadline, 16, 100)
                view = JobView(s, JobState.QUEUED, (), 0, 0.0, arrival, 0.0, 100.0, None, None, 0)
                policy.config[s.job_id] = int(rng.choice([1, 1, 2, 2, 3, 4, 6, 8]))
                changed.append(view)
            queued = sorted(queued + changed, key=attrgetter("spec.arrival", "spec.job_id"))
            seq += 1 if rng.random() < 0.9 else 2  # a missed snapshot: the queue is rebuilt
            snap = random_snapshot(rng, seq, queued, changed, left)
            for g in [*snap.prewarming, *(g for v in snap.warm_idle.values() for g in v)]:
                model = snap.gpus[g].model if rng.random() < 0.8 else "a"
                policy._owner[g] = (model, int(rng.choice([1, 2, 3, 4])))
            policy.queue.update(snap)
            policy._track_deployments(policy.queue)
            assert not policy._unknown  # the merged walk, not the plain one
            got, waiting, evict = policy._start_per_config(
                snap, policy.queue, GpuPool(snap), lambda j, c=policy.config: c[j.job_id]
            )
            want = reference_walk(snap, policy, GpuPool(snap), key, allow_reload)
            assert ([(j.job_id, g) for j, g in got], waiting, evict) == want
            outcomes["started"] += bool(got)
            outcomes["waiting"] += waiting
            outcomes["evict"] += bool(evict)
    assert min(outcomes.values()) > 20  # the cases cover starts, waits and releases


@patches("ptsim.core.policies.infless")
@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios())
def test_runs_equal_the_plain_walk(case: tuple) -> None:  # type: ignore[type-arg]
    """Random traces through the real driver: the same per-job table and time series as a run
    whose walk tries every queued job in turn (``reference_walk``)."""
    import ptsim.core.policies.infless as infless_mod
    from ptsim.metrics import jobs_table, series_table

    jobs, profiles, nodes, per_node = case
    for params in ({"min_samples": 1}, {"order": "edf", "allow_reload": False}):
        merged, _ = simulate(jobs, "infless", params, profiles, nodes=nodes, gpus_per_node=per_node)
        key = attrgetter("spec.arrival", "spec.job_id")
        if params.get("order") == "edf":
            key = attrgetter("spec.deadline", "spec.job_id")

        reload = params.get("allow_reload", True)

        def plain(
            self: Any,
            snap: Snapshot,
            _o: Any,
            pool: GpuPool,
            _c: Any,
            k: Any = key,
            r: Any = reload,
        ) -> Any:
            started, waiting, evict = reference_walk(snap, self, pool, k, r)
            views = {j.job_id: j for j in snap.queued}
            return [(views[j], g) for j, g in started], waiting, evict

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(infless_mod.Infless, "_start_per_config", plain)
            ref, _ = simulate(
                jobs, "infless", params, profiles, nodes=nodes, gpus_per_node=per_node
            )
        assert jobs_table(merged).equals(jobs_table(ref))
        assert series_table(merged).equals(series_table(ref))


def test_walk_tries_only_jobs_that_can_change_something() -> None:
    """One node of 4 GPUs; a (2 GPUs: its best throughput per GPU) and b (1 GPU) start at
    t=0, one GPU stays free; a2 (2 GPUs) arrives at 1 s and waits; b2 (1 GPU) arrives at 2 s
    behind a2 and starts on the free GPU. Same run as one that tries every job in turn (a
    stand-in job that never gets a configuration turns the merged walk off)."""
    from ptsim.metrics import jobs_table, series_table
    from ptsim.simulator import Simulation

    profiles = curve_profiles({"a": [10.0, 25.0, 30.0, 32.0], "b": [10.0]})
    jobs = [
        spec("a1", 0.0, 2000, 1e4, model="a"),
        spec("b1", 0.0, 1000, 1e4, model="b"),
        spec("a2", 1.0, 1000, 1e4, model="a"),
        spec("b2", 2.0, 100, 1e4, model="b"),
    ]

    class Walker:
        def __init__(self, full: bool) -> None:
            self.inner = POLICIES.build("infless", PolicyContext(profiles), {})
            self.name = self.inner.name
            self.full = full

        def decide(self, snap: Snapshot) -> Decision:
            if self.full:
                self.inner._unknown.add("never-configured")
            return self.inner.decide(snap)

    merged = Simulation(jobs, Walker(False), profiles, num_nodes=1, gpus_per_node=4).run()
    table = jobs_table(merged).set_index("job_id")
    assert table.loc["b2", "first_start_s"] < table.loc["a2", "first_start_s"]
    assert table.loc["b2", "first_start_s"] < 10.0  # at once, on the free GPU
    full = Simulation(jobs, Walker(True), profiles, num_nodes=1, gpus_per_node=4).run()
    assert jobs_table(merged).equals(jobs_table(full))
    assert series_table(merged).equals(series_table(full))
