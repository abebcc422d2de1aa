"""Screened held-out evaluations as a mechanic: an evaluation whose accuracy reading is within
``Mechanics.full_eval_margin`` of the target (and the one that meets it) also costs the model's
``full_eval_s``; without the column nothing changes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.state import ClusterState
from ptsim.core.types import Decision, JobSpec, JobState, Reconfigure
from ptsim.profiles_io import (
    ModelEntry,
    ProfileError,
    load_profiles,
    write_models,
    write_throughput,
)
from ptsim.simulator import Simulation

TABLE = ThroughputTable((8, 32), (1, 2), np.array([[100.0, 150.0], [50.0, 90.0]]))
EVERY, HELDOUT, FULL = 5, 0.04, 0.1
STEP = 0.01 + HELDOUT / EVERY  # batch 8 on 1 GPU, the screen spread over the steps


def _profiles(full: float = FULL, margin: float = 0.3) -> ProfileSet:
    m = ModelProfile("m", 1e6, TABLE, 1.0, 0.5, 0.1, heldout_eval_s=HELDOUT, full_eval_s=full)
    return ProfileSet(
        {"m": m}, Mechanics(handover_s=0.1, eval_every=EVERY, full_eval_margin=margin)
    )


def _readings(spec: JobSpec, total: float, done: float) -> tuple[float, float] | None:
    """A reading at every evaluation: the fraction of the way is the fraction of the steps."""
    at = math.floor(done / EVERY) * EVERY
    return (at / total, float(at)) if EVERY <= at < total else None


def _started(ps: ProfileSet, iters: int) -> tuple[ClusterState, float, float]:
    """A job of ``iters`` steps on one GPU: the state, when it resumed and the seconds left."""
    st = ClusterState(1, 2, ps, readings=_readings)
    st.add_job(JobSpec("j", 0.0, "m", "t", 100.0, 8, iters), 0.0)
    st.apply(Decision(allocations={"j": (0,)}), 0.0)
    (act,) = st.gpu_ready(0, 1, 1.0)
    assert isinstance(act, Reconfigure)
    t0 = 1.0 + act.pause_s
    left = st.job_resumed("j", act.epoch, t0)
    assert left is not None
    return st, t0, left


def test_near_target_evaluations_add_the_full_evaluation() -> None:
    # 20 steps, evaluations at 5, 10, 15 (readings 0.25, 0.5, 0.75) and 20 (meets the target):
    # with margin 0.3 the one at 15 and the last run the full evaluation
    _, _, left = _started(_profiles(), 20)
    assert left == pytest.approx(20 * STEP + 2 * FULL)
    _, _, left = _started(_profiles(margin=0.6), 20)  # 10 and 15 too
    assert left == pytest.approx(20 * STEP + 3 * FULL)
    _, _, left = _started(_profiles(margin=0.0), 20)  # only the last
    assert left == pytest.approx(20 * STEP + FULL)


def test_without_the_column_nothing_changes() -> None:
    ps = _profiles(full=0.0)
    _, _, left = _started(ps, 20)
    assert left == 20 / ps.iters_per_second("m", 1, 8)  # bit for bit the profile's rate
    st, _, _ = _started(_profiles(full=0.0), 20)
    assert st.job("j").full_evals is None


def test_progress_stands_still_during_a_full_evaluation_and_survives_a_pause() -> None:
    ps = _profiles()
    st, t0, left = _started(ps, 20)
    rec = st.job("j")
    at15 = t0 + 15 * STEP
    assert st.progress(rec, at15 - 1e-9) == pytest.approx(15, abs=1e-6)
    assert st.progress(rec, at15 + FULL / 2) == 15.0  # in the full evaluation
    assert st.progress(rec, at15 + FULL + 2 * STEP) == pytest.approx(17)
    # a pause at step 17 settles exactly there; the rest is 3 steps and the last full evaluation
    (act,) = st.apply(Decision(pause={"j": 0.5}), at15 + FULL + 2 * STEP)
    assert isinstance(act, Reconfigure)
    assert rec.iters_done == pytest.approx(17)
    resume = at15 + FULL + 2 * STEP + 0.5
    rest = st.job_resumed("j", act.epoch, resume)
    assert rest == pytest.approx(3 * STEP + FULL)
    assert resume + rest == pytest.approx(t0 + left + 0.5)


def _simulate(ps: ProfileSet) -> dict[str, float]:
    jobs = [
        JobSpec("a", 0.0, "m", "t", 100.0, 8, 20, 1, 1, 1),
        JobSpec("b", 0.05, "m", "t", 100.0, 8, 30, 1, 1, 1),
        JobSpec("c", 0.1, "m", "t", 100.0, 8, 10, 1, 1, 1),  # waits for a GPU
    ]
    pol = POLICIES.build("fifo", PolicyContext(ps), {})
    sim = Simulation(jobs, pol, ps, num_nodes=1, gpus_per_node=2, readings=_readings)
    out = sim.run()
    assert all(r.state is JobState.DONE for r in out.state.jobs.values())
    return {j: float(r.finish or 0.0) for j, r in out.state.jobs.items()}


def test_simulated_finish_moves_by_the_near_target_evaluations() -> None:
    base = _simulate(_profiles(full=0.0))
    screened = _simulate(_profiles())
    # a: full evaluations at 15 and 20; b: at 25 and 30; c (10 steps: reading 0.5 at 5) only at
    # 10, after waiting for a's GPU, which a gives up 2 x FULL later
    assert screened["a"] - base["a"] == pytest.approx(2 * FULL)
    assert screened["b"] - base["b"] == pytest.approx(2 * FULL)
    assert screened["c"] - base["c"] == pytest.approx(2 * FULL + FULL)


def test_profile_columns_load_and_margin_is_checked(tmp_path: Path) -> None:
    write_throughput(tmp_path / "m.csv", TABLE)
    entry = ModelEntry("m", 1e6, 0.1, cold_start_s=1.0, reload_s=0.5, heldout_eval_s=HELDOUT)
    write_models(tmp_path / "models.csv", [entry])
    assert load_profiles(str(tmp_path)).model("m").full_eval_s == 0.0  # absent: not charged
    write_models(
        tmp_path / "models.csv", [replace(entry, full_eval_s=FULL, contended_full_eval_s=0.3)]
    )
    ps = load_profiles({"dir": str(tmp_path), "mechanics": {"eval_every": 5}})
    assert ps.model("m").full_eval_s == FULL and ps.model("m").contended_full_eval_s == 0.3
    assert ps.full_eval_time("m") == FULL and ps.full_eval_time("m", 0.5) == pytest.approx(0.2)
    assert ps.mechanics.full_eval_margin == 0.0
    off = load_profiles(str(tmp_path))  # no evaluation cadence: no evaluations charged
    assert off.full_eval_time("m") == 0.0
    ps = load_profiles({"dir": str(tmp_path), "mechanics": {"full_eval_margin": "0.25"}})
    assert ps.mechanics.full_eval_margin == 0.25
    with pytest.raises(ProfileError, match=r"mechanics\.full_eval_margin: 1\.5 must be <= 1"):
        load_profiles({"dir": str(tmp_path), "mechanics": {"full_eval_margin": 1.5}})


@pytest.mark.exec
def test_validate_converts_the_screen_margin_to_a_fraction_of_the_way() -> None:
    pytest.importorskip("torch")  # ptexec.validate loads the executor
    from types import SimpleNamespace

    from ptexec.tuning import TuningConfig
    from ptexec.validate import screen_margin, with_screen_margin

    def run(acc0: float, **kw: object) -> SimpleNamespace:
        tuning = TuningConfig(target_accuracy=0.9, eval_screen_margin=0.1, **kw)  # type: ignore[arg-type]
        return SimpleNamespace(job=SimpleNamespace(tuning=tuning), evals=[(0, 0.0, acc0, 1.0)])

    runs = {
        "a": run(0.5),
        "b": run(0.4),
        "c": run(0.7),
        "d": run(0.95),
        "e": run(0.5, eval_screen=None),
    }
    outcome = SimpleNamespace(runs=runs)
    # 0.1 / 0.4, 0.1 / 0.5, 0.1 / 0.2 (d starts above its target, e has no screen): median 0.25
    assert screen_margin(outcome) == pytest.approx(0.25)  # type: ignore[arg-type]
    ps = with_screen_margin(_profiles(margin=0.0), outcome)  # type: ignore[arg-type]
    assert ps.mechanics.full_eval_margin == pytest.approx(0.25)
    assert with_screen_margin(_profiles(margin=0.4), outcome).mechanics.full_eval_margin == 0.4  # type: ignore[arg-type]
    plain = _profiles(full=0.0, margin=0.0)
    assert with_screen_margin(plain, outcome) is plain  # type: ignore[arg-type]


@pytest.mark.exec
def test_without_full_evals_charges_screens_only() -> None:
    pytest.importorskip("torch")  # ptexec.validate loads the executor
    from ptexec.validate import without_full_evals

    ps = without_full_evals(_profiles())
    assert ps.model("m").full_eval_s == 0.0 and ps.full_eval_time("m") == 0.0
    _, _, left = _started(ps, 20)
    assert left == 20 / ps.iters_per_second("m", 1, 8)
