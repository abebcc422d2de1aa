"""The prompttuner policy through the real driver: each defining behaviour, each ablation
switch, and invariants under generated traces and clusters.

Unless a test says otherwise: throughput 10, 19, 27, 34 it/s on 1-4 GPUs; cold start 4 s;
hand-over 0.5 s; reconfiguration pause 2 s; safety margin 10%.
"""

from __future__ import annotations

import heapq
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptsim.core.policies.prompttuner import (
    Demand,
    PromptTunerConfig,
    _Expiry,
    poisson_quantile,
)
from ptsim.core.types import GpuState, InitChoice, JobState
from tests._policy_kit import FakeBank, check_run, curve_profiles, scenarios, simulate, spec
from tests._util import patches

CURVE = [10.0, 19.0, 27.0, 34.0]
PROF = curve_profiles({"a": CURVE, "b": CURVE})
NO_BANK = {"bank": False}


def counts_of(rec_log: list[tuple[float, tuple[int, ...]]]) -> list[int]:
    return [len(g) for _, g in rec_log]


def test_warm_gpu_of_the_model_before_free_before_reload() -> None:
    """a0 and b0 leave GPU 0 warm with model a and GPU 1 warm with model b. At t=20 a1 takes
    GPU 0 (warm, a hand-over) and a2 a free GPU: neither takes b's warm GPU (a reload)."""
    jobs = [
        spec("a0", 0, 100, 1000, model="a"),
        spec("b0", 0, 100, 1000, model="b"),
        spec("a1", 20, 100, 900, model="a"),
        spec("a2", 20, 100, 1000, model="a"),
    ]
    out, rec = simulate(jobs, "prompttuner", NO_BANK, PROF)
    check_run(out)
    first = {j: rec.allocations(j)[0][1] for j in ("a0", "b0", "a1", "a2")}
    warm_a = first["a0"][0]
    assert first["a1"] == (warm_a,)
    assert first["a2"][0] not in (warm_a, first["b0"][0])
    snap_at_20 = next(s for s, d in rec.log if "a1" in d.allocations)
    assert snap_at_20.warm_idle_of("a") == (warm_a,) and len(snap_at_20.free) >= 1
    st = out.state
    assert st.job("a1").warm_hits == 1 and st.job("a1").cold_starts == 0
    assert st.job("a2").cold_starts == 1 and st.totals.reloads == 0


def test_tight_deadline_gets_more_gpus_than_loose() -> None:
    """1000 iterations each. Loose (400 s): 1 GPU finishes at 4 + 0.5 + 100 = 104.5 s, which
    with the 10% margin fits. Tight (50 s): 1 GPU (115 s) and 2 GPUs (1.1 x 57.1 = 62.8 s) do not;
    3 GPUs do (1.1 x (4.5 + 37.0) = 45.7 s): the smallest count that meets it."""
    jobs = [spec("loose", 0, 1000, 400), spec("tight", 0, 1000, 50)]
    out, rec = simulate(jobs, "prompttuner", NO_BANK, PROF)
    check_run(out)
    assert counts_of(rec.allocations("loose")) == [1]
    assert counts_of(rec.allocations("tight")) == [3]
    assert all(
        r.finish is not None and r.finish <= r.spec.deadline for r in out.state.jobs.values()
    )


SHRINK_PROF = curve_profiles({"a": [10.0, 12.0, 13.0, 14.0]}, cold_start_s=2.0)
SHRINK_JOB = [spec("j", 0, 2000, 220)]


