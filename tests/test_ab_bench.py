"""``benchmarks/ab_bench.py``: two versions of ptsim run side by side on one case."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests._util import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_benchmark("ab_bench", monkeypatch)


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


class _FakeRun:
    """A run that ends at its ``polls``-th poll, writing ``record`` to ``out`` if given."""

    def __init__(self, polls: int, out: Path | None, record: dict[str, Any]) -> None:
        self.left, self.out, self.record = polls, out, record
        self.returncode: int | None = None
        self.killed = False

    def poll(self) -> int | None:
        if self.returncode is None:
            self.left -= 1
            if self.left <= 0:
                if self.out is not None:
                    self.out.write_text(json.dumps(self.record) + "\n")
                self.returncode = 0
        return self.returncode

    def kill(self) -> None:
        self.killed, self.returncode = True, -9

    def wait(self) -> int | None:
        return self.returncode


def test_the_side_that_ends_first_keeps_its_core_busy_until_the_other_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mod = _load(monkeypatch)
    started: list[tuple[str, bool, _FakeRun]] = []

    def start(tree: Path, case: list[str], out: Path | None) -> _FakeRun:
        short = tree == Path("short")
        polls = (2 if short else 9) if out is not None else 3  # a discarded run: 3 polls
        run = _FakeRun(polls, out, {"cpu_s": 1.0 if short else 2.0, "events": 5})
        started.append((str(tree), out is None, run))
        return run

    monkeypatch.setattr(mod, "_start", start)
    recs = mod.one_round([Path("short"), Path("long")], [["edf"], ["edf"]], poll_s=0.0)
    assert [r["cpu_s"] for r in recs] == [1.0, 2.0]
    extra = [run for tree, discarded, run in started if discarded]
    assert all(tree == "short" for tree, discarded, _ in started if discarded)
    assert recs[0]["kept_busy_runs"] == len(extra) >= 2 and recs[1]["kept_busy_runs"] == 0
    assert all(run.returncode is not None for run in extra)  # none left running
    assert extra[-1].killed and not any(run.killed for run in extra[:-1])


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
