"""``benchmarks/bank_loop_bench.py``: the simulated bank's lookups and additions of a day."""

from __future__ import annotations

import re
import sys

import pytest

from ptsim.core.bank import PromptBankIndex
from tests._util import load_benchmark


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    mod = load_benchmark("bank_loop_bench")
    monkeypatch.setattr(sys, "argv", ["bank_loop_bench.py", *args])
    mod.main()
    return capsys.readouterr().out


def test_counts_every_lookup_and_addition_and_chooses_the_same_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = PromptBankIndex._cluster
    first = _run(monkeypatch, capsys, "--jobs", "700", "--lag", "200", "--hours", "1")
    assert PromptBankIndex._cluster is cluster  # the counting wrapper is taken off again
    assert "jobs 700 (lag 200)" in first and "additions 500:" in first
    builds = re.search(
        r"lookups 700: [\d.]+ s CPU, [\d.]+ us each \(with (\d+) re-clusterings\)", first
    )
    assert builds is not None and int(builds.group(1)) > 0
    digest = re.search(r"choices sha256 (\w+)", first)
    second = _run(monkeypatch, capsys, "--jobs", "700", "--lag", "200", "--hours", "1")
    assert digest is not None and f"choices sha256 {digest.group(1)}" in second
    other = _run(monkeypatch, capsys, "--jobs", "700", "--lag", "100", "--hours", "1")
    assert f"choices sha256 {digest.group(1)}" not in other  # the hash reads the choices


def test_bad_arguments_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in (["--jobs", "0"], ["--lag", "-1"], ["--hours", "0"]):
        with pytest.raises(SystemExit) as ended:
            _run(monkeypatch, capsys, *bad)
        assert ended.value.code == 2
