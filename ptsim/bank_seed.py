"""Seeding the simulator's Prompt Bank from a real bank store written by ptexec.

A store is a folder of PEFT adapter directories, each with a ``ptexec.json`` that names its base
model and source task (docs/ptexec.md). The simulator takes the store as its history: one bank
entry per stored prompt, with the stored entry id, model and source task (renamed through
``model_map`` / ``task_map`` to the simulation's names). The entry's feature is re-derived from
its task's point in the simulation's task space, not the stored activation vector, so that the
entries the simulated run adds as jobs finish live in the same feature space. Reading needs no
torch: only the JSON metadata is read, with ptexec's own reader (``ptsim.store_format``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from ptsim.store_format import META_FILE, StoreError, entry_meta_paths, read_meta


@dataclass(frozen=True)
class StoredHistory:
    """One stored prompt as the simulator's history: id, model and source task."""

    entry_id: str
    model: str
    source_task: str


def read_store_history(
    store: str | Path,
    *,
    known_models: Collection[str],
    known_tasks: Collection[str],
    model_map: Mapping[str, str] | None = None,
    task_map: Mapping[str, str] | None = None,
) -> list[StoredHistory]:
    """Every entry of the store at ``store``, in entry-id order, with model and task names
    mapped to the simulation's; an unmapped unknown name is an error listing the known ones
    (:class:`~ptsim.store_format.StoreError`, one line naming the file)."""
    root = Path(store).expanduser()
    if root.is_file():
        raise StoreError(f"{root}: a file, not a bank store folder")
    if not root.is_dir():
        raise StoreError(f"{root}: no such bank store folder")
    out: list[StoredHistory] = []
    for meta_path in entry_meta_paths(root):
        meta = read_meta(meta_path)
        model = (model_map or {}).get(meta["model"], meta["model"])
        task = (task_map or {}).get(meta["source_task"], meta["source_task"])
        if model not in known_models:
            raise StoreError(
                f"{meta_path}: model {model!r} is not simulated; map it with bank.model_map "
                f"to one of: {', '.join(sorted(known_models))}"
            )
        if task not in known_tasks:
            raise StoreError(
                f"{meta_path}: task {task!r} is not in the task space; map it with "
                f"bank.task_map to one of: {', '.join(sorted(known_tasks))}"
            )
        out.append(StoredHistory(meta["entry_id"], model, task))
    if not out:
        raise StoreError(f"{root}: no stored prompt ({META_FILE}) in the bank store")
    return out
