"""The real Prompt Bank store: PEFT adapter directories, metadata, bank entries, real scoring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from ptexec.bank_store import PromptStore, RealScorer, StoreError  # noqa: E402
from ptexec.models import LoadedModel, load_model  # noqa: E402
from ptexec.tasks import TaskFamily, TextTask  # noqa: E402
from ptexec.train import TuningConfig, TuningJob  # noqa: E402

pytestmark = [
    pytest.mark.exec,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
]
torch.set_num_threads(1)

FAMILY = TaskFamily(seed=1)
CFG = TuningConfig(eval_every=5, max_steps=200, target_accuracy=0.9, eval_examples=128)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model("tiny-gpt2")


@pytest.fixture(scope="module")
def tasks() -> dict[str, TextTask]:
    a, b = FAMILY.task("A"), FAMILY.task("B")
    return {
        "A": a.generate(384, 128, seed=0),
        "B": b.generate(384, 128, seed=0),
        "A-near": FAMILY.variant(a, 0.75, "A-near").generate(384, 128, seed=0),
    }


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, tiny: LoadedModel, tasks: dict[str, TextTask]
) -> PromptStore:
    st = PromptStore(tmp_path_factory.mktemp("bank"))
    for name in ("A", "B"):
        job = TuningJob(tiny, tasks[name], CFG, job_id=f"job-{name}")
        res = job.run()
        st.add(job, entry_id=f"prompt-{name}", result=res)
    return st


def test_stored_prompt_layout_and_metadata(store: PromptStore, tiny: LoadedModel) -> None:
    d = store.root / "prompt-A"
    assert {p.name for p in d.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "ptexec.json",
    }
    meta = json.loads((d / "ptexec.json").read_text())
    assert meta["model"] == "tiny-gpt2" and meta["kind"] == "causal_lm"
    assert meta["model_identity"]["tiny_config"]["seed"] == 0
    assert meta["source_task"] == "A" and meta["shape"] == [8, tiny.hidden_size]
    conv = meta["convergence"]
    assert conv["reached"] and conv["steps_to_target"] == conv["steps"] > 0
    assert len(conv["losses"]) == conv["steps"] and conv["evals"][0][0] == 0
    assert len(meta["feature"]) == tiny.hidden_size
    assert [r.entry_id for r in store.list_entries()] == ["prompt-A", "prompt-B"]
    assert store.list_entries("minilm") == []
    with pytest.raises(StoreError, match="already exists"):
        job = TuningJob(tiny, TaskFamily().task("x").generate(16, 8), TuningConfig())
        store.add(job, entry_id="prompt-A")


def test_stored_prompt_loads_in_plain_peft(
    store: PromptStore, tiny: LoadedModel, tasks: dict[str, TextTask]
) -> None:
    from peft import PeftModel

    base = load_model("tiny-gpt2").model  # a fresh copy of the same seeded weights
    plain = PeftModel.from_pretrained(base, str(store.root / "prompt-A"))
    prompt, head = store.load_tensors("prompt-A")
    assert head == {}
    job = TuningJob(tiny, tasks["A"], CFG, init_prompt=prompt)
    ids = job.data.heldout[0][None]
    with torch.no_grad():
        ours = job.peft(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        theirs = plain(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    enc = plain.prompt_encoder["default"]
    assert isinstance(enc, torch.nn.Module)
    assert torch.allclose(enc.get_parameter("embedding.weight"), prompt)


def test_seq_cls_prompt_with_head_loads_in_plain_peft(tmp_path: Path) -> None:
    from peft import PeftModel

    from ptexec.models import build_tiny_gpt2

    model = load_model("tiny-gpt2", kind="seq_cls")
    task = TaskFamily(num_labels=3).task("S").generate(128, 32)
    job = TuningJob(model, task, TuningConfig(max_steps=3, target_accuracy=None))
    job.run()
    rec = PromptStore(tmp_path).add(job, entry_id="s")
    assert rec.kind == "seq_cls" and rec.meta["num_labels"] == 3
    assert not (rec.path / "README.md").exists()  # no empty auto-generated model card
    mods = json.loads((rec.path / "adapter_config.json").read_text())["modules_to_save"]
    assert len(mods) == len(set(mods))  # each name once
    base = build_tiny_gpt2("seq_cls")
    base.score = torch.nn.Linear(base.config.n_embd, 3, bias=False)
    plain = PeftModel.from_pretrained(base, str(rec.path))
    ids = job.data.heldout[0][None]
    with torch.no_grad():
        ours = job.peft(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        theirs = plain(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_entries_convert_to_bank_entries(store: PromptStore) -> None:
    bank = pytest.importorskip("ptsim.core.bank")
    from ptsim.core.bank_types import BankConfig

    entries = store.bank_entries()
    assert all(isinstance(e, bank.BankEntry) for e in entries)
    a = entries[0]
    assert a.entry_id == "prompt-A" and a.model == "tiny-gpt2" and a.source_task == "A"
    assert a.shape == (8, 64) and a.feature.shape == (64,)
    assert a.metadata["reached"] is True and a.metadata["steps_to_target"] > 0
    index = bank.PromptBankIndex(BankConfig(layout="flat"), entries)
    assert index.size("tiny-gpt2") == 2


def test_real_scorer_prefers_the_similar_task(
    store: PromptStore, tiny: LoadedModel, tasks: dict[str, TextTask]
) -> None:
    bank = pytest.importorskip("ptsim.core.bank")
    from ptsim.core.bank_types import BankConfig

    scorer = RealScorer(store, tiny, tasks, batches=2, batch_size=32)
    entries = store.bank_entries()
    scores = scorer.score_many(entries, "A-near")
    assert scores[0] > scores[1]  # A's prompt suits A-near better than B's
    assert scorer.assessments == 2 and scorer.elapsed_s > 0
    index = bank.PromptBankIndex(BankConfig(layout="flat"), entries)
    res = index.lookup("tiny-gpt2", "A-near", scorer, np.random.default_rng(0))
    assert res.entry is not None and res.entry.entry_id == "prompt-A"
    assert res.assessments == 2
    # a prompt for other weights cannot be scored on this model
    other = RealScorer(store, load_model("tiny-gpt2", kind="seq_cls"), tasks)
    assert other.score(entries[0], "A-near") == -np.inf


def test_store_entries_of_another_format_fail_in_one_line(tmp_path: Path) -> None:
    """The store reads ``ptexec.json`` with ptsim's shared reader (the simulator's seeding uses
    the same one), so another format version is refused by name."""
    d = tmp_path / "old"
    d.mkdir()
    (d / "ptexec.json").write_text(
        json.dumps({"format": 0, "entry_id": "old", "model": "m", "source_task": "t"})
    )
    st = PromptStore(tmp_path)
    with pytest.raises(StoreError, match=r"old/ptexec.json: unknown format 0 \(this version"):
        st.list_entries()
    with pytest.raises(StoreError, match=r"no entry 'missing'"):
        st.get("missing")


def test_only_the_prompt_is_transferred_unless_transfer_head(tmp_path: Path) -> None:
    """The scorer (like the job) starts from the job's own fresh head; the stored head is used
    only with ``transfer_head``. A stored prompt equal to the default one scores exactly the
    default's score when the head is not transferred."""
    model = load_model("tiny-gpt2", kind="seq_cls")
    fam = TaskFamily(seed=2)
    data = fam.task("H").generate(128, 32, seed=0)
    cfg = TuningConfig(max_steps=5, target_accuracy=None, eval_every=5, lr=0.1)
    st = PromptStore(tmp_path)
    untrained = TuningJob(model, data, cfg, job_id="u")
    trained = TuningJob(model, data, cfg, job_id="t")
    for _ in range(5):
        trained.train_step()
    st.add(trained, entry_id="t")  # a tuned prompt and head
    st.add(untrained, entry_id="u")  # the default prompt and the fresh head
    tasks = {"H": data}
    prompt_only = RealScorer(st, model, tasks, config=cfg)
    with_head = RealScorer(st, model, tasks, config=cfg, transfer_head=True)
    entry_u = st.get("u").to_bank_entry()
    entry_t = st.get("t").to_bank_entry()
    assert prompt_only.score(entry_u, "H") == prompt_only.default_score("H")
    assert prompt_only.score(entry_t, "H") != with_head.score(entry_t, "H")


