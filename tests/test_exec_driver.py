"""The executor driver: real prompt tuning on worker processes under ptsim's policies, with the
same tables as ptsim, warm reuse, resizing at step boundaries, the real Prompt Bank and recovery
from a dead worker. CPU, tiny model, one thread per worker."""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import ptsim.core.policies  # noqa: E402,F401
from ptexec.driver import Executor  # noqa: E402
from ptexec.jobrun import JobRun, accuracy_reading, target_fraction  # noqa: E402
from ptexec.jobs import ExecJob, TaskCatalog  # noqa: E402
from ptexec.models import load_model  # noqa: E402
from ptexec.profile import QUICK, load_exec_profiles, profile_models  # noqa: E402
from ptexec.prompt_bank import ExecBankConfig  # noqa: E402
from ptexec.run import (  # noqa: E402
    EXEC_JOB_COLUMNS,
    EXEC_SUMMARY_KEYS,
    ExecSettings,
    run_jobs,
    save_exec_result,
)
from ptexec.train import TuningConfig, TuningJob  # noqa: E402
from ptexec.validate import simulate_like  # noqa: E402
from ptexec.workers import WorkerPool  # noqa: E402
from ptsim.convergence_io import FITTED, load_convergence  # noqa: E402
from ptsim.core.bank_types import BankConfig  # noqa: E402
from ptsim.core.estimator import READING_CAP, estimate  # noqa: E402
from ptsim.core.policy import PolicyContext  # noqa: E402
from ptsim.core.profiles import ProfileSet, ThroughputTable  # noqa: E402
from ptsim.core.state import SERIES_COLUMNS  # noqa: E402
from ptsim.core.types import DEFAULT_INIT, Decision, JobSpec, JobView, Snapshot  # noqa: E402
from ptsim.metrics import JOB_COLUMNS  # noqa: E402
from ptsim.profiles_io import load_profiles  # noqa: E402

pytestmark = pytest.mark.exec
torch.set_num_threads(1)

CFG = TuningConfig(batch_size=32, max_steps=150, target_accuracy=0.8, eval_every=5)


def job(jid: str, arrival: float, task: str, cfg: TuningConfig = CFG, gpus: int = 1) -> ExecJob:
    spec = JobSpec(jid, arrival, "tiny-gpt2", task, arrival + 60.0, 32, cfg.max_steps, gpus, 1, 2)
    return ExecJob(spec, "tiny-gpt2", None, task, cfg)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2, devices=["cpu", "cpu"], threads=1) as p:
        yield p


