"""The distribution: its package list matches the source tree, and a built wheel runs ptsim
from anywhere, finding its configs and profile tables inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_list_matches_the_source_tree() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("ptsim", "ptexec")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject's packages: {sorted(found - listed)}"
    assert {"ptsim._data.conf", "ptsim._data.traces"} <= listed


def test_built_wheel_runs_outside_the_checkout(tmp_path: Path) -> None:
    # built from a copy of what the wheel is made of, with this environment's setuptools: an
    # in-place build would write build/ and ptsim.egg-info/ into the checkout (and reuse a
    # stale build/), and build isolation would fetch setuptools from an index
    src, wheel_dir, site = tmp_path / "src", tmp_path / "wheel", tmp_path / "site"
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "_native.json")
    for part in ("ptsim", "ptexec", "conf", "traces"):
        shutil.copytree(ROOT / part, src / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, src / part)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("ptsim-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "ptsim" / "_data" / "conf" / "config.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import sys; from ptsim.app import main; sys.argv[0] = 'ptsim'; main()"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "scheduler=edf",
            "workload=short",
            "workload.duration_s=120",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").is_file()
    check = "import ptsim.paths as p; print(p.conf_root())"
    where = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.strip().startswith(str(site))