def test_shrinks_a_job_ahead_of_schedule() -> None:
    """2000 iterations due in 220 s; 10, 12 it/s on 1, 2 GPUs. 1 GPU would take 1.1 x 202.5 =
    222.75 s, so it starts on 2 (1.1 x 169.2 = 186 s). Running at 12 it/s from t=2.5, one GPU
    meets the deadline with margin + hysteresis (35%) from t = 91.5 and still saves GPU-seconds
    net of the 2 s pause and a 10 s idle cost: the re-plan at t=95 shrinks it to 1 GPU."""
    params = {**NO_BANK, "keep_alive_s": 10.0}
    out, rec = simulate(SHRINK_JOB, "prompttuner", params, SHRINK_PROF)
    check_run(out)
    allocs = rec.allocations("j")
    assert counts_of(allocs) == [2, 1]
    assert allocs[1][0] == pytest.approx(95.0)
    r = out.state.job("j")
    assert r.rescales == 1 and r.finish is not None and r.finish <= r.spec.deadline

    still, rec2 = simulate(SHRINK_JOB, "prompttuner", {**params, "elasticity": False}, SHRINK_PROF)
    check_run(still)
    assert counts_of(rec2.allocations("j")) == [2]
    assert still.state.totals.rescales == 0
    assert still.state.job("j").gpu_seconds > r.gpu_seconds


def test_leftover_gpus_go_to_a_job_at_risk() -> None:
    """A (300 it, due in 18 s) takes 3 of the 4 GPUs (1.1 x (4.5 + 11.1) = 17.2 s). B (1000 it,
    due at 61) arrives at t=1 and gets the last GPU, the fastest it can have. When A ends at
    15.6 its 3 GPUs are warm; B (899 it left, 1 GPU: done at 105) is at risk and grows to 3,
    the smallest count that meets its deadline again (15.6 + 1.1 x (2 + 899 / 27) = 54.4)."""
    jobs = [spec("A", 0, 300, 18), spec("B", 1, 1000, 60)]
    out, rec = simulate(jobs, "prompttuner", NO_BANK, PROF)
    check_run(out)
    assert counts_of(rec.allocations("A")) == [3]
    allocs = rec.allocations("B")
    assert counts_of(allocs) == [1, 3]
    assert allocs[1][0] == pytest.approx(4.0 + 0.5 + 300 / 27)
    own = allocs[0][1][0]
    assert own in allocs[1][1]  # keeps its GPU and takes two of A's warm ones
    assert set(allocs[1][1]) - {own} <= set(rec.allocations("A")[0][1])
    b = out.state.job("B")
    assert b.finish is not None and b.finish <= b.spec.deadline

    fixed, _ = simulate(jobs, "prompttuner", {**NO_BANK, "elasticity": False}, PROF)
    check_run(fixed)
    late = fixed.state.job("B")
    assert late.finish is not None and late.finish > late.spec.deadline
    assert fixed.state.totals.rescales == 0


def test_safety_margin_switch() -> None:
    """1000 iterations due in 110 s: 1 GPU needs 104.5 s. Without a margin that fits; with 10%
    (115 s) it does not, and the job gets 2 GPUs."""
    jobs = [spec("j", 0, 1000, 110)]
    bare, rec0 = simulate(jobs, "prompttuner", {**NO_BANK, "safety_margin": 0.0}, PROF)
    safe, rec1 = simulate(jobs, "prompttuner", NO_BANK, PROF)
    check_run(bare)
    check_run(safe)
    assert counts_of(rec0.allocations("j")) == [1]
    assert counts_of(rec1.allocations("j")) == [2]


CHOICE = InitChoice("e1", "t0", "two_layer", 3, 3.0, 0.25)


def test_bank_switch_sets_init_and_charges_lookup() -> None:
    """With the bank, the new job's initial prompt is the bank's choice (in the decision at its
    arrival) and its 3 s lookup is charged at its first start: 4 s cold start + 0.5 s hand-over
    + 3 s. Without it, the bank is never asked and the job starts at 4.5 s."""
    jobs = [spec("j", 0, 100, 1000)]
    bank = FakeBank(CHOICE)
    out, rec = simulate(jobs, "prompttuner", {}, PROF, bank=bank)
    check_run(out)
    assert bank.calls == ["j"]
    assert rec.log[0][1].init == {"j": CHOICE}
    r = out.state.job("j")
    assert r.init == CHOICE and r.first_start == pytest.approx(7.5)
    assert r.pause_s == pytest.approx(3.5)
    assert r.iters_estimate == pytest.approx(75.0)

    bank_off = FakeBank(CHOICE)
    out2, rec2 = simulate(jobs, "prompttuner", NO_BANK, PROF, bank=bank_off)
    check_run(out2)
    assert bank_off.calls == [] and all(not d.init for _, d in rec2.log)
    r2 = out2.state.job("j")
    assert r2.init is not None and r2.init.source is None
    assert r2.first_start == pytest.approx(4.5)


