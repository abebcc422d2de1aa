"""The ElasticFlow-style policy through the real driver: admission control, slotted decisions,
power-of-two counts, buddy placement, no warm reuse, releases, work conservation, the hand-out
order knob, ElasticFlow's overhead mode from config, and invariants under generated traces."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptsim.core.policies.elasticflow import ElasticFlow, ElasticFlowConfig, _Placer
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.state import ClusterState
from ptsim.core.types import (
    Action,
    Decision,
    GpuState,
    GpuView,
    InitChoice,
    JobSpec,
    Reconfigure,
    Snapshot,
)
from ptsim.metrics import REJECTED_JCT, jobs_table, series_table, summarize
from ptsim.run import run_policy
from ptsim.simulator import Simulation
from ptsim.specs import ClusterSpec
from tests._util import job, linear_profiles, patches


class Recorder:
    """Wraps a policy and records every decision with the snapshot it was made from."""

    name = "recorder"

    def __init__(self, inner: ElasticFlow) -> None:
        self.inner = inner
        self.log: list[tuple[Snapshot, Decision]] = []

    def decide(self, snap: Snapshot) -> Decision:
        d = self.inner.decide(snap)
        self.log.append((snap, d))
        return d

    def allocations(self) -> list[tuple[float, str, tuple[int, ...], tuple[int, ...]]]:
        """(time, job, GPUs held before, GPUs asked for) of every allocation."""
        out = []
        for snap, d in self.log:
            for job_id, gids in sorted(d.allocations.items()):
                out.append((snap.now, job_id, snap.jobs_by_id[job_id].gpus, gids))
        return out


def simulate(
    jobs: list[JobSpec],
    profiles: ProfileSet,
    nodes: int,
    per_node: int,
    chooser: Any = None,
    **knobs: Any,
) -> tuple[Recorder, Any]:
    pol = POLICIES.build("elasticflow", PolicyContext(profiles, chooser), knobs)
    assert isinstance(pol, ElasticFlow)
    rec = Recorder(pol)
    sim = Simulation(jobs, rec, profiles, num_nodes=nodes, gpus_per_node=per_node)
    return rec, sim


def run(
    jobs: list[JobSpec], profiles: ProfileSet, nodes: int, per_node: int, **knobs: Any
) -> tuple[Recorder, Any, Any, dict[str, Any]]:
    rec, sim = simulate(jobs, profiles, nodes, per_node, **knobs)
    out = sim.run()
    table = jobs_table(out)
    return rec, out, table.set_index("job_id"), summarize(out, table)


def two_model_profiles() -> ProfileSet:
    """``lin`` scales linearly (1 it/s per GPU); ``sub`` scales badly (1, 1.5, 1.8 it/s)."""
    lin = ThroughputTable((16,), (1, 2, 4), np.array([[1.0, 2.0, 4.0]]))
    sub = ThroughputTable((16,), (1, 2, 4), np.array([[1.0, 1.5, 1.8]]))
    return ProfileSet(
        {
            "lin": ModelProfile("lin", 1e8, lin, 10.0, 5.0, 0.25),
            "sub": ModelProfile("sub", 1e8, sub, 10.0, 5.0, 0.25),
        },
        Mechanics(handover_s=0.5, reconfig_s=2.0),
    )


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_buddy(gids: tuple[int, ...], per_node: int) -> None:
    n = len(gids)
    assert is_pow2(n), f"{n} GPUs is not a power of two"
    g = sorted(gids)
    if n <= per_node:
        assert g[0] // per_node == g[-1] // per_node, f"{g} spans nodes"
        assert g == list(range(g[0], g[0] + n)), f"{g} is not contiguous"
        assert (g[0] % per_node) % n == 0, f"{g} is not aligned"
    else:
        assert n % per_node == 0
        nodes = {x // per_node for x in g}
        assert len(nodes) == n // per_node, f"{g} is not whole nodes"


# --------------------------------------------------------------------------- admission control


def test_infeasible_newcomer_is_rejected_by_elasticflow_and_admitted_by_edf() -> None:
    """2 GPUs at 1 it/s each: 200 iterations cannot finish in 60 s even on both GPUs."""
    jobs = [job("hard", 0, 200, 60)]
    _, _, t, s = run(jobs, linear_profiles(), 1, 2)
    assert t.loc["hard", "status"] == "rejected" and s["slo_violation_rate"] == 1.0
    assert s["cold_starts"] == 0 and s["cost_gpu_hours"] == 0.0
    edf = run_policy(jobs, "edf", {}, linear_profiles(), ClusterSpec(1, 2)).jobs
    assert edf.status.tolist() == ["done"] and not edf.met_deadline.iloc[0]


def test_rejected_job_is_a_violation_costs_nothing_and_its_jct_follows_the_key() -> None:
    """``hard`` (arrives 0, deadline 60) is rejected; ``easy`` (200 it on 2 GPUs at 1 it/s
    each, arrives 0) finishes at 10 + 0.5 + 100 = 110.5 s = T_end. JCT sample per
    ``sim.rejected_jct``: censor_at_end {110.5, 110.5}, censor_at_deadline {110.5, 60},
    exclude {110.5}."""
    jobs = [job("hard", 0, 200, 60), job("easy", 0, 200, 1000)]
    _, out, t, _ = run(jobs, linear_profiles(), 1, 2)
    table = t.reset_index()
    assert t.loc["hard", "status"] == "rejected" and t.loc["hard", "gpu_seconds"] == 0.0
    end = float(t.loc["easy", "finish_s"])
    assert end == pytest.approx(110.5) and out.stats.end_s == pytest.approx(end)
    got = {k: summarize(out, table, rejected_jct=k) for k in REJECTED_JCT}
    for s in got.values():
        assert s["slo_violations"] == 1 and s["rejected"] == 1
        assert s["cost_gpu_hours"] * 3600 == pytest.approx(float(t.gpu_seconds.sum()))
    assert got["censor_at_end"]["mean_jct_s"] == pytest.approx(end)
    assert got["censor_at_deadline"]["mean_jct_s"] == pytest.approx((end + 60.0) / 2)
    assert got["exclude"]["mean_jct_s"] == pytest.approx(end)
    assert [got[k]["jct_censored"] for k in REJECTED_JCT] == [1, 1, 0]
    assert [got[k]["jct_excluded"] for k in REJECTED_JCT] == [0, 0, 1]
    with pytest.raises(ValueError, match=r"sim\.rejected_jct must be one of"):
        summarize(out, table, rejected_jct="drop")


def test_artifact_timing_decides_like_elasticflows_simulator() -> None:
    """Slot 60 s. ``a`` arrives at 100 after a quiet start: the grid decides it at 120, the
    artifact's timing at once (no decision in the slot before). ``b`` arrives at 130, less
    than a slot after that decision: it waits until 100 + 60 = 160 (grid: 180)."""
    jobs = [job("a", 100, 100, 2000, max_gpus=1), job("b", 130, 100, 2000, max_gpus=1)]
    starts = {}
    for timing in ("grid", "artifact"):
        rec, _, t, s = run(jobs, linear_profiles(), 1, 2, timing=timing, replicas="released")
        assert s["invalid_requests"] == 0 and (t.status == "done").all()
        starts[timing] = {
            j: min(now for now, jid, *_ in rec.allocations() if jid == j) for j in "ab"
        }
    assert starts["grid"] == {"a": pytest.approx(120.0), "b": pytest.approx(180.0)}
    assert starts["artifact"] == {"a": pytest.approx(100.0), "b": pytest.approx(160.0)}
    with pytest.raises(ValueError, match="timing=artifact needs replan=events"):
        ElasticFlowConfig(timing="artifact", replan="every_slot")
    # a busier trace: decisions at least a slot apart (second steps 1 ms after), invariants
    rng = np.random.default_rng(5)
    busy, t0 = [], 0.0
    for i in range(30):
        t0 += float(rng.exponential(25.0))
        it = int(rng.integers(100, 1500))
        busy.append(job(f"j{i}", t0, it, t0 + it / float(rng.uniform(0.8, 4)), max_gpus=8))
    for replicas in ("released", "dedicated"):
        rec, out, _, s = run(busy, linear_profiles(), 2, 4, timing="artifact", replicas=replicas)
        out.state.check_invariants()
        assert s["invalid_requests"] == 0 and not s["horizon_hit"]
        times = sorted({round(now, 6) for now, *_ in rec.allocations()})
        decided = [snap.now for snap, _ in rec.log]
        plans = [x for x in times if not any(abs(x - y - 1e-3) < 1e-6 for y in decided)]
        assert all(b - a >= 60.0 - 1e-6 for a, b in itertools.pairwise(plans))


def test_feasible_newcomer_is_admitted_and_meets_its_deadline() -> None:
    jobs = [job("easy", 0, 200, 400)]
    _, _, t, s = run(jobs, linear_profiles(), 1, 2)
    assert t.loc["easy", "status"] == "done" and bool(t.loc["easy", "met_deadline"])
    assert s["slo_violation_rate"] == 0.0 and s["invalid_requests"] == 0


def test_newcomer_that_would_make_an_admitted_job_miss_is_rejected() -> None:
    """One GPU at 1 it/s. ``first`` (150 it, deadline 200) is admitted at 0 and trains from
    10.5. ``second`` (50 it, deadline 150) arrives at 30 and is decided at 60: alone it fits
    (90 s before its deadline), but planned first (earlier deadline) it takes the slot 60-120
    and leaves ``first`` (100.5 it left) only 80 s before 200: rejected."""
    jobs = [job("first", 0, 150, 200), job("second", 30, 50, 150)]
    _, _, t, _ = run(jobs, linear_profiles(), 1, 1)
    assert t.loc["second", "status"] == "rejected"
    assert t.loc["first", "status"] == "done" and bool(t.loc["first", "met_deadline"])


def test_batch_admission_declines_all_newcomers_of_a_decision_together() -> None:
    """Two newcomers at the same boundary, one infeasible: ``each`` rejects only that one,
    ``batch`` (the artifact's rule) rejects both."""
    jobs = [job("ok", 0, 50, 400), job("bad", 0, 500, 100)]
    _, _, each, _ = run(jobs, linear_profiles(), 1, 2, admission="each")
    _, _, batch, _ = run(jobs, linear_profiles(), 1, 2, admission="batch")
    assert each.status.to_dict() == {"ok": "done", "bad": "rejected"}
    assert batch.status.to_dict() == {"ok": "rejected", "bad": "rejected"}


# --------------------------------------------------------------------------- slots


def test_decisions_happen_only_at_slot_boundaries() -> None:
    """Slot 60 s, cold start 10 s, hand-over 0.5 s: a job arriving at 30 starts loading at the
    boundary 60 and trains from 70.5. A job that ends mid-slot frees GPUs that nobody takes
    before the next boundary."""
    jobs = [job("a", 30, 100, 1000, max_gpus=1), job("b", 30, 400, 2000, max_gpus=2)]
    rec, _, t, s = run(jobs, linear_profiles(), 1, 2, replicas="released")
    assert t.loc["a", "first_start_s"] == pytest.approx(70.5)
    assert t.loc["b", "first_start_s"] == pytest.approx(70.5)
    times = sorted({now for now, *_ in rec.allocations()})
    for now in times:
        off = now % 60.0
        assert off < 0.01 or off > 60 - 1e-6, f"allocation at {now}"
    # a ends at 170.5; b grows to 2 GPUs only at the boundary 180
    assert t.loc["a", "finish_s"] == pytest.approx(170.5)
    grow = [x for x in rec.allocations() if x[1] == "b" and len(x[3]) == 2]
    assert grow and grow[0][0] == pytest.approx(180.0)
    assert s["invalid_requests"] == 0


# --------------------------------------------------------------------------- shapes


def test_counts_are_powers_of_two_and_placement_is_buddy_aligned() -> None:
    table = ThroughputTable((16,), (1, 2, 4, 8, 16), np.array([[1.0, 2.0, 4.0, 8.0, 16.0]]))
    prof = ProfileSet({"m": ModelProfile("m", 1e8, table, 10.0, 5.0, 0.25)}, Mechanics())
    rng = np.random.default_rng(3)
    jobs, t = [], 0.0
    for i in range(30):
        t += float(rng.exponential(40.0))
        it = int(rng.integers(200, 3000))
        jobs.append(
            JobSpec(f"j{i}", t, "m", "x", t + it / float(rng.uniform(1, 6)), 16, it, 1, 1, 16)
        )
    rec, out, _, s = run(jobs, prof, 3, 8)
    allocs = rec.allocations()
    assert allocs
    for _, _, _, gids in allocs:
        if gids:
            check_buddy(gids, 8)
    assert any(len(g) >= 8 for *_, g in allocs), "no job ever used a whole node"
    assert s["invalid_requests"] == 0
    out.state.check_invariants()


@pytest.mark.parametrize("replicas", ["released", "dedicated"])
def test_every_gpu_gained_is_a_cold_start_and_given_up_gpus_are_released(replicas: str) -> None:
    rng = np.random.default_rng(7)
    jobs, t = [], 0.0
    for i in range(25):
        t += float(rng.exponential(30.0))
        it = int(rng.integers(100, 1500))
        jobs.append(job(f"j{i}", t, it, t + it / float(rng.uniform(0.8, 4)), max_gpus=8))
    rec, _, table, s = run(jobs, linear_profiles(), 2, 4, replicas=replicas)
    gained = sum(len(set(new) - set(old)) for _, _, old, new in rec.allocations())
    assert gained > 0
    assert s["cold_starts"] == gained == int(table.cold_starts.sum())
    assert s["warm_hits"] == 0 and s["reloads"] == 0
    if replicas == "released":
        assert s["gpu_hours_warm_idle"] * 3600 == pytest.approx(0.0, abs=1e-6)
    else:  # idle replicas stay provisioned
        assert s["gpu_hours_warm_idle"] > 0
    assert s["rescales"] > 0  # jobs did shrink and grow
    shrinks = [x for x in rec.allocations() if 0 < len(x[3]) < len(x[2])]
    assert shrinks, "no shrink happened"
    assert s["invalid_requests"] == 0


def test_dedicated_replicas_stay_provisioned_and_still_cold_start() -> None:
    """``replicas=dedicated`` (the serverful deployment of the PromptTuner authors' prototype):
    a GPU a job gives up stays provisioned, idle, until another job takes it; that job still
    pays a cold start (no sharing across jobs). Hand-made: job a runs on 2 GPUs and ends; job b
    comes 10 minutes later."""
    jobs = [job("a", 0, 240, 600, max_gpus=2), job("b", 900, 240, 1500, max_gpus=2)]
    _, _, rel, rel_s = run(jobs, linear_profiles(), 1, 2, replicas="released")
    _, ded_out, ded, ded_s = run(jobs, linear_profiles(), 1, 2, replicas="dedicated")
    for t, s in ((rel, rel_s), (ded, ded_s)):
        assert (t.status == "done").all() and s["invalid_requests"] == 0
        assert int(t.loc["b", "cold_starts"]) == 2 and int(t.loc["b", "warm_hits"]) == 0
    # released: nothing idles; dedicated: a's 2 GPUs idle from its end until b's boundary
    assert rel_s["gpu_hours_warm_idle"] == pytest.approx(0.0, abs=1e-9)
    idle = 2 * (900.0 - rel.loc["a", "finish_s"])  # b arrives on a boundary
    assert ded_s["gpu_hours_warm_idle"] * 3600 == pytest.approx(idle, abs=0.01)
    assert ded_s["cost_gpu_hours"] == pytest.approx(rel_s["cost_gpu_hours"] + idle / 3600, 1e-6)
    # the same schedule otherwise: b starts at its boundary on the same GPUs
    assert rel.loc["b", "finish_s"] == pytest.approx(ded.loc["b", "finish_s"], abs=0.01)
    assert rel_s["releases"] > ded_s["releases"]
    ded_out.state.check_invariants()


def test_work_conserving_a_lone_job_takes_every_useful_gpu() -> None:
    """8 GPUs, linear to 8: one job gets all 8; when a second arrives, all 8 stay busy."""
    jobs = [job("a", 0, 4000, 10000), job("b", 100, 2000, 10000)]
    rec, out, t, _ = run(jobs, linear_profiles(), 1, 8)
    first = next(x for x in rec.allocations() if x[1] == "a")
    assert len(first[3]) == 8
    series = series_table(out)
    start = series[series.time_s <= 131].index[-1]  # the row in effect at 131
    window = series.loc[start:][series.loc[start:].time_s < t.loc["b", "finish_s"] - 1]
    assert len(window) and (window.busy == 8).all()


@patches("ptsim.core.policies.elasticflow")
def test_no_idle_gpu_while_a_running_job_could_grow() -> None:
    """After every hand-out, the GPUs left over are fewer than any job below its cap would need
    for its next power-of-two level (ElasticFlow's work conservation)."""
    rng = np.random.default_rng(11)
    jobs, t = [], 0.0
    for i in range(20):
        t += float(rng.exponential(50.0))
        it = int(rng.integers(200, 2000))
        jobs.append(job(f"j{i}", t, it, t + it / float(rng.uniform(0.8, 3)), max_gpus=8))
    rec, sim = simulate(jobs, linear_profiles(), 2, 4)
    pol = rec.inner
    hand_out = pol._hand_out
    grew = 0

    def spy(items: Any, counts: list[int], spare: int) -> None:
        nonlocal grew
        before = sum(counts)
        hand_out(items, counts, spare)
        left = spare - (sum(counts) - before)
        assert left >= 0
        grew += sum(counts) - before
        for it, n in zip(items, counts, strict=True):
            if it.remaining <= 0:
                continue
            lv = it.levels.counts
            nxt = lv[lv > n]
            if nxt.size:
                assert int(nxt[0]) - n > left, f"{it.job_id} could grow"

    pol._hand_out = spy  # type: ignore[method-assign]
    out = sim.run()
    assert grew > 0
    assert summarize(out, jobs_table(out))["invalid_requests"] == 0


# --------------------------------------------------------------------------- knobs


def test_handout_order_knob_artifact_serves_the_worst_scaling_job_first() -> None:
    """3 GPUs on one node (counts 1 and 2): both jobs get one GPU (they hold none), the third
    goes to ``sub`` (GPU-time grows most) under ``artifact`` and to ``lin`` under ``paper``."""
    jobs = [
        JobSpec("l", 0, "lin", "x", 1e6, 16, 5000, 1, 1, 2),
        JobSpec("s", 0, "sub", "x", 1e6, 16, 5000, 1, 1, 2),
    ]
    held = {}
    for order in ("artifact", "paper"):
        rec, sim = simulate(jobs, two_model_profiles(), 1, 3, handout_order=order)
        sim.run()
        first = {j: len(g) for now, j, _, g in rec.allocations() if now == 0.0}
        held[order] = first
    assert held["artifact"] == {"l": 1, "s": 2}
    assert held["paper"] == {"l": 2, "s": 1}


def test_cap_by_profile_stops_where_throughput_stops_improving() -> None:
    table = ThroughputTable((16,), (1, 2, 4, 8), np.array([[1.0, 1.8, 1.7, 1.6]]))
    prof = ProfileSet({"m": ModelProfile("m", 1e8, table, 1.0, 1.0, 0.1)}, Mechanics())
    pol = ElasticFlow(PolicyContext(prof), ElasticFlowConfig())
    spec = JobSpec("a", 0, "m", "x", 100, 16, 10, 1, 1, 8)
    assert pol.levels(spec, 8, 8).counts.tolist() == [1, 2]
    loose = ElasticFlow(PolicyContext(prof), ElasticFlowConfig(cap_by_profile=False))
    assert loose.levels(spec, 8, 8).counts.tolist() == [1, 2, 4, 8]
    small_batch = JobSpec("b", 0, "m", "x", 100, 2, 10, 1, 1, 8)
    assert loose.levels(small_batch, 8, 8).counts.tolist() == [1, 2, 4, 8]
    assert pol.levels(JobSpec("c", 0, "m", "x", 100, 16, 10, 3, 3, 8), 8, 8).counts.tolist() == [4]
    assert pol.levels(JobSpec("d", 0, "m", "x", 100, 16, 10, 3, 3, 8), 2, 2).counts.size == 0


def test_replan_every_slot_and_events_both_drain_cleanly() -> None:
    rng = np.random.default_rng(5)
    jobs, t = [], 0.0
    for i in range(15):
        t += float(rng.exponential(40.0))
        it = int(rng.integers(100, 1500))
        jobs.append(job(f"j{i}", t, it, t + it / float(rng.uniform(0.8, 3)), max_gpus=4))
    for mode in ("events", "every_slot"):
        _, out, table, s = run(jobs, linear_profiles(), 1, 4, replan=mode)
        assert s["invalid_requests"] == 0 and not s["horizon_hit"]
        assert set(table.status) <= {"done", "rejected"}
        out.state.check_invariants()


def test_bad_knobs_are_refused_and_the_config_file_matches_the_dataclass() -> None:
    with pytest.raises(ValueError, match="handout_order"):
        ElasticFlowConfig(handout_order="random")
    with pytest.raises(ValueError, match="admission"):
        ElasticFlowConfig(admission="maybe")
    with pytest.raises(ValueError, match="replan"):
        ElasticFlowConfig(replan="never")
    with pytest.raises(ValueError, match="slot_s"):
        ElasticFlowConfig(slot_s=0.0)
    from omegaconf import OmegaConf

    from ptsim.paths import conf_root

    cfg = OmegaConf.to_container(OmegaConf.load(conf_root() / "scheduler" / "elasticflow.yaml"))
    assert isinstance(cfg, dict) and cfg.pop("name") == "elasticflow"
    made = POLICIES.make_config("elasticflow", {str(k): v for k, v in cfg.items()})
    assert made == ElasticFlowConfig()


class FakeBank:
    """An InitChooser that saves half the iterations of every job."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def choose(self, spec: JobSpec) -> InitChoice:
        self.asked.append(spec.job_id)
        return InitChoice(
            source=f"p-{spec.job_id}",
            source_task="t",
            layout="fake",
            assessments=3,
            lookup_s=1.0,
            expected_saving=0.5,
        )


def test_bank_knob_puts_the_banks_choice_into_new_jobs_and_admission_uses_it() -> None:
    """1 GPU, 200 iterations, deadline 150: infeasible from the default prompt, feasible
    with a bank choice that halves the iterations."""
    jobs = [job("a", 0, 200, 150, max_gpus=1)]
    bank = FakeBank()
    _, sim = simulate(jobs, linear_profiles(), 1, 1, chooser=bank, bank=True)
    out = sim.run()
    t = jobs_table(out).set_index("job_id")
    assert bank.asked == ["a"] and t.loc["a", "init_source"] == "p-a"
    assert t.loc["a", "status"] == "done"
    off = FakeBank()
    _, sim = simulate(jobs, linear_profiles(), 1, 1, chooser=off)
    out = sim.run()
    assert off.asked == [] and jobs_table(out).status.tolist() == ["rejected"]


# --------------------------------------------------------------------------- ElasticFlow mode


def _elasticflow_profile(tmp: Path) -> ProfileSet:
    """The shipped ``elasticflow_a100`` profile config on a directory of small throughput
    files in ElasticFlow's layout (made-up numbers, linear to 8 GPUs)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ptsim.paths import conf_root
    from ptsim.profiles_io import load_profiles

    names = ["bert", "deepspeech2", "gpt2", "inception3", "resnet50", "resnet50_cifar10", "vgg16"]
    for name in names:
        (tmp / f"{name}.csv").write_text(
            "global_batch_size,1,2,4,8,16,32,64\n16,1,2,4,8,8,8,8\n", encoding="utf-8"
        )
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["experiment=elasticflow_replay", f"profile.dir={tmp}"],
        )
    assert cfg.scheduler.name == "elasticflow" and cfg.scheduler.admission == "batch"
    # ElasticFlow's per-event overhead (2 s below 256 GPUs) and its planner's step-up points
    assert cfg.scheduler.event_pause_s == 2.0 and cfg.scheduler.switch_at == "free_change"
    spec = OmegaConf.to_container(cfg.profile, resolve=True)
    assert isinstance(spec, dict)
    prof = load_profiles({str(k): v for k, v in spec.items()})
    assert sorted(prof.models) == names
    return prof


