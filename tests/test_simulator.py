"""The SimPy driver: a hand-checked golden scenario, determinism, draining and the horizon,
and invariants under generated traces and clusters."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptsim.core.policies.planning import OrderedQueue
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.types import Decision, GpuState, JobSpec, Snapshot
from ptsim.metrics import jobs_table, series_table, summarize
from ptsim.run import run_policy
from ptsim.simulator import Simulation
from ptsim.specs import ClusterSpec
from tests._util import job, linear_profiles


def test_golden_fifo_scenario() -> None:
    """One node of 2 GPUs; 1 it/s per GPU; cold start 10 s; hand-over 0.5 s; keep-alive 60 s.

    - a (t=0, 100 it, deadline 200): GPU 0 loads 0-10, hand-over to 10.5, trains to 110.5: met.
    - b (t=5, 50 it, deadline 60): GPU 1 loads 5-15, hand-over to 15.5, trains to 65.5: missed.
    - c (t=120, 20 it, deadline 150): GPU 0 is warm (idle since 110.5): hand-over to 120.5,
      trains to 140.5: met, a warm hit. GPU 1 was released at 65.5 + 60 = 125.5.
    The run ends at 140.5 when c is done.
    Provisioned GPU-seconds: GPU 0 0-140.5 = 140.5; GPU 1 5-125.5 = 120.5; total 261 s, of
    which loading 20, busy 100.5 + 20.5 + 50.5 = 171.5, warm-idle 9.5 + 60 = 69.5.
    """
    jobs = [job("a", 0, 100, 200), job("b", 5, 50, 60), job("c", 120, 20, 150)]
    res = run_policy(jobs, "fifo", {"keep_alive_s": 60.0}, linear_profiles(), ClusterSpec(1, 2))
    t = res.jobs.set_index("job_id")
    assert t.loc["a", "first_start_s"] == pytest.approx(10.5)
    assert t.loc["a", "finish_s"] == pytest.approx(110.5)
    assert t.loc["b", "finish_s"] == pytest.approx(65.5)
    assert t.loc["c", "first_start_s"] == pytest.approx(120.5)
    assert t.loc["c", "finish_s"] == pytest.approx(140.5)
    assert list(t.met_deadline) == [True, False, True]
    assert list(t.cold_starts) == [1, 1, 0] and list(t.warm_hits) == [0, 0, 1]
    assert list(t.gpu_seconds) == pytest.approx([110.5, 60.5, 20.5])
    s = res.summary
    assert s["slo_violation_rate"] == pytest.approx(1 / 3)
    assert s["cost_gpu_hours"] * 3600 == pytest.approx(261.0)
    assert s["gpu_hours_loading"] * 3600 == pytest.approx(20.0)
    assert s["gpu_hours_busy"] * 3600 == pytest.approx(171.5)
    assert s["gpu_hours_warm_idle"] * 3600 == pytest.approx(69.5)
    assert s["releases"] == 1 and s["sim_end_s"] == pytest.approx(140.5)
    assert s["mean_jct_s"] == pytest.approx((110.5 + 60.5 + 20.5) / 3)
    assert not s["horizon_hit"] and s["invalid_requests"] == 0
    series = res.series
    assert (series[["free", "loading", "warm", "busy"]].sum(axis=1) == 2).all()
    assert series.time_s.is_monotonic_increasing


def _trace(n: int, seed: int) -> list[JobSpec]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    for i in range(n):
        t += float(rng.exponential(20.0))
        it = int(rng.integers(20, 300))
        out.append(job(f"j{i:03d}", t, it, t + it * float(rng.uniform(0.8, 3)), gpus=1 + i % 3))
    return out


@pytest.mark.parametrize("policy", ["fifo", "edf"])
def test_same_trace_and_seed_give_identical_tables(policy: str) -> None:
    jobs = _trace(60, 1)
    a = run_policy(jobs, policy, {}, linear_profiles(), ClusterSpec(1, 4))
    b = run_policy(list(reversed(jobs)), policy, {}, linear_profiles(), ClusterSpec(1, 4))
    assert a.jobs.equals(b.jobs) and a.series.equals(b.series)
    for key in ("slo_violation_rate", "cost_gpu_hours", "events", "decisions"):
        assert a.summary[key] == b.summary[key]


class _Hoarder:
    """A policy that never starts anything (to exercise the horizon)."""

    name = "hoarder"

    def decide(self, snap: Snapshot) -> Decision:
        return Decision()


def test_horizon_is_reported_and_unstarted_jobs_count_as_violations() -> None:
    sim = Simulation(
        [job("a", 0, 10, 50)], _Hoarder(), linear_profiles(), num_nodes=1, horizon_s=1000.0
    )
    out = sim.run()
    table = jobs_table(out)
    s = summarize(out, table)
    assert s["horizon_hit"] and s["sim_end_s"] == 1000.0
    assert table.status.tolist() == ["unfinished"] and s["slo_violation_rate"] == 1.0
    assert math.isnan(table.jct_s[0])


def test_empty_trace_and_unknown_model_are_refused() -> None:
    pol = POLICIES.build("edf", PolicyContext(linear_profiles()), {})
    with pytest.raises(ValueError, match="no jobs"):
        Simulation([], pol, linear_profiles(), num_nodes=1)
    with pytest.raises(KeyError, match="unknown model 'x'; known: m"):
        Simulation([job("a", 0, 10, 50, model="x")], pol, linear_profiles(), num_nodes=1)


def test_unknown_policy_and_knob_list_what_exists() -> None:
    ctx = PolicyContext(linear_profiles())
    with pytest.raises(KeyError, match=r"unknown policy 'nope'; known: .*edf.*fifo"):
        POLICIES.build("nope", ctx, {})
    with pytest.raises(KeyError, match="backfill, keep_alive_s"):
        POLICIES.build("edf", ctx, {"keepalive": 3})


jobs_st = st.lists(
    st.tuples(
        st.floats(0, 500),  # arrival
        st.integers(1, 400),  # iterations
        st.floats(0.3, 4.0),  # deadline ratio
        st.integers(1, 4),  # GPUs
        st.sampled_from(["m", "n"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    jobs_st,
    st.integers(1, 3),
    st.sampled_from([1, 2, 4]),
    st.sampled_from(["fifo", "edf"]),
    st.booleans(),
)
def test_driver_invariants_on_generated_traces(
    rows: list[tuple[float, int, float, int, str]],
    nodes: int,
    per_node: int,
    policy: str,
    backfill: bool,
) -> None:
    cap = nodes * per_node
    jobs = [
        JobSpec(f"j{i}", a, m, "t", a + it * r, 16, it, min(g, cap), 1, min(4, cap))
        for i, (a, it, r, g, m) in enumerate(rows)
    ]
    profiles = linear_profiles(("m", "n"))
    pol = POLICIES.build(policy, PolicyContext(profiles), {"backfill": backfill})
    sim = Simulation(jobs, pol, profiles, num_nodes=nodes, gpus_per_node=per_node)
    out = sim.run()
    out.state.check_invariants()
    table = jobs_table(out)
    s = summarize(out, table)
    assert s["invalid_requests"] == 0 and not s["horizon_hit"]
    assert (table.status == "done").all()  # edf/fifo at requested counts always drain
    series = series_table(out)
    assert (series[["free", "loading", "warm", "busy"]].sum(axis=1) == cap).all()
    t = out.state.totals.gpu_seconds
    provisioned = sum(t.values())
    assert provisioned <= cap * s["sim_end_s"] + 1e-6
    assert table.gpu_seconds.sum() <= t[GpuState.BUSY] + t[GpuState.LOADING] + 1e-6
    # every job trained exactly its iterations: no faster than on all its GPUs from the start,
    # no slower than on one GPU plus its pauses (it starts on the first GPU that is ready)
    for r in out.state.jobs.values():
        assert r.iters_done == pytest.approx(r.iters_needed)
        assert r.finish is not None and r.first_start is not None
        took = r.finish - r.first_start
        assert took >= r.spec.iterations / r.spec.num_gpus - 1e-6
        assert took <= r.spec.iterations + r.pause_s + 1e-6


@pytest.mark.parametrize("policy", ["fifo", "edf"])
@pytest.mark.parametrize("backfill", [False, True])
def test_ordered_queue_kept_from_changes_equals_sorting_the_snapshots_queue(
    policy: str, backfill: bool
) -> None:
    """fifo/edf keep their queue order from each snapshot's ``changed``/``left``; at every
    decision it is the snapshot's queue sorted afresh, and the run's tables are those of a
    policy that sorts afresh at every decision."""
    checked: list[int] = []

    class Checked:
        def __init__(self, fresh: bool) -> None:
            self.inner = POLICIES.build(
                policy, PolicyContext(linear_profiles()), {"backfill": backfill}
            )
            self.name = self.inner.name
            self.fresh = fresh

        def decide(self, snap: Snapshot) -> Decision:
            if self.fresh:  # forget the kept queue: rebuilt from ``snap.queued``
                self.inner.queue = OrderedQueue(self.inner.sort_key)
            d = self.inner.decide(snap)
            order = self.inner.queue.ids()
            assert order == [j.job_id for j in sorted(snap.queued, key=self.inner.order)]
            checked.append(len(order))
            return d

    jobs = _trace(80, 3)
    kept = Simulation(jobs, Checked(False), linear_profiles(), num_nodes=1, gpus_per_node=4).run()
    fresh = Simulation(jobs, Checked(True), linear_profiles(), num_nodes=1, gpus_per_node=4).run()
    assert max(checked) >= 5  # the queue did build up
    assert jobs_table(kept).equals(jobs_table(fresh))
    assert series_table(kept).equals(series_table(fresh))


def test_a_run_uses_one_blas_thread_and_gives_the_setting_back() -> None:
    """numpy's BLAS runs on one thread while the policy decides (the simulator is
    single-threaded; OpenBLAS's idle threads would spin beside it), and the library's own
    setting is back once the run is over."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    inner = POLICIES.build("fifo", PolicyContext(linear_profiles()), {})
    seen: list[list[int]] = []

    class Watching:
        name = "fifo-watching"

        def decide(self, snap: Snapshot) -> Decision:
            seen.append(blas_threads())
            return inner.decide(snap)

    with threadpool_limits(limits=2, user_api="blas"):  # a known setting to give back
        before = blas_threads()
        if not before or min(before) < 2:
            pytest.skip(f"numpy's BLAS does not run two threads here ({before})")
        jobs = [job("a", 0, 100, 200), job("b", 5, 50, 60)]
        Simulation(jobs, Watching(), linear_profiles(), num_nodes=1, gpus_per_node=2).run()
        assert blas_threads() == before
    assert seen and all(counts == [1] * len(before) for counts in seen)


def test_the_collector_waits_while_the_policy_decides() -> None:
    """The cyclic collector is off inside every ``decide``, and a run leaves it as it found
    it: on after a run that found it on, off after one that found it off."""
    import gc

    inner = POLICIES.build("fifo", PolicyContext(linear_profiles()), {})
    inside: list[bool] = []

    class Watching:
        name = "fifo-watching"

        def decide(self, snap: Snapshot) -> Decision:
            inside.append(gc.isenabled())
            return inner.decide(snap)

    jobs = [job("a", 0, 100, 200), job("b", 5, 50, 60)]
    was = gc.isenabled()
    try:
        for on in (True, False):
            (gc.enable if on else gc.disable)()
            inside.clear()
            Simulation(jobs, Watching(), linear_profiles(), num_nodes=1, gpus_per_node=2).run()
            assert len(inside) >= 2 and not any(inside)
            assert gc.isenabled() is on
    finally:
        (gc.enable if was else gc.disable)()