def test_bank_lookup_counts_in_the_prediction() -> None:
    """100 iterations due in 17 s. Without a lookup 1 GPU fits (1.1 x 14.5 = 16 s); a 3 s lookup
    on 75 iterations makes it 1.1 x 15 = 16.5 s, still 1; a 6 s lookup (1.1 x 18 s) needs 2."""
    jobs = [spec("j", 0, 100, 17)]
    slow = InitChoice("e1", "t0", "two_layer", 6, 6.0, 0.25)
    _, rec = simulate(jobs, "prompttuner", {}, PROF, bank=FakeBank(CHOICE))
    _, rec_slow = simulate(jobs, "prompttuner", {}, PROF, bank=FakeBank(slow))
    assert counts_of(rec.allocations("j")) == [1]
    assert counts_of(rec_slow.allocations("j")) == [2]


STREAM = [spec(f"s{i:02d}", 2.0 * i, 50, 100) for i in range(30)]


def test_warm_pool_switch() -> None:
    """A job of model a every 2 s: the forecast (about 0.5 arrivals/s x 4 s cold start) asks
    for warm GPUs, so free GPUs are pre-warmed. Off: no pre-warming, and idle warm GPUs are
    released in the decision that finds them idle (zero warm-idle GPU-seconds)."""
    on, _ = simulate(STREAM, "prompttuner", NO_BANK, PROF, nodes=2)
    off, _ = simulate(STREAM, "prompttuner", {**NO_BANK, "warm_pool": False}, PROF, nodes=2)
    check_run(on)
    check_run(off)
    assert on.state.totals.prewarms > 0
    assert off.state.totals.prewarms == 0
    assert off.state.totals.gpu_seconds[GpuState.WARM] == 0.0
    assert on.state.totals.gpu_seconds[GpuState.WARM] > 0.0
    assert on.state.totals.warm_hits > off.state.totals.warm_hits


def test_pool_target_from_forecast() -> None:
    """The target is the 80% quantile of Poisson arrivals over a cold start, x mean GPUs."""
    assert poisson_quantile(0.0, 0.8) == 0
    assert poisson_quantile(0.2, 0.8) == 0  # P(0) = 0.819
    assert poisson_quantile(0.6, 0.8) == 1  # P(<=1) = 0.878
    assert poisson_quantile(2.0, 0.8) == 3  # P(<=2) = 0.677, P(<=3) = 0.857
    d = Demand(window_s=100.0)
    d.arrival("a", 0.0)
    d.arrival("a", 100.0)
    assert d.rate("a", 100.0) == pytest.approx((1 + 2.718281828**-1) / 100)
    assert d.rate("a", 200.0) == pytest.approx(d.rate("a", 100.0) * 2.718281828**-1)
    assert d.rate("b", 5.0) == 0.0


def test_counts_pow2_and_hopeless_knobs() -> None:
    """The tight job needs 3 GPUs: with powers of two it gets 4. A job nothing can save (1000
    iterations in 10 s) gets the fastest count by default, its minimum with hopeless=min, and
    is rejected at admission with reject_hopeless."""
    tight = [spec("tight", 0, 1000, 50)]
    _, rec = simulate(tight, "prompttuner", {**NO_BANK, "counts": "pow2"}, PROF)
    assert counts_of(rec.allocations("tight")) == [4]

    doomed = [spec("d", 0, 1000, 10)]
    fast, rec_f = simulate(doomed, "prompttuner", NO_BANK, PROF)
    slow, rec_m = simulate(doomed, "prompttuner", {**NO_BANK, "hopeless": "min"}, PROF)
    check_run(fast)
    check_run(slow)
    assert counts_of(rec_f.allocations("d")) == [4]
    assert counts_of(rec_m.allocations("d")) == [1]
    rej, _ = simulate(doomed, "prompttuner", {**NO_BANK, "reject_hopeless": True}, PROF)
    check_run(rej, all_done=False)
    assert rej.state.job("d").state is JobState.REJECTED


