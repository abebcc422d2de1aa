"""``ptexec profile``: measure a model on this machine's workers and write a profile directory in
the layout ptsim reads (``ptsim.profiles_io``), so simulations can use measured numbers.

For each model it measures, on the worker pool:

- **load (cold-start) times**: the first load of the model on each worker (the worker process
  is already up: its imports are its boot time, reported separately), and reloads (release,
  then load again);
- **step times**: data-parallel steps of a prompt-tuning job for every global batch in
  ``batches`` on 1, 2, ... workers (``gpu_counts``), after ``warmup`` steps; cells are
  iterations per second (ElasticFlow's layout);
- **mechanics**: a new job's first start on a warm worker (the hand-over ptsim charges: the job
  is built and its task tokenised), a warm worker taking a job from a state (resume) and a
  running job growing from 1 to 2 warm workers and shrinking back (reconfiguration);
- with ``busy`` (``--busy``), every step and evaluation is timed while the workers not being
  measured train a job of their own: on CPU slots, which share the machine's cores, that is
  the speed a run with every worker busy sees (on GPUs it should change nothing);
- with ``contention`` (``--contention``), both: every step and evaluation is timed with the
  other workers idle (the throughput table, ``heldout_eval_s``) and again while they train
  (the contended table ``<model>_contended.csv`` and ``contended_heldout_eval_s``), so ptsim
  charges a job the one or the other by whether its neighbours train
  (``ModelProfile.contended``);
- **per-step overheads that are not training**: one held-out evaluation and one checkpoint
  write on rank 0 (``heldout_eval_s``, ``checkpoint_s`` in ``models.csv``; ptsim charges them
  every ``Mechanics.eval_every`` / ``checkpoint_every`` steps); the evaluation is the
  executor's screen (``TuningConfig.eval_screen`` examples), and the full held-out evaluation
  that follows a screen near the target is timed too (``full_eval_s``, with ``--contention``
  also ``contended_full_eval_s``; ptsim charges it after the evaluations within
  ``Mechanics.full_eval_margin`` of the target);

steps, hand-overs and resizes run the exchanges of ``ptexec.replicas`` (through
``WorkerPool.train_step``/``attach``/``resize``), the code the executor's jobs run;
- **score assessments**: one real Prompt Bank assessment (``RealScorer``: a stored prompt
  evaluated on ``bank_batches`` x ``bank_batch_size`` training examples of a new task, in the
  driver process, as the executor's lookups run);
- **convergence with and without the bank**: a base task is tuned to the target from the default
  prompt; then tasks that share ``similarity`` of its rule are tuned from the default prompt and
  from the base task's prompt (steps to target, loss curves).

Files written (``out``): ``models.csv`` and ``<model>.csv`` (what ``load_profiles`` reads),
``mechanics.json`` (measured hand-over and reconfiguration pauses, worker boot), ``convergence.csv``
and ``curves.csv``, the raw samples (``loads.csv``: every timed load, start, evaluation,
checkpoint and assessment; ``steps.csv``), and ``README.md`` stating that
the numbers were measured by ``ptexec profile``, when, on what machine, with which software.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptexec.jobs import TaskCatalog, model_id
from ptexec.models import ModelKind, load_model
from ptexec.train import TuningConfig, TuningJob
from ptexec.workers import JobSetup, WorkerPool
from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.types import JobSpec
from ptsim.profiles_io import ModelEntry, load_profiles, write_models, write_throughput

MECHANICS_FILE = "mechanics.json"
SOURCE = "measured by ptexec profile"


@dataclass(frozen=True)
class ProfileSettings:
    """What ``ptexec profile`` measures (see the module doc)."""

    batches: tuple[int, ...] = (8, 16, 32, 64)
    gpu_counts: tuple[int, ...] | None = None  # None: 1 .. pool size
    warmup: int = 2
    steps: int = 10
    reloads: int = 2
    resizes: int = 3
    assessments: int = 5
    starts: int = 3
    busy: bool = False
    contention: bool = False
    evals: int = 5
    checkpoints: int = 3
    bank_batches: int = 2
    bank_batch_size: int = 32
    task: str = "synthetic:profile"
    convergence: bool = True
    similarities: tuple[float, ...] = (0.75, 0.5, 0.0)
    seeds: tuple[int, ...] = (0, 1)
    target_accuracy: float = 0.9
    max_steps: int = 300
    eval_every: int = 5
    num_virtual_tokens: int = 8
    lr: float = 0.01
    loop_steps: int = 40
    loop_rounds: int = 2

    def __post_init__(self) -> None:
        if self.loop_steps < 0 or self.loop_rounds < 1:
            raise ValueError("profile loop_steps must be >= 0 and loop_rounds >= 1")
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError("profile batches must be >= 1")
        if self.steps < 1 or self.warmup < 0:
            raise ValueError("profile steps must be >= 1 and warmup >= 0")
        if self.gpu_counts is not None and (not self.gpu_counts or self.gpu_counts[0] != 1):
            raise ValueError("profile gpu_counts must start with 1")
        if self.busy and self.contention:
            raise ValueError("profile busy and contention exclude each other (contention: both)")


QUICK = ProfileSettings(
    batches=(8, 32),
    warmup=1,
    steps=3,
    reloads=1,
    resizes=1,
    assessments=2,
    starts=1,
    evals=2,
    checkpoints=1,
    similarities=(0.75,),
    seeds=(0,),
    max_steps=100,
    loop_steps=10,
    loop_rounds=1,
)
"""A profile in seconds (tests, the executor's start-up measurement): fewer points, one
similarity and seed."""


@dataclass
class ModelMeasurement:
    """Raw measurements of one model (seconds unless named otherwise)."""

    model_id: str
    model: str
    kind: str
    params: int
    hidden: int
    boot_s: list[float] = field(default_factory=list)
    cold_loads: list[float] = field(default_factory=list)
    reloads: list[float] = field(default_factory=list)
    step_s: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    contended_step_s: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    start_s: list[float] = field(default_factory=list)
    handover_s: list[float] = field(default_factory=list)
    reconfig_s: list[float] = field(default_factory=list)
    eval_s: list[float] = field(default_factory=list)
    heldout_eval_s: list[float] = field(default_factory=list)
    contended_heldout_eval_s: list[float] = field(default_factory=list)
    full_eval_s: list[float] = field(default_factory=list)
    contended_full_eval_s: list[float] = field(default_factory=list)
    checkpoint_s: list[float] = field(default_factory=list)
    loop_interval_s: list[float] = field(default_factory=list)
    loop_step_s: list[float] = field(default_factory=list)
    contended_loop_interval_s: list[float] = field(default_factory=list)
    contended_loop_step_s: list[float] = field(default_factory=list)
    convergence: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)

    def iters_per_s(self, batch: int, gpus: int, contended: bool = False) -> float:
        """Median steps per second at (batch, gpus) (with the other workers training)."""
        return 1.0 / statistics.median(
            (self.contended_step_s if contended else self.step_s)[(batch, gpus)]
        )

    def loop_overhead(self, contended: bool = False) -> float | None:
        """Seconds the executor's loop adds to every training step: the median interval
        between consecutive steps of a job run through the loop minus the median back-to-back
        step at the same batch, never below 0 (``None``: not measured)."""
        through, alone = (
            (self.contended_loop_interval_s, self.contended_loop_step_s)
            if contended
            else (self.loop_interval_s, self.loop_step_s)
        )
        if not through or not alone:
            return None
        return max(0.0, _median(through) - _median(alone))


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else math.nan


# ---------------------------------------------------------------------------------------------
# Measuring


def measure_model(
    pool: WorkerPool,
    model: str,
    kind: ModelKind | None = None,
    settings: ProfileSettings | None = None,
    *,
    tasks: TaskCatalog | None = None,
    progress: Callable[[str], Any] | None = None,
) -> ModelMeasurement:
    """Measure ``model`` (see the module doc) on ``pool``; the workers end released."""
    st = settings if settings is not None else ProfileSettings()
    cat = tasks if tasks is not None else TaskCatalog()
    say = progress or (lambda _msg: None)
    mid = model_id(model, kind)
    n = len(pool)
    counts = [c for c in (st.gpu_counts or tuple(range(1, n + 1))) if c <= n]
    wids = list(range(n))
    say(f"{mid}: loads")
    pool.load(wids, model, kind)  # warm the import caches of every worker
    for w in wids:
        pool[w].release()
    first = [pool[w].load(model, kind) for w in wids]  # one at a time: no contention
    info = pool[0].info()
    meas = ModelMeasurement(
        mid,
        model,
        str(info.model).split(":")[-1] if info.model else str(kind),
        0,
        0,
        boot_s=[w.boot_s for w in pool.workers],
        cold_loads=[r.load_s for r in first],
    )
    for _ in range(st.reloads):
        pool[0].release()
        meas.reloads.append(pool[0].load(model, kind).load_s)
    task = cat.get(st.task)
    base_cfg = TuningConfig(
        num_virtual_tokens=st.num_virtual_tokens, lr=st.lr, target_accuracy=None, max_steps=10**9
    )
    for g in counts:
        for b in st.batches:
            say(f"{mid}: steps at batch {b} on {g} worker(s)")
            setup = JobSetup(f"profile-{b}-{g}", model, task, replace(base_cfg, batch_size=b), kind)
            pool.attach(wids[:g], setup)
            others = wids[g:] if st.busy else []
            meas.step_s[(b, g)] = _time_steps(
                pool, wids[:g], others, st, (model, task, base_cfg, b, kind)
            )
            if st.contention and g < n:
                meas.contended_step_s[(b, g)] = _time_steps(
                    pool, wids[:g], wids[g:], st, (model, task, base_cfg, b, kind)
                )
            for w in wids[:g]:
                pool[w].detach()
    say(f"{mid}: first starts, hand-over, evaluation, checkpoint and resize")
    move_cfg = replace(base_cfg, batch_size=st.batches[-1])
    for i in range(st.starts):  # a new job on a warm worker: its task is tokenised there
        fresh = JobSetup(
            f"profile-start-{i}", model, cat.get(f"{st.task}-start{i}"), move_cfg, kind
        )
        t0 = time.perf_counter()
        pool.attach([0], fresh)
        meas.start_s.append(time.perf_counter() - t0)
        pool[0].detach()
    setup = JobSetup("profile-move", model, task, move_cfg, kind)
    pool.attach([0], setup)
    pool.train_step([0])
    state = pool[0].detach()
    t0 = time.perf_counter()
    pool.attach([0], setup, state)
    meas.handover_s.append(time.perf_counter() - t0)
    screen_n = pool[0].evaluate().n  # warm-up; the screen (the job has no target)
    # the full evaluation that follows a screen near the target, when there is a screen
    full_n = move_cfg.eval_examples
    screened = pool[0].evaluate("heldout", full_n).n > screen_n
    for contended in (False, True) if st.contention and n > 1 else (False,):
        others = wids[1:] if st.busy or contended else []
        busy = _Busy(pool, others, model, task, base_cfg, st.batches[-1], kind)
        for _ in range(st.evals):
            t0 = time.perf_counter()
            pool[0].evaluate()
            took = time.perf_counter() - t0
            (meas.contended_heldout_eval_s if contended else meas.heldout_eval_s).append(took)
            busy.poke()
            if screened:
                t0 = time.perf_counter()
                pool[0].evaluate("heldout", full_n)
                took = time.perf_counter() - t0
                (meas.contended_full_eval_s if contended else meas.full_eval_s).append(took)
                busy.poke()
        busy.stop()
    with tempfile.TemporaryDirectory(prefix="ptexec-profile-ckpt-") as ckdir:
        for _ in range(st.checkpoints):
            t0 = time.perf_counter()
            pool[0].checkpoint(ckdir)
            meas.checkpoint_s.append(time.perf_counter() - t0)
    if n >= 2:
        for _ in range(st.resizes):
            t0 = time.perf_counter()
            pool.resize([0], [0, 1], setup)
            meas.reconfig_s.append(time.perf_counter() - t0)
            pool.train_step([0, 1])
            t0 = time.perf_counter()
            pool.resize([0, 1], [0], setup)
            meas.reconfig_s.append(time.perf_counter() - t0)
            pool.train_step([0])
    pool[0].detach()
    if st.loop_steps > 0:
        say(f"{mid}: per-step overhead of the executor's loop")
        for _ in range(st.loop_rounds):  # rounds interleave the two timings (machine drift)
            for contended in (False, True) if st.contention and n > 1 else (st.busy and n > 1,):
                through, alone = measure_loop(pool, meas, (model, kind), task, st, cat, contended)
                if contended:
                    meas.contended_loop_interval_s += through
                    meas.contended_loop_step_s += alone
                else:
                    meas.loop_interval_s += through
                    meas.loop_step_s += alone
    for w in wids:
        pool[w].release()

    say(f"{mid}: score assessments and convergence (in the driver process)")
    local = load_model(model, kind=kind)
    meas.kind = local.kind
    meas.params = local.num_parameters()
    meas.hidden = local.hidden_size
    _measure_bank(meas, local, st, cat)
    return meas


def _time_steps(
    pool: WorkerPool,
    wids: Sequence[int],
    others: Sequence[int],
    st: ProfileSettings,
    what: tuple[str, Any, TuningConfig, int, ModelKind | None],
) -> list[float]:
    """Seconds of ``st.steps`` data-parallel steps of the job attached to ``wids`` (after
    ``st.warmup``), while workers ``others`` train a job of their own (``_Busy``)."""
    model, task, cfg, batch, kind = what
    busy = _Busy(pool, others, model, task, cfg, batch, kind)
    for _ in range(st.warmup):
        pool.train_step(wids)
        busy.poke()
    samples = []
    for _ in range(st.steps):
        t0 = time.perf_counter()
        pool.train_step(wids)
        samples.append(time.perf_counter() - t0)
        busy.poke()
    busy.stop()
    return samples


def measure_loop(
    pool: WorkerPool,
    meas: ModelMeasurement,
    model: tuple[str, ModelKind | None],
    task: Any,
    st: ProfileSettings,
    tasks: TaskCatalog,
    contended: bool = False,
) -> tuple[list[float], list[float]]:
    """The executor loop's per-step cost, calibrated on ``pool``: (intervals between
    consecutive training steps of a job run through the executor's own driver and loop,
    back-to-back step times of the same job outside it), both at the largest of ``st.batches``
    on worker 0, ``st.loop_steps`` of each after ``st.warmup``. With ``contended`` worker 1
    trains all along: beside the back-to-back steps a queued job of its own (``_Busy``, as
    the contended table is timed), beside the run a second calibration job through the same
    loop, 4x as long (the measured job's intervals are those while both train; a run where
    they did not overlap is repeated, up to 3 runs; none: empty). The intervals' median minus
    the steps' is ``ModelMeasurement.loop_overhead``: the job coroutine's round trip, progress
    reports, the loop's turns and time series, which ptsim charges per step
    (``loop_overhead_s``)."""
    import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
    from ptexec.driver import Executor
    from ptexec.jobs import ExecJob

    name, kind = model
    batch = st.batches[-1]
    total = st.warmup + st.loop_steps
    cfg = TuningConfig(
        num_virtual_tokens=st.num_virtual_tokens,
        lr=st.lr,
        batch_size=batch,
        target_accuracy=None,
        max_steps=total,
        eval_every=total,  # evaluations at step 0 and after the last step only
    )
    pool.attach([0], JobSetup("profile-loop-alone", name, task, cfg, kind))
    others = [1] if contended else []
    alone = _time_steps(
        pool, [0], others, replace(st, steps=st.loop_steps), (name, task, cfg, batch, kind)
    )
    pool[0].detach()
    mid = meas.model_id
    rate = ThroughputTable((batch,), (1,), np.array([[1.0 / _median(alone)]]))
    plan = ProfileSet({mid: ModelProfile(mid, 1.0, rate, 0.0, 0.0, 0.0)})
    # the neighbour trains 4x as many steps, so it is still training while the measured job
    # runs even when it starts later (a cold load on its worker)
    lengths = [total] if not contended else [total, st.warmup + 4 * st.loop_steps]
    jobs = [
        ExecJob(
            JobSpec(f"loop-{w}", 0.0, mid, st.task, 1e6, batch, n, 1, 1, 1),
            name,
            kind,
            st.task,
            replace(cfg, max_steps=n),
        )
        for w, n in enumerate(lengths)
    ]
    through: list[float] = []
    for _ in range(3):  # a contended run whose jobs did not overlap is run again (warm then)
        with tempfile.TemporaryDirectory(prefix="ptexec-profile-loop-") as tmp:
            ex = Executor(jobs, "fifo", pool, plan, Path(tmp), tasks=tasks, release_at_start=False)
            out = ex.run()
        curves = [
            [t for step, t, _, _ in out.runs[j.job_id].curve if step > st.warmup] for j in jobs
        ]
        lo = max(c[0] for c in curves)
        hi = min(c[-1] for c in curves)
        times = [t for t in curves[0] if lo <= t <= hi]
        through = [b - a for a, b in itertools.pairwise(times)]
        if through:
            break
    return through, alone


class _Busy:
    """Keeps workers ``wids`` training a job of their own (a few steps queued on each), so
    that a measurement on the other workers sees busy neighbours, as in a run where every
    worker trains (CPU slots share the machine's cores and memory bandwidth)."""

    DEPTH = 8  # steps queued on each busy worker (more than one measurement lasts)

    def __init__(
        self,
        pool: WorkerPool,
        wids: Sequence[int],
        model: str,
        task: Any,
        cfg: TuningConfig,
        batch: int,
        kind: ModelKind | None,
    ) -> None:
        self.pool = pool
        self.pending: dict[int, list[Any]] = {}
        for w in wids:
            setup = JobSetup(f"profile-busy-{w}", model, task, replace(cfg, batch_size=batch), kind)
            pool[w].attach(setup)
            self.pending[w] = [pool[w].request("step") for _ in range(self.DEPTH)]

    def poke(self) -> None:
        """Top every busy worker up to ``DEPTH`` queued steps."""
        for w, queued in self.pending.items():
            done = [p for p in queued if p.ready()]
            for p in done:
                p.result()
                queued.remove(p)
            queued.extend(self.pool[w].request("step") for _ in range(self.DEPTH - len(queued)))

    def stop(self) -> None:
        """Let the queued steps finish and detach the busy jobs."""
        for w, queued in self.pending.items():
            for p in queued:
                p.result()
            self.pool[w].detach()
        self.pending = {}


def _measure_bank(
    meas: ModelMeasurement, local: Any, st: ProfileSettings, cat: TaskCatalog
) -> None:
    """Score assessment time, and convergence from the default prompt and from a similar
    task's prompt (all in this process, one replica)."""
    from ptexec.bank_store import PromptStore, RealScorer

    cfg = TuningConfig(
        num_virtual_tokens=st.num_virtual_tokens,
        lr=st.lr,
        batch_size=32,
        target_accuracy=st.target_accuracy,
        max_steps=st.max_steps,
        eval_every=st.eval_every,
    )
    base_ref = "synthetic:base"
    with tempfile.TemporaryDirectory(prefix="ptexec-profile-") as tmp:
        store = PromptStore(Path(tmp) / "store")
        base = TuningJob(local, cat.get(base_ref), cfg, job_id="base")
        if st.convergence:  # the source prompt of the bank runs (else: timing needs no training)
            res = base.run()
            _curve(meas, base_ref, base_ref, 1.0, 0, "default", res)
            meas.convergence.append(_conv_row(meas, base_ref, base_ref, 1.0, 0, "default", res))
        entry = store.add(base, entry_id="base")
        prompt, head = store.load_tensors("base")
        targets = [f"synthetic:sim{s:g}~base@{s:g}" for s in st.similarities]
        scorer = RealScorer(
            store,
            local,
            {t: cat.get(t) for t in targets or [base_ref]},
            config=cfg,
            batches=st.bank_batches,
            batch_size=st.bank_batch_size,
        )
        bank_entry = entry.to_bank_entry()
        for i in range(st.assessments):
            t0 = time.perf_counter()
            scorer.score(bank_entry, (targets or [base_ref])[i % max(1, len(targets))])
            meas.eval_s.append(time.perf_counter() - t0)
        if not st.convergence:
            return
        for s, ref in zip(st.similarities, targets, strict=True):
            for seed in st.seeds:
                data = TaskCatalog(cat.family, cat.examples, cat.heldout_fraction, seed=seed)
                task = data.get(ref)
                for init in ("default", "bank"):
                    job = TuningJob(
                        local,
                        task,
                        replace(cfg, seed=seed),
                        job_id=f"{init}-{s:g}-{seed}",
                        init_prompt=prompt if init == "bank" else None,
                        init_head=head if init == "bank" else None,
                        init_source="base" if init == "bank" else None,
                    )
                    r = job.run()
                    meas.convergence.append(_conv_row(meas, base_ref, ref, s, seed, init, r))
                    _curve(meas, base_ref, ref, s, seed, init, r)


def _conv_row(
    meas: ModelMeasurement, base: str, target: str, sim: float, seed: int, init: str, r: Any
) -> dict[str, Any]:
    last = r.evals[-1] if r.evals else None
    return {
        "model": meas.model_id,
        "source_task": base,
        "target_task": target,
        "similarity": sim,
        "seed": seed,
        "init": init,
        "reached": r.reached,
        "steps_to_target": r.steps_to_target,
        "steps": r.steps,
        "final_accuracy": last.accuracy if last else math.nan,
        "wall_s": r.wall_s,
    }


def _curve(
    meas: ModelMeasurement, base: str, target: str, sim: float, seed: int, init: str, r: Any
) -> None:
    evals = {e.step: e for e in r.evals}
    for step in range(0, r.steps + 1):
        e = evals.get(step)
        loss = r.losses[step - 1] if 1 <= step <= len(r.losses) else math.nan
        if e is None and math.isnan(loss):
            continue
        meas.curves.append(
            {
                "model": meas.model_id,
                "target_task": target,
                "similarity": sim,
                "seed": seed,
                "init": init,
                "step": step,
                "train_loss": loss,
                "heldout_accuracy": e.accuracy if e else math.nan,
                "heldout_loss": e.loss if e else math.nan,
            }
        )


# ---------------------------------------------------------------------------------------------
# Writing and reading


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def machine_facts(pool: WorkerPool | None = None) -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    import peft
    import transformers

    devices = [w.device for w in pool.workers] if pool is not None else []
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "devices": devices,
        "gpu": gpu,
        "threads_per_worker": getattr(pool, "threads", None),
        "load_average": _load_average(),
        "command": " ".join(["ptexec" if i == 0 else a for i, a in enumerate(sys.argv)]),
    }


