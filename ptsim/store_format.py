"""The Prompt Bank store's metadata file, read the same way by both drivers.

A bank store (written by ptexec, ``ptexec/bank_store.py``; docs/ptexec.md) is a folder with one
sub-folder per stored prompt, each holding :data:`META_FILE`, a JSON object with ``format``
(:data:`STORE_FORMAT`), ``entry_id``, ``model``, ``source_task`` and what ptexec adds (the
model's key and kind, the prompt's shape and feature, its convergence...). :func:`read_meta` is
the one reader of that file: ptexec lists and loads entries with it, and the simulator seeds
its bank from a store with it (``ptsim/bank_seed.py``). It checks the format and the fields
every reader needs, and fails with one line naming the file and what is wrong. No torch: only
JSON is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

META_FILE = "ptexec.json"
"""The metadata file of one stored prompt."""

STORE_FORMAT = 1
"""The version of the metadata format this code writes and reads."""

REQUIRED_TEXT = ("entry_id", "model", "source_task")
"""Fields every entry has as non-empty text."""


class StoreError(ValueError):
    """A store or store entry that is missing, malformed or clashes with an existing one
    (one line naming the file or entry and what is wrong)."""


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata object in ``path`` (a :data:`META_FILE`), checked: readable JSON object,
    ``format`` equal to :data:`STORE_FORMAT`, and each of :data:`REQUIRED_TEXT` a non-empty
    string."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != STORE_FORMAT:
        raise StoreError(
            f"{path}: unknown format {meta.get('format')!r} (this version reads {STORE_FORMAT})"
        )
    for key in REQUIRED_TEXT:
        value = meta.get(key)
        if not isinstance(value, str) or not value:
            raise StoreError(f"{path}: field {key!r} missing or not a string")
    return meta


def entry_meta_paths(root: Path) -> list[Path]:
    """The metadata file of every entry under the store folder ``root``, in entry-id order
    (hidden folders, such as an entry being written, are skipped)."""
    if not root.is_dir():
        return []
    return [
        d / META_FILE
        for d in sorted(root.iterdir())
        if not d.name.startswith(".") and (d / META_FILE).is_file()
    ]
