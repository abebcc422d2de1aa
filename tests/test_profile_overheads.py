"""Held-out evaluation and checkpoint overheads in profiles: the columns round-trip through
``models.csv``, the mechanics charge them deterministically, and zero (the default) changes
nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.state import ClusterState
from ptsim.core.types import Decision, JobSpec, Reconfigure
from ptsim.profiles_io import (
    ModelEntry,
    ProfileError,
    load_profiles,
    read_models,
    write_models,
    write_throughput,
)

TABLE = ThroughputTable((8, 32), (1, 2), np.array([[100.0, 150.0], [50.0, 90.0]]))


def _profiles(mech: Mechanics, heldout: float = 0.04, ckpt: float = 0.5) -> ProfileSet:
    m = ModelProfile("m", 1e6, TABLE, 1.0, 0.5, 0.1, heldout_eval_s=heldout, checkpoint_s=ckpt)
    return ProfileSet({"m": m}, mech)


def test_overheads_off_by_default_change_nothing() -> None:
    ps = _profiles(Mechanics())
    assert ps.step_overhead("m") == 0.0 and ps.start_overhead("m") == 0.0
    assert ps.iters_per_second("m", 1, 8) == TABLE.iters_per_second(1, 8)  # bit for bit
    assert ps.step_time("m", 2, 32) == ps.train_step_time("m", 2, 32)


def test_overheads_are_spread_over_steps() -> None:
    ps = _profiles(Mechanics(eval_every=5, checkpoint_every=50))
    assert ps.step_overhead("m") == pytest.approx(0.04 / 5 + 0.5 / 50)
    assert ps.step_time("m", 1, 8) == pytest.approx(0.01 + 0.008 + 0.01)
    assert ps.iters_per_second("m", 1, 8) == pytest.approx(1 / 0.028)
    assert ps.start_overhead("m") == 0.04
    # 20 steps with an evaluation every 5: 4 evaluations plus the one before step 1
    assert 20 * ps.step_time("m", 1, 8) + ps.start_overhead("m") == pytest.approx(
        20 * 0.01 + 5 * 0.04 + 20 / 50 * 0.5
    )


def test_state_charges_the_step0_evaluation_and_the_slower_rate() -> None:
    mech = Mechanics(handover_s=0.1, eval_every=5)
    st = ClusterState(1, 2, _profiles(mech))
    st.add_job(JobSpec("j", 0.0, "m", "t", 100.0, 8, 20), 0.0)
    st.apply(Decision(allocations={"j": (0,)}), 0.0)
    (act,) = st.gpu_ready(0, 1, 1.0)
    assert isinstance(act, Reconfigure) and act.pause_s == pytest.approx(0.1 + 0.04)
    left = st.job_resumed("j", act.epoch, 1.0 + act.pause_s)
    assert left == pytest.approx(20 * (0.01 + 0.04 / 5))


def test_mechanics_refuse_negative_cadence() -> None:
    with pytest.raises(ValueError, match="eval_every"):
        Mechanics(eval_every=-1)


def test_overhead_columns_round_trip(tmp_path: Path) -> None:
    write_throughput(tmp_path / "m.csv", TABLE)
    entries = [
        ModelEntry(
            "m",
            1e6,
            0.1,
            cold_start_s=1.0,
            reload_s=0.5,
            source="measured",
            heldout_eval_s=0.04,
            checkpoint_s=0.5,
        ),
    ]
    write_models(tmp_path / "models.csv", entries)
    header = (tmp_path / "models.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["heldout_eval_s", "checkpoint_s"]
    assert read_models(tmp_path / "models.csv")[0].heldout_eval_s == 0.04
    ps = load_profiles(
        {"dir": str(tmp_path), "mechanics": {"eval_every": 5, "checkpoint_every": "50"}}
    )
    assert ps.model("m").heldout_eval_s == 0.04 and ps.model("m").checkpoint_s == 0.5
    assert ps.mechanics.eval_every == 5 and ps.mechanics.checkpoint_every == 50
    assert ps.step_overhead("m") == pytest.approx(0.04 / 5 + 0.5 / 50)


def test_bad_cadence_is_one_line(tmp_path: Path) -> None:
    write_throughput(tmp_path / "m.csv", TABLE)
    write_models(tmp_path / "models.csv", [ModelEntry("m", 1e6, 0.1, cold_start_s=1, reload_s=1)])
    with pytest.raises(ProfileError, match=r"mechanics\.eval_every: 2\.5 is not a whole number"):
        load_profiles({"dir": str(tmp_path), "mechanics": {"eval_every": 2.5}})
