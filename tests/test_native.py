"""The compiled build (``ptsim.native``): a stale build is refused with a clear error, and a
fresh one, compiled from this checkout in a temporary copy, imports compiled and gives exactly
the golden per-job tables (skipped where mypyc or a C compiler is missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from ptsim import native

REPO = Path(__file__).resolve().parents[1]


def _package(tmp_path: Path) -> Path:
    """A package folder holding sources for every module of the build."""
    pkg = tmp_path / "ptsim"
    for name in native.MODULES:
        rel = Path(*name.split(".")[1:])
        if any(m.startswith(name + ".") for m in native.MODULES):  # a package
            (pkg / rel).mkdir(parents=True, exist_ok=True)
            (pkg / rel / "__init__.py").write_text(f"# {name}\n")
        else:
            (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
            (pkg / rel).with_suffix(".py").write_text(f"# {name}\n")
    for name in native.KERNELS:
        source = native.source_of(name, pkg)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"/* {name} */\n")
    return pkg


def _stamp(pkg: Path) -> Path:
    sources = {
        str(native.source_of(m, pkg).relative_to(pkg)): native.source_hash(native.source_of(m, pkg))
        for m in (*native.MODULES, *native.KERNELS)
    }
    stamp = pkg / native.STAMP.name
    stamp.write_text(json.dumps({"modules": list(native.MODULES), "sources": sources}))
    return stamp


def test_a_pure_python_package_passes_the_check(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    assert native.compiled_files(pkg) == []
    native.check(pkg / native.STAMP.name)


def test_compiled_modules_without_a_stamp_are_refused(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    so = (pkg / "core" / "state").with_name("state" + EXTENSION_SUFFIXES[0])
    so.write_bytes(b"")
    assert native.compiled_files(pkg) == [so]
    with pytest.raises(native.StaleNativeBuild, match=r"without _native\.json"):
        native.check(pkg / native.STAMP.name)


def test_a_source_edited_after_the_build_is_named(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    stamp = _stamp(pkg)
    native.check(stamp)  # as built
    edited = pkg / "core" / "policies" / "elasticflow.py"
    edited.write_text(edited.read_text() + "x = 1\n")
    with pytest.raises(native.StaleNativeBuild, match=r"elasticflow\.py: changed since"):
        native.check(stamp)


def test_a_kernel_source_edited_after_the_build_is_named(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    stamp = _stamp(pkg)
    kernel = native.source_of(native.KERNELS[0], pkg)
    (kernel.with_name(kernel.stem + EXTENSION_SUFFIXES[0])).write_bytes(b"")
    native.check(stamp)  # as built: the kernel's extension module is part of the build
    kernel.write_text(kernel.read_text() + "/* edited */\n")
    with pytest.raises(native.StaleNativeBuild, match=rf"{kernel.name}: changed since"):
        native.check(stamp)
    refuse = native._Refuse(native.StaleNativeBuild("changed since the compiled build"))
    with pytest.raises(native.StaleNativeBuild):
        refuse.find_spec(native.KERNELS[0], None)


def test_a_build_against_another_numpy_is_refused(tmp_path: Path) -> None:
    """The seeding kernel links numpy's normal sampler: after numpy is upgraded the build
    would draw the old numpy's numbers, so it is refused until rebuilt."""
    pkg = _package(tmp_path)
    stamp = _stamp(pkg)
    data = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**data, "numpy": native.numpy_version()}))
    native.check(stamp)  # built against the installed numpy
    stamp.write_text(json.dumps({**data, "numpy": "0.0.1"}))
    with pytest.raises(native.StaleNativeBuild, match=r"against numpy 0\.0\.1, numpy .* installed"):
        native.check(stamp)


