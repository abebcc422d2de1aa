"""Seeding the simulator's Prompt Bank from a real bank store written by ptexec.

A store is a folder of PEFT adapter directories, each with a ``ptexec.json`` that names its base
model and source task (docs/ptexec.md). The simulator takes the store as its history: one bank
entry per stored prompt, with the stored entry id, model and source task (renamed through
``model_map`` / ``task_map`` to the simulation's names). The entry's feature is re-derived from
its task's point in the simulation's task space, not the stored activation vector, so that the
entries the simulated run adds as jobs finish live in the same feature space. Reading needs no
torch: only the JSON metadata is read.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

META_FILE = "ptexec.json"


class StoreSeedError(ValueError):
    """A store that cannot seed the simulated bank (one line naming the file and the field)."""


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
    mapped to the simulation's; an unmapped unknown name is an error listing the known ones."""
    root = Path(store).expanduser()
    if not root.is_dir():
        raise StoreSeedError(f"{root}: no such bank store folder")
    out: list[StoredHistory] = []
    for meta_path in sorted(root.glob(f"*/{META_FILE}")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreSeedError(f"{meta_path}: unreadable ({exc})") from None
        fields = {}
        for key in ("entry_id", "model", "source_task"):
            value = meta.get(key)
            if not isinstance(value, str) or not value:
                raise StoreSeedError(f"{meta_path}: field {key!r} missing or not a string")
            fields[key] = value
        model = (model_map or {}).get(fields["model"], fields["model"])
        task = (task_map or {}).get(fields["source_task"], fields["source_task"])
        if model not in known_models:
            raise StoreSeedError(
                f"{meta_path}: model {model!r} is not simulated; map it with bank.model_map "
                f"to one of: {', '.join(sorted(known_models))}"
            )
        if task not in known_tasks:
            raise StoreSeedError(
                f"{meta_path}: task {task!r} is not in the task space; map it with "
                f"bank.task_map to one of: {', '.join(sorted(known_tasks))}"
            )
        out.append(StoredHistory(fields["entry_id"], model, task))
    if not out:
        raise StoreSeedError(f"{root}: no stored prompt ({META_FILE}) in the bank store")
    return out
