"""Prompt tuning of one job with peft, in a form that splits across workers.

A :class:`TuningJob` owns a peft prompt-tuning model built over a frozen base
(:class:`~ptexec.models.LoadedModel`), its optimizer, its step count and its history. One
training step is split in two so that several workers can share it (data parallel):

1. every worker computes the gradient of the trainable parameters on its shard of the step's
   global batch (:meth:`TuningJob.grad_step_shard`; the batch of step ``k`` is a deterministic
   function of the job's seed and ``k``, so workers need only be told the step and their shard);
2. the shard gradients are averaged, weighted by shard size (:func:`average_grads`), and every
   worker applies the same optimizer step (:meth:`TuningJob.apply_grad`).

The result equals a one-worker run at the same global batch up to floating-point rounding.
The trainable parameters are the soft prompt and, for ``seq_cls`` models, the classification
head; gradients travel as one flat float32 tensor of their total size.

Classification with a causal LM is framed as predicting a label word: the example is rendered
through a template (``{text}`` for the tiny model, ``{text}\\nlabel:`` otherwise) and the loss
is the cross-entropy of the next-token logits restricted to the label words' first tokens (the
verbalizer). The frozen model runs in eval mode (no dropout), so a step is deterministic.

The default initial prompt is TEXT (the embeddings of the task's description, repeated to fill
the prompt) or SAMPLE_VOCAB (embeddings of random vocabulary tokens); RANDOM (peft's standard
normal draw, far off the embedding scale) is available but never the default. A warm start
loads a stored prompt with ``set_peft_model_state_dict`` into the fresh adapter.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from ptexec.models import LoadedModel, _seeded, job_view
from ptexec.tasks import TextTask
from ptexec.tuning import TuningConfig

STATE_FORMAT = 1
PROMPT_KEY = "prompt_encoder.default.embedding.weight"


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class EncodedTask:
    """A task's token ids under one model and template (what a worker caches per task)."""

    key: tuple[str, str, str, int]
    train: tuple[torch.Tensor, ...]
    train_labels: torch.Tensor
    heldout: tuple[torch.Tensor, ...]
    heldout_labels: torch.Tensor
    verbalizer: tuple[int, ...] | None
    pad_id: int
    left_pad: bool


def encode_key(
    model: LoadedModel, task: TextTask, config: TuningConfig
) -> tuple[str, str, str, int]:
    """Cache key of :func:`encode_task`: (model, task fingerprint, template, max length)."""
    template = config.template if config.template is not None else model.template
    return (model.key, task.fingerprint, template, config.max_length)


