"""Build, remove or show the compiled build of the simulator's hot modules (``ptsim.native``).

    python -m ptsim.tools.native build    # compile MODULES (mypyc) and KERNELS (C) in place
    python -m ptsim.tools.native clean    # back to pure Python
    python -m ptsim.tools.native status   # which modules are compiled, and whether they match

The build needs the ``native`` extra (``pip install -e '.[native]'``: mypy, which ships
mypyc, and setuptools), a C compiler and the Python headers. It compiles in a temporary folder
and copies the extension modules next to their sources, then writes the stamp that
``ptsim.native.check`` compares on every import of ``ptsim``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ptsim import native


def _fail(msg: str) -> None:
    print(f"ptsim.tools.native: {msg}", file=sys.stderr)
    raise SystemExit(2)


def build(package: Path = native.PACKAGE) -> list[Path]:
    """Compile :data:`ptsim.native.MODULES` and :data:`ptsim.native.KERNELS` of ``package`` in
    place; return the files made."""
    try:
        import numpy
        from mypyc.build import mypycify
        from setuptools import Extension, setup
    except ImportError as exc:
        _fail(f"the compiled build needs mypy and setuptools (pip install -e '.[native]'): {exc}")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        _fail(f"no C compiler: {cc!r} (sysconfig's CC) is not on PATH")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        _fail(f"no Python headers: {include}/Python.h is missing (install python3-dev)")
    # numpy's static library of its random distributions (``numpy/random/lib``), which the
    # seeding kernel draws its normals with
    npyrandom = Path(numpy.__file__).parent / "random" / "lib"
    if not any(npyrandom.glob("*npyrandom.*")):
        _fail(f"numpy's npyrandom library is missing from {npyrandom} (numpy {numpy.__version__})")
    clean(package, quiet=True)
    root = package.parent
    sources = [native.source_of(m, package) for m in (*native.MODULES, *native.KERNELS)]
    # hashed before compiling: a source edited during the build reads as stale afterwards
    stamp = {
        "modules": list(native.MODULES),
        "numpy": native.numpy_version(),
        "sources": {str(s.relative_to(package)): native.source_hash(s) for s in sources},
    }
    with tempfile.TemporaryDirectory(prefix="ptsim-native-") as tmp, _cwd(root):
        exts = mypycify(
            [str(native.source_of(m, package).relative_to(root)) for m in native.MODULES],
            opt_level="3",
            group_name=native.GROUP,
            target_dir=str(Path(tmp) / "c"),
        )
        # the kernels' floating-point operations must be the Python's: no fused multiply-adds
        kernels = [
            Extension(
                m,
                [str(native.source_of(m, package).relative_to(root))],
                include_dirs=[numpy.get_include()],
                library_dirs=[str(npyrandom)],
                libraries=["npyrandom", "m"],
                extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
            )
            for m in native.KERNELS
        ]
        setup(
            name="ptsim-native",
            ext_modules=[*exts, *kernels],
            script_args=["-q", "build_ext", "--inplace", "--build-temp", str(Path(tmp) / "o")],
        )
    made = native.compiled_files(package)
    (package / native.STAMP.name).write_text(json.dumps(stamp, indent=1) + "\n")
    return made


def clean(package: Path = native.PACKAGE, quiet: bool = False) -> list[Path]:
    """Remove the compiled modules and the stamp from ``package``; return what was removed."""
    gone = native.compiled_files(package)
    stamp = package / native.STAMP.name
    if stamp.exists():
        gone.append(stamp)
    for p in gone:
        p.unlink()
    if not quiet:
        print(f"removed {len(gone)} file(s)")
    return gone


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(
        prog="python -m ptsim.tools.native", description=__doc__.split("\n")[0]
    )
    ap.add_argument("action", choices=("build", "clean", "status"))
    args = ap.parse_args(argv)
    if args.action == "build":
        made = build()
        print(
            f"compiled {len(native.MODULES)} modules and {len(native.KERNELS)} kernels "
            f"({len(made)} extension files) "
            f"in {native.PACKAGE}"
        )
    elif args.action == "clean":
        clean()
    else:
        files = native.compiled_files()
        if not files:
            print("pure Python (no compiled modules)")
            return
        try:
            native.check()
        except native.StaleNativeBuild as exc:
            print(f"compiled, STALE: {exc}")
            raise SystemExit(1) from None
        print(f"compiled and current: {len(files)} extension files")


if __name__ == "__main__":
    main()