def test_an_unreadable_stamp_is_refused(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    (pkg / native.STAMP.name).write_text("{not json")
    with pytest.raises(native.StaleNativeBuild, match="unreadable"):
        native.check(pkg / native.STAMP.name)


def test_the_guard_refuses_only_the_compiled_modules() -> None:
    refuse = native._Refuse(native.StaleNativeBuild("x.py: changed since the compiled build"))
    with pytest.raises(native.StaleNativeBuild, match="changed since"):
        refuse.find_spec("ptsim.core.state", None)
    assert refuse.find_spec("ptsim.native", None) is None
    assert refuse.find_spec("ptsim.core.bank_types", None) is None


def test_a_stale_build_fails_on_import_with_the_reason(tmp_path: Path) -> None:
    """In a fresh interpreter: ``import ptsim`` works (to rebuild or clean), importing a
    compiled module of a stale build raises the error naming the edited source."""
    pkg = _package(tmp_path)
    shutil.copy(REPO / "ptsim" / "__init__.py", pkg / "__init__.py")
    shutil.copy(REPO / "ptsim" / "native.py", pkg / "native.py")
    stamp = _stamp(pkg)
    (pkg / "core" / "state.py").write_text("# edited\n")
    assert stamp.exists()
    code = (
        "import ptsim, ptsim.native\n"
        "try:\n"
        "    import ptsim.core.state\n"
        "except ptsim.native.StaleNativeBuild as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "state.py: changed since" in out.stdout


def _can_compile() -> str | None:
    try:
        import mypyc  # noqa: F401
        import setuptools  # noqa: F401
    except ImportError:
        return "mypyc or setuptools is not installed"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers"
    return None


COMPILED_TESTS = (
    "test_bank.py",
    "test_golden.py",
    "test_efkernel.py",
    "test_estkernel.py",
    "test_policy_elasticflow.py",
    "test_seeding.py",
    "test_snapshot_index.py",
)
"""Run against the compiled build: the golden tables, the kernels against their Python,
the Prompt Bank index's tests, elasticflow's tests (its admission test's reuse against
re-planning from scratch), the seeding's (its kernel's draws against numpy's) and the
snapshot's kept job index."""


@pytest.mark.skipif(_can_compile() is not None, reason=str(_can_compile()))
def test_the_compiled_build_gives_the_golden_tables(tmp_path: Path) -> None:
    """The build of this checkout's sources (in a copy), loaded instead of the sources, keeps
    the policies' config field types (the config checks use them) and passes
    ``COMPILED_TESTS``: every policy on every golden scenario, the C kernels against their
    Python definitions."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copytree(
        REPO / "ptsim",
        copy / "ptsim",
        ignore=shutil.ignore_patterns("__pycache__", *(f"*{s}" for s in EXTENSION_SUFFIXES)),
    )
    (copy / "ptsim" / native.STAMP.name).unlink(missing_ok=True)
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "tests").mkdir()
    for name in (*COMPILED_TESTS, "_util.py"):
        shutil.copy(REPO / "tests" / name, copy / "tests" / name)
    shutil.copytree(REPO / "tests" / "data" / "golden", copy / "tests" / "data" / "golden")
    for name in ("conf", "traces"):
        (copy / name).symlink_to(REPO / name)
    env = {**os.environ, "PYTHONPATH": str(copy), "HYDRA_FULL_ERROR": "1"}
    build = subprocess.run(
        [sys.executable, "-c", "from ptsim.tools.native import build; build()"],
        capture_output=True,
        text=True,
        env=env,
        cwd=copy,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    # the compiled modules, imported from the copy, then the tests in the same process
    tests = [f"tests/{name}" for name in COMPILED_TESTS]
    run = (
        "import sys, pytest, ptsim, ptsim.run, ptsim.simulator\n"
        "import ptsim.core.policies.elasticflow, ptsim.core.policies.infless\n"
        "import ptsim.core.policies.prompttuner, ptsim.core.bank_sim, ptsim.core.convergence\n"
        "from ptsim import native\n"
        "from ptsim.core.policy import POLICIES\n"
        "from ptsim.schema import fields_of\n"
        "for name in POLICIES.names():  # config types survive compilation (schema checks)\n"
        "    fields_of(POLICIES.config_class(name))\n"
        "print('package', ptsim.__file__)\n"
        "print('active', ','.join(native.active()))\n"
        f"sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', *{tests!r}]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", run], capture_output=True, text=True, env=env, cwd=copy
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines()[:2])
    assert lines["package"].startswith(str(copy))
    assert lines["active"].split(",") == [*native.MODULES, *native.KERNELS]
    assert " passed" in out.stdout and "failed" not in out.stdout
    # the only tests skipped are those that patch compiled code (``tests._util.patches``)
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("(pure Python only)" in line for line in skips), skips
    assert "test_golden.py" not in " ".join(skips) and "test_efkernel.py" not in " ".join(skips)


def test_a_compiled_module_outside_the_build_is_refused(tmp_path: Path) -> None:
    """One left by an earlier build of other modules would still be imported."""
    pkg = _package(tmp_path)
    stamp = _stamp(pkg)
    (pkg / "core" / ("bank_types" + EXTENSION_SUFFIXES[0])).write_bytes(b"")
    with pytest.raises(
        native.StaleNativeBuild, match=r"bank_types\..*: not part of the compiled build"
    ):
        native.check(stamp)
