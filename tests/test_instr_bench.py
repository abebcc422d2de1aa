"""``benchmarks/instr_bench.py``: instruction counts of a script under callgrind, per tree."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests._util import load_benchmark


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_benchmark("instr_bench", monkeypatch)


def _main(mod: ModuleType, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["instr_bench.py", *args])
    mod.main()


def _tree(tmp_path: Path, name: str, body: str) -> Path:
    tree = tmp_path / name
    (tree / "ptsim").mkdir(parents=True)
    (tree / "work.py").write_text(body)
    return tree


def test_the_count_is_read_from_callgrinds_last_collected_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mod = _load(monkeypatch)
    log = "==1== Events    : Ir\n==1== Collected : 12\n==1== Collected : 1234567\n==1== I refs"
    assert mod.collected(log) == 1234567
    with pytest.raises(ValueError, match="no 'Collected :' line"):
        mod.collected("==1== I   refs:      5")


def test_the_command_counts_inside_a_function_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mod = _load(monkeypatch)
    whole = mod.command(["work.py", "-x"], tmp_path / "o", None)
    inside = mod.command(["work.py", "-x"], tmp_path / "o", "CPyDef_f")
    assert whole[:2] == ["valgrind", "--tool=callgrind"] and whole[-2:] == ["work.py", "-x"]
    assert not any(a.startswith("--toggle-collect") for a in whole)
    assert "--toggle-collect=CPyDef_f" in inside and inside[-3] == sys.executable


def test_a_tree_without_the_script_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mod = _load(monkeypatch)
    monkeypatch.setattr(mod.shutil, "which", lambda _: "/usr/bin/valgrind")
    good = _tree(tmp_path, "good", "pass\n")
    (tmp_path / "bad" / "ptsim").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"bad: not a ptsim source tree with work\.py"):
        _main(mod, monkeypatch, str(good), str(tmp_path / "bad"), "--", "work.py")
    with pytest.raises(SystemExit, match="give the script"):
        _main(mod, monkeypatch, str(good))


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_counts_repeat_exactly_and_more_work_counts_more(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _load(monkeypatch)
    loop = "total = 0\nfor i in range({n}):\n    total += i * i\nprint(total)\n"
    small = _tree(tmp_path, "small", loop.format(n=1000))
    big = _tree(tmp_path, "big_1", loop.format(n=200_000))  # (a path as long as the other)
    out = tmp_path / "rec.jsonl"
    _main(mod, monkeypatch, str(small), str(small), str(big), "--json", str(out), "--", "work.py")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    counts = [r["instructions"] for r in recs]
    assert counts[0] == counts[1] > 0  # the same program: the same count
    assert counts[2] > counts[0] + 199_000 * 10  # ~200k more loop turns, each many instructions
    assert recs[1]["ratio"] == 1.0 and recs[2]["ratio"] > 1.0
    assert "x the first" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no instruction ran inside CPyDef_nowhere"):
        _main(mod, monkeypatch, str(small), "--function", "CPyDef_nowhere", "--", "work.py")