def encode_task(model: LoadedModel, task: TextTask, config: TuningConfig) -> EncodedTask:
    """Tokenise both splits of ``task`` for ``model`` (template and length from ``config``)."""
    tok = model.tokenizer
    template = config.template if config.template is not None else model.template
    prefix, _, suffix = template.partition("{text}")
    if model.kind == "seq_cls":

        def enc(text: str) -> list[int]:
            s = prefix + text + suffix
            return list(tok(s, truncation=True, max_length=config.max_length)["input_ids"])

    else:
        pre = tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        suf = tok(suffix, add_special_tokens=False)["input_ids"] if suffix else []
        budget = config.max_length - len(pre) - len(suf)
        if budget < 1:
            raise ValueError(
                f"template {template!r} leaves no room at max_length {config.max_length}"
            )

        def enc(text: str) -> list[int]:
            ids = tok(text, add_special_tokens=False)["input_ids"][:budget]
            return [*pre, *ids, *suf]

    def encode_split(texts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        out = []
        for t in texts:
            ids = enc(t)
            if not ids:
                ids = [tok.unk_token_id if tok.unk_token_id is not None else tok.pad_token_id]
            out.append(torch.tensor(ids, dtype=torch.long))
        return tuple(out)

    verbalizer = _verbalizer(model, task) if model.kind == "causal_lm" else None
    return EncodedTask(
        key=encode_key(model, task, config),
        train=encode_split(task.train.texts),
        train_labels=torch.tensor(task.train.labels, dtype=torch.long),
        heldout=encode_split(task.heldout.texts),
        heldout_labels=torch.tensor(task.heldout.labels, dtype=torch.long),
        verbalizer=verbalizer,
        pad_id=int(tok.pad_token_id),
        left_pad=model.kind == "seq_cls" and model.is_decoder,
    )


def _verbalizer(model: LoadedModel, task: TextTask) -> tuple[int, ...]:
    """First token of each label word; falls back to the digits 0..k-1 when label words
    collide or are unknown to the tokenizer."""
    tok = model.tokenizer
    unk = tok.unk_token_id

    def first(word: str) -> int | None:
        ids = tok(" " + word, add_special_tokens=False)["input_ids"]
        ids = [i for i in ids if i != unk] if ids and ids[0] == unk else ids
        if not ids:
            return None
        # a leading bare-space token (some BPE vocabularies) carries no label information
        if len(ids) > 1 and tok.decode([ids[0]]).strip() == "":
            return int(ids[1])
        return int(ids[0])

    for names in (task.label_names, tuple(str(i) for i in range(task.num_labels))):
        ids = [first(n) for n in names]
        if all(i is not None and i != unk for i in ids) and len(set(ids)) == len(ids):
            return tuple(int(i) for i in ids if i is not None)
    raise ValueError(
        f"task {task.name}: labels {task.label_names} have no distinct first tokens for "
        f"model {model.name}; rename the labels"
    )


def global_batch(n_train: int, batch_size: int, step: int, seed: int) -> npt.NDArray[np.int64]:
    """Training-example indices of step ``step``: consecutive slices of a fresh seeded
    permutation per epoch (an epoch boundary may fall inside a batch)."""
    if n_train < 1:
        raise ValueError("empty training split")
    out: list[npt.NDArray[np.int64]] = []
    start = step * batch_size
    need = batch_size
    while need > 0:
        epoch, off = divmod(start, n_train)
        perm = np.random.default_rng([seed, epoch]).permutation(n_train)
        take = perm[off : off + need]
        out.append(take)
        need -= len(take)
        start += len(take)
    return np.concatenate(out).astype(np.int64)


def shard(indices: npt.NDArray[np.int64], rank: int, world: int) -> npt.NDArray[np.int64]:
    """Worker ``rank``'s contiguous share of ``indices`` among ``world`` workers (sizes differ
    by at most one; a shard may be empty when ``world`` exceeds the batch)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside 0..{world - 1}")
    return np.array_split(indices, world)[rank]


@dataclass(frozen=True)
class ShardGrad:
    """A shard's mean loss, the gradient of that mean (flat float32 on CPU), its size, and
    how many of its examples the current prompt classifies correctly."""

    loss: float
    grad: torch.Tensor
    n: int
    correct: int = 0


def average_grads(parts: Sequence[ShardGrad]) -> ShardGrad:
    """The global-batch mean from shard means, weighted by shard size."""
    total = sum(p.n for p in parts)
    if total == 0:
        raise ValueError("no examples in any shard")
    grad = torch.zeros_like(parts[0].grad)
    loss = 0.0
    for p in parts:
        if p.n:
            grad.add_(p.grad, alpha=p.n / total)
            loss += p.loss * p.n / total
    return ShardGrad(loss, grad, total, sum(p.correct for p in parts))


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and mean loss over ``n`` examples of a split, at training step ``step``."""

    step: int
    accuracy: float
    loss: float
    n: int


@dataclass
class TuningResult:
    """What :meth:`TuningJob.run` did: steps taken, whether the target was reached (and at
    which step), the training loss per step and the evaluations, and wall time."""

    job_id: str
    steps: int
    reached: bool
    steps_to_target: int | None
    losses: list[float]
    evals: list[EvalResult]
    wall_s: float


# ---------------------------------------------------------------------------------------------
# The job


@dataclass
class _History:
    losses: list[float] = field(default_factory=list)
    evals: list[EvalResult] = field(default_factory=list)
    reached_at: int | None = None


class TuningJob:
    """One prompt-tuning job on one replica (a worker holds one; a data-parallel job is a set
    of replicas in lock-step). See the module doc for the step protocol.

    ``init_prompt`` (shape ``(num_virtual_tokens, hidden)``) warm-starts the prompt, e.g. from
    the Prompt Bank; ``init_head`` the head (``seq_cls``, when its shape fits). ``encoded``
    reuses a tokenised task (see :func:`encode_task`).
    """

    def __init__(
        self,
        model: LoadedModel,
        task: TextTask,
        config: TuningConfig | None = None,
        *,
        job_id: str = "job",
        init_prompt: torch.Tensor | None = None,
        init_head: Mapping[str, torch.Tensor] | None = None,
        init_source: str | None = None,
        encoded: EncodedTask | None = None,
    ) -> None:
        from peft import PromptTuningConfig, TaskType, get_peft_model

        self.job_id = job_id
        self.model = model
        self.task = task
        self.config = cfg = config if config is not None else TuningConfig()
        key = encode_key(model, task, cfg)
        if encoded is not None and encoded.key != key:
            raise ValueError(f"job {job_id}: encoded task is for {encoded.key}, need {key}")
        self.data = encoded if encoded is not None else encode_task(model, task, cfg)
        peft_init = "RANDOM" if cfg.init == "random" else "SAMPLE_VOCAB"
        pcfg = PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM if model.kind == "causal_lm" else TaskType.SEQ_CLS,
            num_virtual_tokens=cfg.num_virtual_tokens,
            prompt_tuning_init=peft_init,
        )
        base = job_view(model, task.num_labels, cfg.seed + 1)
        with _seeded(cfg.seed), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            self.peft = get_peft_model(base, pcfg)
        self.peft.eval()
        self.init_info: dict[str, Any] = {"mode": cfg.init, "source": init_source}
        if cfg.init == "text" and init_prompt is None:
            self._text_init(cfg.init_text if cfg.init_text is not None else task.description)
        if init_prompt is not None:
            self.load_prompt(init_prompt, init_head)
            self.init_info["mode"] = "stored"
        names = sorted(n for n, p in self.peft.named_parameters() if p.requires_grad)
        if PROMPT_KEY not in names:
            raise RuntimeError(f"job {job_id}: no prompt parameter among {names}")
        names.remove(PROMPT_KEY)
        self.param_names: tuple[str, ...] = (PROMPT_KEY, *names)
        params = dict(self.peft.named_parameters())
        self.params: tuple[torch.nn.Parameter, ...] = tuple(params[n] for n in self.param_names)
        self.num_trainable = sum(p.numel() for p in self.params)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.history = _History()
        self._perm_cache: dict[int, npt.NDArray[np.int64]] = {}
        fwd = inspect.signature(model.model.forward).parameters
        self._keep_logits = "logits_to_keep" in fwd

    # -- set-up ------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _text_init(self, text: str) -> None:
        tok = self.model.tokenizer
        ids = [i for i in tok(text, add_special_tokens=False)["input_ids"] if i != tok.unk_token_id]
        if not ids:
            self.init_info["mode"] = "sample_vocab"  # nothing known to embed: keep peft's draw
            return
        n = self.config.num_virtual_tokens
        ids = (ids * math.ceil(n / len(ids)))[:n]
        emb = self.model.model.get_input_embeddings()
        with torch.no_grad():
            vec = emb(torch.tensor(ids, device=self.model.device)).float()
            self._prompt_param().copy_(vec)
        self.init_info["text"] = text

    def _prompt_param(self) -> torch.nn.Parameter:
        enc: Any = self.peft.prompt_encoder["default"]
        w: torch.nn.Parameter = enc.embedding.weight
        return w

    def load_prompt(
        self, prompt: torch.Tensor, head: Mapping[str, torch.Tensor] | None = None
    ) -> None:
        """Put a stored prompt (and, when given and shaped alike, a stored head) into this
        job's adapter with peft's ``set_peft_model_state_dict``."""
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        want = tuple(self._prompt_param().shape)
        if tuple(prompt.shape) != want:
            raise ValueError(
                f"job {self.job_id}: stored prompt shape {tuple(prompt.shape)} != {want}"
            )
        current = get_peft_model_state_dict(self.peft)
        sd = {k: v.detach().clone() for k, v in current.items()}
        sd["prompt_embeddings"] = prompt.detach().to(torch.float32).clone()
        for k, v in (head or {}).items():
            if k in sd and sd[k].shape == v.shape:
                sd[k] = v.detach().clone()
        set_peft_model_state_dict(self.peft, sd)

    # -- one step ----------------------------------------------------------------------------

    @property
    def n_train(self) -> int:
        return len(self.data.train)

    def batch_indices(self, step: int | None = None) -> npt.NDArray[np.int64]:
        """Indices of the global batch of ``step`` (default: the next step)."""
        s = self.step if step is None else step
        return global_batch(self.n_train, self.config.batch_size, s, self.config.seed)

    def shard_indices(
        self, rank: int, world: int, step: int | None = None
    ) -> npt.NDArray[np.int64]:
        """This worker's shard of the global batch of ``step`` (default: the next step)."""
        return shard(self.batch_indices(step), rank, world)

    def _collate(
        self, seqs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        width = int(lengths.max())
        ids = torch.full((len(seqs), width), self.data.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if self.data.left_pad:
                ids[i, width - len(s) :] = s
                mask[i, width - len(s) :] = 1
            else:
                ids[i, : len(s)] = s
                mask[i, : len(s)] = 1
        dev = self.model.device
        return ids.to(dev), mask.to(dev), lengths.to(dev)

    def _logits(self, seqs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class logits ``(len(seqs), num_labels)`` under the current prompt."""
        ids, mask, lengths = self._collate(seqs)
        if self.model.kind == "seq_cls":
            out = self.peft(input_ids=ids, attention_mask=mask)
            logits: torch.Tensor = out.logits.float()
            return logits
        assert self.data.verbalizer is not None
        verb = torch.tensor(self.data.verbalizer, device=ids.device)
        last = lengths - 1 + self.config.num_virtual_tokens
        if self._keep_logits:
            out = self.peft(
                input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=last[:, None]
            )
            row = out.logits[:, 0, :]
        else:
            out = self.peft(input_ids=ids, attention_mask=mask, use_cache=False)
            row = out.logits[torch.arange(len(seqs), device=ids.device), last]
        chosen: torch.Tensor = row[:, verb].float()
        return chosen

    def grad_step_shard(self, indices: Sequence[int] | npt.NDArray[np.int64]) -> ShardGrad:
        """Mean loss and its gradient (w.r.t. prompt and head, flat) on the given training
        examples; changes nothing. An empty shard gives a zero gradient with ``n = 0``."""
        idx = [int(i) for i in indices]
        if not idx:
            return ShardGrad(0.0, torch.zeros(self.num_trainable), 0, 0)
        logits = self._logits([self.data.train[i] for i in idx])
        y = self.data.train_labels[idx].to(logits.device)
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, self.params)
        flat = torch.cat([g.reshape(-1) for g in grads]).detach().to("cpu", torch.float32)
        correct = int((logits.argmax(-1) == y).sum())
        return ShardGrad(float(loss.detach()), flat, len(idx), correct)

    def apply_grad(self, grad: torch.Tensor, loss: float | None = None) -> None:
        """One optimizer step with the (already averaged) flat gradient; ``loss`` is the
        global batch's loss, recorded in the history."""
        if grad.numel() != self.num_trainable:
            raise ValueError(
                f"job {self.job_id}: gradient has {grad.numel()} values, need {self.num_trainable}"
            )
        off = 0
        for p in self.params:
            n = p.numel()
            p.grad = grad[off : off + n].view_as(p).to(p.device, p.dtype)
            off += n
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if loss is not None:
            self.history.losses.append(float(loss))

    def train_step(self, world: int = 1) -> ShardGrad:
        """One full step in this process: the global batch split into ``world`` shards, each
        shard's gradient computed in turn, averaged and applied (what ``world`` workers do)."""
        batch = self.batch_indices()
        parts = [self.grad_step_shard(shard(batch, r, world)) for r in range(world)]
        avg = average_grads(parts)
        self.apply_grad(avg.grad, avg.loss)
        return avg

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_indices(self, split: str, indices: Sequence[int]) -> EvalResult:
        """Accuracy and mean loss on the given examples of a split; recorded nowhere."""
        if split == "train":
            seqs, labels = self.data.train, self.data.train_labels
        elif split in ("heldout", "test", "eval"):
            seqs, labels = self.data.heldout, self.data.heldout_labels
        else:
            raise ValueError(f"no split {split!r} (train, heldout)")
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("no examples to evaluate")
        bs = self.config.eval_batch_size
        loss_sum = 0.0
        correct = 0
        for s in range(0, len(idx), bs):
            part = idx[s : s + bs]
            logits = self._logits([seqs[i] for i in part])
            y = labels[part].to(logits.device)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
        return EvalResult(self.step, correct / len(idx), loss_sum / len(idx), len(idx))

    def evaluate(self, split: str = "heldout", max_examples: int | None = -1) -> EvalResult:
        """Accuracy and mean loss on a split (its first ``max_examples`` examples; default:
        the config's ``eval_examples``, screened first by ``eval_screen`` examples, see
        :class:`TuningConfig`; ``None`` = all). A held-out evaluation is recorded in the
        history and marks the target reached when it meets it (a screen never does)."""
        size = len(self.data.train) if split == "train" else len(self.data.heldout)
        cap = self.config.eval_examples if max_examples == -1 else max_examples
        n = size if cap is None else min(cap, size)
        screen = self.config.eval_screen
        if split != "train" and max_examples == -1 and screen is not None and screen < n:
            res = self.evaluate_indices(split, range(screen))
            if not self.config.near_target(res.accuracy, res.loss):
                self.history.evals.append(res)
                return res
        res = self.evaluate_indices(split, range(n))
        if split != "train":
            self.history.evals.append(res)
            if self.history.reached_at is None and self.target_reached(res):
                self.history.reached_at = self.step
        return res

    def target_reached(self, ev: EvalResult) -> bool:
        """Whether an evaluation meets the job's target accuracy or loss."""
        return self.config.target_met(ev.accuracy, ev.loss)

    @property
    def reached(self) -> bool:
        """Whether some held-out evaluation so far met the target."""
        return self.history.reached_at is not None

    @property
    def done(self) -> bool:
        """Target reached or step budget spent."""
        return self.reached or self.step >= self.config.max_steps

    # -- the whole job in one process -------------------------------------------------------

    def run(
        self,
        *,
        world: int = 1,
        checkpoint_dir: str | Path | None = None,
        on_eval: Callable[[EvalResult], None] | None = None,
    ) -> TuningResult:
        """Train until the target is reached or the budget is spent, evaluating every
        ``eval_every`` steps (and before the first), checkpointing every
        ``checkpoint_every`` steps into ``checkpoint_dir``."""
        t0 = time.perf_counter()
        cfg = self.config
        if not self.history.evals or self.history.evals[-1].step != self.step:
            ev = self.evaluate()
            if on_eval is not None:
                on_eval(ev)
        while not self.done:
            self.train_step(world)
            if self.step % cfg.eval_every == 0 or self.step >= cfg.max_steps:
                ev = self.evaluate()
                if on_eval is not None:
                    on_eval(ev)
            if (
                checkpoint_dir is not None
                and cfg.checkpoint_every is not None
                and self.step % cfg.checkpoint_every == 0
            ):
                self.save_checkpoint(checkpoint_dir)
        return self.result(time.perf_counter() - t0)

    def result(self, wall_s: float = 0.0) -> TuningResult:
        """The job's outcome so far."""
        h = self.history
        return TuningResult(
            self.job_id,
            self.step,
            self.reached,
            h.reached_at,
            list(h.losses),
            list(h.evals),
            wall_s,
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def prompt(self) -> torch.Tensor:
        """A copy of the current soft prompt, float32 on CPU."""
        return self._prompt_param().detach().to("cpu", torch.float32).clone()

    def head_state(self) -> dict[str, torch.Tensor]:
        """The head's tensors as peft saves them (empty for a causal LM)."""
        from peft import get_peft_model_state_dict

        sd = get_peft_model_state_dict(self.peft)
        return {k: v.detach().cpu().clone() for k, v in sd.items() if k != "prompt_embeddings"}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this job elsewhere: trainable tensors, optimizer
        state, step, RNG state, history, config and identities of model and task."""
        return {
            "format": STATE_FORMAT,
            "job_id": self.job_id,
            "model": self.model.key,
            "task": self.task.name,
            "task_fingerprint": self.task.fingerprint,
            "config": self.config.to_dict(),
            "params": {
                n: p.detach().to("cpu").clone()
                for n, p in zip(self.param_names, self.params, strict=True)
            },
            "optimizer": _to_cpu(copy.deepcopy(self.optimizer.state_dict())),
            "step": self.step,
            "rng": torch.get_rng_state(),
            "losses": list(self.history.losses),
            "evals": [asdict(e) for e in self.history.evals],
            "reached_at": self.history.reached_at,
            "init": dict(self.init_info),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a job with the same model, task and shapes."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"job {self.job_id}: unknown state format {state.get('format')!r}")
        if state["model"] != self.model.key or state["task_fingerprint"] != self.task.fingerprint:
            raise ValueError(
                f"job {self.job_id}: state is for model {state['model']} / task "
                f"{state['task']}, not {self.model.key} / {self.task.name}"
            )
        params = state["params"]
        if tuple(params) != self.param_names:
            raise ValueError(f"job {self.job_id}: state has parameters {tuple(params)}")
        with torch.no_grad():
            for n, p in zip(self.param_names, self.params, strict=True):
                if tuple(params[n].shape) != tuple(p.shape):
                    raise ValueError(
                        f"job {self.job_id}: {n} shape {tuple(params[n].shape)} != {tuple(p.shape)}"
                    )
                p.copy_(params[n])
        # deep copy: torch's loader keeps tensors that need no cast, and two replicas loaded
        # from one state must not share moment buffers
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"])
        self.history = _History(
            list(state["losses"]),
            [EvalResult(**e) for e in state["evals"]],
            state["reached_at"],
        )
        self.init_info = dict(state["init"])

    def save_checkpoint(self, directory: str | Path, keep: int = 2) -> Path:
        """Write the state to ``directory/step-NNNNNNNN.pt`` (atomically) and keep the newest
        ``keep`` checkpoints."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"step-{self.step:08d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        for old in sorted(d.glob("step-*.pt"))[:-keep]:
            old.unlink()
        return path

    def save_prompt(self, directory: str | Path) -> Path:
        """Save the adapter (prompt, and head for ``seq_cls``) as a PEFT adapter directory:
        ``adapter_config.json`` (``modules_to_save`` listed once each) and
        ``adapter_model.safetensors``; peft's empty auto-generated model card is not kept."""
        d = Path(directory)
        had_card = (d / "README.md").exists()
        self.peft.save_pretrained(str(d))
        if not had_card:
            (d / "README.md").unlink(missing_ok=True)
        cfg_file = d / "adapter_config.json"
        cfg = json.loads(cfg_file.read_text())
        mods = cfg.get("modules_to_save")
        if isinstance(mods, list) and len(set(mods)) != len(mods):
            cfg["modules_to_save"] = list(dict.fromkeys(mods))
            cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True))
        return d


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint in ``directory`` (``None`` if there is none)."""
    found = sorted(Path(directory).glob("step-*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A state written by :meth:`TuningJob.save_checkpoint`."""
    state: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)
    return state


@torch.no_grad()
def prompt_feature(model: LoadedModel, prompt: torch.Tensor) -> npt.NDArray[np.float64]:
    """The clustering feature of a prompt: the frozen model's last hidden state averaged over
    the prompt's positions, when the prompt alone is fed as input embeddings."""
    emb = prompt.to(model.device, model.model.get_input_embeddings().weight.dtype)[None]
    kwargs: dict[str, Any] = {"inputs_embeds": emb, "output_hidden_states": True}
    if model.kind == "causal_lm":
        kwargs["use_cache"] = False
    out = model.model(**kwargs)
    hidden: torch.Tensor = out.hidden_states[-1][0].float().mean(0)
    feature: npt.NDArray[np.float64] = hidden.cpu().numpy().astype(np.float64)
    return feature
