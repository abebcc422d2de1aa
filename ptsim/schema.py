"""Typed checks of config values, derived from the frozen config dataclasses.

Each config group maps to one dataclass (``ClusterSpec``, ``WorkloadSpec``, ``BankConfig`` +
``BankSpec``, ``Mechanics``, each policy's knobs from the registry...): its fields give the keys
and their types, and its defaults stay the one source of defaults. This module adds what the
dataclasses do not say: the range of each number (``RANGES``). A value is checked with pydantic
against ``Annotated[<field type>, <range>]``; the first bad value raises ``ConfigError`` with one
line naming the key, the value and what is allowed::

    config cluster.nodes = 1.5: expected an integer in [1, 4096]

Cross-field rules stay in each dataclass's ``__post_init__``; ``build`` turns its error into one
line naming the group.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from ptsim.trace.generator import ARRIVALS, LENGTHS


class ConfigError(ValueError):
    """A config that cannot be used: one line naming the key, the value and what is allowed."""


@dataclass(frozen=True)
class Range:
    """What a value may be beyond its type: bounds (numbers, or each item of a list),
    ``choices`` (text), ``nonempty`` (lists)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    nonempty: bool = False

    def bounds(self) -> str:
        lo = (
            ("[", self.ge)
            if self.ge is not None
            else ("(", self.gt)
            if self.gt is not None
            else (None, None)
        )
        hi = (
            (self.le, "]")
            if self.le is not None
            else (self.lt, ")")
            if self.lt is not None
            else (None, None)
        )
        if lo[0] is not None and hi[1] is not None:
            return f" in {lo[0]}{_num(lo[1])}, {_num(hi[0])}{hi[1]}"
        if lo[0] is not None:
            return f" {'>=' if lo[0] == '[' else '>'} {_num(lo[1])}"
        if hi[1] is not None:
            return f" {'<=' if hi[1] == ']' else '<'} {_num(hi[0])}"
        return ""


MAX_INT = 2**63 - 1
"""Integers must fit 64 bits (tables are written as int64)."""

_NONE = type(None)


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if x == MAX_INT:
        return "2^63-1"
    return f"{x:g}" if isinstance(x, float) else str(x)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------ types


def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _base(tp: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    if _is_union(tp):
        rest = [a for a in _args(tp) if a is not _NONE]
        optional = len(rest) < len(_args(tp))
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), optional  # noqa: UP007
    return tp, False


def _is_number(tp: Any) -> bool:
    return tp in (int, float)


def describe(tp: Any, rng: Range | None = None) -> str:
    """What a value of type ``tp`` within ``rng`` may be, in words."""
    rng = rng or Range()
    base, optional = _base(tp)
    origin = typing.get_origin(base)
    if rng.choices is not None:
        text = "one of " + ", ".join(rng.choices)
    elif origin is Literal:
        text = "one of " + ", ".join(str(a) for a in _args(base))
    elif base is bool:
        text = "true or false"
    elif base is int:
        text = "an integer" + (rng.bounds() or " in [-2^63, 2^63-1]")
    elif base is float:
        text = "a finite number" + rng.bounds()
    elif base is str:
        text = "text"
    elif origin in (tuple, list, Sequence) or base in (tuple, list):
        item = _args(base)[0] if _args(base) else Any
        inner = describe(item, Range(rng.ge, rng.gt, rng.le, rng.lt))
        text = ("a non-empty" if rng.nonempty else "a") + f" list, each item {inner}"
    elif origin in (dict, Mapping) or base in (dict, Mapping):
        text = "a mapping"
    else:
        text = getattr(base, "__name__", str(base))
    return text + (" or null" if optional else "")


@functools.cache
def _adapter(tp: Any, rng: Range) -> TypeAdapter[Any]:
    base, optional = _base(tp)
    bounds = {k: getattr(rng, k) for k in ("ge", "gt", "le", "lt") if getattr(rng, k) is not None}
    origin = typing.get_origin(base)
    if base is int:
        bounds.setdefault("ge", -MAX_INT - 1)
        bounds.setdefault("le", MAX_INT)
    if base in (int, float):
        base = Annotated[base, Field(allow_inf_nan=False, **bounds)]
    elif origin is tuple and _args(base) and _args(base)[0] in (int, float):
        item: Any = Annotated[_args(base)[0], Field(allow_inf_nan=False, **bounds)]
        base = tuple[item, ...]
    tp2: Any = base | None if optional else base
    return TypeAdapter(tp2)


