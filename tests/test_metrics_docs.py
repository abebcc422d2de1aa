"""Every column of the result tables a run writes is defined in docs/metrics.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from ptsim.paths import conf_root
from ptsim.run import COMPARISON_COLUMNS, run_config

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented(doc: Path) -> set[str]:
    """Every name written in code spans (`a`, `a, b, c`) of ``doc``."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)  # code blocks
    names: set[str] = set()
    for span in re.findall(r"`([^`]+)`", text):
        names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span))
    return names


def test_every_result_column_and_summary_key_is_in_docs_metrics(tmp_path: Path) -> None:
    overrides = [
        "scheduler=prompttuner",
        "workload=short",
        "workload.duration_s=120",
        "progress=false",
    ]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    run_config(cfg, tmp_path)
    written = {
        "jobs.csv": list(pd.read_csv(tmp_path / "jobs.csv").columns),
        "timeseries.csv": list(pd.read_csv(tmp_path / "timeseries.csv").columns),
        "summary.json": sorted(json.loads((tmp_path / "summary.json").read_text())),
        "comparison.csv": list(COMPARISON_COLUMNS),
    }
    documented = _documented(DOCS / "metrics.md")
    missing = [f"{t}: {c}" for t, cols in written.items() for c in cols if c not in documented]
    assert missing == [], f"not in docs/metrics.md: {missing}"


def test_the_executors_columns_are_named_in_docs_metrics_and_defined_in_docs_ptexec() -> None:
    pytest.importorskip("torch")
    from ptexec.run import EXEC_JOB_COLUMNS

    for doc in ("metrics.md", "ptexec.md"):
        missing = [c for c in EXEC_JOB_COLUMNS if c not in _documented(DOCS / doc)]
        assert missing == [], f"not in docs/{doc}: {missing}"
