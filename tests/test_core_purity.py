"""The core never imports a driver-side library, and touches no clock or file; the run record is
driver-neutral; the real executor never imports the simulator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "ptsim" / "core"
DRIVER_LIBS = ("simpy", "torch", "transformers", "peft", "hydra", "omegaconf")
IMPURE_MODULES = {"time", "datetime", "os", "pathlib", "io", "shutil", "random", "tempfile"}
# numpy's random module: generators and their parts (each seeded where it is made; RandomState
# for FasterPAM's seeded start, bank.py), never the module's global state (np.random.seed,
# np.random.normal, ...)
NUMPY_RANDOM_OK = {
    "default_rng", "Generator", "PCG64", "SeedSequence", "BitGenerator", "bit_generator",
    "RandomState",
}  # fmt: skip


def _numpy_random_attr(node: ast.AST) -> str | None:
    """``X`` of an expression ``np.random.X`` / ``numpy.random.X``, else None."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Attribute):
        return None
    inner = node.value
    if inner.attr != "random" or getattr(inner.value, "id", None) not in ("np", "numpy"):
        return None
    return node.attr


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
            elif (attr := _numpy_random_attr(node)) is not None and attr not in NUMPY_RANDOM_OK:
                names = [f"np.random.{attr}"]
            if isinstance(node, ast.ImportFrom) and node.module == "numpy.random":
                names += [
                    f"np.random.{a.name}" for a in node.names if a.name not in NUMPY_RANDOM_OK
                ]
            bad = [
                n
                for n in names
                if n in IMPURE_MODULES or n in DRIVER_LIBS or n == "open()" or n.startswith("np.")
            ]
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


def _loaded(modules: tuple[str, ...], libs: tuple[str, ...]) -> str:
    """The libraries of ``libs`` that importing ``modules`` (in a fresh interpreter) loads."""
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(','.join(m for m in {libs!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_run_record_is_driver_neutral() -> None:
    """The run record, its tables and the run specs import no driver's library."""
    mods = ("ptsim.outcome", "ptsim.metrics", "ptsim.specs", "ptsim.store_format")
    loaded = _loaded(mods, DRIVER_LIBS)
    assert loaded == "", f"the run record pulled in: {loaded}"


def test_the_executor_never_imports_the_simulator() -> None:
    """The mirror of the core's purity: the real executor's driver, runner and validator (which
    runs ptsim only inside ``simulate_like``) load no simpy."""
    pytest.importorskip("torch")
    mods = ("ptexec.driver", "ptexec.run", "ptexec.validate", "ptexec.prompt_bank", "ptexec.jobs")
    loaded = _loaded(mods, ("simpy", "ptsim.simulator", "ptsim.run", "hydra"))
    assert loaded == "", f"the executor pulled in: {loaded}"