def check_value(key: str, value: Any, tp: Any, rng: Range | None = None) -> Any:
    """``value`` as type ``tp`` (a list becomes a tuple), or ``ConfigError`` naming ``key``."""
    rng = rng or Range()
    base, optional = _base(tp)

    def bad() -> ConfigError:
        return ConfigError(f"config {key} = {_show(value)}: expected {describe(tp, rng)}")

    if value is None:
        if optional:
            return None
        raise bad()
    items = value if isinstance(value, list | tuple) else [value]
    if base is not bool and any(isinstance(v, bool) for v in items):
        raise bad()  # True is not a number, nor text
    if base is str and not isinstance(value, str):
        raise bad()
    try:
        out = _adapter(tp, rng).validate_python(value)
    except ValidationError:
        raise bad() from None
    if rng.choices is not None and out not in rng.choices:
        raise bad()
    if rng.nonempty and not out:
        raise bad()
    return out


# ------------------------------------------------------------------------------ sections


def fields_of(cls: type[Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """A dataclass's field names and resolved types.

    A dataclass that mypyc compiled (``ptsim.native``) keeps only the runtime class of each
    field, and a union such as ``int | None`` or a ``Literal`` becomes ``type``: checking
    against that would reject every value, so it fails here, naming the class and field."""
    hints = typing.get_type_hints(cls)
    out = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in exclude}
    lost = [name for name, tp in out.items() if tp is type]
    if lost:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__}: field types lost ({', '.join(lost)}): a "
            "config dataclass with union or Literal fields cannot be in a module that "
            "ptsim.native compiles"
        )
    return out


