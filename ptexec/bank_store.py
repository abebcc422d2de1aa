"""The real Prompt Bank store: tuned prompts on disk, and a scorer that evaluates them.

Layout of a store directory (one sub-directory per stored prompt, named by its entry id)::

    <root>/<entry_id>/adapter_config.json        peft's adapter config (PROMPT_TUNING)
    <root>/<entry_id>/adapter_model.safetensors  "prompt_embeddings" (virtual tokens x hidden)
                                                 and, for seq_cls models, the head's weights
    <root>/<entry_id>/ptexec.json                what ptexec knows about the prompt (below)

so ``PeftModel.from_pretrained(base, <root>/<entry_id>)`` loads it for inference with plain
peft (for ``seq_cls``, ``base`` needs ``num_labels`` = the stored ``num_labels``).
``ptexec.json`` holds: ``format``; ``entry_id``; ``model`` (the base model's name) and
``model_key`` / ``model_identity`` (exactly which weights); ``kind``; ``source_task``,
``task_fingerprint``, ``label_names``; ``shape``; ``feature`` (the clustering vector, see
:func:`ptexec.train.prompt_feature`: the frozen model's last hidden state averaged over the
prompt positions when the prompt alone is the input) and ``feature_kind``; ``convergence``
(steps taken, steps to target or null, the target, final held-out accuracy and loss, the
training loss per step and every evaluation); ``config`` (the tuning config) and ``init``
(how the prompt was initialised, e.g. from which stored entry).

An entry is written into a temporary directory and renamed into place, so a reader never
sees half an entry. ``ptexec.json`` is read by ``ptsim.store_format.read_meta`` (torch-free,
shared with the simulator's store seeding), which checks its format.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ptexec.models import LoadedModel
from ptexec.tasks import TextTask
from ptexec.train import TuningConfig, TuningJob, TuningResult, prompt_feature
from ptsim.store_format import META_FILE, STORE_FORMAT, StoreError, entry_meta_paths, read_meta

ADAPTER_WEIGHTS = "adapter_model.safetensors"
FEATURE_KIND = "mean_last_hidden_over_prompt"


@dataclass(frozen=True)
class StoredPrompt:
    """One stored prompt as listed by :meth:`PromptStore.list_entries`."""

    entry_id: str
    path: Path
    model: str
    model_key: str
    kind: str
    source_task: str
    shape: tuple[int, ...]
    feature: npt.NDArray[np.float64] = field(compare=False)
    meta: Mapping[str, Any] = field(compare=False, default_factory=dict)

    @property
    def steps_to_target(self) -> int | None:
        v = self.meta.get("convergence", {}).get("steps_to_target")
        return None if v is None else int(v)

    def to_bank_entry(self, model: str | None = None) -> Any:
        """This prompt as a :class:`ptsim.core.bank.BankEntry` (``model`` overrides the
        model name the index files it under). Scalar facts go into its metadata."""
        from ptsim.core.bank import BankEntry

        conv = self.meta.get("convergence", {})
        md: dict[str, float | int | str | bool] = {
            "path": str(self.path),
            "kind": self.kind,
            "model_key": self.model_key,
            "num_labels": int(self.meta.get("num_labels", 0)),
            "task_fingerprint": str(self.meta.get("task_fingerprint", "")),
            "steps": int(conv.get("steps", 0)),
            "reached": bool(conv.get("reached", False)),
        }
        for key in ("steps_to_target", "final_accuracy", "final_loss", "target_accuracy"):
            v = conv.get(key)
            if v is not None:
                md[key] = v
        return BankEntry(
            entry_id=self.entry_id,
            model=model if model is not None else self.model,
            source_task=self.source_task,
            feature=self.feature,
            shape=self.shape,
            metadata=md,
        )


class PromptStore:
    """A directory of stored prompts (see the module doc for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, entry_id: str) -> Path:
        if not entry_id or "/" in entry_id or entry_id.startswith("."):
            raise StoreError(f"bad entry id {entry_id!r}")
        return self.root / entry_id

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and (self.root / entry_id / META_FILE).is_file()

    def add(
        self,
        job: TuningJob,
        *,
        entry_id: str | None = None,
        result: TuningResult | None = None,
    ) -> StoredPrompt:
        """Store ``job``'s current prompt with its model identity, task, feature and measured
        convergence (from ``result`` or the job's own history)."""
        res = result if result is not None else job.result()
        eid = entry_id if entry_id is not None else f"{job.task.name}-{job.job_id}"
        final = dir_ = self._dir(eid)
        if final.exists():
            raise StoreError(f"store {self.root}: entry {eid!r} already exists")
        prompt = job.prompt
        last = res.evals[-1] if res.evals else None
        meta: dict[str, Any] = {
            "format": STORE_FORMAT,
            "entry_id": eid,
            "model": job.model.name,
            "model_key": job.model.key,
            "model_identity": job.model.identity,
            "kind": job.model.kind,
            "source_task": job.task.name,
            "task_fingerprint": job.task.fingerprint,
            "label_names": list(job.task.label_names),
            "num_labels": job.task.num_labels,
            "shape": list(prompt.shape),
            "feature_kind": FEATURE_KIND,
            "feature": [float(x) for x in prompt_feature(job.model, prompt)],
            "convergence": {
                "steps": res.steps,
                "reached": res.reached,
                "steps_to_target": res.steps_to_target,
                "target_accuracy": job.config.target_accuracy,
                "target_loss": job.config.target_loss,
                "final_accuracy": last.accuracy if last else None,
                "final_loss": last.loss if last else None,
                "losses": [float(x) for x in res.losses],
                "evals": [[e.step, e.accuracy, e.loss] for e in res.evals],
            },
            "config": job.config.to_dict(),
            "init": dict(job.init_info),
            "created_unix": time.time(),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{eid}.", dir=self.root))
        try:
            job.save_prompt(tmp)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            os.rename(tmp, dir_)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self._record(final, meta)

    def _record(self, path: Path, meta: Mapping[str, Any]) -> StoredPrompt:
        return StoredPrompt(
            entry_id=str(meta["entry_id"]),
            path=path,
            model=str(meta["model"]),
            model_key=str(meta["model_key"]),
            kind=str(meta["kind"]),
            source_task=str(meta["source_task"]),
            shape=tuple(int(s) for s in meta["shape"]),
            feature=np.asarray(meta["feature"], dtype=np.float64),
            meta=meta,
        )

    def get(self, entry_id: str) -> StoredPrompt:
        """The entry ``entry_id`` (:class:`StoreError` if absent or malformed)."""
        d = self._dir(entry_id)
        f = d / META_FILE
        if not f.is_file():
            raise StoreError(f"store {self.root}: no entry {entry_id!r}")
        meta = read_meta(f)
        try:
            return self._record(d, meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{f}: malformed ({exc})") from exc

    def __iter__(self) -> Iterator[StoredPrompt]:
        return iter(self.list_entries())

    def list_entries(self, model: str | None = None) -> list[StoredPrompt]:
        """Every entry (of base model name or key ``model`` when given), sorted by id."""
        out = []
        for f in entry_meta_paths(self.root):
            rec = self.get(f.parent.name)
            if model is None or model in (rec.model, rec.model_key):
                out.append(rec)
        return out

    def bank_entries(self, model: str | None = None) -> list[Any]:
        """:meth:`list_entries` as :class:`ptsim.core.bank.BankEntry` records."""
        return [r.to_bank_entry() for r in self.list_entries(model)]

    def load_tensors(self, entry_id: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The stored prompt and the stored head tensors (empty for causal LMs)."""
        from safetensors.torch import load_file

        f = self._dir(entry_id) / ADAPTER_WEIGHTS
        if not f.is_file():
            raise StoreError(f"store {self.root}: entry {entry_id!r} has no {ADAPTER_WEIGHTS}")
        sd = load_file(str(f))
        prompt = sd.pop("prompt_embeddings", None)
        if prompt is None:
            raise StoreError(f"{f}: no prompt_embeddings tensor")
        return prompt, sd


class RealScorer:
    """Score assessment by a short real evaluation: the stored prompt is loaded into a probe
    job for the target task and evaluated on ``batches`` x ``batch_size`` examples of the
    target's training split (a fixed seeded sample). The score is minus the mean loss
    (``metric="neg_loss"``, default: finer-grained than accuracy on a few batches) or the
    accuracy (``metric="accuracy"``). An entry for other weights, another kind or another
    prompt width scores ``-inf``.

    For ``seq_cls`` models the stored head is used when the label counts match, otherwise the
    probe's fresh head: then the score reflects the prompt only weakly.
    Implements ptsim's ``Scorer`` and ``BatchScorer`` protocols; ``assessments`` and
    ``elapsed_s`` count the work done.
    """

    def __init__(
        self,
        store: PromptStore,
        model: LoadedModel,
        tasks: Mapping[str, TextTask],
        *,
        config: TuningConfig | None = None,
        batches: int = 2,
        batch_size: int = 32,
        metric: str = "neg_loss",
        seed: int = 0,
    ) -> None:
        if metric not in ("neg_loss", "accuracy"):
            raise ValueError(f"metric {metric!r}: expected neg_loss or accuracy")
        if batches < 1 or batch_size < 1:
            raise ValueError("batches and batch_size must be >= 1")
        self.store = store
        self.model = model
        self.tasks = tasks
        self.config = config if config is not None else TuningConfig()
        self.batches = batches
        self.batch_size = batch_size
        self.metric = metric
        self.seed = seed
        self.assessments = 0
        self.elapsed_s = 0.0
        self._probes: dict[tuple[str, int], tuple[TuningJob, dict[str, torch.Tensor]]] = {}

    def _probe(self, task_name: str, n_virtual: int) -> tuple[TuningJob, dict[str, torch.Tensor]]:
        """The probe job for a target task and prompt length, with its fresh head."""
        key = (task_name, n_virtual)
        probe = self._probes.get(key)
        if probe is None:
            task = self.tasks.get(task_name)
            if task is None:
                raise KeyError(f"scorer: no data for target task {task_name!r}")
            cfg = TuningConfig(**{**self.config.to_dict(), "num_virtual_tokens": n_virtual})
            job = TuningJob(self.model, task, cfg, job_id=f"probe-{task_name}")
            probe = self._probes[key] = (job, job.head_state())
        return probe

    def sample_indices(self, n_train: int) -> list[int]:
        """The training examples every assessment for a target task evaluates on: a fixed
        seeded sample of ``batches x batch_size`` of its ``n_train`` examples."""
        n = min(n_train, self.batches * self.batch_size)
        perm = np.random.default_rng([self.seed, 7919]).permutation(n_train)
        return [int(i) for i in perm[:n]]

    def _sample(self, job: TuningJob) -> list[int]:
        return self.sample_indices(job.n_train)

    def score(self, entry: Any, target_task: str) -> float:
        """One assessment of ``entry`` (a ``BankEntry`` or :class:`StoredPrompt`)."""
        t0 = time.perf_counter()
        self.assessments += 1
        try:
            rec = self.store.get(entry.entry_id)
            if rec.model_key != self.model.key or len(rec.shape) != 2:
                return -math.inf
            if rec.shape[1] != self.model.hidden_size:
                return -math.inf
            job, fresh_head = self._probe(target_task, rec.shape[0])
            prompt, stored_head = self.store.load_tensors(rec.entry_id)
            head = dict(fresh_head)
            head.update(
                {k: v for k, v in stored_head.items() if k in head and head[k].shape == v.shape}
            )
            job.load_prompt(prompt, head)
            ev = job.evaluate_indices("train", self._sample(job))
            return ev.accuracy if self.metric == "accuracy" else -ev.loss
        finally:
            self.elapsed_s += time.perf_counter() - t0

    def score_many(self, entries: Sequence[Any], target_task: str) -> npt.NDArray[np.float64]:
        """:meth:`score` of each entry, in order."""
        return np.array([self.score(e, target_task) for e in entries], dtype=np.float64)
