"""The Prompt Bank as the executor runs it: the core's index over a real prompt store, with
real score assessments run on the job's own worker, off the driver's critical path.

:class:`ExecPromptBank` is the ``InitChooser`` the executor hands its policies
(``PolicyContext.bank``). A lookup has two halves, the one model of it both drivers share
(ptsim charges ``InitChoice.lookup_s`` on the job's first GPU as part of its first start's
pause; so does the executor):

1. ``choose(spec)``, called by the policy inside ``decide``, returns at once: it fixes what the
   lookup will see (the entries stored so far, in the logical order of the run, so the result
   does not depend on how fast anything ran) and returns the *planned* choice: the layout, the
   expected assessments (:func:`expected_assessments`) and their expected seconds (x the
   profile's ``eval_s``). No assessment runs here and no model is loaded in the driver.
2. When the job first starts, its life cycle runs :meth:`ExecPromptBank.lookup` on its first
   worker (the model is already loaded there) before attaching: an *exchange* of
   :class:`~ptexec.workers.AssessRequest` rounds (the default prompt and the first layer's
   candidates, then the members of the best clusters), while every other job goes on. The
   measured seconds are charged to the job (``bank_lookup_s``, inside ``exec_pause_s``) and the
   realised choice replaces the planned one in the cluster state
   (``ClusterState.init_realised``).

The index decides which entries to score (``PromptBankIndex.lookup``, same layouts and knobs
as ptsim); the executor replays it with the scores collected so far and sends the entries it
still needs to the worker, so the core's lookup is used unchanged.

Rules: an entry whose prompt cannot be loaded into the job (another prompt length) is never
scored or chosen; the job's default initial prompt is scored on the same sample (one more
assessment), and a stored prompt is used only when its score beats the default's
(``against_default``, on by default). Only the prompt is transferred; ``transfer_head``
(off by default) also transfers a ``seq_cls`` head when the label counts match, and every
lookup record and job row says which (``bank_transfer``).

Finished jobs that reached their target add their prompt (:meth:`ExecPromptBank.add`): the bank
grows online, and the index re-clusters as ptsim's does.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ptexec.bank_store import PromptStore, StoredPrompt, StoreError, short_id, task_short_name
from ptexec.jobs import ExecJob, TaskCatalog, model_id
from ptexec.models import ModelNotFound
from ptsim.core.bank import BankEntry, PromptBankIndex, prepare_clustering
from ptsim.core.bank_types import BankConfig
from ptsim.core.types import InitChoice, JobSpec

if TYPE_CHECKING:
    import torch

    from ptexec.replicas import Reply, WorkerHandle

TRANSFER_PROMPT = "prompt"
TRANSFER_PROMPT_HEAD = "prompt+head"


@dataclass(frozen=True)
class ExecBankConfig:
    """Knobs of the executor's bank.

    - ``index``: the core index's knobs (layout, probe, k...), as in ptsim's ``bank`` group.
    - ``store``: the prompt store directory (it persists across runs when it is outside the
      run directory).
    - ``batches`` x ``batch_size``: training examples one assessment evaluates.
    - ``metric``: ``neg_loss`` (default) or ``accuracy``.
    - ``against_default``: use a stored prompt only if it scores better than the job's
      default initial prompt on the same sample (one more assessment).
    - ``transfer_head``: also transfer a stored ``seq_cls`` head (off: the prompt only, as
      the paper's bank; the job's head starts fresh, as without the bank).
    - ``add_unreached``: also store prompts of jobs that spent their budget without reaching
      their target.
    """

    store: Path
    index: BankConfig = field(default_factory=BankConfig)
    batches: int = 2
    batch_size: int = 32
    metric: str = "neg_loss"
    against_default: bool = True
    transfer_head: bool = False
    add_unreached: bool = False

    @property
    def transfer(self) -> str:
        """What a chosen entry transfers: ``prompt`` or ``prompt+head``."""
        return TRANSFER_PROMPT_HEAD if self.transfer_head else TRANSFER_PROMPT


@dataclass(frozen=True)
class LookupRecord:
    """What one lookup did (written to the run's ``bank_lookups.csv``): the entries it could
    see, the planned and the real assessments and seconds, the chosen entry (empty: the
    default prompt), the best and the default scores, what was transferred, on which worker
    it ran and when (driver clock)."""

    job_id: str
    model: str
    task: str
    layout: str
    entries: int
    planned_assessments: int
    planned_s: float
    assessments: int = 0
    chosen: str | None = None
    best_score: float | None = None
    default_score: float | None = None
    lookup_s: float = 0.0
    worker_s: float = 0.0
    transfer: str = TRANSFER_PROMPT
    worker: int | None = None
    start_s: float | None = None


def expected_assessments(n: int, config: BankConfig, layout: str | None = None) -> int:
    """Assessments a lookup in a bank of ``n`` entries is expected to make (without the
    default prompt's): ``flat`` n, ``random`` 1, ``two_layer`` K + c (n/K - 1) capped by
    ``max_assessments``, ``three_layer`` its top medoids + K/top + c (n/K - 1), ``none`` 0."""
    lay = layout if layout is not None else config.layout
    if n <= 0 or lay == "none":
        return 0
    if lay == "flat":
        return n
    if lay == "random":
        return 1
    c = config.probe
    k = config.clusters_for(n)
    members = min(n - k, math.ceil(c * (n / k - 1)))
    if lay == "three_layer":
        top = config.groups_for(k)
        first = top + min(k - top, math.ceil(c * (k / top - 1)))
    else:
        first = k
    return min(first + members, max(first, config.assessment_cap(n)))


class _NeedScores(Exception):
    """Raised inside a replayed lookup: these entries have no score yet."""

    def __init__(self, entries: list[BankEntry]) -> None:
        super().__init__(f"{len(entries)} entries to score")
        self.entries = entries


class _ReplayScorer:
    """The scorer of a replayed lookup: the scores collected so far; an entry a job cannot
    load (another prompt length) scores ``-inf`` without an assessment; any other entry not
    scored yet stops the replay (:class:`_NeedScores`)."""

    def __init__(self, known: Mapping[str, float], n_virtual: int) -> None:
        self.known = known
        self.n_virtual = n_virtual

    def _fits(self, entry: BankEntry) -> bool:
        return len(entry.shape) == 2 and entry.shape[0] == self.n_virtual

    def score(self, entry: BankEntry, target_task: str) -> float:
        return float(self.score_many([entry], target_task)[0])

    def score_many(self, entries: Sequence[BankEntry], target_task: str) -> npt.NDArray[np.float64]:
        missing = [e for e in entries if self._fits(e) and e.entry_id not in self.known]
        if missing:
            raise _NeedScores(missing)
        return np.array(
            [self.known[e.entry_id] if self._fits(e) else -math.inf for e in entries],
            dtype=np.float64,
        )


@dataclass
class _Pending:
    """A lookup planned by ``choose`` and not run yet: what it may see."""

    spec: JobSpec
    version: int
    record: LookupRecord
    seed: int


class ExecPromptBank:
    """The real Prompt Bank of one executor run (see the module doc).

    ``jobs`` maps job ids to the executor's jobs (their model, kind, task and tuning config);
    ``tasks`` resolves task references; ``eval_s`` is the expected seconds of one assessment
    per scheduling model id (the profile's; set by the executor with :meth:`plan_with`).
    """

    def __init__(
        self,
        config: ExecBankConfig,
        jobs: Mapping[str, ExecJob],
        tasks: TaskCatalog,
        *,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.tasks = tasks
        self.store = PromptStore(config.store)
        self.index = PromptBankIndex(replace(config.index, seed=seed))
        self.seed = seed
        self.eval_s: dict[str, float] = {}
        self.lookups: list[LookupRecord] = []
        self.skipped: list[str] = []
        self._pending: dict[str, _Pending] = {}
        self._version = 0  # additions so far: what a lookup may see
        self._snapshots: dict[int, PromptBankIndex] = {}
        if self.index.config.layout in ("two_layer", "three_layer"):
            # what clustering loads, before the run's clock starts, not inside the first
            # decision that clusters
            prepare_clustering()
        for rec in self.store.list_entries():
            try:
                self.index.add(rec.to_bank_entry(model=model_id(rec.model, rec.kind)))
            except (ModelNotFound, ValueError) as exc:  # base model not here, or odd feature
                self.skipped.append(f"{rec.entry_id}: {exc}")

    def __len__(self) -> int:
        return len(self.index)

    def plan_with(self, eval_s: Mapping[str, float]) -> None:
        """Expected seconds of one score assessment per model id (the profile's ``eval_s``)."""
        self.eval_s = dict(eval_s)

    # -- InitChooser: the planned half ---------------------------------------------------------

    def choose(self, spec: JobSpec) -> InitChoice:
        """The planned initial-prompt choice for a new job; the lookup itself runs at the
        job's first start (:meth:`lookup`). Never blocks on an assessment."""
        job = self.jobs[spec.job_id]
        layout = self.index.config.layout
        n = self.index.size(spec.model)
        fits = sum(
            1
            for e in self.index.entries(spec.model)
            if len(e.shape) == 2 and e.shape[0] == job.tuning.num_virtual_tokens
        )
        planned = expected_assessments(fits, self.index.config, layout)
        if planned and self.config.against_default:
            planned += 1
        eval_s = self.eval_s.get(spec.model, 0.0)
        rec = LookupRecord(
            spec.job_id,
            spec.model,
            spec.task,
            layout,
            n,
            planned,
            planned * eval_s,
            transfer=self.config.transfer,
        )
        if not planned:
            self.lookups.append(rec)
            return InitChoice(layout=layout)
        if layout in ("two_layer", "three_layer"):
            self.index.clusters(spec.model)  # cluster now, in the run's logical order
        seed = zlib.crc32(spec.job_id.encode())
        self._pending[spec.job_id] = _Pending(spec, self._version, rec, seed)
        return InitChoice(layout=layout, assessments=planned, lookup_s=planned * eval_s)

    def pending(self, job_id: str) -> bool:
        """Whether ``job_id`` has a planned lookup that has not run yet."""
        return job_id in self._pending

    # -- the lookup, on the job's worker -------------------------------------------------------

    def lookup(
        self, job_id: str, worker: WorkerHandle, now: Callable[[], float]
    ) -> Generator[list[Reply], list[Any], InitChoice]:
        """Run the planned lookup of ``job_id`` on ``worker`` (an exchange: it yields sent
        :class:`~ptexec.workers.AssessRequest` rounds and receives their replies) and return
        the realised choice, its ``lookup_s`` the measured seconds (``now`` is the driver's
        clock)."""
        from ptexec.workers import AssessReply, AssessRequest

        pend = self._pending[job_id]
        job = self.jobs[job_id]
        spec = pend.spec
        index = self._index_at(pend.version)
        t0 = now()
        known: dict[str, float] = {}
        default: float | None = None
        want_default = self.config.against_default
        worker_s = 0.0
        task = self.tasks.get(job.task)
        while True:
            rng = np.random.default_rng([self.seed, 11, pend.seed])
            try:
                res = index.lookup(
                    spec.model, spec.task, _ReplayScorer(known, job.tuning.num_virtual_tokens), rng
                )
                break
            except _NeedScores as need:
                ids = tuple(e.entry_id for e in need.entries)
            req = AssessRequest(
                job_id,
                job.model,
                job.kind,
                task,
                job.tuning,
                str(self.store.root),
                ids,
                default=want_default and default is None,
                batches=self.config.batches,
                batch_size=self.config.batch_size,
                metric=self.config.metric,
                transfer_head=self.config.transfer_head,
            )
            (reply,) = yield [worker.request("assess", req)]
            assert isinstance(reply, AssessReply)
            known.update(zip(ids, reply.scores, strict=True))
            if reply.default_score is not None:
                default = reply.default_score
            worker_s += reply.assess_s
        entry = res.entry
        best = res.best_score
        if best is None or not math.isfinite(best):
            entry, best = None, None
        if entry is not None and best is not None and default is not None and default >= best:
            entry = None  # the default prompt is at least as good: use it
        lookup_s = now() - t0
        assessments = len(known) + (default is not None)
        del self._pending[job_id]
        self._drop_snapshots()
        self.lookups.append(
            replace(
                pend.record,
                assessments=assessments,
                chosen=None if entry is None else entry.entry_id,
                best_score=best,
                default_score=default,
                lookup_s=lookup_s,
                worker_s=worker_s,
                worker=worker.wid,
                start_s=t0,
            )
        )
        return InitChoice(
            source=None if entry is None else entry.entry_id,
            source_task=None if entry is None else entry.source_task,
            layout=res.layout,
            assessments=assessments,
            lookup_s=lookup_s,
        )

    def cancel(self, job_id: str) -> None:
        """Forget the planned lookup of a job that will never start (rejected)."""
        pend = self._pending.pop(job_id, None)
        if pend is not None:
            self.lookups.append(pend.record)
            self._drop_snapshots()

    def _index_at(self, version: int) -> PromptBankIndex:
        return self.index if version == self._version else self._snapshots[version]

    def _drop_snapshots(self) -> None:
        used = {p.version for p in self._pending.values()}
        for v in [v for v in self._snapshots if v not in used]:
            del self._snapshots[v]

    # -- contents ------------------------------------------------------------------------------

    def tensors(self, entry_id: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The stored prompt and, with ``transfer_head``, the stored head tensors of an entry
        (the head is empty otherwise: the job's head starts fresh)."""
        prompt, head = self.store.load_tensors(entry_id)
        return prompt, (head if self.config.transfer_head else {})

    def entry_id_for(self, job: ExecJob) -> str:
        """A fresh, short store entry id for a finished job's prompt:
        ``<task's short name>-<job id>`` (a suffix when taken)."""
        base = short_id(f"{task_short_name(job.task)}-{job.job_id}")
        eid, n = base, 1
        while eid in self.store or eid in self.index:
            n += 1
            eid = f"{base}-{n}"
        return eid

    def add(self, stored: StoredPrompt | Any, job: ExecJob) -> None:
        """Add a prompt a worker stored for ``job`` to the index (online growth). Lookups
        planned before it keep seeing the bank as it was when they were planned."""
        if any(p.version == self._version for p in self._pending.values()):
            self._snapshots[self._version] = self.index.copy()
        try:
            entry = stored.to_bank_entry(model=job.spec.model)
            self.index.add(entry)
        except (StoreError, ValueError) as exc:
            self.skipped.append(f"{getattr(stored, 'entry_id', '?')}: {exc}")
            return
        self._version += 1

    def should_store(self, reached: bool) -> bool:
        return reached or self.config.add_unreached


def bank_config_from(
    cfg: Mapping[str, Any], store: Path, on_unknown: Callable[[str], None] | None = None
) -> ExecBankConfig:
    """The executor's bank config from the ``bank`` config node: the core index knobs (as in
    ptsim's ``conf/bank``), the executor's own (``batches``, ``batch_size``, ``metric``,
    ``against_default``, ``transfer_head``, ``add_unreached``); ptsim's simulation-only keys
    (``ptsim.specs.SIM_ONLY_BANK_KEYS``: seeding, entries, score_sigma, name maps...) are
    ignored, and so is ``convergence`` (the run's settings read it: ``ExecSettings``); ``store``
    is resolved by the caller. Unknown keys raise ``ValueError`` listing the
    known ones."""
    from ptsim.specs import (  # pandas: not before needed
        BANK_INDEX_KEYS,
        SHARED_BANK_KEYS,
        SIM_ONLY_BANK_KEYS,
    )

    own = {"batches", "batch_size", "metric", "against_default", "transfer_head", "add_unreached"}
    unknown = sorted(set(cfg) - BANK_INDEX_KEYS - own - SIM_ONLY_BANK_KEYS - SHARED_BANK_KEYS)
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
    p = prompt.detach().cpu().float().numpy().copy()
    h = {k: v.detach().cpu().float().numpy().copy() for k, v in head.items()}
    return p, (h or None)


__all__ = [
    "TRANSFER_PROMPT",
    "TRANSFER_PROMPT_HEAD",
    "ExecBankConfig",
    "ExecPromptBank",
    "LookupRecord",
    "bank_config_from",
    "expected_assessments",
    "prompt_arrays",
]