@patches("ptsim.core.state")
def test_elasticflow_mode_charges_elasticflows_overhead_model(tmp_path: Path) -> None:
    """With the replay config every cold start is 2 s, a first start adds 2 s, and a change of
    GPU set to n GPUs pauses 2 (log2 n + 1) s (a job waits for all its GPUs)."""
    prof = _elasticflow_profile(tmp_path)
    assert all(prof.cold_start(m) == 2.0 for m in prof.models)
    mech = prof.mechanics
    assert not mech.start_partial and mech.handover_s == 2.0
    for n in (1, 2, 4, 8, 16):
        assert mech.reconfig_pause(n) == pytest.approx(2.0 * (math.log2(n) + 1.0))

    jobs = [
        JobSpec("a", 0, "gpt2", "x", 5000, 16, 8000, 1, 1, 8),
        JobSpec("b", 100, "gpt2", "x", 5000, 16, 4000, 1, 1, 8),
    ]
    pol = POLICIES.build("elasticflow", PolicyContext(prof), {"admission": "batch"})
    sim = Simulation(jobs, pol, prof, num_nodes=1, gpus_per_node=8)
    seen: list[Action] = []
    apply, ready = sim.state.apply, sim.state.gpu_ready

    def spy_apply(d: Decision, now: float) -> list[Action]:
        acts = apply(d, now)
        seen.extend(acts)
        return acts

    def spy_ready(gid: int, token: int, now: float) -> list[Action]:
        acts = ready(gid, token, now)
        seen.extend(acts)
        return acts

    sim.state.apply = spy_apply  # type: ignore[method-assign]
    sim.state.gpu_ready = spy_ready  # type: ignore[method-assign]
    out = sim.run()
    recon = [a for a in seen if isinstance(a, Reconfigure) and a.gpus]
    assert [a.pause_s for a in recon if a.first] == [2.0, 2.0]
    later = [a for a in recon if not a.first]
    assert later, "no job changed its GPU set"
    for a in later:
        assert a.pause_s == pytest.approx(2.0 * (math.log2(len(a.gpus)) + 1.0))
    t = jobs_table(out).set_index("job_id")
    # a starts at 0: its 8 GPUs load for 2 s, then 2 s first-start pause
    assert t.loc["a", "first_start_s"] == pytest.approx(4.0)
    assert summarize(out, jobs_table(out))["invalid_requests"] == 0


