"""One source per config default: each config group's YAML lists the same keys as the
dataclass that reads it, with the same default values (a knob changed in one place only would
make the command line and the Python API run different experiments)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.bank_types import BankConfig
from ptsim.core.policy import POLICIES
from ptsim.core.profiles import Mechanics
from ptsim.paths import conf_root
from ptsim.specs import (
    BANK_INDEX_KEYS,
    SHARED_BANK_KEYS,
    SIM_ONLY_BANK_KEYS,
    BankSpec,
    ClusterSpec,
)
from ptsim.trace import WorkloadSpec

CONF = conf_root()


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def _defaults(cls: type) -> dict[str, Any]:
    """Each field's default (``MISSING`` for a required field)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: YAML lists are the dataclasses' tuples, ints may be floats."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _check(where: str, yaml_values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Mismatches between a YAML mapping and a dataclass's defaults, one line each."""
    bad = [f"{where}: key {k!r} is not a field" for k in sorted(set(yaml_values) - set(defaults))]
    bad += [f"{where}: field {k!r} has no key" for k in sorted(set(defaults) - set(yaml_values))]
    for k in sorted(set(yaml_values) & set(defaults)):
        if not _same(yaml_values[k], defaults[k]):
            bad.append(f"{where}: {k} = {yaml_values[k]!r}, dataclass default {defaults[k]!r}")
    return bad


@pytest.mark.parametrize("path", sorted((CONF / "scheduler").glob("*.yaml")), ids=lambda p: p.stem)
def test_scheduler_configs_match_their_config_dataclass(path: Path) -> None:
    values = _yaml(path)
    name = values.pop("name")
    assert name == path.stem and name in POLICIES
    assert _check(str(path), values, _defaults(POLICIES.config_class(name))) == []


def test_every_registered_policy_has_a_scheduler_config() -> None:
    assert sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml")) == sorted(POLICIES.names())


def test_bank_config_matches_the_index_and_bank_spec_defaults() -> None:
    index = {k: v for k, v in _defaults(BankConfig).items() if k in BANK_INDEX_KEYS}
    spec_keys = SIM_ONLY_BANK_KEYS | SHARED_BANK_KEYS
    spec = {k: v for k, v in _defaults(BankSpec).items() if k in spec_keys}
    assert _check("bank/default.yaml", _yaml(CONF / "bank" / "default.yaml"), index | spec) == []


def test_cluster_configs_have_the_spec_keys_and_the_default_is_the_spec_default() -> None:
    spec = _defaults(ClusterSpec)
    for path in sorted((CONF / "cluster").glob("*.yaml")):
        assert sorted(_yaml(path)) == sorted(spec), path
    chosen = _chosen("cluster")
    assert _check(f"cluster/{chosen}.yaml", _yaml(CONF / "cluster" / f"{chosen}.yaml"), spec) == []


@pytest.mark.parametrize("name", ["default", "short"])
def test_workload_configs_match_the_workload_spec(name: str) -> None:
    values = _yaml(CONF / "workload" / f"{name}.yaml")
    assert values.pop("trace") is None  # replay's key, refused on a generated workload
    assert values.pop("name") == name
    spec = WorkloadSpec() if name == "default" else WorkloadSpec.short()
    want = {k: v for k, v in dataclasses.asdict(spec).items() if k not in spec.unused_fields()}
    assert _check(f"workload/{name}.yaml", values, want) == []


def test_executor_config_matches_its_dataclasses() -> None:
    pytest.importorskip("torch")
    from ptexec.jobs import TaskCatalog
    from ptexec.prompt_bank import ExecBankConfig
    from ptexec.run import ExecSettings
    from ptexec.tasks import TaskFamily
    from ptexec.train import TuningConfig

    run = _yaml(CONF / "executor" / "run.yaml")
    bad: list[str] = []
    settings = _defaults(ExecSettings)
    settings["profile_dir"] = settings.pop("profile")  # the config names the directory
    del settings["mechanics"]  # a mapping of overrides: checked below
    del settings["faults"]  # a group of its own: checked below
    # the convergence model: the bank group's key, shared with ptsim (conf/bank/default.yaml)
    assert _yaml(CONF / "bank" / "default.yaml")["convergence"] == settings.pop("convergence")
    # executor.backend and executor.ray (Ray's options, all null = unset) are nested
    from ptexec.config import RAY_KEYS

    ex = run["executor"]
    assert ex["backend"] == settings.pop("backend")
    assert settings.pop("ray") == {} and sorted(ex["ray"]) == sorted(RAY_KEYS)
    assert all(v is None for v in ex["ray"].values())
    bad += _check("executor/run.yaml", {k: run[k] for k in settings if k in run}, settings)
    bad += [f"executor/run.yaml: no key {k!r}" for k in sorted(set(settings) - set(run))]
    # mechanics: every Mechanics field, null (= the profile's value or Mechanics' default)
    assert sorted(run["mechanics"]) == sorted(_defaults(Mechanics))
    assert all(v is None for v in run["mechanics"].values())
    # tuning: the defaults of every job (a subset of TuningConfig; a job-file column overrides)
    tuning = _defaults(TuningConfig)
    bad += _check("executor tuning", run["tuning"], {k: tuning[k] for k in run["tuning"]})
    bad += [f"executor tuning: {k!r} is not a field" for k in set(run["tuning"]) - set(tuning)]
    # tasks: the catalog's sizes and the family's seed
    catalog = _defaults(TaskCatalog)
    tasks = {k: catalog[k] for k in ("examples", "heldout_fraction", "max_examples")}
    tasks["family_seed"] = _defaults(TaskFamily)["seed"]
    bad += _check("executor tasks", run["tasks"], tasks)
    # bank: the executor's own keys (the index knobs come from the bank group)
    bank = _defaults(ExecBankConfig)
    own = {k: v for k, v in bank.items() if k not in ("index", "store")}
    values = dict(run["bank"])
    assert values.pop("store") is None  # null = <run dir>/bank
    bad += _check("executor bank", values, own)
    from ptexec.faults import FaultPlan

    bad += _check("executor faults", run["faults"], _defaults(FaultPlan))
    assert bad == []


def _chosen(group: str) -> str:
    """The option of ``group`` that ``conf/config.yaml`` chooses by default."""
    for item in _yaml(CONF / "config.yaml")["defaults"]:
        if isinstance(item, dict) and group in item:
            return str(item[group])
    raise AssertionError(f"config.yaml chooses no {group}")