def _load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def write_profile(
    out: str | Path,
    measurements: Sequence[ModelMeasurement],
    settings: ProfileSettings,
    *,
    names: Mapping[str, str] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Path:
    """Write a profile directory for ``measurements`` (``names`` renames model ids in the
    profile, e.g. ``{"tiny-gpt2": "gpt2-base"}`` to replay a ptsim trace on these numbers)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    rename = dict(names or {})
    facts = dict(facts or machine_facts())
    entries = []
    mech: dict[str, Any] = {}
    for m in measurements:
        name = rename.get(m.model_id, m.model_id)
        counts = sorted({g for _, g in m.step_s})
        batches = sorted({b for b, _ in m.step_s})
        table = np.array(
            [
                [m.iters_per_s(b, g) if (b, g) in m.step_s else math.nan for g in counts]
                for b in batches
            ]
        )
        table = np.round(table, 6)
        tfile = f"{_safe(name)}.csv"
        write_throughput(d / tfile, ThroughputTable(tuple(batches), tuple(counts), table))
        cfile = None
        if m.contended_step_s:
            ccounts = sorted({g for _, g in m.contended_step_s})
            ctable = np.array(
                [
                    [
                        m.iters_per_s(b, g, contended=True)
                        if (b, g) in m.contended_step_s
                        else math.nan
                        for g in ccounts
                    ]
                    for b in batches
                ]
            )
            cfile = f"{_safe(name)}_contended.csv"
            write_throughput(
                d / cfile, ThroughputTable(tuple(batches), tuple(ccounts), np.round(ctable, 6))
            )
        cold = _median(m.cold_loads)
        entries.append(
            ModelEntry(
                model=name,
                params=float(m.params),
                eval_s=round(_median(m.eval_s), 6),
                throughput=tfile,
                cold_start_s=round(cold, 6),
                reload_s=round(_median(m.reloads) if m.reloads else cold, 6),
                source="measured",
                heldout_eval_s=_round_or_none(m.heldout_eval_s),
                checkpoint_s=_round_or_none(m.checkpoint_s),
                contended_throughput=cfile,
                contended_heldout_eval_s=_round_or_none(m.contended_heldout_eval_s),
                full_eval_s=_round_or_none(m.full_eval_s),
                contended_full_eval_s=_round_or_none(m.contended_full_eval_s),
                loop_overhead_s=_round_opt(m.loop_overhead()),
                contended_loop_overhead_s=_round_opt(m.loop_overhead(contended=True)),
            )
        )
        mech[name] = {
            # what the state charges at a job's first start: a new job attached to a warm
            # worker (tokenising its task); a job resumed from its state is `resume_s`
            "handover_s": _round_or_none(m.start_s or m.handover_s),
            "resume_s": _round_or_none(m.handover_s),
            "reconfig_s": round(_median(m.reconfig_s), 6) if m.reconfig_s else None,
            "worker_boot_s": round(_median(m.boot_s), 6) if m.boot_s else None,
        }
    write_models(d / "models.csv", entries)
    handovers = [v["handover_s"] for v in mech.values() if v["handover_s"] is not None]
    reconfigs = [v["reconfig_s"] for v in mech.values() if v["reconfig_s"] is not None]
    mechanics = {
        "handover_s": max(handovers) if handovers else None,
        "reconfig_s": max(reconfigs) if reconfigs else None,
        "reconfig_per_level_s": 0.0,
        "per_model": mech,
    }
    (d / MECHANICS_FILE).write_text(json.dumps(mechanics, indent=2) + "\n")
    _write_rows(d / "convergence.csv", [r for m in measurements for r in m.convergence])
    _write_rows(d / "curves.csv", [r for m in measurements for r in m.curves])
    _write_rows(
        d / "loads.csv",
        [
            {"model": m.model_id, "what": what, "worker": i, "seconds": v}
            for m in measurements
            for what, xs in (
                ("boot", m.boot_s),
                ("cold", m.cold_loads),
                ("reload", m.reloads),
                ("start", m.start_s),
                ("resume", m.handover_s),
                ("resize", m.reconfig_s),
                ("heldout_eval", m.heldout_eval_s),
                ("heldout_eval_contended", m.contended_heldout_eval_s),
                ("full_eval", m.full_eval_s),
                ("full_eval_contended", m.contended_full_eval_s),
                ("checkpoint", m.checkpoint_s),
                ("assessment", m.eval_s),
                ("loop_interval", m.loop_interval_s),
                ("loop_back_to_back", m.loop_step_s),
                ("loop_interval_contended", m.contended_loop_interval_s),
                ("loop_back_to_back_contended", m.contended_loop_step_s),
            )
            for i, v in enumerate(xs)
        ],
    )
    _write_rows(
        d / "steps.csv",
        [
            {
                "model": m.model_id,
                "batch": b,
                "workers": g,
                "contended": contended,
                "sample": i,
                "step_s": v,
            }
            for m in measurements
            for contended, cells in ((False, m.step_s), (True, m.contended_step_s))
            for (b, g), xs in sorted(cells.items())
            for i, v in enumerate(xs)
        ],
    )
    (d / "README.md").write_text(_readme(d, measurements, settings, rename, facts, mechanics))
    return d


def _round_or_none(xs: Sequence[float]) -> float | None:
    return round(_median(xs), 6) if xs else None


def _round_opt(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import pandas as pd

    pd.DataFrame(list(rows)).to_csv(path, index=False)


def _fmt(x: float, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _fmt_ms(x: float | None) -> str:
    return "" if x is None else _fmt(1000.0 * x, 3)


def _paren(text: str) -> str:
    return f" ({text})" if text else ""


def _readme(
    d: Path,
    measurements: Sequence[ModelMeasurement],
    st: ProfileSettings,
    rename: Mapping[str, str],
    facts: Mapping[str, Any],
    mechanics: Mapping[str, Any],
) -> str:
    lines = [
        f"# Profile `{d.name}`: {SOURCE}",
        "",
        f"Every number here was **{SOURCE}** (ptexec/profile.py) on {facts['date_utc']}.",
        "",
        "| fact | value |",
        "|---|---|",
        f"| machine | {facts['machine']} ({facts['processor']}) |",
        f"| device(s) | {', '.join(facts.get('devices') or []) or 'n/a'}"
        f"{' (' + str(facts['gpu']) + ')' if facts.get('gpu') else ''} |",
        f"| threads per worker | {facts.get('threads_per_worker')} |",
        f"| python / torch / transformers / peft | {facts['python']} / {facts['torch']} / "
        f"{facts['transformers']} / {facts['peft']} |",
        f"| load average (1, 5, 15 min) at the start | {facts.get('load_average', 'n/a')} |",
        f"| command | `{facts.get('command', 'n/a')}` |",
        f"| settings | {json.dumps(asdict(st))} |",
        "",
        "What ptsim charges and where each number is:",
        "",
        "| ptsim charges | measured as | written to |",
        "|---|---|---|",
        "| step time by global batch and worker count | median data-parallel step "
        "(`replicas.data_parallel_step`) | `<model>.csv` |",
        "| cold start (model load on a running worker) | first load per worker | "
        "`models.csv` `cold_start_s` |",
        "| reload on a warm worker | load after release | `models.csv` `reload_s` |",
        "| worker start-up | process boot (imports) | `mechanics.json` `worker_boot_s` "
        "(paid once at pool start, before a run's clock) |",
        "| first start of a job (hand-over) | a new job attached to a warm worker "
        "(its task tokenised there) | `mechanics.json` `handover_s` |",
        "| resize pause (prompt hand-over between workers) | a running job grown 1 -> 2 "
        "workers or shrunk back | `mechanics.json` `reconfig_s` |",
        "| held-out evaluation every k steps (and at step 0) | `evaluate` on rank 0 | "
        "`models.csv` `heldout_eval_s` (k = `profile.mechanics.eval_every`) |",
        "| full held-out evaluation after a screen within the margin of the target (and the "
        "one that meets it) | `evaluate` of all `eval_examples` on rank 0 | `models.csv` "
        "`full_eval_s` (margin: `profile.mechanics.full_eval_margin`, a fraction of the way "
        "from the initial accuracy to the target) |",
        "| checkpoint write every k steps | `checkpoint` on rank 0 | `models.csv` "
        "`checkpoint_s` (k = `profile.mechanics.checkpoint_every`) |",
        "| contention: steps and evaluations while the other workers train (with "
        "`--contention`) | the same, with a job training on every other worker | "
        "`<model>_contended.csv`, `models.csv` `contended_heldout_eval_s`, "
        "`contended_full_eval_s` |",
        "| score assessment per Prompt Bank candidate | `RealScorer.score` in the driver "
        "process | `models.csv` `eval_s` |",
        "| the executor's loop, per training step (with `--contention` also while the other "
        "worker trains) | median interval between consecutive steps of a calibration job run "
        "through the executor's own driver and loop, minus the median back-to-back step of "
        "the same job timed right before it (at least 0) | `models.csv` `loop_overhead_s`, "
        "`contended_loop_overhead_s` |",
        "",
        "Files: `models.csv` and one throughput table per model (ElasticFlow's layout: rows ="
        " global batch, columns = worker count, cells = iterations per second, the median of "
        f"{st.steps} timed data-parallel steps after {st.warmup} warm-up steps), "
        "`mechanics.json` (measured hand-over and resize pauses), `convergence.csv` and "
        "`curves.csv` (steps to target from the default prompt and from a similar task's "
        "prompt), raw samples in `loads.csv` and `steps.csv`.",
        "",
        "- `cold_start_s`: median first load of the model on a worker whose process is already "
        "up (the executor keeps workers alive, so this is the cold start it pays); the worker "
        "boot (imports of torch/transformers/peft) is listed separately below and is paid once "
        "per worker at pool start.",
        "- `reload_s`: median load after releasing the model on the same worker.",
        "- `eval_s`: median wall time of one real score assessment (a stored prompt evaluated on "
        f"{st.bank_batches} x {st.bank_batch_size} training examples of a new task, in the "
        "driver process).",
        "- first start: a new job attached to a warm worker (builds the job and tokenises its "
        "task), the hand-over ptsim charges at a job's first start; resume: a warm worker "
        "takes a job from its state; resize: a running job grows from 1 to 2 warm workers or "
        "shrinks back (state from rank 0, every replica re-attached).",
        "- held-out evaluation: one `evaluate` on rank 0 (the executor's default "
        "`eval_examples` and `eval_batch_size`); checkpoint: one `checkpoint` write on rank 0. "
        "ptsim charges them only with `profile.mechanics.eval_every` / `checkpoint_every` > 0 "
        "(the executor's `tuning.eval_every` and `checkpoint_every`).",
        f"- loop overhead: {st.loop_rounds} round(s), each {st.loop_steps} back-to-back steps "
        f"then {st.loop_steps} steps through the executor (`measure_loop`), at batch "
        f"{st.batches[-1]} on worker 0 after {st.warmup} warm-up steps; with contention a "
        "second calibration job trains on worker 1 through the same loop (its back-to-back "
        "reference beside a queued job, as the contended table). The job coroutine's round "
        "trip, progress reports, the loop's turns and wake-ups: what a step costs in a run "
        "beyond the step itself. ptsim charges it on every training step "
        "(`ModelProfile.loop_overhead_s`); raw samples in `loads.csv` (`loop_*`).",
        "- To use the pauses in ptsim pass e.g. "
        f"`profile.mechanics.handover_s={_fmt(mechanics['handover_s'])}` "
        + (
            f"`profile.mechanics.reconfig_s={_fmt(mechanics['reconfig_s'])}`."
            if mechanics.get("reconfig_s") is not None
            else "(one worker: no resize measured)."
        ),
        "",
        f"Use it in ptsim with `ptsim profile.dir={d.resolve()}` (and traces naming these models).",
        "",
        "## Per model",
        "",
        "| model | params | hidden | boot [s] | cold start [s] | reload [s] | assessment [s] | "
        "first start [s] | resume [s] | resize [s] | held-out eval (screen) [s] | "
        "full eval [s] | checkpoint [s] | loop per step [ms] (contended) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        name = rename.get(m.model_id, m.model_id)
        shown = name if name == m.model_id else f"{name} (measured as {m.model_id})"
        lines.append(
            f"| {shown} | {m.params:,} | {m.hidden} | {_fmt(_median(m.boot_s))} | "
            f"{_fmt(_median(m.cold_loads))} | {_fmt(_median(m.reloads))} | "
            f"{_fmt(_median(m.eval_s))} | {_fmt(_median(m.start_s))} | "
            f"{_fmt(_median(m.handover_s))} | {_fmt(_median(m.reconfig_s))} | "
            f"{_fmt(_median(m.heldout_eval_s))} | {_fmt(_median(m.full_eval_s))} | "
            f"{_fmt(_median(m.checkpoint_s))} | {_fmt_ms(m.loop_overhead())}"
            f"{_paren(_fmt_ms(m.loop_overhead(contended=True)))} |"
        )
    for m in measurements:
        name = rename.get(m.model_id, m.model_id)
        counts = sorted({g for _, g in m.step_s})
        lines += [
            "",
            f"**{name}**: step time [ms]",
            "",
            "| batch \\ workers | " + " | ".join(str(g) for g in counts) + " |",
            "|---" * (len(counts) + 1) + "|",
        ]
        for b in sorted({b for b, _ in m.step_s}):
            cells = [
                _fmt(1000.0 / m.iters_per_s(b, g)) if (b, g) in m.step_s else "" for g in counts
            ]
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        if m.contended_step_s:
            cc = sorted({g for _, g in m.contended_step_s})
            lines += [
                "",
                f"**{name}**: step time while the other workers train [ms] "
                f"(`{_safe(name)}_contended.csv`; held-out evaluation "
                f"{_fmt(_median(m.contended_heldout_eval_s))} s, idle "
                f"{_fmt(_median(m.heldout_eval_s))} s)",
                "",
                "| batch \\ workers | " + " | ".join(str(g) for g in cc) + " |",
                "|---" * (len(cc) + 1) + "|",
            ]
            for b in sorted({b for b, _ in m.contended_step_s}):
                cells = [
                    _fmt(1000.0 / m.iters_per_s(b, g, contended=True))
                    if (b, g) in m.contended_step_s
                    else ""
                    for g in cc
                ]
                lines.append(f"| {b} | " + " | ".join(cells) + " |")
        summary = _convergence_summary(m.convergence, st.max_steps)
        if summary:
            lines += [
                "",
                f"**{name}**: steps to {st.target_accuracy:g} held-out accuracy "
                f"(evaluated every {st.eval_every} steps, budget {st.max_steps}; "
                "mean over seeds, unreached runs counted at the budget)",
                "",
                "| target task | similarity to the source | default prompt | bank prompt "
                "| saving |",
                "|---|---|---|---|---|",
            ]
            for row in summary:
                lines.append(
                    f"| {row['target']} | {row['similarity']:g} | {_fmt(row['default'])} | "
                    f"{_fmt(row['bank'])} | {_fmt(row['saving'], 3)} |"
                )
    lines.append("")
    return "\n".join(lines)


def _convergence_summary(rows: Sequence[Mapping[str, Any]], budget: int) -> list[dict[str, Any]]:
    by: dict[tuple[str, float], dict[str, list[float]]] = {}
    for r in rows:
        if r["source_task"] == r["target_task"]:
            continue
        steps = r["steps_to_target"] if r["reached"] else budget
        by.setdefault((r["target_task"], r["similarity"]), {}).setdefault(r["init"], []).append(
            float(steps)
        )
    out = []
    for (target, sim), d in sorted(by.items(), key=lambda kv: -kv[0][1]):
        cold = float(np.mean(d["default"])) if d.get("default") else math.nan
        warm = float(np.mean(d["bank"])) if d.get("bank") else math.nan
        out.append(
            {
                "target": target,
                "similarity": sim,
                "default": cold,
                "bank": warm,
                "saving": 1.0 - warm / cold if cold else math.nan,
            }
        )
    return out


def read_mechanics(directory: str | Path) -> dict[str, float]:
    """The measured mechanics of a profile directory (empty when it has none), as
    ``Mechanics`` settings."""
    f = Path(directory) / MECHANICS_FILE
    if not f.is_file():
        return {}
    raw = json.loads(f.read_text())
    return {
        k: float(v) for k, v in raw.items() if k in Mechanics.__dataclass_fields__ and v is not None
    }


def overhead_mechanics(jobs: Sequence[Any], checkpoint_every: int | None) -> dict[str, int]:
    """The cadences of a run's evaluations and checkpoints as ``Mechanics`` settings
    (``eval_every``, ``checkpoint_every``), so that the policies and ptsim charge a job's
    held-out evaluations and checkpoint writes (``heldout_eval_s``, ``checkpoint_s`` of the
    profile). ``jobs`` are ``ExecJob``; where they differ, the most common cadence (the
    smallest among ties) stands for all."""

    def common(values: Sequence[int]) -> int:
        counts: dict[int, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        return min(counts, key=lambda v: (-counts[v], v)) if counts else 0

    evals = [int(j.tuning.eval_every) for j in jobs]
    ckpts = [int(j.tuning.checkpoint_every or checkpoint_every or 0) for j in jobs]
    return {"eval_every": common(evals), "checkpoint_every": common(ckpts)}


def load_exec_profiles(
    directory: str | Path, mechanics: Mapping[str, Any] | None = None
) -> ProfileSet:
    """A profile directory (absolute) with its measured mechanics, overridden by
    ``mechanics`` (non-null values)."""
    d = Path(directory).expanduser().resolve()
    mech: dict[str, Any] = read_mechanics(d)
    mech.update({k: v for k, v in (mechanics or {}).items() if v is not None})
    return load_profiles({"dir": str(d), "mechanics": mech})


def profile_models(
    pool: WorkerPool,
    models: Sequence[tuple[str, ModelKind | None]],
    out: str | Path,
    settings: ProfileSettings | None = None,
    *,
    names: Mapping[str, str] | None = None,
    tasks: TaskCatalog | None = None,
    progress: Callable[[str], Any] | None = None,
    command: str | None = None,
) -> Path:
    """Measure every (model, kind) on ``pool`` and write the profile directory ``out``
    (``command``: the command line recorded in its README; default this process's)."""
    st = settings if settings is not None else ProfileSettings()
    facts = machine_facts(pool)  # the load average before measuring
    ms = [measure_model(pool, m, k, st, tasks=tasks, progress=progress) for m, k in models]
    if command is not None:
        facts["command"] = command
    return write_profile(out, ms, st, names=names, facts=facts)
