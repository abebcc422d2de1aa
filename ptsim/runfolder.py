"""Run folders that never mix: one run at a time holds a folder (an exclusive ``flock`` on
``<folder>/.lock``), a folder that holds a complete run is refused unless told to overwrite, and
a marker file says how a run ended:

- ``COMPLETE``: the run (or comparison) finished and every output named in it is written;
- ``FAILED``: the run stopped on an error (its one-line message inside);
- ``INTERRUPTED``: the run was stopped (Ctrl-C); a ptexec run resumes from such a folder.

Each marker is a small JSON file written atomically (``kind``, ``status``, ``at`` in UTC,
``outputs`` or ``error``). Driver-neutral: ptsim and ptexec both use it. The lock is released
by the kernel if the process dies, so a crashed run never blocks its folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptsim.outcome import write_json

LOCK = ".lock"
OVERRIDES_FILE = "overrides.yaml"
"""The file the ``ptsim`` app writes into a run folder: the run's command-line overrides."""
COMPLETE = "COMPLETE"
FAILED = "FAILED"
INTERRUPTED = "INTERRUPTED"
MARKERS = (COMPLETE, FAILED, INTERRUPTED)

_SUFFIX = secrets.token_hex(3)


def unique_suffix() -> str:
    """A suffix that differs between processes (pid and 6 random hex digits), the same within
    one, so default folder names made in the same second cannot collide."""
    return f"{os.getpid()}-{_SUFFIX}"


def default_name(stamp: datetime | None = None) -> str:
    """``<date>_<time>_<pid>-<random>``: a default run folder name no other run shares."""
    stamp = stamp or datetime.now()
    return f"{stamp.strftime('%Y-%m-%d_%H-%M-%S')}_{unique_suffix()}"


