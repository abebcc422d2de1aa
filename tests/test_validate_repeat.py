"""``benchmarks/validate_repeat.py``: two saved runs of the validation trace compared job by job."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pandas as pd

from tests._util import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "validate-runs"


def _load() -> ModuleType:
    return load_benchmark("validate_repeat")


def test_a_run_against_itself_differs_by_nothing() -> None:
    lines = _load().compare(RUNS / "quiet-long", RUNS / "quiet-long")
    pols = [line.split(":")[0] for line in lines if not line.startswith("profile")]
    assert pols == ["edf", "infless", "prompttuner"]
    for line in lines[:3]:
        assert "median 0.0%, max 0.0%" in line and "same step counts 100%" in line


def test_differences_are_relative_to_the_first_run(tmp_path: Path) -> None:
    b = tmp_path / "b"
    b.mkdir()
    for f in (RUNS / "quiet-long").glob("*.csv"):
        shutil.copy(f, b / f.name)
    v = pd.read_csv(b / "edf-validate.csv")
    v.loc[v.job_id == "j03", "exec_jct_s"] *= 1.5  # one job 50% slower on the executor
    v.to_csv(b / "edf-validate.csv", index=False)
    edf = next(line for line in _load().compare(RUNS / "quiet-long", b) if line.startswith("edf"))
    assert "median 0.0%, max 50.0% (j03), 1 jobs > 15%" in edf
