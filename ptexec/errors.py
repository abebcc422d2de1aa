"""One-line messages for the errors a user can fix (bad input, missing model or data)."""

from __future__ import annotations

import sys

_KNOWN = (
    ("ptexec.config", "ConfigError"),
    ("ptexec.jobs", "JobFileError"),
    ("ptexec.models", "ModelNotFound"),
    ("ptexec.tasks", "TaskDataError"),
    ("ptexec.workers", "WorkerError"),
    ("ptsim.core.profiles", "UnknownName"),
    ("ptsim.profiles_io", "ProfileError"),
    ("ptsim.store_format", "StoreError"),
    ("ptsim.trace.loader", "TraceError"),
)
"""User-fixable error classes by module. Only modules already imported are looked at: an
error cannot come from a module that was never imported, and importing them here would make
every error exit pay for torch, hydra and pandas."""


def friendly(exc: BaseException) -> str | None:
    """The one-line message for ``exc`` when it is a user-fixable problem, else ``None``
    (a bug: let it raise with its traceback)."""
    known: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError)
    for module, name in _KNOWN:
        mod = sys.modules.get(module)
        if mod is not None:
            known = (*known, getattr(mod, name))
    if not isinstance(exc, known):
        return None
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__
