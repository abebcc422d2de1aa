"""The driver loop's per-step cost as a profile column: ``loop_overhead_s`` (and its contended
twin) round-trips through ``models.csv``, ptsim charges it on every training step, a profile
without it changes nothing, and ``ptexec profile`` calibrates it through the executor's own
loop (``tests/test_exec_driver.py``, on its worker pool)."""

from __future__ import annotations

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
    MODEL_COLUMNS,
    ModelEntry,
    ProfileError,
    load_profiles,
    read_models,
    write_models,
    write_throughput,
)
from ptsim.simulator import Simulation

TABLE = ThroughputTable((8, 32), (1, 2), np.array([[100.0, 150.0], [50.0, 90.0]]))
SLOW = ThroughputTable((8, 32), (1,), np.array([[40.0], [20.0]]))
LOOP, BUSY_LOOP = 0.003, 0.007


def _profiles(loop: float = LOOP, busy_loop: float | None = None, every: int = 0) -> ProfileSet:
    m = ModelProfile(
        "m",
        1e6,
        TABLE,
        1.0,
        0.5,
        0.1,
        heldout_eval_s=0.04,
        contended=SLOW if busy_loop is not None else None,
        loop_overhead_s=loop,
        contended_loop_overhead_s=busy_loop,
    )
    return ProfileSet({"m": m}, Mechanics(handover_s=0.1, eval_every=every))


def _left(ps: ProfileSet, iters: int) -> float:
    """Seconds the state gives a job of ``iters`` steps at batch 8 on one GPU, alone."""
    st = ClusterState(1, 2, ps)
    st.add_job(JobSpec("j", 0.0, "m", "t", 100.0, 8, iters), 0.0)
    st.apply(Decision(allocations={"j": (0,)}), 0.0)
    (act,) = st.gpu_ready(0, 1, 1.0)
    assert isinstance(act, Reconfigure)
    left = st.job_resumed("j", act.epoch, 1.0 + act.pause_s)
    assert left is not None
    return left


def test_every_step_costs_the_loop_overhead() -> None:
    assert _left(_profiles(), 40) == pytest.approx(40 * (0.01 + LOOP))
    # beside evaluations (every 5 steps) the overhead adds to their share
    assert _left(_profiles(every=5), 40) == pytest.approx(40 * (0.01 + 0.04 / 5 + LOOP))
    ps = _profiles(busy_loop=BUSY_LOOP)
    assert ps.loop_overhead_time("m") == LOOP
    assert ps.loop_overhead_time("m", busy_share=1.0) == pytest.approx(BUSY_LOOP)
    assert ps.loop_overhead_time("m", busy_share=0.5) == pytest.approx((LOOP + BUSY_LOOP) / 2)
    assert 1.0 / ps.iters_per_second("m", 1, 8, busy_share=1.0) == pytest.approx(1 / 40 + BUSY_LOOP)


def test_without_the_column_nothing_changes() -> None:
    ps = _profiles(loop=0.0)
    assert ps.step_overhead("m") == 0.0
    assert ps.iters_per_second("m", 1, 8) == 100.0  # the table's own value, bit for bit
    assert _left(ps, 40) == 40 / 100.0
    plain = ProfileSet({"m": ModelProfile("m", 1e6, TABLE, 1.0, 0.5, 0.1)}, ps.mechanics)
    assert _left(plain, 40) == _left(ps, 40)


def _finishes(ps: ProfileSet) -> dict[str, float]:
    jobs = [
        JobSpec("a", 0.0, "m", "t", 100.0, 8, 20, 1, 1, 1),
        JobSpec("b", 0.0, "m", "t", 100.0, 32, 30, 1, 1, 1),
    ]
    pol = POLICIES.build("fifo", PolicyContext(ps), {})
    out = Simulation(jobs, pol, ps, num_nodes=1, gpus_per_node=2).run()
    assert all(r.state is JobState.DONE for r in out.state.jobs.values())
    return {j: float(r.finish or 0.0) for j, r in out.state.jobs.items()}


def test_a_simulated_finish_moves_by_steps_times_the_overhead() -> None:
    base, charged = _finishes(_profiles(loop=0.0)), _finishes(_profiles())
    assert charged["a"] - base["a"] == pytest.approx(20 * LOOP)
    assert charged["b"] - base["b"] == pytest.approx(30 * LOOP)


def test_columns_round_trip_through_models_csv(tmp_path: Path) -> None:
    write_throughput(tmp_path / "m.csv", TABLE)
    plain = ModelEntry("m", 1e6, 0.1, "m.csv", cold_start_s=1.0, reload_s=0.5, source="measured")
    write_models(tmp_path / "models.csv", [plain])
    header = (tmp_path / "models.csv").read_text().splitlines()[0]
    assert "loop_overhead_s" not in header  # written only when some model has it
    assert load_profiles(str(tmp_path)).model("m").loop_overhead_s == 0.0
    entry = replace(plain, loop_overhead_s=0.0025, contended_loop_overhead_s=0.006)
    write_models(tmp_path / "models.csv", [entry])
    assert read_models(tmp_path / "models.csv") == [entry]
    m = load_profiles(str(tmp_path)).model("m")
    assert (m.loop_overhead_s, m.contended_loop_overhead_s) == (0.0025, 0.006)
    assert MODEL_COLUMNS[-2:] == ("loop_overhead_s", "contended_loop_overhead_s")
    text = (tmp_path / "models.csv").read_text().replace("0.0025", "-1")
    (tmp_path / "models.csv").write_text(text)
    with pytest.raises(ProfileError, match="loop_overhead_s"):
        load_profiles(str(tmp_path))


@pytest.mark.exec
def test_validate_replays_with_and_without_the_overhead() -> None:
    pytest.importorskip("torch")  # ptexec.validate loads the executor
    from ptexec.validate import contention_variants, without_loop_overhead

    ps = _profiles(busy_loop=BUSY_LOOP)
    v = contention_variants(ps)
    assert v["idle"].model("m").contended_loop_overhead_s is None
    assert v["idle"].loop_overhead_time("m", 1.0) == LOOP
    assert v["busy"].model("m").loop_overhead_s == BUSY_LOOP
    off = without_loop_overhead(ps)
    assert off.model("m").loop_overhead_s == 0.0
    assert off.loop_overhead_time("m", 1.0) == 0.0
