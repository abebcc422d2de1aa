"""Where the data the project ships lives: the ``traces/`` tree (traces and profile tables) and the
``conf/`` tree (hydra configs), in a source checkout and in an installed wheel alike.

A source checkout (editable install or running from the repository) keeps them at the repository
root, next to the ``ptsim`` package. A built wheel ships them inside the package as
``ptsim/_data/traces`` and ``ptsim/_data/conf``. Nothing here depends on the working directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED_DATA_DIR = "_data"
"""Folder inside the installed ``ptsim`` package that holds ``traces/`` and ``conf/`` in a wheel."""


def package_dir() -> Path:
    """The directory of the ``ptsim`` package itself."""
    return Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The source checkout's root (the folder holding ``pyproject.toml`` next to ``ptsim/``),
    or None when ``ptsim`` runs from an installed wheel."""
    root = package_dir().parent
    return root if (root / "pyproject.toml").is_file() else None


def _shipped_dir(name: str) -> Path:
    """The shipped top-level folder ``name``: the checkout's copy first, then the wheel's."""
    candidates: list[Path] = []
    root = repo_root()
    if root is not None:
        candidates.append(root / name)
    candidates.append(package_dir() / PACKAGED_DATA_DIR / name)
    for cand in candidates:
        if cand.is_dir():
            return cand
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"ptsim's shipped {name}/ folder not found; looked in: {looked}")


def data_root() -> Path:
    """The shipped ``traces/`` folder: small traces and the profile tables, each with provenance."""
    return _shipped_dir("traces")


def profiles_root() -> Path:
    """The shipped profile directories (``traces/profiles``), one subfolder per profile."""
    return data_root() / "profiles"


def conf_root() -> Path:
    """The shipped hydra config folder (``conf/``)."""
    return _shipped_dir("conf")
