"""The policy protocol and the registry that builds policies by name from config.

A policy sees a ``Snapshot`` and returns a ``Decision``; it never knows which driver runs it.
A new policy is one module under ``ptsim/core/policies/`` that calls ``register`` plus one config
file under ``conf/scheduler/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ptsim.core.profiles import ProfileSet, UnknownName
from ptsim.core.types import Decision, InitChoice, JobSpec, Snapshot


@runtime_checkable
class InitChooser(Protocol):
    """Chooses a new job's initial prompt (the Prompt Bank, with the driver's scorer)."""

    def choose(self, spec: JobSpec) -> InitChoice: ...


@runtime_checkable
class Policy(Protocol):
    """A scheduling policy: snapshot in, decision out."""

    name: str

    def decide(self, snap: Snapshot) -> Decision: ...


@dataclass(frozen=True)
class PolicyContext:
    """What a driver hands every policy it builds: the profiles it schedules with, and the
    Prompt Bank (``None`` when the run has no bank)."""

    profiles: ProfileSet
    bank: InitChooser | None = None


C = TypeVar("C")
RegisteredFactory = Callable[[PolicyContext, Any], Policy]
"""What ``Registry.register`` stores for a policy name: builds the policy from the driver's
context and an instance of the policy's config dataclass."""


@dataclass(frozen=True)
class _Entry:
    factory: RegisteredFactory
    config_cls: type[Any]
    doc: str


class Registry:
    """Policies by name. Each entry is a factory and the frozen dataclass of its knobs."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def register(
        self, name: str, config_cls: type[C], doc: str = ""
    ) -> Callable[[Callable[[PolicyContext, C], Policy]], Callable[[PolicyContext, C], Policy]]:
        """Decorator registering ``factory(ctx, config) -> Policy`` under ``name``."""

        def deco(
            factory: Callable[[PolicyContext, C], Policy],
        ) -> Callable[[PolicyContext, C], Policy]:
            if name in self._entries:
                raise ValueError(f"policy {name!r} registered twice")
            self._entries[name] = _Entry(factory, config_cls, doc or (factory.__doc__ or ""))
            return factory

        return deco

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def config_class(self, name: str) -> type[Any]:
        return self._entry(name).config_cls

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName("policy", name, self.names()) from None

    def make_config(self, name: str, params: Mapping[str, Any]) -> Any:
        """The policy's config dataclass from plain params; unknown keys are an error."""
        cls = self._entry(name).config_cls
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise UnknownName(f"{name} policy option", unknown[0], sorted(fields))
        return cls(**dict(params))

    def build(self, name: str, ctx: PolicyContext, params: Mapping[str, Any]) -> Policy:
        """Build policy ``name`` with knobs ``params`` (unknown names and keys are errors)."""
        entry = self._entry(name)
        return entry.factory(ctx, self.make_config(name, params))


POLICIES = Registry()
"""The registry the shipped policies add themselves to (import ``ptsim.core.policies``)."""