def check_section(
    where: str,
    values: Mapping[str, Any],
    fields: Mapping[str, Any],
    ranges: Mapping[str, Range] | None = None,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """Every key of ``values`` known, each value of its type and range, and every ``required``
    key present; the checked values (lists as tuples). ``where`` is the group's dotted path
    ('' = the top level)."""
    ranges = ranges or {}
    out: dict[str, Any] = {}
    for key in required:
        if key not in values:
            path = f"{where}.{key}" if where else key
            rng = ranges.get(key)
            raise ConfigError(f"config {path}: missing; expected {describe(fields[key], rng)}")
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            known = ", ".join(sorted(fields))
            place = where or "the top level"
            raise ConfigError(f"unknown config key {path!r}; keys under {place}: {known}")
        out[key] = check_value(path, value, fields[key], ranges.get(key))
    return out


def build(where: str, make: Callable[..., Any], values: Mapping[str, Any]) -> Any:
    """``make(**values)``; a rule it breaks (a dataclass's ``__post_init__``) becomes one line
    naming the key whose value breaks it (the one whose default would not), else the group."""
    errors = (ValueError, TypeError, KeyError)
    try:
        return make(**values)
    except errors as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    for key, value in values.items():
        try:
            make(**{k: v for k, v in values.items() if k != key})
        except errors:
            continue
        prefix = f"{where.split(' ')[0]}.{key}" if where else key
        raise ConfigError(f"config {prefix} = {_show(value)}: {text}")
    raise ConfigError(f"config {where}: {text}")


def resolved(cfg: Any) -> dict[str, Any]:
    """A composed config as a plain dict with interpolations resolved; a broken interpolation
    (``seed=${oops}``) is one line naming the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        out = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"config {key}: {first}" if key else f"config: {first}") from None
    if not isinstance(out, dict):
        raise ConfigError(f"config: expected a mapping, got {_show(out)}")
    return {str(k): v for k, v in out.items()}


def hydra_one_line(text: str) -> str:
    """A hydra error's text on one line, without its search path and hints."""
    keep: list[str] = []
    for ln in (x.strip() for x in str(text).splitlines()):
        if ln.startswith(("Config search path", "provider=", "Set the environment variable")):
            break
        if ln:
            keep.append(ln)
    return " ".join(keep)


def override_syntax_error(overrides: Sequence[str]) -> str | None:
    """One line for the first command-line override hydra cannot parse (``cluster.nodes=[``),
    or None. Words without ``=`` (values of hydra's own flags) are skipped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        if "=" not in o and not o.startswith("~"):
            continue
        try:
            parser.parse_override(o)
        except Exception as exc:  # hydra's parse errors have several types
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            return f"cannot parse override {o!r}: {first}"
    return None


def group_choice_error(overrides: Sequence[str]) -> str | None:
    """One line for the first override that picks a config group option which does not exist
    (``scheduler=foo``), listing the options; None when every choice exists."""
    from ptsim.paths import conf_root

    root = conf_root()
    for o in overrides:
        key, sep, value = o.partition("=")
        key = key.lstrip("+~").lstrip("/")
        if not sep or not key or key.startswith("hydra") or "(" in value:
            continue  # not a choice, or a sweep function (left to hydra)
        folder = root / key
        if not folder.is_dir():
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for choice in (c.strip() for c in value.split(",")):
            if choice not in (*options, "null", ""):
                return f"unknown {key} {choice!r}; options: {', '.join(options)}"
    return None


# ------------------------------------------------------------------------------ ptsim

_NONNEG = Range(ge=0.0)
_POS = Range(gt=0.0)
_SECONDS = Range(ge=0.0, le=1e9)

RANGES: dict[str, dict[str, Range]] = {
    "": {"seed": Range(ge=0, le=2**32 - 1)},
    "sim": {
        "horizon_s": Range(gt=0.0, le=1e9),
        "series_interval_s": _SECONDS,
        "rejected_jct": Range(choices=("censor_at_end", "censor_at_deadline", "exclude")),
    },
    "cluster": {
        "nodes": Range(ge=1, le=4096),
        "gpus_per_node": Range(ge=1, le=64),
        "price_per_gpu_hour": _NONNEG,
    },
    "workload": {
        "duration_s": Range(gt=0.0, le=1e7),
        "load": Range(gt=0.0, le=100.0),
        "models": Range(nonempty=True),
        "model_weights": Range(ge=0.0, nonempty=True),
        "tasks": Range(nonempty=True),
        "iterations_min": Range(ge=1, le=10**9),
        "iterations_max": Range(ge=1, le=10**9),
        "deadline_ratios": Range(gt=0.0, le=1e6, nonempty=True),
        "multi_gpu_fraction": Range(ge=0.0, le=1.0),
        "multi_gpu_counts": Range(ge=1, le=4096, nonempty=True),
        "per_gpu_batch": Range(ge=1, le=10**6),
        "min_gpus": Range(ge=1, le=4096),
        "max_gpus": Range(ge=1, le=4096),
        "shape_offset_min": Range(ge=0),
        "arrivals": Range(choices=ARRIVALS),
        "lengths": Range(choices=LENGTHS),
        "rate_phi": Range(ge=0.0, lt=1.0),
        "rate_sigma": Range(ge=0.0, le=10.0),
        "length_median_s": Range(gt=0.0, le=1e7),
        "length_sigma": Range(ge=0.0, le=10.0),
        "length_cap_s": Range(gt=0.0, le=1e7),
    },
    "workload.replay": {
        "window_start_s": Range(ge=0.0, le=1e9),
        "window_s": Range(gt=0.0, le=1e9),
        "load": Range(gt=0.0, le=100.0),
    },
    "bank": {
        "probe": Range(ge=1, le=10**6),
        "k": Range(ge=1, le=10**6),
        "max_clusters": Range(ge=1, le=10**6),
        "top_k": Range(ge=1, le=10**6),
        "rebuild_every": Range(ge=1),
        "sample_limit": Range(ge=2, le=10**7),
        "max_iter": Range(ge=1, le=10**6),
        "max_assessments": Range(ge=0),
        "entries": Range(ge=0, le=10**6),
        "score_sigma": _NONNEG,
        "feature_dim": Range(ge=1, le=4096),
        "feature_noise": _NONNEG,
    },
    "profile.mechanics": {
        "handover_s": _SECONDS,
        "reconfig_s": _SECONDS,
        "reconfig_per_level_s": _SECONDS,
        "cold_start_scale": Range(gt=0.0, le=1e6),
        "full_eval_margin": Range(ge=0.0, le=1.0),
    },
    "profile.cold_start": {
        "container_s": _SECONDS,
        "bandwidth_gb_s": _POS,
        "init_s": _SECONDS,
        "bytes_per_param": _POS,
    },
}
"""Ranges by group ('' = the top level); a field not listed may take any value of its type."""

POLICY_RANGES: dict[str, Range] = {
    # the knobs of every shipped policy, by name (a knob a policy lacks is never looked up)
    "keep_alive_s": _SECONDS,
    "safety_margin": Range(ge=0.0, le=100.0),
    "shrink_hysteresis": Range(ge=0.0, le=100.0),
    "min_rescale_interval_s": _SECONDS,
    # re-planning finer than 0.1 s only costs time; 1e-9 s never ends
    "replan_s": Range(ge=0.1, le=1e9),
    "rate_window_s": Range(gt=0.0, le=1e9),
    "pool_quantile": Range(gt=0.0, lt=1.0),
    "pool_min": Range(ge=0, le=4096),
    "slot_s": Range(ge=0.1, le=1e9),
    "gamma": Range(ge=0.0, le=1.0),
    # a histogram has range_s / bin_s bins
    "bin_s": Range(ge=1.0, le=1e6),
    "range_s": Range(ge=1.0, le=1e7),
    "short_window_s": Range(gt=0.0, le=1e9),
    "head_q": Range(gt=0.0, le=1.0),
    "tail_q": Range(gt=0.0, le=1.0),
    "window_margin": Range(ge=0.0, lt=1.0),
    "min_samples": Range(ge=1, le=10**6),
}

TOP_LEVEL = {
    "seed": int,
    "progress": bool,
    "overwrite": bool,
    "cluster": dict,
    "workload": dict,
    "profile": dict,
    "bank": dict | None,
    "scheduler": dict | None,
    "sim": dict,
    "sweep": dict | None,  # an experiment's sweep (read by experiments/runner.py)
}
SIM_FIELDS = {"horizon_s": float | None, "series_interval_s": float, "rejected_jct": str}
PROFILE_FIELDS = {
    "name": str | None,
    "dir": str | None,
    "description": str | None,
    "needs": str | None,
    "models": dict | None,
    "cold_start": dict | None,
    "mechanics": dict | None,
}
COLD_START_FIELDS = {
    "container_s": float | None,
    "bandwidth_gb_s": float | None,
    "init_s": float | None,
    "bytes_per_param": float | None,
}


def check_ptsim_config(cfg: Mapping[str, Any]) -> None:
    """Check every group of a composed ``ptsim`` config (a plain mapping, interpolations
    resolved); the first bad key or value raises ``ConfigError``."""
    import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
    from ptsim.core.bank_types import LAYOUTS, BankConfig
    from ptsim.core.convergence import ConvergenceModel
    from ptsim.core.policy import POLICIES
    from ptsim.core.profiles import Mechanics
    from ptsim.specs import BankSpec, ClusterSpec
    from ptsim.trace.generator import WorkloadSpec
    from ptsim.trace.replay import ReplaySpec

    replay_fields = set(fields_of(ReplaySpec))

    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config: expected a mapping, got {_show(cfg)}")
    top = check_section("", cfg, TOP_LEVEL, RANGES[""], ("seed", "cluster", "workload", "profile"))
    check_section("sim", top.get("sim") or {}, SIM_FIELDS, RANGES["sim"])
    cluster = check_section(
        "cluster",
        top["cluster"],
        fields_of(ClusterSpec),
        RANGES["cluster"],
        ("nodes", "gpus_per_node"),
    )

    wl = dict(top["workload"])
    name = wl.get("name")
    check_value("workload.name", name, str | None)
    check_value("workload.trace", wl.get("trace"), str | None)
    if name == "replay":  # a trace replayed (ptsim.trace.replay)
        rfields = {**fields_of(ReplaySpec), "trace": str | None, "name": str | None}
        replay = check_section("workload", wl, rfields, RANGES["workload.replay"])
        build("workload", ReplaySpec, {k: v for k, v in replay.items() if k in replay_fields})
    elif wl.get("trace") is None:  # (a trace without workload=replay: build_trace says how)
        gfields = {**fields_of(WorkloadSpec), "trace": str | None, "name": str | None}
        work = check_section("workload", wl, gfields, RANGES["workload"])
        work = {k: v for k, v in work.items() if k not in ("trace", "name")}
        spec = build("workload", WorkloadSpec, work)
        size = build("cluster", ClusterSpec, cluster).num_gpus
        biggest = max(spec.multi_gpu_counts) if spec.multi_gpu_fraction > 0 else 1
        for key, n in (("min_gpus", spec.min_gpus), ("multi_gpu_counts", biggest)):
            if n > size:
                raise ConfigError(
                    f"config workload.{key}: jobs would ask for {n} GPUs; the cluster has "
                    f"{size} (cluster.nodes x cluster.gpus_per_node)"
                )
        space = ConvergenceModel.default().space.names
        for task in work.get("tasks", ()):
            if task not in space:
                raise ConfigError(
                    f"config workload.tasks: unknown task {task!r}; known: {', '.join(space)}"
                )

    prof = check_section("profile", top["profile"], PROFILE_FIELDS)
    mech = check_section(
        "profile.mechanics",
        prof.get("mechanics") or {},
        fields_of(Mechanics),
        RANGES["profile.mechanics"],
    )
    build("profile.mechanics", Mechanics, mech)
    check_section(
        "profile.cold_start",
        prof.get("cold_start") or {},
        COLD_START_FIELDS,
        RANGES["profile.cold_start"],
    )
    if not prof.get("dir") and not prof.get("name"):
        raise ConfigError("config profile.dir: not set; give a profile name or directory")
    if prof.get("dir") is None and prof.get("needs"):
        raise ConfigError(f"config profile.dir: not set; profile {prof['name']} {prof['needs']}")

    if top.get("bank") is not None:
        bank_fields = {
            **fields_of(BankConfig, exclude=("seed",)),
            **fields_of(BankSpec, exclude=("index",)),
        }
        bank_ranges = {**RANGES["bank"], "layout": Range(choices=LAYOUTS)}
        bank = check_section("bank", top["bank"], bank_fields, bank_ranges)
        index_keys = set(fields_of(BankConfig))
        index = build("bank", BankConfig, {k: v for k, v in bank.items() if k in index_keys})
        rest = {k: v for k, v in bank.items() if k not in index_keys}
        build("bank", BankSpec, {"index": index, **rest})

    if top.get("scheduler") is not None:
        check_scheduler("scheduler", top["scheduler"], POLICIES)


def check_scheduler(where: str, values: Mapping[str, Any], policies: Any) -> Any:
    """The ``scheduler`` group: ``name`` a registered policy and its knobs typed and in range
    (the policy's config dataclass); returns the built knobs."""
    sc = dict(values)
    name = sc.pop("name", None)
    label = sc.pop("label", None)  # the run's label (ptsim.run.label_scheduler), not a knob
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"config {where}.label = {_show(label)}: expected a string")
    if name not in policies:
        known = ", ".join(policies.names())
        raise ConfigError(f"config {where}.name = {_show(name)}: expected one of {known}")
    cls = policies.config_class(name)
    knobs = check_section(where, sc, fields_of(cls), POLICY_RANGES)
    return build(f"{where} ({name})", cls, knobs)


__all__ = [
    "MAX_INT",
    "RANGES",
    "ConfigError",
    "Range",
    "build",
    "check_ptsim_config",
    "check_scheduler",
    "check_section",
    "check_value",
    "describe",
    "fields_of",
    "group_choice_error",
    "hydra_one_line",
    "override_syntax_error",
    "resolved",
]
