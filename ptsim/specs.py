"""What a run is set up with, as typed and checked specs: the cluster (``cluster`` config group),
the Prompt Bank (``bank``) and the generated workload (``workload``, the spec itself lives in
``ptsim.trace``), each built from its config group's plain mapping.

Driver-neutral: no simpy, hydra or torch. The executor reads the ``bank`` group too (the index
knobs and :data:`SHARED_BANK_KEYS`) and ignores the simulation-only keys listed in
:data:`SIM_ONLY_BANK_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ptsim.bank_seed import read_store_history
from ptsim.convergence_io import FITTED, load_convergence
from ptsim.core.bank import PromptBankIndex
from ptsim.core.bank_sim import SimPromptBank
from ptsim.core.bank_types import BankConfig
from ptsim.core.profiles import ProfileSet, UnknownName
from ptsim.metrics import DEFAULT_PRICE_PER_GPU_HOUR
from ptsim.trace import WorkloadSpec


@dataclass(frozen=True)
class ClusterSpec:
    """The simulated cluster: ``nodes`` x ``gpus_per_node`` GPUs and the price of a GPU-hour."""

    nodes: int = 4
    gpus_per_node: int = 8
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class BankSpec:
    """How a run's Prompt Bank is built: the index knobs, the seeding and the modelled scorer
    (``conf/bank/default.yaml`` documents each)."""

    index: BankConfig = field(default_factory=BankConfig)
    seeding: str = "synthetic"
    entries: int = 360
    store: str | None = None
    model_map: Mapping[str, str] | None = None
    task_map: Mapping[str, str] | None = None
    score_sigma: float | None = None  # None: the convergence model's
    feature_dim: int = 16
    feature_noise: float = 0.1
    convergence: str = FITTED
    against_default: bool | None = None  # None: the convergence model's rule
    evals_per_job: int | None = None  # simulated accuracy readings; None: the model's

    def __post_init__(self) -> None:
        if self.seeding not in ("empty", "synthetic", "store"):
            raise UnknownName("bank seeding", self.seeding, ["empty", "store", "synthetic"])
        if self.entries < 0:
            raise ValueError("bank entries must be >= 0")
        if self.seeding == "store" and not self.store:
            raise ValueError("bank.seeding=store needs bank.store=PATH (a ptexec bank store)")

    def check(self, profiles: ProfileSet) -> None:
        """Fail now, with the key named, where ``build`` would: an unknown convergence model or
        an unreadable store (a run checks its bank before it writes anything)."""
        try:
            convergence = load_convergence(self.convergence).model
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise ValueError(f"bank.convergence = {self.convergence!r}: {exc}") from None
        if self.seeding == "store":
            assert self.store is not None
            try:
                read_store_history(
                    self.store,
                    known_models=list(profiles.models),
                    known_tasks=convergence.space.names,
                    model_map=self.model_map,
                    task_map=self.task_map,
                )
            except (ValueError, KeyError, OSError) as exc:
                raise ValueError(f"bank.store: {exc}") from None

    def build(self, profiles: ProfileSet, models: Sequence[str], seed: int) -> SimPromptBank:
        """A fresh bank (each run gets its own: online growth mutates it)."""
        setup = load_convergence(self.convergence)
        convergence = setup.model
        bank = SimPromptBank(
            PromptBankIndex(self.index),
            convergence,
            {m: profiles.eval_time(m) for m in profiles.models},
            seed,
            score_sigma=setup.score_sigma if self.score_sigma is None else self.score_sigma,
            feature_dim=self.feature_dim,
            feature_noise=self.feature_noise,
            online=self.index.online,
            against_default=setup.against_default
            if self.against_default is None
            else self.against_default,
            estimator=setup.estimator,
            evals_per_job=setup.evals_per_job if self.evals_per_job is None else self.evals_per_job,
        )
        if self.seeding == "synthetic" and self.entries:
            bank.seed_synthetic(sorted(set(models)), self.entries)
        elif self.seeding == "store":
            assert self.store is not None
            history = read_store_history(
                self.store,
                known_models=list(profiles.models),
                known_tasks=convergence.space.names,
                model_map=self.model_map,
                task_map=self.task_map,
            )
            bank.seed_history([(h.entry_id, h.model, h.source_task) for h in history])
        return bank


SHARED_BANK_KEYS = frozenset({"against_default", "convergence"})
"""Keys of the ``bank`` config group outside the index that both drivers read: whether a
stored prompt must out-score the default prompt, and the convergence model (the executor builds
its cluster state with the model's prior and estimator settings, as ptsim does)."""

SIM_ONLY_BANK_KEYS = frozenset(f.name for f in fields(BankSpec)) - {"index"} - SHARED_BANK_KEYS
"""Keys of the ``bank`` config group that only the simulation reads (seeding, entries, the
modelled scorer, name maps, the convergence model); the executor ignores them."""

BANK_INDEX_KEYS = frozenset(f.name for f in fields(BankConfig)) - {"seed"}
"""Keys of the ``bank`` config group that are the core index's knobs (both drivers read them)."""


def cluster_from(cfg: Mapping[str, Any]) -> ClusterSpec:
    """The cluster spec from the ``cluster`` config group."""
    return ClusterSpec(
        nodes=int(cfg["nodes"]),
        gpus_per_node=int(cfg["gpus_per_node"]),
        price_per_gpu_hour=float(cfg.get("price_per_gpu_hour", DEFAULT_PRICE_PER_GPU_HOUR)),
    )


def bank_from(cfg: Mapping[str, Any]) -> BankSpec:
    """The bank spec from the ``bank`` config group; unknown keys list the known ones."""
    spec_keys = SIM_ONLY_BANK_KEYS | SHARED_BANK_KEYS
    unknown = sorted(set(cfg) - BANK_INDEX_KEYS - spec_keys)
    if unknown:
        known = sorted(BANK_INDEX_KEYS | spec_keys)
        raise UnknownName("bank config key", unknown[0], known)
    index = BankConfig(**{k: v for k, v in cfg.items() if k in BANK_INDEX_KEYS})
    return BankSpec(index, **{k: v for k, v in cfg.items() if k in spec_keys})


def workload_from(cfg: Mapping[str, Any]) -> WorkloadSpec:
    """The generator's spec from the ``workload`` config (its ``trace`` key excluded)."""
    kw = {k: v for k, v in cfg.items() if k not in ("trace", "name")}
    for key in ("models", "model_weights", "tasks", "deadline_ratios", "multi_gpu_counts"):
        if key in kw and kw[key] is not None:
            kw[key] = tuple(kw[key])
    try:
        return WorkloadSpec(**kw)
    except TypeError as exc:
        known = sorted(WorkloadSpec.__dataclass_fields__)
        raise ValueError(f"workload config: {exc}; known keys: {', '.join(known)}") from None