def test_event_pause_delays_a_running_job_by_exactly_the_pause_at_each_replan() -> None:
    """ElasticFlow mode: a re-plan pauses every job that keeps its GPUs, except one planned to
    finish before the next decision; off (the default) nothing is paused."""
    jobs = [
        job("a", 0, 1000, 5000),  # 1 GPU (one-GPU cluster): loads 10 s, 0.5 s hand-over
        job("b", 100, 1000, 200),  # cannot make it: rejected at the boundary at 120 s
        job("c", 960, 1000, 970),  # rejected at 960 s, when a has under a slot left
    ]
    finish = {}
    for pause in (0.0, 2.0, 5.0):
        rec, _out, table, s = run(jobs, linear_profiles(), 1, 1, event_pause_s=pause)
        assert list(table.status) == ["done", "rejected", "rejected"]
        assert s["invalid_requests"] == 0 and table.loc["a", "rescales"] == 0
        finish[pause] = float(table.loc["a", "finish_s"])
        paused = [(snap.now, dict(d.pause)) for snap, d in rec.log if d.pause]
        assert paused == ([] if pause == 0.0 else [(120.0, {"a": pause})])
    assert finish[0.0] == pytest.approx(1010.5)
    assert finish[2.0] == pytest.approx(1012.5) and finish[5.0] == pytest.approx(1015.5)


