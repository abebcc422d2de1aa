"""The Prompt Bank as the executor runs it: the core's two-layer index over a real prompt store,
with real score assessments.

:class:`ExecPromptBank` is the ``InitChooser`` the executor hands its policies
(``PolicyContext.bank``). ``choose(spec)`` looks the new job up in the core's
:class:`~ptsim.core.bank.PromptBankIndex` (same layouts and knobs as ptsim); every assessment is
a short real evaluation of a stored prompt on a fixed sample of the new task's training split
(:class:`~ptexec.bank_store.RealScorer`, run in the driver process). The wall time of the whole
lookup is measured and becomes ``InitChoice.lookup_s``.

Two guards keep a bad prompt out: an entry whose prompt cannot be loaded into the job (another
base model or kind, another prompt length) scores ``-inf`` and is never chosen; and, with
``against_default`` (default on), the job's default initial prompt is scored on the same sample
(one more assessment) and a stored prompt is taken only if it scores better. A prompt from an
unrelated task is often worse than the default (docs/ptexec.md), so this matters.

Finished jobs that reached their target add their prompt (:meth:`ExecPromptBank.add`): the bank
grows online, and the index re-clusters as ptsim's does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ptexec.bank_store import PromptStore, RealScorer, StoredPrompt, StoreError
from ptexec.jobs import ExecJob, TaskCatalog, model_id
from ptexec.models import LoadedModel, ModelNotFound, load_model
from ptexec.train import TuningJob
from ptsim.core.bank import BankConfig, BankEntry, PromptBankIndex
from ptsim.core.types import InitChoice, JobSpec
from ptsim.specs import BANK_INDEX_KEYS, SIM_ONLY_BANK_KEYS


@dataclass(frozen=True)
class ExecBankConfig:
    """Knobs of the executor's bank.

    - ``index``: the core index's knobs (layout, probe, k...), as in ptsim's ``bank`` group.
    - ``store``: the prompt store directory (it persists across runs when it is outside the
      run directory).
    - ``batches`` x ``batch_size``: training examples one assessment evaluates.
    - ``metric``: ``neg_loss`` (default) or ``accuracy``.
    - ``against_default``: take a stored prompt only if it scores better than the job's
      default initial prompt on the same sample (one more assessment).
    - ``add_unreached``: also store prompts of jobs that spent their budget without reaching
      their target.
    """

    store: Path
    index: BankConfig = field(default_factory=BankConfig)
    batches: int = 2
    batch_size: int = 32
    metric: str = "neg_loss"
    against_default: bool = True
    add_unreached: bool = False


@dataclass(frozen=True)
class LookupRecord:
    """What one lookup did (written to the run's ``bank_lookups.csv``)."""

    job_id: str
    model: str
    task: str
    layout: str
    entries: int
    assessments: int
    chosen: str | None
    best_score: float | None
    default_score: float | None
    lookup_s: float


class _FitScorer:
    """A scorer that gives ``-inf`` to entries a job cannot load (other prompt length),
    without spending an assessment on them, and delegates the rest."""

    def __init__(self, inner: RealScorer, n_virtual: int) -> None:
        self.inner = inner
        self.n_virtual = n_virtual
        self.assessments = 0

    def _fits(self, entry: BankEntry) -> bool:
        return len(entry.shape) == 2 and entry.shape[0] == self.n_virtual

    def score(self, entry: BankEntry, target_task: str) -> float:
        if not self._fits(entry):
            return -math.inf
        self.assessments += 1
        return self.inner.score(entry, target_task)

    def score_many(self, entries: Sequence[BankEntry], target_task: str) -> npt.NDArray[np.float64]:
        return np.array([self.score(e, target_task) for e in entries], dtype=np.float64)


class ExecPromptBank:
    """The real Prompt Bank of one executor run (see the module doc).

    ``jobs`` maps job ids to the executor's jobs (their model, kind, task and tuning config);
    ``tasks`` resolves task references. Models are loaded into the driver process on first use
    (not timed as lookup); ``model_loads`` records how long each took.
    """

    def __init__(
        self,
        config: ExecBankConfig,
        jobs: Mapping[str, ExecJob],
        tasks: TaskCatalog,
        *,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.tasks = tasks
        self.store = PromptStore(config.store)
        self.index = PromptBankIndex(replace(config.index, seed=seed))
        self.device = device
        self._rng = np.random.default_rng([seed, 11])
        self._models: dict[str, LoadedModel] = {}
        self._scorers: dict[tuple[str, str, int], RealScorer] = {}
        self._default_scores: dict[tuple[str, str, int, int], float] = {}
        self.model_loads: dict[str, float] = {}
        self.lookups: list[LookupRecord] = []
        self.skipped: list[str] = []
        for rec in self.store.list_entries():
            try:
                self.index.add(rec.to_bank_entry(model=model_id(rec.model, rec.kind)))
            except (ModelNotFound, ValueError) as exc:  # base model not here, or odd feature
                self.skipped.append(f"{rec.entry_id}: {exc}")

    def __len__(self) -> int:
        return len(self.index)

    # -- models and scorers ------------------------------------------------------------------

    def _model(self, job: ExecJob) -> LoadedModel:
        mid = job.spec.model
        m = self._models.get(mid)
        if m is None:
            t0 = time.perf_counter()
            m = load_model(job.model, kind=job.kind, device=self.device)
            self.model_loads[mid] = time.perf_counter() - t0
            self._models[mid] = m
        return m

    def _scorer(self, job: ExecJob, model: LoadedModel) -> RealScorer:
        cfg = job.tuning
        key = (job.spec.model, cfg.template or "", cfg.max_length)
        s = self._scorers.get(key)
        if s is None:
            s = self._scorers[key] = RealScorer(
                self.store,
                model,
                self.tasks.loaded,
                config=cfg,
                batches=self.config.batches,
                batch_size=self.config.batch_size,
                metric=self.config.metric,
            )
        return s

    def _default_score(self, job: ExecJob, model: LoadedModel, scorer: RealScorer) -> float:
        """The job's default initial prompt scored like a stored one (cached per task)."""
        cfg = job.tuning
        key = (job.spec.model, job.task, cfg.num_virtual_tokens, cfg.seed)
        hit = self._default_scores.get(key)
        if hit is None:
            task = self.tasks.get(job.task)
            probe = TuningJob(model, task, cfg, job_id=f"default-{job.job_id}")
            with torch.no_grad():
                ev = probe.evaluate_indices("train", scorer.sample_indices(probe.n_train))
            hit = ev.accuracy if self.config.metric == "accuracy" else -ev.loss
            self._default_scores[key] = hit
        return hit

    # -- InitChooser ---------------------------------------------------------------------------

    def choose(self, spec: JobSpec) -> InitChoice:
        """The initial prompt for a new job (a real lookup, timed)."""
        job = self.jobs[spec.job_id]
        layout = self.index.config.layout
        n_entries = self.index.size(spec.model)
        if layout == "none" or n_entries == 0:
            self.lookups.append(
                LookupRecord(
                    spec.job_id, spec.model, spec.task, layout, n_entries, 0, None, None, None, 0.0
                )
            )
            return InitChoice(layout=layout)
        model = self._model(job)
        self.tasks.get(job.task)
        scorer = self._scorer(job, model)
        t0 = time.perf_counter()
        fit = _FitScorer(scorer, job.tuning.num_virtual_tokens)
        res = self.index.lookup(spec.model, spec.task, fit, self._rng)
        entry = res.entry
        best = res.best_score
        if best is None or not math.isfinite(best):
            entry = None
        assessments = fit.assessments
        default = None
        if entry is not None and self.config.against_default:
            default = self._default_score(job, model, scorer)
            assessments += 1
            if best is not None and default >= best:
                entry = None
        lookup_s = time.perf_counter() - t0 if assessments else 0.0
        self.lookups.append(
            LookupRecord(
                spec.job_id,
                spec.model,
                spec.task,
                res.layout,
                n_entries,
                assessments,
                None if entry is None else entry.entry_id,
                None if best is None or not math.isfinite(best) else float(best),
                default,
                lookup_s,
            )
        )
        return InitChoice(
            source=None if entry is None else entry.entry_id,
            source_task=None if entry is None else entry.source_task,
            layout=res.layout,
            assessments=assessments,
            lookup_s=lookup_s,
        )

    # -- contents ------------------------------------------------------------------------------

    def tensors(self, entry_id: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The stored prompt and head tensors of an entry."""
        return self.store.load_tensors(entry_id)

    def entry_id_for(self, job: ExecJob) -> str:
        """A fresh store entry id for a finished job's prompt."""
        base = f"{job.task.split(':')[-1]}-{job.job_id}"
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base).strip(".") or "p"
        eid, n = base, 1
        while eid in self.store:
            n += 1
            eid = f"{base}-{n}"
        return eid

    def add(self, stored: StoredPrompt | Any, job: ExecJob) -> None:
        """Add a prompt a worker stored for ``job`` to the index (online growth)."""
        try:
            entry = stored.to_bank_entry(model=job.spec.model)
            self.index.add(entry)
        except (StoreError, ValueError) as exc:
            self.skipped.append(f"{getattr(stored, 'entry_id', '?')}: {exc}")

    def should_store(self, reached: bool) -> bool:
        return reached or self.config.add_unreached


def bank_config_from(
    cfg: Mapping[str, Any], store: Path, on_unknown: Callable[[str], None] | None = None
) -> ExecBankConfig:
    """The executor's bank config from the ``bank`` config node: the core index knobs (as in
    ptsim's ``conf/bank``), the executor's own (``batches``, ``batch_size``, ``metric``,
    ``against_default``, ``add_unreached``); ptsim's simulation-only keys
    (``ptsim.specs.SIM_ONLY_BANK_KEYS``: seeding, entries, score_sigma, name maps...) are
    ignored; ``store`` is resolved by the caller. Unknown keys raise ``ValueError`` listing the
    known ones."""
    own = {"batches", "batch_size", "metric", "against_default", "add_unreached"}
    unknown = sorted(set(cfg) - BANK_INDEX_KEYS - own - SIM_ONLY_BANK_KEYS)
    if unknown:
        known = ", ".join(sorted(BANK_INDEX_KEYS | own | {"store"}))
        raise ValueError(f"unknown bank config key {unknown[0]!r}; known: {known}")
    index = BankConfig(**{k: v for k, v in cfg.items() if k in BANK_INDEX_KEYS})
    kw: dict[str, Any] = {k: v for k, v in cfg.items() if k in own}
    if kw.get("metric", "neg_loss") not in ("neg_loss", "accuracy"):
        raise ValueError(f"bank.metric {kw['metric']!r}: expected neg_loss or accuracy")
    return ExecBankConfig(store=store, index=index, **kw)


def prompt_arrays(
    prompt: torch.Tensor, head: Mapping[str, torch.Tensor]
) -> tuple[npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]] | None]:
    """A stored prompt and head as the float32 arrays a ``JobSetup`` carries."""
    p = prompt.detach().to("cpu", torch.float32).numpy().copy()
    h = {k: v.detach().to("cpu", torch.float32).numpy().copy() for k, v in head.items()}
    return p, (h or None)


__all__ = [
    "ExecBankConfig",
    "ExecPromptBank",
    "LookupRecord",
    "bank_config_from",
    "prompt_arrays",
]