def test_order_knob_edf_versus_least_slack() -> None:
    """One GPU. X: 100 it due at 100 (slack 90); Y: 900 it due at 120 (slack 30). EDF starts X
    first; least slack starts Y first."""
    prof = curve_profiles({"a": [10.0]})
    jobs = [spec("X", 0, 100, 100), spec("Y", 0, 900, 120)]
    _, edf = simulate(jobs, "prompttuner", NO_BANK, prof, gpus_per_node=1)
    _, ls = simulate(
        jobs, "prompttuner", {**NO_BANK, "order": "least_slack"}, prof, gpus_per_node=1
    )
    assert list(edf.log[0][1].allocations) == ["X"]
    assert list(ls.log[0][1].allocations) == ["Y"]


def test_config_rejects_bad_knobs() -> None:
    with pytest.raises(ValueError, match="order"):
        PromptTunerConfig(order="lifo")
    with pytest.raises(ValueError, match="pool_quantile"):
        PromptTunerConfig(pool_quantile=1.0)


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenarios())
def test_invariants_under_random_traces(case: tuple) -> None:  # type: ignore[type-arg]
    """Random traces and clusters: invariants before every decision, no refused request,
    capacity, GPU-seconds conserved, every job done; with the ablations too."""
    jobs, profiles, nodes, per_node = case
    for params in (
        NO_BANK,
        {"warm_pool": False, "elasticity": False, "counts": "pow2"},
        {"safety_margin": 0.0, "order": "least_slack", "hopeless": "min"},
    ):
        bank = FakeBank(CHOICE)
        out, _ = simulate(
            jobs, "prompttuner", params, profiles, nodes=nodes, gpus_per_node=per_node, bank=bank
        )
        check_run(out)


def _overrunning(prior_sigma: float) -> tuple[object, object]:
    """One job whose median is 1000 iterations but which needs 2000 (1 it/s per GPU), due
    1500 s after it arrives: on one GPU it makes its deadline only if it is grown in time."""
    from ptsim.core.estimator import IterPrior
    from ptsim.core.policy import POLICIES, PolicyContext
    from ptsim.simulator import Simulation
    from tests._util import linear_profiles

    profiles = linear_profiles(("a",))
    job = spec("j", 0.0, 1000, 1500.0)
    pol = POLICIES.build("prompttuner", PolicyContext(profiles, None), {"warm_pool": False})
    sim = Simulation(
        [job],
        pol,
        profiles,
        num_nodes=1,
        gpus_per_node=4,
        iterations=lambda s, i: 2000.0,
        prior=lambda s, i: IterPrior(float(s.iterations), prior_sigma),
    )
    out = sim.run()
    return out, out.state.jobs["j"]


def test_a_job_that_falls_behind_its_estimate_is_grown() -> None:
    """With an exactly known (but wrong) count the job is never seen to fall behind: its
    estimate says it is done, so it is never grown and misses. With the estimator's
    uncertainty it looks longer the further it overruns, falls behind, and is grown."""
    _, exact = _overrunning(0.0)
    _, est = _overrunning(0.3)
    assert exact.rescales == 0 and exact.finish > 1500.0
    assert est.rescales >= 1 and est.finish <= 1500.0