def test_switch_at_free_change_steps_up_where_the_free_gpus_change() -> None:
    """A minimum share that needs 2 GPUs somewhere: by slot it runs 1 GPU first and 2 from
    the latest slot that still finishes in time; with ``free_change`` (ElasticFlow's planner)
    the step moves back to the last change of the free GPUs (here: now, on an idle cluster)."""
    from ptsim.core.policies.elasticflow import _Free, _Item, _Planner

    pol = ElasticFlow(PolicyContext(linear_profiles()), ElasticFlowConfig())
    levels = pol.levels(job("a", 0, 900, 600), 8, 8)
    rows = {}
    for mode in ("slot", "free_change"):
        item = _Item("a", (600.0, 0.0, "a"), 600.0, 900.0, levels, 0)
        ok, row = _Planner(0.0, 60.0, mode).plan(item, _Free(8))
        assert ok
        rows[mode] = row.tolist()
    assert rows["slot"] == [1, 1] + [2] * 7  # 2 at 1 GPU, then 2 GPUs from slot 2 (of 10)
    assert rows["free_change"] == [2] * 8  # 900 iterations at 2/s: 7.5 slots
    # free GPUs that change at slot 1: the step (slot 2 by slot) moves back to 1, not to 0
    free = _Free(8, 10)
    free.arr[:1] = 4
    item = _Item("a", (600.0, 0.0, "a"), 600.0, 900.0, levels, 0)
    ok, row = _Planner(0.0, 60.0, "free_change").plan(item, free)
    assert ok and row.tolist() == [1] + [2] * 7


