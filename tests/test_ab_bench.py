"""``benchmarks/ab_bench.py``: two versions of ptsim run side by side on one case."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("ab_bench", ROOT / "benchmarks" / "ab_bench.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ab_bench", mod)
    spec.loader.exec_module(mod)
    return mod


def _main(mod: ModuleType, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["ab_bench.py", *args])
    mod.main()


def test_a_folder_that_is_not_a_source_tree_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mod = _load(monkeypatch)
    with pytest.raises(SystemExit, match=f"{tmp_path}: not a ptsim source tree"):
        mod.check_tree(tmp_path)


def test_the_same_tree_twice_gives_the_same_results_and_a_record_per_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _load(monkeypatch)
    out = tmp_path / "runs.jsonl"
    args = ["--policy", "edf", "--hours", "0.02", "--rounds", "1", "--json", str(out)]
    _main(mod, monkeypatch, str(ROOT), str(ROOT), *args)
    printed = capsys.readouterr().out
    assert "same results" in printed and "median after/before" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["round"], r["side"]) for r in rows] == [(1, "before"), (1, "after")]
    assert rows[0]["events"] == rows[1]["events"] > 0
    assert all(r["policy"] == "edf" and r["cpu_s"] > 0 for r in rows)


def test_runs_whose_results_differ_are_named_and_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _load(monkeypatch)
    base: dict[str, Any] = {
        "cpu_s": 2.0,
        "events": 10,
        "decisions": 9,
        "slo_violation_rate": 0.5,
        "cost_gpu_hours": 3.0,
    }
    monkeypatch.setattr(mod, "check_tree", lambda tree: str(tree))
    monkeypatch.setattr(mod, "one_round", lambda trees, cases: [base, {**base, "events": 11}])
    with pytest.raises(SystemExit) as ended:
        _main(mod, monkeypatch, "a", "b", "--policy", "edf", "--rounds", "2")
    assert ended.value.code == 1
    printed = capsys.readouterr().out
    assert "RESULTS DIFFER in 2 of 4 runs" in printed
    assert "round 2 after" in printed


def test_per_side_overrides_reach_only_their_side_and_each_side_is_held_to_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _load(monkeypatch)
    seen: list[list[list[str]]] = []
    base: dict[str, Any] = {"cpu_s": 2.0, "events": 10, "decisions": 9}

    def fake(trees: list[Path], cases: list[list[str]]) -> list[dict[str, Any]]:
        seen.append(cases)
        return [base, {**base, "cpu_s": 3.0, "events": 12}]  # the sides differ, each is steady

    monkeypatch.setattr(mod, "check_tree", lambda tree: str(tree))
    monkeypatch.setattr(mod, "one_round", fake)
    _main(
        mod,
        monkeypatch,
        *("a", "a", "--policy", "edf", "--rounds", "2", "-o", "seed=1"),
        *("--before-override", "scheduler.bank=false"),
    )
    assert seen[0] == [
        ["edf", "24", "-o=seed=1", "-o=scheduler.bank=false"],
        ["edf", "24", "-o=seed=1"],
    ]
    printed = capsys.readouterr().out
    assert "median after/before 1.500" in printed and "same results" in printed


def test_bad_arguments_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load(monkeypatch)
    for bad in (["--rounds", "0"], ["--hours", "0"]):
        with pytest.raises(SystemExit) as ended:
            _main(mod, monkeypatch, "a", "b", "--policy", "edf", *bad)
        assert ended.value.code == 2