@pytest.fixture(scope="module")
def profile_dir(pool: WorkerPool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("profile")
    st = replace(QUICK, batches=(16, 32), convergence=False, assessments=1)
    return profile_models(pool, [("tiny-gpt2", None)], d, st)


@pytest.fixture(scope="module")
def profiles(profile_dir: Path) -> ProfileSet:
    return load_exec_profiles(profile_dir)


def test_profile_dir_loads_in_ptsim(profile_dir: Path) -> None:
    ps = load_profiles(str(profile_dir))
    assert list(ps.models) == ["tiny-gpt2"]
    m = ps.model("tiny-gpt2")
    assert m.cold_start_s > 0 and m.eval_s > 0
    assert ps.iters_per_second("tiny-gpt2", 1, 32) > 0
    assert "measured by ptexec profile" in (profile_dir / "README.md").read_text()
    assert load_exec_profiles(profile_dir).mechanics.handover_s > 0  # measured, not the default


def _four_jobs() -> list[ExecJob]:
    # two jobs at once, two more after the first pair is done: they find warm workers
    return [
        job("j1", 0.0, "synthetic:A"),
        job("j2", 0.0, "synthetic:B"),
        job("j3", 2.5, "synthetic:C"),
        job("j4", 2.5, "synthetic:D"),
    ]


@pytest.fixture(scope="module")
def runs(
    pool: WorkerPool, profiles: ProfileSet, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = {}
    for policy in ("edf", "fifo"):
        d = tmp_path_factory.mktemp(policy)
        res, outcome = run_jobs(
            _four_jobs(), policy, d, ExecSettings(), pool=pool, profiles=profiles
        )
        save_exec_result(res, outcome, d)
        out[policy] = (res, outcome, d)
    return out


@pytest.mark.parametrize("policy", ["edf", "fifo"])
def test_jobs_reach_target_with_ptsims_tables(
    runs: dict[str, Any], profiles: ProfileSet, policy: str
) -> None:
    res, outcome, d = runs[policy]
    t = res.jobs
    assert list(t.columns) == [*JOB_COLUMNS, *EXEC_JOB_COLUMNS]
    assert (t.status == "done").all() and t.reached_target.all()
    assert (t.final_accuracy >= 0.8).all()
    assert (t.iterations_done == t.steps).all()
    assert res.summary["invalid_requests"] == 0 and not res.summary["horizon_hit"]
    outcome.state.check_invariants()
    # the same summary keys (plus the executor's fault counts) and series columns as ptsim's
    # run of the same jobs
    sim = simulate_like(outcome, policy, {}, 2, 4.10, profiles).result
    assert set(res.summary) == set(sim.summary) | set(EXEC_SUMMARY_KEYS)
    assert res.summary["faults_injected"] == 0 and res.summary["steps_lost"] == 0
    assert list(res.series.columns) == list(SERIES_COLUMNS) == list(sim.series.columns)
    s = res.series
    assert ((s.free + s.loading + s.warm + s.busy) == 2).all()
    for name in ("jobs.csv", "timeseries.csv", "summary.json", "loads.csv", "executor.json"):
        assert (d / name).is_file()
    for jid in t.job_id:
        assert (d / "prompts" / jid / "adapter_model.safetensors").is_file()
        curve = (d / "curves" / f"{jid}.csv").read_text().splitlines()
        assert curve[0].startswith("step,time_s,workers,train_loss")


def test_warm_workers_are_reused_without_a_cold_start(runs: dict[str, Any]) -> None:
    res, outcome, _ = runs["edf"]
    t = res.jobs.set_index("job_id")
    assert res.summary["warm_hits"] >= 1
    late = t.loc[["j3", "j4"]]
    assert (late.warm_hits == 1).all() and (late.cold_starts == 0).all()
    assert (late.load_s == 0).all()  # no load charged to them
    loads = [ld for ld in outcome.loads if ld.job in ("j3", "j4")]
    assert loads == []
    first = t.loc[["j1", "j2"]]
    assert (first.cold_starts == 1).all() and (first.load_s > 0).all()


class _GrowAt:
    """A test policy: start the job on worker 0, give it workers 0 and 1 once it has done
    ``at`` steps."""

    name = "grow-at"

    def __init__(self, at: int) -> None:
        self.at = at

    def decide(self, snap: Snapshot) -> Decision:
        for j in snap.jobs:
            if not j.gpus:
                return Decision(allocations={j.job_id: (0,)}, wake_at=snap.now + 0.02)
            if len(j.gpus) == 1 and j.iters_done >= self.at:
                return Decision(allocations={j.job_id: (0, 1)})
            if len(j.gpus) == 1:
                return Decision(wake_at=snap.now + 0.02)
        return Decision()


def test_resize_mid_job_keeps_training_state(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    cfg = TuningConfig(batch_size=24, max_steps=40, target_accuracy=None, target_loss=0.0)
    res, outcome = run_jobs(
        [job("g", 0.0, "synthetic:A", cfg)],
        lambda ctx: _GrowAt(10),
        tmp_path,
        pool=pool,
        profiles=profiles,
    )
    row = res.jobs.iloc[0]
    assert row.rescales == 1 and row.steps == 40 and not row.reached_target
    run = outcome.runs["g"]
    steps = [c[0] for c in run.curve]
    assert steps == list(range(1, 41))  # every step once
    worlds = [c[2] for c in run.curve]
    assert worlds[0] == 1 and worlds[-1] == 2 and worlds == sorted(worlds)
    # the same 40 steps in one process: same losses, same prompt
    ref = TuningJob(load_model("tiny-gpt2"), TaskCatalog().get("synthetic:A"), cfg, job_id="g")
    losses = [float(ref.train_step().loss) for _ in range(40)]
    got = [c[3] for c in run.curve]
    assert got == pytest.approx(losses, rel=1e-4, abs=1e-5)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "prompts" / "g" / "adapter_model.safetensors"))
    assert torch.allclose(saved["prompt_embeddings"], ref.prompt, atol=1e-4)


class _SerialWithBank:
    """A test policy: one job at a time on worker 0, in arrival order; a job's initial prompt
    is looked up in the Prompt Bank just before it starts (so it sees every earlier job's)."""

    name = "serial-bank"

    def __init__(self, ctx: PolicyContext) -> None:
        self.bank = ctx.bank

    def decide(self, snap: Snapshot) -> Decision:
        if any(j.gpus for j in snap.jobs) or not snap.queued:
            return Decision()
        first = snap.queued[0]
        assert self.bank is not None
        return Decision(
            allocations={first.job_id: (0,)}, init={first.job_id: self.bank.choose(first.spec)}
        )


def test_similar_job_starts_from_the_bank(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    jobs = [job("base", 0.0, "synthetic:A"), job("near", 0.1, "synthetic:A2~A@0.75")]
    bank = ExecBankConfig(store=tmp_path / "bank")
    res, outcome = run_jobs(
        jobs, _SerialWithBank, tmp_path / "run", pool=pool, profiles=profiles, bank=bank
    )
    save_exec_result(res, outcome, tmp_path / "run")
    t = res.jobs.set_index("job_id")
    assert t.loc["base", "bank_entry"] == "A-base"
    assert t.loc["base", "bank_assessments"] == 0  # the bank was empty
    near = t.loc["near"]
    assert near.init_source == "A-base" and near.init_source_task == "synthetic:A"
    assert near.bank_transfer == "prompt"  # the prompt only, not the head
    assert near.bank_layout == "two_layer"
    assert near.bank_assessments == 2  # the stored prompt and the default prompt
    assert near.bank_lookup_s > 0
    entry = tmp_path / "bank" / "A-base"
    assert (entry / "adapter_model.safetensors").is_file()
    assert not (entry / "README.md").exists()  # no empty model card
    assert not (tmp_path / "run" / "prompts" / "near" / "README.md").exists()
    meta = json.loads((entry / "ptexec.json").read_text())
    assert meta["source_task"] == "synthetic:A" and meta["entry_id"] == "A-base"
    lookups = pd.read_csv(tmp_path / "run" / "bank_lookups.csv").set_index("job_id")
    assert lookups.loc["near", "chosen"] == "A-base"
    assert lookups.loc["near", "worker"] == 0  # run on the job's own first worker
    assert lookups.loc["near", "planned_assessments"] == 2
    assert lookups.loc["near", "worker_s"] > 0
    assert len(outcome.bank or []) == 2  # the bank grew online


def test_dead_worker_costs_at_most_checkpoint_every_steps(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    cfg = TuningConfig(
        batch_size=32, max_steps=30, target_accuracy=None, target_loss=0.0, checkpoint_every=5
    )
    killed: list[int] = []

    def kill(jid: str, step: int, ex: Executor) -> None:
        if step == 12 and not killed:
            w = ex.runs[jid].workers[0]
            killed.append(w)
            os.kill(ex.pool[w].proc.pid, signal.SIGKILL)
            ex.pool[w].proc.join(5)

    res, outcome = run_jobs(
        [job("d", 0.0, "synthetic:A", cfg)],
        "edf",
        tmp_path,
        pool=pool,
        profiles=profiles,
        on_step=kill,
    )
    row = res.jobs.iloc[0]
    assert killed and outcome.worker_deaths and outcome.worker_deaths[0][1] == killed[0]
    assert row.status == "done" and row.steps == 30
    assert row.restarts == 1 and 0 < row.steps_lost <= 5
    assert [c[0] for c in outcome.runs["d"].curve] == list(range(1, 31))
    outcome.state.check_invariants()


class _Both:
    """A test policy: the job on workers 0 and 1 whenever it has none."""

    name = "both"

    def decide(self, snap: Snapshot) -> Decision:
        for j in snap.jobs:
            if not j.gpus:
                return Decision(allocations={j.job_id: (0, 1)})
        return Decision()


def test_killing_workers_that_hold_a_job_loses_at_most_a_checkpoint_interval(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    # issue 12: the workers are killed and NOT joined, so the driver sees the broken pipe
    # before the OS reports the exit (this race aborted the run); rank 1, then rank 0
    cfg = TuningConfig(
        batch_size=32, max_steps=30, target_accuracy=None, target_loss=0.0, checkpoint_every=5
    )
    kills = {7: 1, 18: 0}  # at step: kill the worker of this rank (rank 0 may be the only one)
    killed: list[tuple[int, int]] = []

    def kill(jid: str, step: int, ex: Executor) -> None:
        rank = kills.get(step)
        if rank is not None and step not in {s for s, _ in killed}:
            w = ex.runs[jid].workers[rank]
            killed.append((step, w))
            os.kill(ex.pool[w].proc.pid, signal.SIGKILL)

    spec = JobSpec("k", 0.0, "tiny-gpt2", "synthetic:A", 600.0, 32, cfg.max_steps, 2, 2, 2)
    res, outcome = run_jobs(
        [ExecJob(spec, "tiny-gpt2", None, "synthetic:A", cfg)],
        lambda ctx: _Both(),
        tmp_path,
        pool=pool,
        profiles=profiles,
        on_step=kill,
    )
    row = res.jobs.iloc[0]
    assert len(killed) == 2
    assert [g for _, g in outcome.worker_deaths] == [g for _, g in killed]
    assert row.status == "done" and row.steps == 30
    assert row.restarts == 2 and 0 < row.steps_lost <= 2 * 5
    run = outcome.runs["k"]
    assert [c[0] for c in run.curve] == list(range(1, 31))  # every step kept once
    # on both workers, then (start_partial) on the one that is up while the other restarts
    assert run.curve[0][2] == 2 and {c[2] for c in run.curve} <= {1, 2}
    assert res.summary["invalid_requests"] == 0
    outcome.state.check_invariants()
    assert all(w.alive() for w in pool.workers)  # both restarted


def test_ten_injected_faults_every_job_completes(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    """issue 12: ten workers killed at random (seeded) times while they hold jobs; every job
    completes, each kill costs at most one checkpoint interval of one job's steps, and the
    summary counts the faults and the steps lost."""
    from ptexec.faults import FaultPlan

    cfg = TuningConfig(
        batch_size=32, max_steps=300, target_accuracy=None, target_loss=0.0, checkpoint_every=5
    )
    jobs = [job(f"f{i}", 0.0, "synthetic:A", cfg) for i in range(3)]
    st = ExecSettings(faults=FaultPlan(kills=10, mean_interval_s=0.3, start_s=0.2), seed=3)
    res, outcome = run_jobs(jobs, "edf", tmp_path, st, pool=pool, profiles=profiles)
    assert len(outcome.faults) == 10
    assert all(j is not None for _, _, j in outcome.faults)  # each kill hit a worker at work
    assert {g for _, g in outcome.worker_deaths} >= {g for _, g, _ in outcome.faults}
    t = res.jobs.set_index("job_id")
    assert (t.status == "done").all() and (t.steps == 300).all()
    # a kill costs at most one checkpoint interval of one job (a job on two workers loses
    # its steps once per kill)
    assert int(t.steps_lost.sum()) <= 5 * len(outcome.worker_deaths)
    assert (t.steps_lost <= 5 * t.restarts).all()
    s = res.summary
    assert s["faults_injected"] == 10 and s["steps_lost"] == int(t.steps_lost.sum())
    assert s["worker_deaths"] == len(outcome.worker_deaths)
    for jid in t.index:  # every step kept once in the curve
        assert [c[0] for c in outcome.runs[jid].curve] == list(range(1, 301))
    outcome.state.check_invariants()


def test_unrelated_prompts_never_cost_steps(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    """A bank holding only prompts of unrelated tasks: the score assessment compares each with
    the job's default prompt, so no job takes more steps than without the bank (beyond one
    evaluation interval of noise)."""
    store = tmp_path / "bank"
    unrelated = [job("x", 0.0, "synthetic:X"), job("y", 0.0, "synthetic:Y")]
    run_jobs(
        unrelated,
        _SerialWithBank,
        tmp_path / "fill",
        pool=pool,
        profiles=profiles,
        bank=ExecBankConfig(store=store),
    )
    assert len(list(store.iterdir())) == 2
    targets = [job("a", 0.0, "synthetic:A"), job("b", 0.0, "synthetic:B")]
    with_bank, _ = run_jobs(
        targets,
        _SerialWithBank,
        tmp_path / "with",
        pool=pool,
        profiles=profiles,
        bank=ExecBankConfig(store=store, index=BankConfig(layout="flat")),
    )
    without, _ = run_jobs(targets, "fifo", tmp_path / "without", pool=pool, profiles=profiles)
    w = with_bank.jobs.set_index("job_id")
    wo = without.jobs.set_index("job_id")
    # a: x's and y's prompts and the default prompt; b also a's (unrelated too), added online
    assert w.loc["a", "bank_assessments"] == 3 and w.loc["b", "bank_assessments"] == 4
    for jid in ("a", "b"):
        assert w.loc[jid, "steps"] <= wo.loc[jid, "steps"] + CFG.eval_every
        if pd.isna(w.loc[jid, "init_source"]):  # the default prompt won: the very same run
            assert w.loc[jid, "steps"] == wo.loc[jid, "steps"]


class _EachOnItsOwn:
    """A test policy: every queued job gets the lowest free worker; jobs named ``look*`` get
    their initial prompt from the bank."""

    name = "each-on-its-own"

    def __init__(self, ctx: PolicyContext) -> None:
        self.bank = ctx.bank

    def decide(self, snap: Snapshot) -> Decision:
        used = {g for j in snap.jobs for g in j.gpus}
        free = [g for g in range(snap.num_gpus) if g not in used]
        alloc: dict[str, tuple[int, ...]] = {}
        init = {}
        for j in snap.queued:
            if not free:
                break
            alloc[j.job_id] = (free.pop(0),)
            if j.job_id.startswith("look") and j.init is None:
                assert self.bank is not None
                init[j.job_id] = self.bank.choose(j.spec)
        return Decision(allocations=alloc, init=init)


def test_a_lookup_runs_on_the_jobs_worker_while_other_jobs_train(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    """The lookup runs on the job's own first worker, inside its start: another job keeps
    taking steps meanwhile, and no policy decision waits for an assessment."""
    store = tmp_path / "bank"
    fill = [job("x", 0.0, "synthetic:X"), job("y", 0.0, "synthetic:Y")]
    run_jobs(
        fill,
        _SerialWithBank,
        tmp_path / "fill",
        pool=pool,
        profiles=profiles,
        bank=ExecBankConfig(store=store),
    )
    long_cfg = replace(CFG, max_steps=400, target_accuracy=None, target_loss=0.0)
    jobs = [job("other", 0.0, "synthetic:O", long_cfg), job("look", 0.3, "synthetic:A")]
    steps: list[tuple[str, float]] = []

    def on_step(jid: str, step: int, ex: Executor) -> None:
        steps.append((jid, ex.now()))

    # a slow lookup: 3 assessments of 8 x 64 examples each, flat layout
    bank = ExecBankConfig(store=store, index=BankConfig(layout="flat"), batches=8, batch_size=64)
    res, out = run_jobs(
        jobs,
        _EachOnItsOwn,
        tmp_path / "run",
        pool=pool,
        profiles=profiles,
        bank=bank,
        on_step=on_step,
    )
    assert out.bank is not None
    (rec,) = [x for x in out.bank.lookups if x.job_id == "look"]
    t = res.jobs.set_index("job_id")
    assert rec.assessments == 3 and rec.worker == 1  # worker 0 was busy with "other"
    assert rec.start_s is not None
    during = [
        s for jid, s in steps if jid == "other" and rec.start_s < s < rec.start_s + rec.lookup_s
    ]
    assert during, "the other job took no step while the lookup ran"
    assert max(out.decide_s) < rec.lookup_s  # no decision waited for the lookup
    assert t.loc["look", "bank_lookup_s"] == pytest.approx(rec.lookup_s)
    assert t.loc["look", "exec_pause_s"] >= rec.lookup_s  # charged inside its start


def test_an_accuracy_reading_is_the_fraction_of_the_way_to_the_target() -> None:
    cfg = replace(CFG, target_accuracy=0.9)
    assert target_fraction(cfg, (0.5, 1.0), (0.7, 0.8)) == pytest.approx(0.5)
    assert target_fraction(cfg, (0.5, 1.0), (0.4, 1.2)) == 0.0  # worse than at the start
    assert target_fraction(cfg, (0.5, 1.0), (0.95, 0.1)) == READING_CAP  # a screen above it
    assert target_fraction(cfg, (0.95, 1.0), (0.95, 1.0)) is None  # met at the start
    both = replace(cfg, target_loss=0.2)  # either target: the nearer one
    assert target_fraction(both, (0.5, 1.0), (0.6, 0.4)) == pytest.approx(0.75)
    run = JobRun(job("r", 0.0, "synthetic:A", cfg))
    run.evals = [(0, 1.0, 0.5, 1.0), (5, 2.0, 0.6, 0.9), (10, 3.0, 0.7, 0.8)]
    assert accuracy_reading(run, 4) is None  # only the start so far
    assert accuracy_reading(run, 9) == (pytest.approx(0.25), 5.0)
    assert accuracy_reading(run, 12) == (pytest.approx(0.5), 10.0)


def test_the_executor_plans_on_the_fitted_estimate_and_ptsim_replays_it(
    pool: WorkerPool, profiles: ProfileSet, tmp_path: Path
) -> None:
    """The executor's state has the fitted convergence model's prior and estimator settings,
    as ptsim's run builds it; every held-out evaluation is an accuracy reading. At the same
    progress a policy sees the estimator's estimate of those inputs, and ptsim's replay of the
    run (``ptexec validate``) gives the estimator the very same inputs."""
    seen: list[tuple[str, JobView]] = []

    def on_step(jid: str, step: int, ex: Executor) -> None:
        seen.append((jid, ex.state.snapshot(ex.now()).jobs_by_id[jid]))

    jobs = [job("j1", 0.0, "synthetic:A"), job("j2", 0.0, "synthetic:B")]
    _, out = run_jobs(
        jobs, "edf", tmp_path, ExecSettings(), pool=pool, profiles=profiles, on_step=on_step
    )
    setup = load_convergence(FITTED)
    assert out.convergence is not None and out.convergence.name == FITTED
    replay = simulate_like(out, "edf", {}, 2, 4.10, profiles).outcome.state
    assert replay.estimator == setup.estimator
    target = CFG.target_accuracy
    assert target is not None
    moved = 0
    for jid, view in seen:
        prior = setup.model.job_prior(view.spec, view.init or DEFAULT_INIT)
        assert view.prior == prior and prior.sigma > 0 and view.estimator == setup.estimator
        done = view.iters_done
        evals = [e for e in out.runs[jid].evals if e[0] <= done]
        reading = None
        if len(evals) >= 2:
            acc0, (step, _, acc, _) = evals[0][2], evals[-1]
            reading = min(max((acc - acc0) / (target - acc0), 0.0), READING_CAP), float(step)
        got = view.estimate_at(view.progress_at)
        frac, at = reading if reading is not None else (None, None)
        want = estimate(prior, done, frac, setup.estimator, at)
        assert got == want
        moved += reading is not None and got != estimate(prior, done, None, setup.estimator)
        # ptsim's replay: the same prior and the same reading at the same progress
        rec = replay.jobs[jid]
        assert rec.prior == prior and rec.readings is not None
        assert rec.readings(done) == reading
    assert moved > 0  # the readings informed the estimate


def test_a_contention_profile_times_steps_alone_and_beside_a_busy_worker(
    pool: WorkerPool, tmp_path: Path
) -> None:
    st = replace(QUICK, batches=(32,), convergence=False, assessments=1, contention=True)
    d = profile_models(pool, [("tiny-gpt2", None)], tmp_path / "p", st)
    ps = load_profiles(str(d))
    m = ps.model("tiny-gpt2")
    assert ps.contention and m.contended is not None
    assert m.contended.gpu_counts == (1,)  # on 2 workers only a 1-worker job has a neighbour
    assert m.contended_heldout_eval_s is not None and m.contended_heldout_eval_s > 0
    assert m.full_eval_s > 0 and m.contended_full_eval_s is not None
    steps = pd.read_csv(d / "steps.csv")
    assert sorted(set(steps.contended)) == [False, True]
    assert (steps[steps.contended].workers == 1).all()
    assert "while the other workers train" in (d / "README.md").read_text()
    # the executor loop's per-step cost, calibrated alone and beside a training neighbour
    for over in (m.loop_overhead_s, m.contended_loop_overhead_s):
        assert over is not None and over >= 0.0 and math.isfinite(over)
    loads = pd.read_csv(d / "loads.csv")
    assert {"loop_interval", "loop_back_to_back", "loop_interval_contended"} <= set(loads.what)


def test_loop_calibration_runs_jobs_through_the_executor(pool: WorkerPool, tmp_path: Path) -> None:
    from ptexec.profile import ModelMeasurement, measure_loop, write_profile

    st = replace(QUICK, batches=(8,), warmup=1, loop_steps=6, convergence=False)
    cat = TaskCatalog()
    meas = ModelMeasurement("tiny-gpt2", "tiny-gpt2", "causal_lm", 1, 2)
    for contended in (False, True):
        through, alone = measure_loop(
            pool, meas, ("tiny-gpt2", None), cat.get(st.task), st, cat, contended
        )
        assert len(alone) == st.loop_steps and 1 <= len(through) <= st.loop_steps - 1
        assert all(x > 0 and math.isfinite(x) for x in through + alone)
        if contended:
            meas.contended_loop_interval_s, meas.contended_loop_step_s = through, alone
        else:
            meas.loop_interval_s, meas.loop_step_s = through, alone
    for contended in (False, True):
        over = meas.loop_overhead(contended=contended)
        assert over is not None and over >= 0.0 and math.isfinite(over)
    meas.step_s[(8, 1)] = [0.01]  # what write_profile needs besides the loop
    meas.eval_s, meas.cold_loads = [0.1], [0.5]
    d = write_profile(tmp_path / "p", [meas], st)
    m = load_profiles(str(d)).model("tiny-gpt2")
    assert m.loop_overhead_s == round(meas.loop_overhead() or 0.0, 6)
    assert m.contended_loop_overhead_s == round(meas.loop_overhead(contended=True) or 0.0, 6)
    assert "loop_overhead_s" in (d / "README.md").read_text()


def test_contention_variants_charge_every_step_idle_or_every_step_busy() -> None:
    from ptexec.validate import contention_variants
    from tests._util import linear_profiles

    base = linear_profiles(("m",))  # 1 it/s per GPU, linear to 8
    slow = ThroughputTable((16,), (1,), np.array([[0.5]]))
    m = replace(
        base.models["m"],
        heldout_eval_s=1.0,
        contended=slow,
        contended_heldout_eval_s=3.0,
        full_eval_s=1.5,
        contended_full_eval_s=4.0,
    )
    prof = replace(base, models={"m": m})
    assert contention_variants(base) == {}
    v = contention_variants(prof)
    assert not v["idle"].contention and not v["busy"].contention
    assert v["idle"].train_step_time("m", 1, 16) == pytest.approx(1.0)
    assert v["busy"].train_step_time("m", 1, 16) == pytest.approx(2.0)  # measured contended
    assert v["busy"].train_step_time("m", 2, 16) == pytest.approx(0.5)  # no neighbour measured
    assert v["busy"].model("m").heldout_eval_s == 3.0 and v["idle"].model("m").heldout_eval_s == 1.0
    assert v["busy"].model("m").full_eval_s == 4.0 and v["idle"].model("m").full_eval_s == 1.5
    assert v["idle"].model("m").contended_full_eval_s is None