# --------------------------------------------------------------------------- invariants

rows_st = st.lists(
    st.tuples(
        st.floats(0, 600),  # arrival
        st.integers(1, 600),  # iterations
        st.floats(0.2, 5.0),  # deadline ratio (of the 1-GPU run time)
        st.sampled_from([1, 2, 4, 8]),  # max GPUs
        st.sampled_from(["m", "n"]),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rows_st,
    st.integers(1, 3),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(["artifact", "paper"]),
    st.sampled_from(["each", "batch"]),
    st.sampled_from(["events", "every_slot", "jobs"]),
    st.sampled_from([30.0, 60.0]),
    st.sampled_from(["dedicated", "released"]),
    st.sampled_from([(0.0, "slot"), (2.0, "free_change")]),
)
def test_invariants_on_generated_traces(
    rows: list[tuple[float, int, float, int, str]],
    nodes: int,
    per_node: int,
    order: str,
    admission: str,
    replan: str,
    slot: float,
    replicas: str,
    compat: tuple[float, str],
) -> None:
    cap = nodes * per_node
    jobs = [
        JobSpec(f"j{i}", a, m, "t", a + it * r, 16, it, 1, 1, mx)
        for i, (a, it, r, mx, m) in enumerate(rows)
    ]
    knobs = {
        "handout_order": order,
        "admission": admission,
        "replan": replan,
        "slot_s": slot,
        "replicas": replicas,
        "event_pause_s": compat[0],
        "switch_at": compat[1],
    }
    rec, out, table, s = run(jobs, linear_profiles(("m", "n")), nodes, per_node, **knobs)
    out.state.check_invariants()
    assert s["invalid_requests"] == 0 and not s["horizon_hit"]
    assert set(table.status) <= {"done", "rejected"}
    # no double booking, power-of-two buddy blocks, every gained GPU a cold start
    gained = 0
    for _, _, old, new in rec.allocations():
        if new:
            check_buddy(new, per_node)
        gained += len(set(new) - set(old))
    assert s["cold_starts"] == gained and s["warm_hits"] == 0 and s["reloads"] == 0
    series = series_table(out)
    assert (series[["free", "loading", "warm", "busy"]].sum(axis=1) == cap).all()
    tot = out.state.totals.gpu_seconds
    provisioned = sum(tot.values())
    assert provisioned <= cap * s["sim_end_s"] + 1e-6
    held = tot[GpuState.BUSY] + tot[GpuState.LOADING]
    if replicas == "released":
        assert table.gpu_seconds.sum() == pytest.approx(held)
        assert tot[GpuState.WARM] == pytest.approx(0.0, abs=1e-6)
    else:  # a replica may finish loading after its job ended: provisioned, but no job's
        assert table.gpu_seconds.sum() <= held + 1e-6
    for r in out.state.jobs.values():
        if r.finish is not None and r.first_start is not None:
            assert r.iters_done == pytest.approx(r.iters_needed)
    # admitted jobs hold GPUs only from boundaries on (or the second step, 1 ms later)
    for now, *_ in rec.allocations():
        off = now % slot
        assert off < 0.01 or off > slot - 1e-6


def test_same_trace_gives_identical_tables() -> None:
    rng = np.random.default_rng(2)
    jobs, t = [], 0.0
    for i in range(30):
        t += float(rng.exponential(25.0))
        it = int(rng.integers(100, 1500))
        jobs.append(job(f"j{i:02d}", t, it, t + it / float(rng.uniform(0.8, 4)), max_gpus=8))
    a = run_policy(jobs, "elasticflow", {}, linear_profiles(), ClusterSpec(2, 4))
    b = run_policy(list(reversed(jobs)), "elasticflow", {}, linear_profiles(), ClusterSpec(2, 4))
    assert a.jobs.equals(b.jobs) and a.series.equals(b.series)
    assert a.summary["decisions"] == b.summary["decisions"]


def _random_levels(rng: np.random.Generator, total: int) -> Any:
    """A random level set of powers of two up to ``total`` (rates rising or not)."""
    from ptsim.core.policies.elasticflow import _Levels

    top = int(rng.integers(1, int(math.log2(total)) + 2))
    counts = [2**i for i in range(top)]
    thr = np.sort(rng.uniform(0.1, 5.0, top)) if rng.random() < 0.8 else rng.uniform(0.1, 5.0, top)
    thr = np.round(thr, int(rng.integers(0, 4))) + 0.5  # round numbers: sums that tie
    return _Levels(
        counts=np.asarray(counts, dtype=np.int64),
        counts_ext=np.asarray([0, *counts], dtype=np.int64),
        thr_ext=np.asarray([0.0, *thr], dtype=np.float64),
        monotone=bool(np.all(np.diff(thr) >= 0)),
        top=counts[-1],
        counts_t=tuple(counts),
        thr_t=(0.0, *(float(t) for t in thr)),
        fit_table=np.searchsorted(counts, np.arange(total + 1), side="right"),
    )


def plan_case(rng: np.random.Generator, k_top: int = 160, many_runs: float = 0.0) -> Any:
    """Random inputs of one plan: ``(levels, k_max, free, fits, last, need)``. The free GPUs per
    slot are runs of random values (free GPUs also change inside runs of equal fitting level),
    with probability ``many_runs`` one value per slot; ``need`` is in 30% of the cases the
    exact sum of some level's gains from some slot on (a tie), and may be 0."""
    total = int(rng.choice([8, 16, 64]))
    lv = _random_levels(rng, total)
    k_max = int(rng.integers(2, k_top))
    cuts = np.sort(rng.integers(1, k_max + 8, int(rng.integers(0, 12))))
    values = rng.integers(0, total + 1, len(cuts) + 1)
    free = np.repeat(values, np.diff([0, *cuts.tolist(), k_max + 8])).astype(np.int64)
    if many_runs and rng.random() < many_runs:
        free = rng.integers(0, total + 1, k_max + 8).astype(np.int64)
    fits = lv.fit_table.take(free[:k_max], mode="clip")
    last = float(rng.choice([60.0, float(rng.uniform(0.5, 60.0))]))
    cap = float((lv.thr_ext[fits] * 60.0).sum())
    if rng.random() < 0.3:  # the exact sum of some level from some slot on: a tie
        level = int(rng.integers(1, len(lv.counts) + 1))
        gains = lv.thr_ext[np.minimum(fits, level)] * 60.0
        gains[-1] = lv.thr_ext[min(int(fits[-1]), level)] * last
        need = float(gains[int(rng.integers(0, k_max)) :].sum())
    else:
        need = float(rng.uniform(0.0, 1.3)) * cap
    return lv, k_max, free, fits, last, need


@pytest.mark.parametrize("mode", ["slot", "free_change"])
def test_plans_on_runs_equal_plans_slot_by_slot(mode: str) -> None:
    """``_Planner._plan_runs_py`` (per run of equal fitting level) gives exactly
    ``_plan_slots``' plan (slot by slot) or defers to it, on random free-GPU functions whose
    free GPUs also change inside runs of equal fitting level, and on needs that tie a level's
    sum."""
    from ptsim.core.policies.elasticflow import _NO_LEVEL, _Planner

    rng = np.random.default_rng(7)
    planner = _Planner(0.0, 60.0, mode)
    answered = moved = 0
    cases = 4000
    for _ in range(cases):
        lv, k_max, free, fits, last, need = plan_case(rng)
        if need <= 0:
            continue
        want = planner._plan_slots(lv, fits, need, last, k_max, free)
        got = planner._plan_runs_py(lv, need, last, k_max, free)
        if got is None:
            continue
        answered += 1
        assert (got is _NO_LEVEL) == (want is _NO_LEVEL)
        assert got.tolist() == want.tolist()
        if mode == "free_change" and want is not _NO_LEVEL:
            slot_plan = _Planner(0.0, 60.0, "slot")._plan_slots(lv, fits, need, last, k_max, free)
            moved += slot_plan.tolist() != want.tolist()
    assert answered > 0.6 * cases
    assert mode == "slot" or moved > 100  # the step point moved back in many plans


def _trial_from_scratch(self: Any, start: int) -> bool:
    """``_Trial.run`` without reuse: every job after the newcomer re-planned from scratch."""
    from ptsim.core.policies import elasticflow as ef

    trial = ef._Free(self.total, arr=self.cur + self.diff)  # with the newcomer
    for i, it in enumerate(self.lane.items[start:], start):
        got = self.planner.plan(it, trial)
        if not got[0] and self.lane.plans[i][0]:
            return False
        self.plan[it.job_id] = got
        self.shapes[it.job_id] = self.planner.shape  # re-planned: the lane takes its plan
    self.final = trial
    return True


@patches("ptsim.core.policies.elasticflow")
@pytest.mark.parametrize("switch_at", ["slot", "free_change"])
def test_admission_test_reuse_equals_replanning_every_later_job(
    switch_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``admission=each`` reuses the plan without the newcomer (``_Trial``); the tables equal
    those of re-planning every job after each newcomer from scratch, also with
    ``switch_at=free_change`` (where a plan depends on where the free GPUs change)."""
    from ptsim.core.policies import elasticflow as ef

    knobs = {"switch_at": switch_at, "admission": "each"}
    for seed in (2, 11, 12):
        rng = np.random.default_rng(seed)
        jobs, t = [], 0.0
        for i in range(60):
            t += float(rng.exponential(20.0))
            it = int(rng.integers(100, 3000))
            mx = int(rng.choice([2, 4, 8]))
            jobs.append(job(f"j{i:02d}", t, it, t + it / float(rng.uniform(0.5, 3)), max_gpus=mx))
        reused = run_policy(jobs, "elasticflow", knobs, linear_profiles(), ClusterSpec(2, 4))
        with monkeypatch.context() as m:
            m.setattr(ef._Trial, "run", _trial_from_scratch)
            scratch = run_policy(jobs, "elasticflow", knobs, linear_profiles(), ClusterSpec(2, 4))
        assert reused.jobs.equals(scratch.jobs)
        assert reused.summary["decisions"] == scratch.summary["decisions"]


@patches("ptsim.core.policies.elasticflow")
def test_admission_test_shortcuts_equal_replanning_on_a_busy_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a cluster that cannot hold its jobs (bursts of long jobs, plans of over 64 slots),
    the admission test's shortcuts (a plan kept when the newcomer changes its fitting levels
    only above its level, or only between its level and the one below before its step point:
    ``_Trial._moves``) give the tables of re-planning every later job from scratch, and the
    second shortcut is taken."""
    from ptsim.core.policies import elasticflow as ef

    kept = 0
    moves = ef._Trial._moves

    def spy(self: Any, *args: Any) -> bool:
        nonlocal kept
        out = moves(self, *args)
        kept += not out
        return out

    monkeypatch.setattr(ef._Trial, "_moves", spy)
    for seed in (3, 5):
        rng = np.random.default_rng(seed)
        jobs = []
        bursts = np.sort(rng.uniform(0.0, 1800.0, 8))
        for i in range(140):
            t = float(rng.choice(bursts)) + float(rng.uniform(0.0, 5.0))
            it = int(rng.integers(3000, 40000))
            mx = int(rng.choice([2, 4, 8]))
            jobs.append(job(f"j{i:03d}", t, it, t + it / float(rng.uniform(0.6, 4.0)), max_gpus=mx))
        reused = run_policy(jobs, "elasticflow", {}, linear_profiles(), ClusterSpec(2, 8))
        with monkeypatch.context() as m:
            m.setattr(ef._Trial, "run", _trial_from_scratch)
            scratch = run_policy(jobs, "elasticflow", {}, linear_profiles(), ClusterSpec(2, 8))
        assert reused.jobs.equals(scratch.jobs)
        assert reused.summary["decisions"] == scratch.summary["decisions"]
    assert kept > 0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    nodes=st.integers(2, 6),
    kept=st.integers(1, 3),
    data=st.data(),
)
def test_multi_node_job_keeping_its_nodes_is_placed_as_the_node_scan_places_it(
    nodes: int, kept: int, data: Any
) -> None:
    """``_Placer.place``'s shortcut for a job that keeps whole nodes (no scan) gives what the
    scan over every node (``_whole_nodes``) gives, whatever else is claimed or protected."""
    from ptsim.core.policies.elasticflow import _Placer

    gpn = 4
    kept = min(kept, nodes)
    gpus = tuple(GpuView(g, g // gpn, GpuState.BUSY) for g in range(nodes * gpn))
    free = tuple(data.draw(st.sets(st.integers(0, nodes * gpn - 1))))
    snap = Snapshot(now=0.0, gpus=gpus, jobs=(), gpus_per_node=gpn, free=tuple(sorted(free)))
    mine = sorted(data.draw(st.sets(st.integers(0, nodes - 1), min_size=kept, max_size=kept)))
    own = tuple(g for n in mine for g in range(n * gpn, (n + 1) * gpn))
    others = [g for g in range(nodes * gpn) if g not in own]
    claimed = data.draw(st.sets(st.sampled_from(others))) if others else set()
    protected = data.draw(st.sets(st.sampled_from(others))) if others else set()

    def placer() -> _Placer:
        p = _Placer(snap)
        p.claim(sorted(claimed))
        p.protect(sorted(protected))
        p.protect(own)
        return p

    fast = placer().place(len(own), own)
    scan = placer()
    picked = scan._whole_nodes(len(mine), scan._masks(own))
    assert picked is not None
    assert fast == tuple(sorted(g for n in picked for g in scan.nodes[n]))
    assert fast == own


def test_placer_bit_count_is_ints_own() -> None:
    from ptsim.core.policies.elasticflow import _bits

    rng = np.random.default_rng(5)
    masks = [*range(1024), *(int(m) for m in rng.integers(0, 2**62, 500)), 2**200 - 1]
    assert [_bits(m) for m in masks] == [m.bit_count() for m in masks]


@pytest.mark.parametrize("switch_at", ["slot", "free_change"])
@pytest.mark.parametrize("compiled", [False, True])
def test_one_admission_test_equals_replanning_every_later_job(
    switch_at: str, compiled: bool
) -> None:
    """One newcomer's ``_Trial.run`` on random lanes (growing free-GPU arrays, levels rising or
    not, deadlines missed or met) answers as re-planning every later job from scratch does:
    the same admission, the same plan for each later job and the same free GPUs after them;
    with the compiled kernels too where they are built (``swap``, ``plus``, the bounded
    summary)."""
    from ptsim.core.policies import elasticflow as ef

    if compiled and ef._KERNELS is None:
        pytest.skip("no compiled kernels (the compiled build: ./dev native)")
    rng = np.random.default_rng(17)
    tested = admitted = 0
    while tested < 300:
        total = int(rng.choice([4, 8, 16]))
        planner = ef._Planner(0.0, 60.0, switch_at, kernels=ef._KERNELS if compiled else None)
        items = []
        for n in range(int(rng.integers(2, 30))):
            dl = float(rng.uniform(30.0, 3000.0))
            lv = _random_levels(rng, total)
            items.append(
                ef._Item(f"j{n}", (dl, 0.0, f"j{n}"), dl, float(rng.uniform(1, 4e3)), lv, 0)
            )
        items.sort(key=lambda it: it.order)
        cand = items.pop(int(rng.integers(0, len(items))))
        pos = sum(1 for it in items if it.order < cand.order)
        rest = ef._Free(total)
        lane = ef._Lane(items, planner, rest)
        running = ef._Free(total)
        for i in range(pos):
            row = lane.plans[i][1]
            running.ensure(len(row))
            planner.reserve(running.arr, row)
        trial = running.copy()
        ok, row = planner.plan(cand, trial, best_effort=False)
        if not ok:
            continue  # rejected by its own plan: no test
        tested += 1
        test = ef._Trial(planner, trial.copy(), row, lane, rest)
        got = test.run(pos)
        free, ok = ef._Free(total, arr=trial.arr.copy()), True
        want: dict[str, Any] = {}
        for i, it in enumerate(items[pos:], pos):
            want[it.job_id] = planner.plan(it, free)
            if not want[it.job_id][0] and lane.plans[i][0]:
                ok = False
                break
        assert got == ok
        if not ok:
            continue
        admitted += 1
        for i, it in enumerate(items[pos:], pos):
            mine = test.plan.get(it.job_id, lane.plans[i])
            assert mine[0] == want[it.job_id][0]
            assert (
                np.trim_zeros(mine[1], "b").tolist()
                == np.trim_zeros(want[it.job_id][1], "b").tolist()
            )
        n = max(len(test.final.arr), len(free.arr))
        test.final.ensure(n)
        free.ensure(n)
        assert test.final.arr[:n].tolist() == free.arr[:n].tolist()
    assert 100 < admitted < tested  # both answers occur


def test_a_boundary_and_an_arrival_at_its_instant_are_decided_once() -> None:
    """``b`` arrives at the boundary 120 s itself, whose wake-up ``c``'s arrival at 90 s asked
    for: one decision at 120 s sees both (it rejects ``c`` and takes a GPU from ``a`` for
    ``b``, which ``b`` gets in the second step 1 ms later), whichever the simulator meets
    first."""
    jobs = [
        job("a", 0, 4000, 4000, max_gpus=2),
        job("c", 90, 1000, 100, max_gpus=1),  # cannot make it
        job("b", 120, 1000, 1500, max_gpus=1),
    ]
    rec, _, t, s = run(jobs, linear_profiles(), 1, 2, replicas="released")
    at_120 = [d for snap, d in rec.log if snap.now == 120.0]
    assert len(at_120) == 1
    assert at_120[0].reject == ("c",) and list(at_120[0].allocations) == ["a"]
    assert len(at_120[0].allocations["a"]) == 1 and at_120[0].wake_at == pytest.approx(120.001)
    assert t.loc["b", "first_gpu_s"] == pytest.approx(120.001)
    assert s["invalid_requests"] == 0


def test_a_second_decision_before_the_second_step_keeps_the_plan() -> None:
    """A re-plan that moves a GPU from ``a`` to ``b`` gives it to ``b`` in a second step 1 ms
    later. Asked again at the same instant, the policy has nothing to re-plan (``b``'s
    missing GPU is that step, not a move that failed) and takes the step at 120.001 s."""
    profiles = linear_profiles()
    pol = POLICIES.build("elasticflow", PolicyContext(profiles, None), {"replicas": "released"})
    st = ClusterState(1, 2, profiles)
    st.add_job(job("a", 0, 4000, 8000, max_gpus=2), 0.0)
    st.apply(pol.decide(st.snapshot(0.0)), 0.0)
    assert len(st.snapshot(0.0).jobs_by_id["a"].gpus) == 2
    st.add_job(job("b", 120, 1000, 1500, max_gpus=1), 120.0)
    first = pol.decide(st.snapshot(120.0))
    assert list(first.allocations) == ["a"] and first.wake_at == pytest.approx(120.001)
    st.apply(first, 120.0)
    again = pol.decide(st.snapshot(120.0))
    assert not again.allocations and not again.pause and not again.release
    st.apply(again, 120.0)
    step = pol.decide(st.snapshot(120.001))
    assert list(step.allocations) == ["b"] and len(step.allocations["b"]) == 1


@patches("ptsim.core.policies.elasticflow")
@pytest.mark.parametrize("switch_at", ["slot", "free_change"])
def test_quiet_boundaries_are_skipped_without_changing_anything(
    monkeypatch: pytest.MonkeyPatch, switch_at: str
) -> None:
    """After a boundary with nothing to re-plan the policy sleeps until its plan's next
    step-up (``_quiet_wake``); waking at every boundary instead gives the same tables, with
    many more decisions. Sparse arrivals at whole seconds (some on a boundary itself)."""
    rng = np.random.default_rng(5)
    jobs, t = [], 0.0
    for i in range(40):
        t += float(np.round(rng.exponential(1200.0)))
        if i % 7 == 0:
            t = 60.0 * math.ceil(t / 60.0)  # on a boundary
        it = int(rng.integers(200, 6000))
        deadline = t + it / float(rng.uniform(0.5, 3.0))
        jobs.append(job(f"j{i:02d}", t, it, deadline, max_gpus=int(rng.choice([1, 2, 4, 8]))))
    knobs = {"replicas": "released", "event_pause_s": 2.0, "switch_at": switch_at}
    quiet = run_policy(jobs, "elasticflow", knobs, linear_profiles(), ClusterSpec(2, 4))
    monkeypatch.setattr(ElasticFlow, "_quiet_wake", ElasticFlow._next_boundary)
    every = run_policy(jobs, "elasticflow", knobs, linear_profiles(), ClusterSpec(2, 4))
    assert quiet.jobs.equals(every.jobs) and quiet.series.equals(every.series)
    assert quiet.summary["decisions"] < 0.5 * every.summary["decisions"]
    assert (quiet.jobs.status == "done").sum() >= 10 and (quiet.jobs.rescales > 0).any()


def test_sort_by_order_is_the_sort_by_deadline_arrival_and_id() -> None:
    """``_sort_by_order`` (deadlines first, then runs of equal deadlines by the whole order)
    gives the order of sorting by ``order``, ties of deadline and arrival included, and so
    does ``_merge_by_order`` of two sorted parts (which keeps each part's rows beside their
    items)."""
    from ptsim.core.policies import elasticflow as ef

    rng = np.random.default_rng(11)
    levels = ElasticFlow(PolicyContext(linear_profiles()), ElasticFlowConfig()).levels(
        job("x", 0, 900, 600), 8, 8
    )
    for _ in range(200):
        items = []
        for n in rng.permutation(int(rng.integers(0, 60))):
            dl = float(rng.choice([60.0, 120.0, 120.0, float("inf"), float(rng.uniform(0, 300))]))
            arrival = float(rng.choice([0.0, 1.0, 2.0]))
            job_id = f"j{int(n):03d}"
            items.append(ef._Item(job_id, (dl, arrival, job_id), dl, 1.0, levels, 0))
        want = [it.job_id for it in sorted(items, key=lambda it: it.order)]
        side = rng.random(len(items)) < float(rng.choice([0.0, 0.1, 0.5, 1.0]))
        a = [it for it, s in zip(items, side, strict=True) if not s]
        b = [it for it, s in zip(items, side, strict=True) if s]
        ef._sort_by_order(items)
        assert [it.job_id for it in items] == want
        ef._sort_by_order(a)
        ef._sort_by_order(b)
        ra = [(True, np.array([int(it.job_id[1:])])) for it in a]
        rb = [(False, np.array([int(it.job_id[1:])])) for it in b]
        merged, plans = ef._merge_by_order(a, b, ra, rb)
        assert [it.job_id for it in merged] == want
        assert [f"j{int(row[0]):03d}" for _, row in plans] == want  # each plan beside its item
        from_a = {it.job_id for it in a}
        assert [ok for ok, _ in plans] == [job_id in from_a for job_id in want]
