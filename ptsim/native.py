"""The optional compiled build of the simulator's hot modules (mypyc) and C kernels, and the
check that it matches its sources.

``python -m ptsim.tools.native build`` compiles :data:`MODULES` in place with mypyc and the C
kernels of :data:`KERNELS` beside them (a C compiler and the Python headers are needed; nothing
else changes): the same code, or for a kernel the same answers as the Python function it
replaces, with the same floating-point operations in the same order, so a run gives the same
tables, only faster (benchmarks/README.md, "Speed at scale"). Python loads a compiled module
in preference to its source, so a compiled module whose source was edited afterwards would run
the old code: the build records a hash of every compiled source in :data:`STAMP` (and the numpy
version its kernels linked against), and importing ``ptsim`` refuses to import a compiled
module when they differ (:func:`guard`).
``python -m ptsim.tools.native clean`` goes back to the pure-Python modules.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent

MODULES: tuple[str, ...] = (
    "ptsim.core.types",
    "ptsim.core.state",
    "ptsim.core.estimator",
    "ptsim.core.convergence",
    "ptsim.core.bank",
    "ptsim.core.bank_sim",
    "ptsim.core.policies.common",
    "ptsim.core.policies.planning",
    "ptsim.core.policies.simple",
    "ptsim.core.policies.prompttuner",
    "ptsim.core.policies.infless",
    "ptsim.core.policies.elasticflow",
    "ptsim.simulator",
)
"""The modules the compiled build compiles: the simulation loop, the cluster state, the
policies, the estimator's arithmetic, the Prompt Bank's index and the simulated bank. Left as
Python: ``policy`` and ``bank_types`` (runtime-checkable protocols, which mypyc cannot compile;
``bank_types``' ``BankConfig`` also has union fields, whose types compilation would lose for the
config checks), ``profiles`` (an exception derived from ``KeyError``), ``seeding``
(subclasses numpy's ``SeedSequence``), the ``ptsim.core.policies`` package itself (a compiled
package's ``__path__`` is wrong, and :data:`KERNELS` has a module in it) and everything that
runs once per run (configs, I/O, reports)."""

KERNELS: tuple[str, ...] = (
    "ptsim.core.policies._efkernel",
    "ptsim.core._seedkernel",
    "ptsim.core._estkernel",
)
"""C extension modules the compiled build also makes, each from a ``.c`` file of the same name:
plain-loop versions of functions whose Python definition stays the pure package's (the module
using one falls back to its Python when the kernel is absent)."""

STAMP = PACKAGE / "_native.json"
"""Written by the build: the hash of each compiled module's source when it was compiled."""


class StaleNativeBuild(ImportError):
    """A compiled module no longer matches its source."""


def source_of(module: str, package: Path = PACKAGE) -> Path:
    """The source file of one of :data:`MODULES` or :data:`KERNELS` in ``package``."""
    rel = Path(*module.split(".")[1:])
    if module in KERNELS:
        return package / rel.with_suffix(".c")
    pkg = package / rel / "__init__.py"
    return pkg if pkg.exists() else package / rel.with_suffix(".py")


def source_hash(path: Path) -> str:
    """The hash the stamp records for one source file."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


GROUP = "ptsim._native"
"""The build's group name: mypyc's shared runtime library is ``ptsim/_native__mypyc*.so``."""


def compiled_files(package: Path = PACKAGE) -> list[Path]:
    """The compiled extension modules in ``package``'s folders that hold :data:`MODULES`
    (those of the build and any left by an earlier build with other modules)."""
    folders = {source_of(m, package).parent for m in MODULES}
    suffixes = tuple(EXTENSION_SUFFIXES)
    out = []
    for folder in sorted(folders):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        out += [folder / n for n in sorted(names) if n.endswith(suffixes)]
    return out


def check(stamp: Path = STAMP) -> None:
    """Raise :class:`StaleNativeBuild` when a compiled build is present and a compiled module's
    source changed after it was built, or the build left no stamp; do nothing for the
    pure-Python package."""
    if not stamp.exists():
        if compiled_files(stamp.parent):
            raise StaleNativeBuild(
                f"{stamp.parent}: compiled modules without {stamp.name}; run "
                "`python -m ptsim.tools.native build` (or `clean`)"
            )
        return
    try:
        data = json.loads(stamp.read_text())
        recorded = data["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StaleNativeBuild(f"{stamp}: unreadable ({exc}); rebuild or clean") from exc
    # the kernels link numpy's random sampler: a build must draw what the installed numpy draws
    built_numpy, numpy_now = data.get("numpy"), numpy_version()
    if built_numpy is not None and built_numpy != numpy_now:
        raise StaleNativeBuild(
            f"{stamp.parent}: compiled against numpy {built_numpy}, numpy {numpy_now} is "
            "installed; run `python -m ptsim.tools.native build` (or `clean`)"
        )
    base = stamp.parent
    built = {str(Path(rel).with_suffix("")) for rel in recorded} | {
        GROUP.split(".")[-1] + "__mypyc"
    }
    for path in compiled_files(base):
        rel = str(path.relative_to(base)).split(".")[0]
        if rel not in built:
            raise StaleNativeBuild(
                f"{path}: not part of the compiled build; run "
                "`python -m ptsim.tools.native clean` (then `build`)"
            )
    for rel, digest in recorded.items():
        path = base / rel
        if not path.exists() or source_hash(path) != digest:
            raise StaleNativeBuild(
                f"{path}: changed since the compiled build; run "
                "`python -m ptsim.tools.native build` (or `clean` for pure Python)"
            )


def numpy_version() -> str | None:
    """The installed numpy's version (from its metadata: ``import ptsim`` does not import
    numpy for this), or None when it is not installed."""
    import importlib.metadata  # (only a compiled build's check asks: kept off the start-up)

    try:
        return importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        return None


def active() -> list[str]:
    """Which of :data:`MODULES` and :data:`KERNELS` this process runs compiled (loaded ones
    only)."""
    out = []
    for name in (*MODULES, *KERNELS):
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None) or ""
        if path.endswith(tuple(EXTENSION_SUFFIXES)):
            out.append(name)
    return out


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuses to import the compiled modules of a stale build (with the reason)."""

    def __init__(self, error: StaleNativeBuild) -> None:
        self.error = error

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname in MODULES or fullname in KERNELS:
            raise StaleNativeBuild(str(self.error))
        return None


def guard() -> None:
    """Run by ``import ptsim``: when a compiled build no longer matches its sources
    (:func:`check`), importing any of :data:`MODULES` raises :class:`StaleNativeBuild` saying
    why (``ptsim.native`` and ``ptsim.tools.native`` still import, to rebuild or clean)."""
    try:
        check()
    except StaleNativeBuild as exc:
        sys.meta_path.insert(0, _Refuse(exc))