def test_a_job_whose_accuracy_runs_ahead_is_shrunk() -> None:
    """A job expected to need 2000 iterations starts on 4 GPUs (sub-linear scaling) to make a
    tight deadline; its accuracy readings say it will need about 600, so it is well ahead and
    gives GPUs back. Without readings it keeps all four."""
    from ptsim.core.estimator import EstimatorSettings, IterPrior
    from ptsim.core.policy import POLICIES, PolicyContext
    from ptsim.simulator import Simulation

    def run(readings: object) -> object:
        profiles = curve_profiles({"a": [1.0, 1.8, 2.4, 2.8]})
        pol = POLICIES.build(
            "prompttuner", PolicyContext(profiles, None), {"warm_pool": False, "replan_s": 5.0}
        )
        sim = Simulation(
            [spec("j", 0.0, 2000, 800.0)],
            pol,
            profiles,
            num_nodes=1,
            gpus_per_node=4,
            iterations=lambda s, i: 600.0,
            prior=lambda s, i: IterPrior(float(s.iterations), 0.3),
            estimator=EstimatorSettings(curve_power=1.0, obs_sigma=0.1),
            readings=readings,  # type: ignore[arg-type]
        )
        return sim.run().state.jobs["j"]

    def reads(s: object, total: float, done: float) -> tuple[float, float] | None:
        at = 50.0 * (done // 50.0)
        return (at / total, at) if 0 < at < total else None

    plain = run(None)
    read = run(reads)
    assert plain.rescales == 0
    assert read.rescales >= 1 and read.gpu_seconds < plain.gpu_seconds


@patches("ptsim.core.policies.prompttuner")
def test_windows_decide_as_evaluating_every_running_job_at_every_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_running`` classifies a running job for a window of time from bounds on its estimate
    (``_window``) instead of evaluating it at every decision: the per-job table of a run with
    the default workload (uncertain iterations, simulated accuracy readings, the Prompt Bank)
    is the same as when every window lasts no time (every running job evaluated exactly at
    every decision)."""
    from hydra import compose, initialize_config_dir

    from ptsim.core.policies import prompttuner as pt
    from ptsim.paths import conf_root
    from ptsim.run import simulate_config

    def jobs() -> object:
        overrides = [
            "cluster=a100_256",
            "workload.duration_s=1200",
            "seed=2",
            "scheduler=prompttuner",
        ]
        with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, "progress=false"])
        (res,) = simulate_config(cfg)
        wall = [c for c in ("sim_wall_s", "decide_wall_s") if c in res.jobs.columns]
        return res.jobs.drop(columns=wall)

    windowed = jobs()

    def no_window(self: pt.PromptTuner, job, now, run_s, cap, planned):  # type: ignore[no-untyped-def]
        return (job, now, now, pt._CHECK, 0.0)

    monkeypatch.setattr(pt.PromptTuner, "_window", no_window)
    exhaustive = jobs()
    assert len(windowed) > 100  # type: ignore[arg-type]
    assert windowed.equals(exhaustive)  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.floats(-5.0, 60.0, allow_nan=False),  # when: a decision at this time
            st.lists(  # then pushes of (window end - when, job)
                st.tuples(
                    st.one_of(st.floats(-1.0, 20.0, allow_nan=False), st.just(math.inf)),
                    st.integers(0, 9),
                ),
                max_size=6,
            ),
        ),
        max_size=30,
    )
)
def test_expiry_returns_what_a_heap_of_window_ends_pops(steps: list) -> None:  # type: ignore[type-arg]
    """``_running``'s window ends: at each decision ``due`` gives exactly the entries a heap
    popped while its least end was before ``now`` (as a multiset: the order is free), across
    bucket edges, long gaps, ends already past when pushed, and ends that never come."""
    exp = _Expiry()
    heap: list[tuple[float, str]] = []
    now = -10.0
    for dt, pushes in steps:
        now = max(now, dt)
        want = []
        while heap and heap[0][0] < now:
            want.append(heapq.heappop(heap)[1])
        assert sorted(exp.due(now)) == sorted(want)
        for ahead, job in pushes:
            end = now + ahead
            heapq.heappush(heap, (end, f"j{job}"))
            exp.push(end, f"j{job}")
    assert sorted(exp.due(1e6)) == sorted(j for t, j in heap if t < math.inf)
