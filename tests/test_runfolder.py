"""Run folders (ptsim/runfolder.py): exclusive, refused when complete, markers, no leftovers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptsim.runfolder import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    RunFolderError,
    check_claim,
    claim,
    default_name,
    read_marker,
)


def test_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    with claim(tmp_path / "r", "ptsim") as rf:
        rf.start()
        busy = r"is in use by another run \(pid \d+\)$"
        with pytest.raises(RunFolderError, match=busy), claim(tmp_path / "r", "ptsim"):
            pass
        rf.complete(["a.csv"])
    assert read_marker(tmp_path / "r")["status"] == COMPLETE  # type: ignore[index]


def test_a_complete_folder_is_refused_unless_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    with claim(folder, "ptsim") as rf:
        rf.start()
        (folder / "a.csv").write_text("old")
        (folder / "notes.txt").write_text("mine")
        rf.complete(["a.csv"])
    with pytest.raises(RunFolderError, match="already holds a complete ptsim"), claim(folder):
        pass
    assert (folder / "a.csv").read_text() == "old"  # untouched
    with claim(folder, "ptsim", overwrite=True) as rf:
        assert not (folder / "a.csv").exists() and not (folder / COMPLETE).exists()
        assert (folder / "notes.txt").read_text() == "mine"  # only the listed outputs go
        rf.start()
        rf.complete([])
    marker = json.loads((folder / COMPLETE).read_text())
    assert marker["kind"] == "ptsim" and marker["status"] == COMPLETE and marker["at"]


def test_bad_input_leaves_nothing_and_a_failure_is_marked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad"), claim(tmp_path / "new"):
        raise ValueError("bad input")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "given"
    existing.mkdir()
    with pytest.raises(ValueError), claim(existing):
        raise ValueError("bad input")
    assert existing.is_dir() and not any(existing.iterdir())
    with pytest.raises(RuntimeError), claim(tmp_path / "f") as rf:
        rf.start()
        raise RuntimeError("disk\nfull")
    marker = read_marker(tmp_path / "f")
    assert marker is not None and marker["status"] == FAILED and marker["error"] == "disk full"
    with claim(tmp_path / "f") as rf:  # a failed folder may be reused...
        rf.start()
        rf.complete()
    assert not (tmp_path / "f" / FAILED).exists()  # ...and its old marker goes


def test_interrupt_marks_the_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), claim(tmp_path / "r") as rf:
        rf.start()
        raise KeyboardInterrupt
    assert read_marker(tmp_path / "r")["status"] == INTERRUPTED  # type: ignore[index]
    with pytest.raises(RunFolderError, match="ended INTERRUPTED"), claim(tmp_path / "r", allow=()):
        pass


def test_default_names_differ_between_processes() -> None:
    import subprocess
    import sys

    code = "from ptsim.runfolder import default_name; print(default_name())"
    names = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .rsplit("_", 1)[-1]
        for _ in range(2)
    }
    assert len(names) == 2
    assert default_name().rsplit("_", 1)[-1] == default_name().rsplit("_", 1)[-1]


def test_a_dry_run_check_refuses_what_claim_refuses_and_touches_nothing(tmp_path: Path) -> None:
    check_claim(tmp_path / "new")  # a folder to be made: fine, and not made
    assert not (tmp_path / "new").exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(RunFolderError, match="exists and is not a folder"):
        check_claim(afile)
    with pytest.raises(RunFolderError, match=f"{afile} is a file"), claim(afile / "r"):
        pass
    folder = tmp_path / "r"
    with claim(folder, "ptsim") as rf:
        rf.start()
        with pytest.raises(RunFolderError, match="in use by another run"):
            check_claim(folder)
        rf.complete([])
    with pytest.raises(RunFolderError, match="already holds a complete ptsim"):
        check_claim(folder)
    check_claim(folder, overwrite=True)
    assert read_marker(folder)["status"] == COMPLETE  # type: ignore[index]
    (folder / COMPLETE).unlink()
    (folder / FAILED).write_text(json.dumps({"status": FAILED}))
    check_claim(folder)  # a failed run's folder may be reused by default...
    with pytest.raises(RunFolderError, match="ended FAILED"):
        check_claim(folder, allow=(INTERRUPTED,))  # ... but not where only INTERRUPTED is
