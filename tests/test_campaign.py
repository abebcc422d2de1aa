"""The convergence campaign (ptexec.campaign) on a tiny suite: the files it writes have the
documented columns, a stored prompt of the very task starts closer than the default prompt,
and a rerun resumes instead of repeating runs."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ptexec.campaign import (  # noqa: E402
    CURVE_COLUMNS,
    RUN_COLUMNS,
    SCORE_COLUMNS,
    TargetPlan,
    generated_suite,
    run_suite,
    write_readme,
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_tiny_campaign_writes_its_tables(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    full = generated_suite(1)
    suite = replace(
        full,
        plans=(TargetPlan("g1", (("g1", "self"), ("u1", "unrelated"))),),
        max_steps=8,
        eval_every=4,
        eval_examples=32,
        score_examples=16,
    )
    run_suite(suite, tmp_path, [0], score_repeats=2, say=lambda _m: None)
    runs = _rows(tmp_path / "runs.csv")
    assert list(runs[0]) == list(RUN_COLUMNS)
    assert [(r["role"], r["target_task"], r["source_task"]) for r in runs] == [
        ("source", "g1", ""),
        ("source", "u1", ""),
        ("target", "g1", ""),
        ("target", "g1", "g1"),
        ("target", "g1", "u1"),
    ]
    by_src = {r["source_task"]: r for r in runs if r["role"] == "target"}
    assert by_src["g1"]["rule_similarity"] == "1" and by_src["u1"]["relation"] == "unrelated"
    assert float(by_src["g1"]["score_mean"]) > float(by_src[""]["default_score_mean"])
    scores = _rows(tmp_path / "scores.csv")
    assert list(scores[0]) == list(SCORE_COLUMNS) and len(scores) == 2 * 3
    curves = _rows(tmp_path / "curves.csv")
    assert list(curves[0]) == list(CURVE_COLUMNS) and {c["step"] for c in curves} >= {"0", "4"}
    # a rerun resumes: no target run is repeated
    run_suite(suite, tmp_path, [0], score_repeats=2, say=lambda _m: None)
    assert len(_rows(tmp_path / "runs.csv")) == len(runs)
    write_readme(tmp_path, ["python -m ptexec.campaign"], [suite], "now")
    text = (tmp_path / "README.md").read_text()
    assert all(f"`{c}`" in text for c in RUN_COLUMNS)
