"""The executor's configuration: composing ``conf/executor/run.yaml`` with hydra's compose API
(the same ``scheduler`` and ``bank`` groups as ptsim), and turning it into the objects a run
needs. Nothing here starts workers or trains.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ptexec.faults import FaultPlan
from ptexec.jobs import (
    ExecJob,
    TaskCatalog,
    default_jobs,
    load_jobs,
    load_trace_jobs,
    scale_times,
)
from ptexec.prompt_bank import ExecBankConfig, bank_config_from
from ptexec.run import ExecSettings
from ptexec.tasks import TaskFamily
from ptexec.tuning import TuningConfig
from ptsim import schema
from ptsim.paths import conf_root
from ptsim.runfolder import default_name

CONFIG_NAME = "executor/run"


# One error type for bad config, shared with ptsim (one line: key, value, what is allowed).
ConfigError = schema.ConfigError

_SECONDS = schema.Range(ge=0.0, le=1e9)
EXEC_FIELDS: dict[str, Any] = {
    "jobs": str | None,
    "trace": str | None,
    "task_map": str | None,
    "out": str | None,
    "profile_dir": str | None,
    "seed": int,
    "progress": bool,
    "workers": int | None,
    "threads": int | None,
    "profile_cache": str | None,
    "remeasure": bool,
    "devices": tuple[str, ...] | None,
    "time_scale": float,
    "slo_scale": float,
    "checkpoint_every": int | None,
    "keep_checkpoints": bool,
    "horizon_s": float | None,
    "series_interval_s": float,
    "price_per_gpu_hour": float,
    "mechanics": dict | None,
    "tuning": dict | None,
    "tasks": dict | None,
    "bank": dict | None,
    "scheduler": dict | None,
    "faults": dict | None,
    "executor": dict | None,
}
"""The keys of ``conf/executor/run.yaml`` and their types (ExecSettings is built from them)."""

EXEC_RANGES: dict[str, dict[str, schema.Range]] = {
    "": {
        "seed": schema.Range(ge=0, le=2**32 - 1),
        "workers": schema.Range(ge=1, le=256),
        "threads": schema.Range(ge=1, le=256),
        "time_scale": schema.Range(gt=0.0, le=1e6),
        "slo_scale": schema.Range(gt=0.0, le=1e6),
        "checkpoint_every": schema.Range(ge=0, le=10**9),
        "horizon_s": schema.Range(gt=0.0, le=1e9),
        "series_interval_s": _SECONDS,
        "price_per_gpu_hour": schema.Range(ge=0.0),
    },
    "mechanics": schema.RANGES["profile.mechanics"],
    "tuning": {
        "num_virtual_tokens": schema.Range(ge=1, le=4096),
        "lr": schema.Range(gt=0.0, le=1e3),
        "weight_decay": schema.Range(ge=0.0, le=1e3),
        "batch_size": schema.Range(ge=1, le=10**6),
        "max_steps": schema.Range(ge=0, le=10**9),
        "target_accuracy": schema.Range(ge=0.0, le=1.0),
        "eval_every": schema.Range(ge=1, le=10**9),
        "eval_examples": schema.Range(ge=1, le=10**9),
        "eval_batch_size": schema.Range(ge=1, le=10**6),
        "max_length": schema.Range(ge=2, le=10**6),
        "checkpoint_every": schema.Range(ge=1, le=10**9),
        "seed": schema.Range(ge=0, le=2**32 - 1),
    },
    "tasks": {
        "examples": schema.Range(ge=2, le=10**7),
        "heldout_fraction": schema.Range(gt=0.0, lt=1.0),
        "max_examples": schema.Range(ge=2, le=10**9),
        "family_seed": schema.Range(ge=0, le=2**32 - 1),
    },
    "faults": {
        "kills": schema.Range(ge=0, le=1000),
        "mean_interval_s": schema.Range(gt=0.0, le=1e6),
        "start_s": schema.Range(ge=0.0, le=1e9),
        "seed": schema.Range(ge=0, le=2**32 - 1),
    },
    "bank": {
        **schema.RANGES["bank"],
        "batches": schema.Range(ge=1, le=10**6),
        "batch_size": schema.Range(ge=1, le=10**6),
        "metric": schema.Range(choices=("neg_loss", "accuracy")),
    },
}
"""Ranges by group, as ``ptsim.schema.RANGES`` ('' = the top level)."""

TASKS_FIELDS = {
    "examples": int,
    "heldout_fraction": float,
    "max_examples": int | None,
    "family_seed": int,
}


def check_exec_config(cfg: Mapping[str, Any]) -> None:
    """Check every key of a composed ``ptexec`` config (a plain mapping) for type and range;
    the first bad one raises ``ConfigError`` (one line: key, value, what is allowed)."""
    import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
    from ptsim.core.bank_types import LAYOUTS, BankConfig
    from ptsim.core.policy import POLICIES
    from ptsim.core.profiles import Mechanics
    from ptsim.specs import BankSpec

    top = schema.check_section("", cfg, EXEC_FIELDS, EXEC_RANGES[""])
    mech = {k: v | None for k, v in schema.fields_of(Mechanics).items()}  # null: the profile's
    schema.check_section("mechanics", top.get("mechanics") or {}, mech, EXEC_RANGES["mechanics"])
    tuning = schema.check_section(
        "tuning", top.get("tuning") or {}, schema.fields_of(TuningConfig), EXEC_RANGES["tuning"]
    )
    schema.build("tuning", TuningConfig, tuning)
    schema.check_section("tasks", top.get("tasks") or {}, TASKS_FIELDS, EXEC_RANGES["tasks"])
    faults = schema.check_section(
        "faults", top.get("faults") or {}, schema.fields_of(FaultPlan), EXEC_RANGES["faults"]
    )
    schema.build("faults", FaultPlan, faults)
    bank_fields = {
        **schema.fields_of(BankConfig, exclude=("seed",)),
        **schema.fields_of(BankSpec, exclude=("index",)),  # simulation-only: ignored here
        **schema.fields_of(ExecBankConfig, exclude=("index",)),
        "store": str | None,
    }
    bank_ranges = {**EXEC_RANGES["bank"], "layout": schema.Range(choices=LAYOUTS)}
    schema.check_section("bank", top.get("bank") or {}, bank_fields, bank_ranges)
    if top.get("scheduler") is not None:
        schema.check_scheduler("scheduler", top["scheduler"], POLICIES)
    ex = top.get("executor") or {}
    schema.check_section("executor", ex, {"backend": str, "ray": dict | None}, {})


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/executor/run.yaml`` with ``overrides`` (hydra override syntax). With no
    ``scheduler=`` override the scheduler is ``prompttuner`` when registered, else ``edf``."""
    from hydra import compose, initialize_config_dir

    import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
    from ptsim.core.policy import POLICIES

    ov = list(overrides)
    choice = schema.override_syntax_error(ov) or schema.group_choice_error(ov)
    if choice:
        raise ConfigError(f"config: {choice}")
    if not any(o.split("=", 1)[0].lstrip("+~") == "scheduler" for o in ov):
        ov.append("scheduler=" + ("prompttuner" if "prompttuner" in POLICIES else "edf"))
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3", job_name="ptexec"):
        try:
            cfg = compose(CONFIG_NAME, overrides=ov)
        except Exception as exc:  # hydra raises several types, all with multi-line text
            text = schema.hydra_one_line(str(exc))
            m = re.search(r"Could not override '([^']+)'", text)
            if m:
                text = _unknown_key(m.group(1), [o for o in ov if not o.startswith(m.group(1))])
            raise ConfigError(f"config: {text}") from None
    check_exec_config(schema.resolved(cfg))
    return cfg