class RunFolderError(ValueError):
    """A folder a run may not use (in use, or already complete): one line."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` cannot be a folder to write into: it "exists and is not a folder", or
    "P is a file" for the first P above it that is one; None when it is a folder or can be
    made as one. (The one check every command's output folder gets, before anything runs.)"""
    for where in (path, *path.parents):
        if where.exists() or where.is_symlink():
            if where.is_dir():
                return None
            return "exists and is not a folder" if where == path else f"{where} is a file"
    return None


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder`` (COMPLETE first), or None when it has none."""
    for name in MARKERS:
        p = folder / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (OSError, ValueError):
                data = {}
            return {**(data if isinstance(data, dict) else {}), "status": name}  # the file decides
    return None


@dataclass
class RunFolder:
    """A folder held by this run (see ``claim``)."""

    path: Path
    kind: str
    created: bool
    started: bool = False
    previous: dict[str, Any] | None = None
    _fd: int | None = field(default=None, repr=False)

    def start(self) -> None:
        """Mark that outputs are about to be written: from now on a failure is recorded in a
        FAILED marker instead of removing the folder."""
        self.started = True

    def mark(self, status: str, **info: Any) -> None:
        """Write marker ``status`` (COMPLETE, FAILED or INTERRUPTED), removing any other."""
        for name in MARKERS:
            if name != status:
                (self.path / name).unlink(missing_ok=True)
        write_json({"kind": self.kind, "status": status, "at": _now(), **info}, self.path / status)

    def complete(self, outputs: Sequence[str] = ()) -> None:
        """The run is complete: every output in ``outputs`` (relative paths) is written."""
        self.mark(COMPLETE, outputs=sorted(outputs))

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _lock(folder: Path) -> int:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        finally:
            os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise RunFolderError(f"run folder {folder} is in use by another run{who}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _held(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lock (tested without taking it for long)."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (closing releases the lock)
    return False


def refusal(
    path: Path,
    prev: dict[str, Any] | None,
    *,
    allow: Sequence[str] = (FAILED, INTERRUPTED),
    hint: str = "overwrite it",
) -> str | None:
    """Why ``claim`` would refuse ``path`` (whose marker is ``prev``) without ``overwrite``, or
    None when it would take it as it is."""
    if prev is not None and prev["status"] == COMPLETE:
        return (
            f"run folder {path} already holds a complete {prev.get('kind', 'run')} "
            f"({prev.get('at', '?')}); pick another folder or {hint}"
        )
    if prev is not None and prev["status"] not in allow:
        return (
            f"run folder {path} holds a run that ended {prev['status']}; pick another "
            f"folder or {hint}"
        )
    if prev is None and (path / "summary.json").exists():  # a run from before markers
        return (
            f"run folder {path} already holds a run (summary.json); pick another folder or {hint}"
        )
    return None


def check_claim(
    folder: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    allow: Sequence[str] = (FAILED, INTERRUPTED),
    hint: str = "overwrite it",
) -> None:
    """Raise ``RunFolderError`` where ``claim`` would refuse ``folder``, touching nothing (a
    dry run's check): a path that is a file, a folder another run holds, or one ``refusal``
    names."""
    path = Path(folder)
    problem = not_a_folder(path)
    if problem:
        raise RunFolderError(f"run folder {path}: {problem}")
    if not path.is_dir():
        return
    if (path / LOCK).exists() and _held(path):
        raise RunFolderError(f"run folder {path} is in use by another run; pick another folder")
    refused = refusal(path, read_marker(path), allow=allow, hint=hint)
    if refused and not overwrite:
        raise RunFolderError(refused)


@contextmanager
def claim(
    folder: str | os.PathLike[str],
    kind: str = "run",
    *,
    overwrite: bool = False,
    allow: Sequence[str] = (FAILED, INTERRUPTED),
    hint: str = "overwrite it",
) -> Iterator[RunFolder]:
    """Hold ``folder`` for one run: create it if needed and lock it; refuse it when another run
    holds it, or when it holds a complete run (``overwrite``: clear its marker and the outputs
    it lists, then reuse it) or a run that ended in a status not in ``allow``.

    On leaving: a ``KeyboardInterrupt`` leaves an INTERRUPTED marker; another error before
    ``start()`` removes a folder this call created (nothing left behind by bad input), after
    ``start()`` it leaves a FAILED marker with the error's line. The lock is always released.
    ``hint`` says how to overwrite, in the refusal.
    """
    path = Path(folder)
    created = not path.exists()
    problem = not_a_folder(path)
    if problem:
        raise RunFolderError(f"run folder {path}: {problem}")
    path.mkdir(parents=True, exist_ok=True)
    fd = _lock(path)
    rf = RunFolder(path, kind, created, _fd=fd)
    try:
        prev = read_marker(path)
        rf.previous = prev
        refused = refusal(path, prev, allow=allow, hint=hint)
        if refused and not overwrite:
            raise RunFolderError(refused)
        if refused and prev is not None and prev["status"] == COMPLETE:
            _clear(path, prev)
        elif refused:
            _clear_all(path)
    except BaseException:
        rf.release()
        _remove_if_created(rf)
        raise
    try:
        yield rf
    except KeyboardInterrupt:
        if rf.started:
            rf.mark(INTERRUPTED)
        else:
            _remove_if_created(rf)
        raise
    except BaseException as exc:
        if rf.started:
            rf.mark(FAILED, error=" ".join(str(exc).split())[:500] or type(exc).__name__)
        else:
            _remove_if_created(rf)
        raise
    finally:
        rf.release()


def mark_complete(folder: Path, kind: str, outputs: Sequence[str]) -> None:
    """A COMPLETE marker in ``folder`` (a part of a run held through its parent, such as one
    policy's subfolder of a comparison)."""
    write_json(
        {"kind": kind, "status": COMPLETE, "at": _now(), "outputs": sorted(outputs)},
        folder / COMPLETE,
    )


def _clear(path: Path, marker: dict[str, Any]) -> None:
    """Remove a complete run's marker and the outputs it lists (nothing else)."""
    for rel in marker.get("outputs", []):
        p = (path / str(rel)).resolve()
        if path.resolve() not in p.parents:
            continue  # never outside the folder
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    for name in MARKERS:
        (path / name).unlink(missing_ok=True)


def _clear_all(path: Path) -> None:
    """Empty a run folder (one that holds a marker of ours), keeping the lock."""
    for p in path.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _remove_if_created(rf: RunFolder) -> None:
    """Leave no trace of a run that wrote nothing: remove the folder if this run created it,
    else just the lock file (only when nothing else is in the folder)."""
    rf.release()
    if not _only_lock(rf.path):
        return
    if rf.created:
        shutil.rmtree(rf.path, ignore_errors=True)
    else:
        (rf.path / LOCK).unlink(missing_ok=True)


def _only_lock(path: Path) -> bool:
    try:
        return all(p.name == LOCK for p in path.iterdir())
    except OSError:
        return False


__all__ = [
    "COMPLETE",
    "FAILED",
    "INTERRUPTED",
    "RunFolder",
    "RunFolderError",
    "claim",
    "default_name",
    "mark_complete",
    "read_marker",
    "unique_suffix",
]


def write_overrides(run_dir: Path, overrides: Sequence[str]) -> None:
    """Save a run's hydra overrides in its folder (``overrides.yaml``), for reports."""
    import yaml

    from ptsim.outcome import atomic_write

    data = [str(o) for o in overrides]
    atomic_write(run_dir / OVERRIDES_FILE, lambda p: p.write_text(yaml.safe_dump(data)))
