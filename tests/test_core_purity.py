"""The core never imports a driver-side library, and touches no clock or file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "ptsim" / "core"
DRIVER_LIBS = ("simpy", "torch", "transformers", "peft", "hydra", "omegaconf")
IMPURE_MODULES = {"time", "datetime", "os", "pathlib", "io", "shutil", "random", "tempfile"}


def test_importing_the_core_imports_no_driver_library() -> None:
    code = (
        "import sys, importlib, pkgutil, ptsim.core, ptsim.core.policies\n"
        "for m in pkgutil.walk_packages(ptsim.core.__path__, 'ptsim.core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in {DRIVER_LIBS!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"ptsim.core pulled in: {out.stdout.strip()}"


def test_core_sources_use_no_clock_file_or_global_random() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                names = ["open()"]
            bad = [n for n in names if n in IMPURE_MODULES or n in DRIVER_LIBS or n == "open()"]
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in bad]
    assert not offenders, offenders


def test_a_simulation_run_never_imports_torch_transformers_or_peft(tmp_path: Path) -> None:
    """A user who only simulates can install without the executor extra."""
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from ptsim.paths import conf_root\n"
        "from ptsim.run import run_config\n"
        "with initialize_config_dir(config_dir=str(conf_root()), version_base='1.3'):\n"
        "    cfg = compose('config', overrides=['workload=short', 'workload.duration_s=120',\n"
        "                                       'progress=false'])\n"
        f"run_config(cfg, __import__('pathlib').Path({str(tmp_path)!r}))\n"
        "print(','.join(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
    assert (tmp_path / "comparison.csv").is_file()
