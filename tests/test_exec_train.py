"""Prompt tuning of one job: reaching a target, data parallelism, hand-over, warm start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from ptexec.models import LoadedModel, load_model  # noqa: E402
from ptexec.tasks import TaskFamily, TextTask  # noqa: E402
from ptexec.train import (  # noqa: E402
    TuningConfig,
    TuningJob,
    average_grads,
    global_batch,
    latest_checkpoint,
    load_checkpoint,
    shard,
)

pytestmark = pytest.mark.exec
torch.set_num_threads(1)

FAMILY = TaskFamily(seed=0)
EASY = TuningConfig(eval_every=5, max_steps=300, target_accuracy=0.9, eval_examples=256)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model("tiny-gpt2")


@pytest.fixture(scope="module")
def task_a() -> TextTask:
    return FAMILY.task("A").generate(512, 256, seed=0)


@pytest.fixture(scope="module")
def tuned_a(tiny: LoadedModel, task_a: TextTask) -> TuningJob:
    """Task A tuned to its target (shared by the tests that need a tuned prompt)."""
    job = TuningJob(tiny, task_a, EASY, job_id="A")
    job.run()
    return job


def test_global_batch_is_deterministic_and_covers_an_epoch() -> None:
    first = [global_batch(100, 32, s, seed=3) for s in range(4)]
    again = [global_batch(100, 32, s, seed=3) for s in range(4)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    epoch0 = [int(i) for b in first for i in b][:100]
    assert sorted(epoch0) == list(range(100))
    parts = [shard(first[0], r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [11, 11, 10]
    assert [int(i) for p in parts for i in p] == [int(i) for i in first[0]]


def test_job_reaches_target_on_easy_task(tuned_a: TuningJob) -> None:
    job = tuned_a
    assert job.init_info["mode"] == "text"
    res = job.result()
    assert res.reached and job.done
    assert res.steps_to_target == res.steps < EASY.max_steps
    assert res.evals[-1].accuracy >= 0.9
    assert res.evals[0].accuracy < 0.75  # it really learned
    assert len(res.losses) == res.steps


def test_data_parallel_equals_single_worker(tiny: LoadedModel, task_a: TextTask) -> None:
    cfg = TuningConfig(batch_size=30)
    single = TuningJob(tiny, task_a, cfg)
    replicas = [TuningJob(tiny, task_a, cfg) for _ in range(2)]
    for _ in range(6):
        single.train_step(1)
        parts = [r.grad_step_shard(r.shard_indices(rank, 2)) for rank, r in enumerate(replicas)]
        avg = average_grads(parts)
        for r in replicas:
            r.apply_grad(avg.grad, avg.loss)
    assert torch.allclose(replicas[0].prompt, replicas[1].prompt, atol=0, rtol=0)
    assert torch.allclose(single.prompt, replicas[0].prompt, atol=1e-5, rtol=1e-4)
    assert single.history.losses == pytest.approx(replicas[0].history.losses, rel=1e-5)
    # uneven shards (30 over 4 workers) give the same step as well
    uneven = TuningJob(tiny, task_a, cfg)
    for _ in range(6):
        uneven.train_step(4)
    assert torch.allclose(single.prompt, uneven.prompt, atol=1e-5, rtol=1e-4)


def test_resize_mid_job_keeps_training_state(
    tiny: LoadedModel, task_a: TextTask, tmp_path: Path
) -> None:
    cfg = TuningConfig(batch_size=32, checkpoint_every=2)
    ref = TuningJob(tiny, task_a, cfg, job_id="j")
    for _ in range(8):
        ref.train_step()
    one = TuningJob(tiny, task_a, cfg, job_id="j")
    for _ in range(4):
        one.train_step()
    one.evaluate()
    state = one.state_dict()
    # grow from one replica to two at a step boundary
    two = [TuningJob(tiny, task_a, cfg, job_id="j") for _ in range(2)]
    for r in two:
        r.load_state_dict(state)
        assert r.step == 4 and len(r.history.evals) == 1
    for _ in range(4):
        parts = [r.grad_step_shard(r.shard_indices(k, 2)) for k, r in enumerate(two)]
        avg = average_grads(parts)
        for r in two:
            r.apply_grad(avg.grad, avg.loss)
    assert torch.allclose(ref.prompt, two[0].prompt, atol=1e-5, rtol=1e-4)
    assert two[0].history.losses == pytest.approx(ref.history.losses, rel=1e-4)
    # the optimizer state moved too: a fresh optimizer would take a different step
    fresh = TuningJob(tiny, task_a, cfg, job_id="j")
    fresh.load_prompt(state["params"]["prompt_encoder.default.embedding.weight"])
    fresh.step = 4
    for _ in range(4):
        fresh.train_step()
    assert not torch.allclose(ref.prompt, fresh.prompt, atol=1e-4)
    # checkpoints
    path = two[0].save_checkpoint(tmp_path)
    assert latest_checkpoint(tmp_path) == path
    back = TuningJob(tiny, task_a, cfg, job_id="j")
    back.load_state_dict(load_checkpoint(path))
    assert back.step == 8 and torch.equal(back.prompt, two[0].prompt)


def test_run_checkpoints_every_n_steps(tiny: LoadedModel, task_a: TextTask, tmp_path: Path) -> None:
    cfg = TuningConfig(max_steps=6, target_accuracy=None, checkpoint_every=2, eval_every=3)
    job = TuningJob(tiny, task_a, cfg)
    res = job.run(checkpoint_dir=tmp_path)
    assert res.steps == 6 and not res.reached
    assert [p.name for p in sorted(tmp_path.glob("step-*.pt"))] == [
        "step-00000004.pt",
        "step-00000006.pt",
    ]
    assert [e.step for e in res.evals] == [0, 3, 6]


def test_warm_start_from_similar_task_needs_fewer_steps(
    tiny: LoadedModel, tuned_a: TuningJob
) -> None:
    assert tuned_a.reached
    stored = tuned_a.prompt
    cold_steps = warm_steps = 0
    for sim in (0.5, 0.75):
        target = FAMILY.variant(FAMILY.task("A"), sim, f"A-{sim}").generate(512, 256, seed=0)
        cold = TuningJob(tiny, target, EASY, job_id="cold").run()
        warm_job = TuningJob(tiny, target, EASY, job_id="warm", init_prompt=stored)
        assert warm_job.init_info["mode"] == "stored"
        warm = warm_job.run()
        assert cold.reached and warm.reached
        assert warm.evals[0].accuracy > cold.evals[0].accuracy
        cold_steps += cold.steps_to_target or 0
        warm_steps += warm.steps_to_target or 0
    assert warm_steps < cold_steps


def test_sequence_classification_head_is_per_job() -> None:
    model = load_model("tiny-gpt2", kind="seq_cls")
    base_head = model.model.score.weight.detach().clone()
    task3 = TaskFamily(num_labels=3).task("C").generate(256, 96, seed=0)
    job = TuningJob(model, task3, TuningConfig(eval_every=10, max_steps=150, eval_examples=96))
    assert len(job.param_names) == 2  # prompt + head
    res = job.run()
    assert res.evals[-1].accuracy > res.evals[0].accuracy + 0.2
    task2 = FAMILY.task("A").generate(64, 32, seed=0)
    other = TuningJob(model, task2, TuningConfig())
    assert other.evaluate().n == 32
    assert torch.equal(model.model.score.weight, base_head)  # the warm model is untouched
    assert model.model.score.out_features == 2


def test_random_init_is_available_but_not_default(tiny: LoadedModel, task_a: TextTask) -> None:
    assert TuningConfig().init == "text"
    rnd = TuningJob(tiny, task_a, TuningConfig(init="random"))
    txt = TuningJob(tiny, task_a, TuningConfig())
    emb_scale = tiny.model.get_input_embeddings().weight.std().item()
    assert abs(txt.prompt.std().item() - emb_scale) < 0.5 * emb_scale
    assert rnd.prompt.std().item() > 2 * emb_scale
    with pytest.raises(ValueError, match="init"):
        TuningConfig(init="bogus")  # type: ignore[arg-type]