def test_short_stable_entry_ids() -> None:
    from ptexec.bank_store import short_id, task_short_name

    assert task_short_name("synthetic:A2~A@0.75") == "A2"
    assert task_short_name("/home/me/data/tweets.csv") == "tweets"
    assert task_short_name("bbc-news") == "bbc-news"
    assert short_id("tweets-j1") == "tweets-j1"
    long = short_id("x" * 100)
    assert len(long) == 64 and long == short_id("x" * 100)
    assert "/" not in short_id("/abs/path-j1")


def test_expected_assessments_per_layout() -> None:
    from ptexec.prompt_bank import expected_assessments
    from ptsim.core.bank_types import BankConfig

    cfg = BankConfig()
    assert expected_assessments(0, cfg) == 0
    assert expected_assessments(9, cfg, "none") == 0
    assert expected_assessments(9, cfg, "flat") == 9
    assert expected_assessments(9, cfg, "random") == 1
    assert expected_assessments(9, cfg, "two_layer") == 3 + 2  # K = 3 medoids, 2 members
    assert expected_assessments(400, BankConfig(max_assessments=24), "two_layer") == 24
    # K and the cap stop growing at max_clusters^2 entries: 32 medoids + 42 members
    assert expected_assessments(10**5, cfg, "two_layer") == 74
    assert expected_assessments(10**5, BankConfig(max_clusters=None), "two_layer") == 317 + 315
