"""``benchmarks/gpu_profile.py --dry-run``: the GPU profiling script's path on CPU with tiny
models writes a profile directory ptsim loads (the real run needs a CUDA machine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("peft")

from ptsim.profiles_io import load_profiles
from tests._util import load_benchmark

pytestmark = pytest.mark.exec


def test_dry_run_writes_a_profile_ptsim_loads(tmp_path: Path) -> None:
    mod = load_benchmark("gpu_profile")
    out = tmp_path / "dry"
    assert mod.main(["--dry-run", "--out", str(out)]) == 0
    ps = load_profiles(str(out))
    assert sorted(ps.models) == ["gpt2-base", "gpt2-large", "vicuna-7b"]
    for m in ps.models.values():
        assert m.throughput.batches == (8, 16) and m.throughput.gpu_counts == (1,)
        assert m.cold_start_s > 0 and m.reload_s > 0 and m.eval_s > 0
        assert m.heldout_eval_s > 0 and m.checkpoint_s > 0
    readme = (out / "README.md").read_text()
    assert readme.startswith("**DRY RUN") and "| command |" in readme
    assert json.loads((out / "mechanics.json").read_text())["handover_s"] is None
