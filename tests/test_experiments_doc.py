"""EXPERIMENTS.md's results summary says what the committed result tables say: every number
between ``<!--=name-->`` markers is what ``experiments/render_experiments.py`` makes of
``experiments/tables/`` (rerun it with ``--snapshot results`` after rerunning a figure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "experiments") not in sys.path:
    sys.path.insert(0, str(ROOT / "experiments"))

import render_experiments as rx  # noqa: E402  (experiments/ is a folder of scripts)


def test_every_marked_number_matches_the_committed_tables() -> None:
    text = rx.DOC.read_text()
    names = [m.group(1) for m in rx.MARKER.finditer(text)]
    assert len(names) >= 20 and set(names) <= set(rx.QUANTITIES)
    assert rx.render(text, rx.Tables()) == text, (
        "EXPERIMENTS.md differs from experiments/tables: run "
        "python experiments/render_experiments.py"
    )


def test_every_quantity_is_used_and_renders() -> None:
    text = rx.DOC.read_text()
    used = {m.group(1) for m in rx.MARKER.finditer(text)}
    assert used == set(rx.QUANTITIES)
    tables = rx.Tables()
    for name, fn in rx.QUANTITIES.items():
        assert fn(tables).strip(), name


def test_a_drifted_number_is_caught(tmp_path: Path) -> None:
    text = rx.DOC.read_text().replace(
        "<!--=fig1.ef_cost_ratio-->", "<!--=fig1.ef_cost_ratio-->9", 1
    )
    assert rx.render(text, rx.Tables()) != text
    with pytest.raises(KeyError, match="unknown quantity"):
        rx.render("<!--=no.such-->1<!--/=-->", rx.Tables())
