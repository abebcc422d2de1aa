"""One-line messages for the errors a user can fix (bad input, missing model or data)."""

from __future__ import annotations


def friendly(exc: BaseException) -> str | None:
    """The one-line message for ``exc`` when it is a user-fixable problem, else ``None``
    (a bug: let it raise with its traceback)."""
    from ptexec.config import ConfigError
    from ptexec.jobs import JobFileError
    from ptexec.models import ModelNotFound
    from ptexec.tasks import TaskDataError
    from ptexec.workers import WorkerError
    from ptsim.core.profiles import UnknownName
    from ptsim.profiles_io import ProfileError
    from ptsim.store_format import StoreError
    from ptsim.trace.loader import TraceError

    known = (
        ConfigError,
        JobFileError,
        ModelNotFound,
        TaskDataError,
        StoreError,
        UnknownName,
        ProfileError,
        TraceError,
        WorkerError,
        FileNotFoundError,
        ValueError,
    )
    if not isinstance(exc, known):
        return None
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__
