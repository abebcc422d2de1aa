"""The core's value types whose ``__init__`` is written out (so that the compiled build compiles
it, DEVELOPERS.md) take exactly their dataclass fields, in order, with the fields' defaults,
set every field, and stay frozen."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import ptsim.core
from ptsim.native import active


def _written_out() -> list[type]:
    """Dataclasses of ``ptsim.core`` whose ``__init__`` is their own, not generated."""
    out = []
    for info in pkgutil.walk_packages(ptsim.core.__path__, "ptsim.core."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if (
                isinstance(obj, type)
                and obj.__module__ == mod.__name__
                and dataclasses.is_dataclass(obj)
                and "__init__" in vars(obj)
                and getattr(obj.__init__, "__code__", None) is not None
                and obj.__init__.__code__.co_filename != "<string>"  # not dataclasses' exec
            ):
                out.append(obj)
    return out


WRITTEN_OUT = _written_out()
# (after the walk above imported every module) a compiled ``__init__`` is a C slot without
# Python code or signature to check
pytestmark = pytest.mark.skipif(
    any(m.startswith("ptsim.core.") for m in active()),
    reason="reads the written-out __init__s' Python code (pure Python only)",
)


def test_the_hot_value_types_are_found() -> None:
    names = {cls.__name__ for cls in WRITTEN_OUT}
    assert {"JobView", "Snapshot", "Decision", "GpuView", "IterEstimate"} <= names


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda c: c.__name__)
def test_a_written_out_init_takes_the_fields(cls: type) -> None:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            # a mutable default is made per instance from ``None``; a constant one is given
            want = f.default_factory()
            assert p.default is None or p.default is want, f.name
        else:
            assert p.default is p.empty, f.name
    # every field set from its argument, defaults as the fields say, and still frozen
    marks: dict[str, Any] = {f.name: object() for f in fields}
    obj = cls(**marks)
    assert all(getattr(obj, name) is mark for name, mark in marks.items())
    required = {f.name: marks[f.name] for f in fields if _required(f)}
    bare = cls(**required)
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(bare, f.name) == f.default
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(bare, f.name) == f.default_factory()
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, fields[0].name, None)
    assert dataclasses.replace(obj) == obj


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
