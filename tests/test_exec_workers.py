"""The worker pool: warm models, data-parallel steps across processes, resize, bank store."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from ptexec.models import load_model  # noqa: E402
from ptexec.tasks import TaskFamily  # noqa: E402
from ptexec.train import TuningConfig, TuningJob  # noqa: E402
from ptexec.workers import (  # noqa: E402
    JobSetup,
    Pending,
    WorkerDied,
    WorkerError,
    WorkerPool,
    state_from_bytes,
)

pytestmark = pytest.mark.exec
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2, devices=["cpu", "cpu"], threads=1) as p:
        yield p


def test_pool_keeps_model_warm_and_trains_data_parallel(pool: WorkerPool, tmp_path: Path) -> None:
    first = pool.load([0, 1], "tiny-gpt2")
    assert [r.cold for r in first] == [True, True]
    assert all(r.load_s > 0 for r in first)
    again = pool[0].load("tiny-gpt2")
    assert not again.cold and again.load_s == 0.0  # warm: no-op

    task = TaskFamily().task("W").generate(256, 64, seed=0)
    cfg = TuningConfig(batch_size=24, eval_examples=64)
    setup = JobSetup("w1", "tiny-gpt2", task, cfg)
    (rep,) = pool.attach([0], setup)
    assert rep.load is None and rep.step == 0  # attached to a warm worker
    for _ in range(3):
        pool.train_step([0])
    # grow to two workers at a step boundary: the state moves with the job
    reps = pool.resize([0], [0, 1], setup)
    assert [r.step for r in reps] == [3, 3]
    for _ in range(3):
        avg = pool.train_step([0, 1])
    assert avg.n == 24
    assert [i.step for i in pool.info()] == [6, 6]
    ev = pool[0].evaluate()
    assert ev.step == 6 and ev.n == 64
    state = state_from_bytes(pool[1].state())

    # the same six steps in one process give the same prompt
    ref = TuningJob(load_model("tiny-gpt2"), task, cfg, job_id="w1")
    for _ in range(6):
        ref.train_step()
    got = state["params"]["prompt_encoder.default.embedding.weight"]
    assert torch.allclose(got, ref.prompt, atol=1e-5, rtol=1e-4)
    assert state["losses"] == pytest.approx(ref.history.losses, rel=1e-4)

    # checkpoint and bank store run inside the worker
    path = pool[0].checkpoint(str(tmp_path / "ckpt"))
    assert path.endswith("step-00000006.pt")
    rec = pool[0].store(str(tmp_path / "bank"), "w1")
    assert rec.entry_id == "w1" and rec.shape == (8, 64)

    # shrink back to one worker; worker 1 stays warm for the next job
    pool.resize([0, 1], [1], setup)
    infos = pool.info()
    assert infos[0].job is None and infos[0].model == "tiny-gpt2:causal_lm"
    assert infos[1].job == "w1" and infos[1].step == 6
    with pytest.raises(WorkerError, match="no job attached"):
        pool[0].grad(0, 1)
    pool[1].detach()
    pool[1].release()
    assert pool.info()[1].model is None


def test_killed_worker_is_dead_at_once_and_its_old_replies_fail_cleanly(pool: WorkerPool) -> None:
    # the race of issue 12: a worker's pipe breaks before the OS reports its exit, and a job
    # may still hold a request to the old process after the worker was restarted
    old = pool[1]
    os.kill(old.proc.pid, signal.SIGKILL)  # no join: the driver does not wait for the OS
    with pytest.raises(WorkerDied) as died:
        old.call("info", timeout=60)
    assert died.value.worker is old and died.value.wid == 1
    assert not old.alive()  # the broken pipe is death, whatever the process table says yet
    unanswered = Pending(old, 10**6, "grad")  # a job's request the old process never answered
    boot = pool.respawn(1)
    with pytest.raises(WorkerDied):
        unanswered.ready()  # on a closed handle: WorkerDied, never OSError
    with pytest.raises(WorkerDied):
        old.request("info")
    pool[1].boot_s = float(boot.result(120))
    assert pool[1] is not old and pool[1].alive()
    assert pool[1].info().wid == 1
