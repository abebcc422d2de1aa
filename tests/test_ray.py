"""Ray (issue 14): the executor's workers as Ray actors give the same per-job outcomes as local
worker processes for the same job file, a killed actor is replaced and its job resumes from its
last checkpoint, a sweep on Ray tasks gives the serial sweep's tables, and choosing Ray without
it installed is one line saying how to install it. One local Ray (two CPUs, no dashboard) serves
the module and is shut down after it; the Ray tests skip when Ray is not installed."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.xdist_group("ray")  # ./dev test: one xdist worker starts the one Ray

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray() -> Iterator[Any]:
    """A local Ray of two CPUs for the module (workers see this process's sys.path)."""
    ray = pytest.importorskip("ray")
    from ptsim.ray_tasks import connect

    owns = connect(num_cpus=2, object_store_mb=80)
    yield ray
    if owns:
        ray.shutdown()


def test_choosing_ray_without_it_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptsim.ray_tasks import RayMissing, ray_map, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    with pytest.raises(RayMissing, match=r"^--backend ray needs Ray.*pip install 'ptsim\[ray\]'"):
        ray_map(str, [1])
    with pytest.raises(RayMissing) as err:
        require_ray("x")
    assert "\n" not in str(err.value)


def test_executor_backend_config(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from ptexec import config as C

    assert C.settings_from(C.compose_config([])).backend == "local"
    with pytest.raises(C.ConfigError, match=r"executor.backend: 'slurm'; known: local, ray"):
        C.settings_from(C.compose_config(["executor.backend=slurm"]))
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(C.ConfigError) as err:
        C.settings_from(C.compose_config(["executor.backend=ray"]))
    assert str(err.value).startswith("config executor.backend=ray needs Ray, which is not ")
    assert "pip install 'ptsim[ray]'" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------ sweeps


def _runner() -> Any:
    experiments = str(ROOT / "experiments")
    if experiments not in sys.path:
        sys.path.insert(0, experiments)
    import runner

    return runner


def test_figure_scripts_choose_the_backend() -> None:
    runner = _runner()
    args = runner.parse_args("fig1_end_to_end", None, ["--backend", "ray", "--ray-address", "auto"])
    assert (args.backend, args.ray_address) == ("ray", "auto")
    assert runner.parse_args("fig1_end_to_end", None, []).backend == "local"


def test_ray_sweep_equals_serial(ray: Any) -> None:
    runner = _runner()
    from tests.test_experiments import small_points

    points = small_points(tables=True)
    serial = runner.run_points(points, jobs=1, progress=False)
    on_ray = runner.run_points(points, progress=False, backend="ray")
    wall = list(runner.WALL_COLUMNS)
    pd.testing.assert_frame_equal(
        serial.points.drop(columns=wall), on_ray.points.drop(columns=wall)
    )
    assert serial.jobs is not None and on_ray.jobs is not None
    pd.testing.assert_frame_equal(serial.jobs, on_ray.jobs)
    assert serial.series is not None and on_ray.series is not None
    pd.testing.assert_frame_equal(serial.series, on_ray.series)


# ------------------------------------------------------------------------------ executor


@pytest.fixture(scope="module")
def exec_parts(ray: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local pool and a Ray pool of two CPU workers each, and a profile to plan with (fixed
    numbers: both backends must see the same)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    import numpy as np

    from ptexec.ray_backend import RayWorkerPool
    from ptexec.workers import WorkerPool
    from ptsim.core.profiles import ModelProfile, ProfileSet, ThroughputTable

    torch.set_num_threads(1)
    table = ThroughputTable((32,), (1, 2), np.array([[100.0, 150.0]]))
    prof = ProfileSet({"tiny-gpt2": ModelProfile("tiny-gpt2", 1.5e5, table, 0.01, 0.01, 0.05)})
    with WorkerPool(2, devices=["cpu", "cpu"]) as local, RayWorkerPool(2) as on_ray:
        assert not on_ray._owns_ray  # the module's Ray is reused, not restarted
        yield {"local": local, "ray": on_ray, "profiles": prof}


def _job_file(path: Path) -> Path:
    from ptexec.jobs import ExecJob, write_jobs
    from ptexec.train import TuningConfig
    from ptsim.core.types import JobSpec

    cfg = TuningConfig(batch_size=32, max_steps=80, target_accuracy=0.8, eval_every=5)
    jobs = []
    for jid, t, task in (
        ("a", 0.0, "synthetic:A"),
        ("b", 0.0, "synthetic:B"),
        ("c", 1.0, "synthetic:C"),
    ):
        spec = JobSpec(jid, t, "tiny-gpt2", task, t + 60, 32, 80, 1, 1, 1)
        jobs.append(ExecJob(spec, "tiny-gpt2", None, spec.task, cfg))
    write_jobs(jobs, path)
    return path


def test_ray_backend_gives_the_local_outcomes(exec_parts: dict[str, Any], tmp_path: Path) -> None:
    from ptexec.jobs import load_jobs
    from ptexec.run import ExecSettings, run_jobs

    jobs = load_jobs(_job_file(tmp_path / "jobs.jsonl"))
    tables = {}
    for backend in ("local", "ray"):
        res, outcome = run_jobs(
            jobs,
            "fifo",
            tmp_path / backend,
            ExecSettings(backend=backend),
            pool=exec_parts[backend],
            profiles=exec_parts["profiles"],
        )
        outcome.state.check_invariants()
        tables[backend] = res.jobs.set_index("job_id").sort_index()
    local, on_ray = tables["local"], tables["ray"]
    assert local.reached_target.all()
    for col in ("status", "reached_target", "steps", "iterations_done", "restarts"):
        assert list(local[col]) == list(on_ray[col]), col
    assert list(local.final_accuracy) == pytest.approx(list(on_ray.final_accuracy), abs=1e-6)
    assert list(local.final_loss) == pytest.approx(list(on_ray.final_loss), abs=1e-5)
    assert on_ray.warm_hits.sum() >= 1  # job c finds a warm actor, as locally
    assert list(local.warm_hits) == list(on_ray.warm_hits)


def test_killed_actor_is_replaced_and_its_job_resumes_from_its_checkpoint(
    exec_parts: dict[str, Any], tmp_path: Path
) -> None:
    from ptexec.driver import Executor
    from ptexec.jobs import ExecJob
    from ptexec.run import ExecSettings, run_jobs
    from ptexec.train import TuningConfig
    from ptsim.core.types import JobSpec

    pool = exec_parts["ray"]
    cfg = TuningConfig(
        batch_size=32, max_steps=30, target_accuracy=None, target_loss=0.0, checkpoint_every=5
    )
    spec = JobSpec("d", 0.0, "tiny-gpt2", "synthetic:A", 60.0, 32, 30, 1, 1, 2)
    killed: list[tuple[int, int]] = []

    def kill(jid: str, step: int, ex: Executor) -> None:
        if step == 12 and not killed:
            w = ex.runs[jid].workers[0]
            pid = ex.pool[w].pid
            killed.append((w, pid))
            os.kill(pid, signal.SIGKILL)  # the actor's process dies (as on a lost node)

    res, outcome = run_jobs(
        [ExecJob(spec, "tiny-gpt2", None, spec.task, cfg)],
        "edf",
        tmp_path,
        ExecSettings(backend="ray"),
        pool=pool,
        profiles=exec_parts["profiles"],
        on_step=kill,
    )
    row = res.jobs.iloc[0]
    (w, pid), *_ = killed
    assert outcome.worker_deaths and outcome.worker_deaths[0][1] == w
    assert row.status == "done" and row.steps == 30
    assert row.restarts == 1 and 0 < row.steps_lost <= 5  # resumed from the step-10 checkpoint
    assert [c[0] for c in outcome.runs["d"].curve] == list(range(1, 31))
    outcome.state.check_invariants()
    assert pool[w].alive() and pool[w].pid != pid  # a fresh actor holds the slot


def test_a_failed_command_is_an_error_not_a_death(exec_parts: dict[str, Any]) -> None:
    from ptexec.workers import WorkerDied, WorkerError

    w = exec_parts["ray"][0]
    with pytest.raises(
        WorkerError, match=r"worker 0 \(cpu\) grad: RuntimeError: worker 0: no job"
    ) as err:
        w.call("grad", 0, 1)
    assert not isinstance(err.value, WorkerDied) and w.alive()