def _unknown_key(key: str, others: Sequence[str]) -> str:
    """'unknown key K; keys under P: ...' for an override of a key that does not exist."""
    from hydra import compose

    try:
        node: Any = compose(CONFIG_NAME, overrides=list(others))
    except Exception:
        return f"unknown config key {key!r}"
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not OmegaConf.is_dict(node) or part not in node:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(sorted(str(k) for k in node)) if OmegaConf.is_dict(node) else ""
            return f"unknown config key {key!r}; keys under {where}: {known}"
        node = node[part]
    return f"unknown config key {key!r}"


def plain(node: Any) -> dict[str, Any]:
    """A config node as a plain dict (interpolations resolved; empty for null)."""
    if node is None:
        return {}
    out = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(out, dict):
        raise ConfigError(f"config: expected a mapping, got {out!r}")
    return {str(k): v for k, v in out.items()}


def policy_from(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """(policy name, knobs), checked against the registry."""
    from ptsim.core.policy import POLICIES

    sc = plain(cfg.get("scheduler"))
    name = str(sc.pop("name", "edf"))
    POLICIES.make_config(name, sc)  # unknown policy or knob: UnknownName listing what exists
    return name, sc


def tuning_from(cfg: DictConfig) -> TuningConfig:
    """The default tuning config of every job."""
    t = plain(cfg.get("tuning"))
    known = {f.name for f in dataclasses.fields(TuningConfig)}
    for k in t:
        if k not in known:
            raise ConfigError(f"config tuning.{k}: unknown key; known: {', '.join(sorted(known))}")
    try:
        return TuningConfig(**t)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config tuning: {exc}") from None


def tasks_from(cfg: DictConfig) -> TaskCatalog:
    """The task catalog (generated-task family and sizes)."""
    t = plain(cfg.get("tasks"))
    known = {"examples", "heldout_fraction", "max_examples", "family_seed"}
    for k in t:
        if k not in known:
            raise ConfigError(f"config tasks.{k}: unknown key; known: {', '.join(sorted(known))}")
    default = TaskCatalog()  # a key left out takes the dataclass default (the one source)
    return TaskCatalog(
        family=TaskFamily(seed=int(t.get("family_seed", default.family.seed))),
        examples=int(t.get("examples", default.examples)),
        heldout_fraction=float(t.get("heldout_fraction", default.heldout_fraction)),
        max_examples=None if t.get("max_examples") is None else int(t["max_examples"]),
        seed=int(cfg.get("seed", default.seed)),
    )


def _path(value: Any) -> Path | None:
    if value is None or str(value).strip() == "":
        return None
    return Path(str(value)).expanduser().resolve()


def settings_from(cfg: DictConfig) -> ExecSettings:
    """Pool, profile, checkpointing and run limits."""
    devices = cfg.get("devices")
    mech = {k: v for k, v in plain(cfg.get("mechanics")).items() if v is not None}
    for k, dev in enumerate(devices or ()):
        kind, _, index = str(dev).partition(":")
        if kind not in ("cpu", "cuda") or (index and not (index.isdigit() and kind == "cuda")):
            raise ConfigError(f"config devices[{k}] = {str(dev)!r}: expected cpu, cuda or cuda:N")
    prof = _path(cfg.get("profile_dir"))
    if prof is not None and not prof.is_dir():
        raise ConfigError(f"config profile_dir: {prof} is not a directory (run `ptexec profile`)")
    if prof is not None:  # a bad profile fails here, before a run folder is touched
        from ptsim.profiles_io import load_profiles

        try:
            load_profiles(str(prof))
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise ConfigError(f"config profile_dir: {exc}") from None
    ce = cfg.get("checkpoint_every")
    # a key left out takes the dataclass default (the one source)
    optional: dict[str, Any] = {}
    for key, conv in (
        ("keep_checkpoints", bool),
        ("series_interval_s", float),
        ("price_per_gpu_hour", float),
        ("seed", int),
        ("remeasure", bool),
    ):
        if cfg.get(key) is not None:
            optional[key] = conv(cfg.get(key))
    if "profile_cache" in cfg:
        cache = cfg.get("profile_cache")
        optional["profile_cache"] = None if cache in (None, "") else str(cache)
    conv_name = plain(cfg.get("bank")).get("convergence")
    if conv_name is not None:
        from ptsim.convergence_io import load_convergence

        try:  # an unknown name or a bad fit fails here, in one line
            load_convergence(str(conv_name))
        except (LookupError, ValueError) as exc:
            raise ConfigError(f"config bank.convergence: {exc}") from None
        optional["convergence"] = str(conv_name)
    return ExecSettings(
        workers=None if cfg.get("workers") is None else int(cfg.workers),
        threads=None if cfg.get("threads") is None else int(cfg.threads),
        devices=None if not devices else tuple(str(d) for d in devices),
        profile=prof,
        mechanics=mech,
        checkpoint_every=None if ce in (None, 0) else int(ce),
        horizon_s=None if cfg.get("horizon_s") is None else float(cfg.horizon_s),
        faults=FaultPlan(**plain(cfg.get("faults"))),
        **backend_from(cfg),
        **optional,
    )


RAY_KEYS = ("address", "num_gpus", "num_cpus", "object_store_mb")


def backend_from(cfg: DictConfig) -> dict[str, Any]:
    """``executor.backend`` (local | ray) and ``executor.ray``'s options, checked; choosing
    ray without Ray installed is one line saying how to install it."""
    ex = plain(cfg.get("executor"))
    backend = str(ex.get("backend", ExecSettings().backend))
    if backend not in ("local", "ray"):
        raise ConfigError(f"config executor.backend: {backend!r}; known: local, ray")
    opts = {k: v for k, v in plain(ex.get("ray")).items() if v is not None}
    for k in opts:
        if k not in RAY_KEYS:
            raise ConfigError(f"config executor.ray.{k}: unknown key; known: {', '.join(RAY_KEYS)}")
    if backend == "ray":
        from ptsim.ray_tasks import RayMissing, require_ray

        try:
            require_ray("config executor.backend=ray")
        except RayMissing as exc:
            raise ConfigError(str(exc)) from None
    return {"backend": backend, "ray": opts}


def jobs_from(cfg: DictConfig, pool_size: int | None = None) -> list[ExecJob]:
    """The jobs the config names: a job file, a trace with its task map, or the demo."""
    tuning = tuning_from(cfg)
    jobs_file, trace, task_map = (_path(cfg.get(k)) for k in ("jobs", "trace", "task_map"))
    if jobs_file is not None and trace is not None:
        raise ConfigError("config: give jobs or trace, not both")
    if jobs_file is not None:
        jobs = load_jobs(jobs_file, tuning=tuning, pool_size=pool_size)
    elif trace is not None:
        if task_map is None:
            raise ConfigError("config: a trace needs a task_map (ptsim models/tasks -> ptexec)")
        jobs = load_trace_jobs(trace, task_map, tuning=tuning)
    else:
        jobs = default_jobs(tuning)
    return scale_times(jobs, float(cfg.get("time_scale", 1.0)), float(cfg.get("slo_scale", 1.0)))


def bank_from(cfg: DictConfig, run_dir: Path) -> ExecBankConfig:
    """The bank config; its store defaults to ``<run dir>/bank``."""
    b = plain(cfg.get("bank"))
    store = _path(b.get("store")) or (run_dir / "bank")
    try:
        return bank_config_from(b, store)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config bank: {exc}") from None


def run_dir_from(cfg: DictConfig, kind: str = "ptexec") -> Path:
    """The run directory: ``out``, or ``runs/<kind>/<date>_<time>_<pid>-<random>`` under the
    working directory (``ptsim.runfolder.default_name``: no two runs share one). Whether the
    folder may be used is decided when the run claims it (``ptsim.runfolder.claim``)."""
    out = _path(cfg.get("out"))
    if out is None:
        out = (Path.cwd() / "runs" / kind / default_name()).resolve()
    return out


@dataclasses.dataclass
class ExecPlan:
    """What a composed ``ptexec`` config asks for, built and checked before any worker starts:
    settings, policy and knobs, task catalog, jobs (fitted to the pool, with a note per change)
    and the run directory."""

    cfg: DictConfig
    settings: ExecSettings
    policy: str
    params: dict[str, Any]
    tasks: TaskCatalog
    jobs: list[ExecJob]
    notes: list[str]
    run_dir: Path


def plan_exec(cfg: DictConfig, kind: str = "ptexec") -> ExecPlan:
    """Check ``cfg`` and build the run it describes; bad input (a key, a job file, a task)
    raises a one-line error here, before anything is written or started."""
    from ptexec.jobs import fit_to_pool
    from ptexec.run import pool_size_for, resolve_settings
    from ptexec.tasks import TaskDataError

    check_exec_config(schema.resolved(cfg))
    settings = resolve_settings(settings_from(cfg))
    name, params = policy_from(cfg)
    tasks = tasks_from(cfg)
    pool_size = pool_size_for(settings)
    jobs, notes = fit_to_pool(jobs_from(cfg, pool_size), pool_size)
    source = cfg.get("jobs") or cfg.get("trace") or "the demo jobs"
    for j in jobs:  # bad task data fails before any worker starts
        try:
            tasks.get(j.task)
        except TaskDataError as exc:
            raise TaskDataError(f"{source}: job {j.job_id}, column task: {exc}") from None
    return ExecPlan(cfg, settings, name, params, tasks, jobs, notes, run_dir_from(cfg, kind))


def resolved_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def mapping_overrides(values: Mapping[str, Any]) -> list[str]:
    """Hydra overrides for CLI flags (``None`` values skipped; paths made absolute)."""
    out = []
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, Path) or k in ("jobs", "trace", "task_map", "out", "profile_dir"):
            v = str(Path(str(v)).expanduser().resolve())
        out.append(f"{k}={v}")
    return out
