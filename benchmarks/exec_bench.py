"""Executor overhead: step time of ptexec against a bare peft training loop, and the time for a
warm worker to join a running job.

1. **Step time of real runs** (per model and global batch): runs of ``--steps`` steps with
   held-out evaluations on the default schedule (``TuningConfig``: every ``eval_every`` steps,
   ``eval_examples`` examples, screened by ``eval_screen`` first), one torch thread:
   - *bare*: ``TuningJob.train_step()`` and ``evaluate()`` in this process, nothing else;
   - *executor*: the same job run by the executor driver (``ptexec.driver.Executor``, policy
     ``edf``) on one worker, from its first step's end to its last.
   ``--rounds`` rounds, bare and executor interleaved (the order alternates each round), so a
   drift of the machine's speed cancels; overhead = the median over rounds of executor / bare
   - 1 (target: <= 5%). Also reported: the share of the executor's job time spent in
   evaluations, with the screen and without it.
2. **Warm join**: a job runs on worker 0 while worker 1 holds the model warm (pre-warmed by the
   policy). At fixed steps the policy grows the job to workers 0 and 1, later shrinks it back,
   several times. For each grow: *join* = the gap between the last 1-worker step and the first
   2-worker step, minus one 2-worker step; *pause* = the driver's measured move (state from rank
   0, detach, attach). Target: < 1 s.

Not a test: ``python benchmarks/exec_bench.py [--models tiny-gpt2,minilm] [--batches 8,32,128]
[--devices cuda:0,cuda:1]`` (the bare loop runs on the first device). Temporary run folders are
removed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _task(model: str) -> Any:
    from ptexec.jobs import TaskCatalog

    return TaskCatalog().get("synthetic:bench")


def _profiles(model: str, batch: int) -> Any:
    """A one-row profile (the policy only needs the model to exist; numbers are not used)."""
    import numpy as np

    from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable

    table = ThroughputTable((batch,), (1, 2), np.array([[10.0, 20.0]]))
    return ProfileSet({model: ModelProfile(model, 1e6, table, 1.0, 1.0, 0.1)}, Mechanics())


def _executor_round(
    model: str, kind: str | None, cfg: Any, steps: int, pool: Any, batch: int, root: Path
) -> tuple[float, float]:
    """One executor job of ``steps`` steps on worker 0: (seconds from its first step to its
    last, of which seconds in evaluations)."""
    from ptexec.driver import Executor
    from ptexec.jobs import ExecJob, TaskCatalog
    from ptsim.core.types import JobSpec

    stamps: list[float] = []
    spec = JobSpec("x", 0.0, model, "synthetic:bench", 1e6, batch, steps, 1, 1, 1)
    with tempfile.TemporaryDirectory(prefix="exec-bench-", dir=root) as d:
        ex = Executor(
            [ExecJob(spec, model, kind, "synthetic:bench", cfg)],  # type: ignore[arg-type]
            "edf",
            pool,
            _profiles(model, batch),
            Path(d),
            tasks=TaskCatalog(),
            on_step=lambda _j, _s, _e: stamps.append(time.perf_counter()),
            release_at_start=False,
        )
        out = ex.run()
    run = out.runs["x"]
    evals_after_first = sum(1 for e in run.evals if e[0] >= 1)
    per_eval = run.eval_s / max(1, len(run.evals))
    return stamps[-1] - stamps[0], per_eval * evals_after_first


def _bare_round(job: Any, steps: int) -> tuple[float, float]:
    """``steps`` more steps of ``job`` in this process with evaluations on its schedule:
    (seconds from the end of its first step to the end of its last, of which evaluations)."""
    cfg = job.config
    t_eval = 0.0
    t_first = 0.0
    for i in range(steps):
        job.train_step()
        if job.step % cfg.eval_every == 0:
            t0 = time.perf_counter()
            job.evaluate()
            t_eval += time.perf_counter() - t0 if i else 0.0
        if i == 0:
            t_first = time.perf_counter()
    return time.perf_counter() - t_first, t_eval


def step_times(
    model: str,
    batch: int,
    steps: int,
    pool: Any,
    kind: str | None,
    device: str = "cpu",
    rounds: int = 5,
    root: Path | None = None,
) -> dict[str, Any]:
    """Bare and executor runs of ``steps`` steps each, ``rounds`` times, interleaved (the
    order alternates each round, so drift cancels), with held-out evaluations on the default
    schedule (``eval_every``, ``eval_examples``, ``eval_screen`` of ``TuningConfig``). The
    overhead is the median over rounds of executor / bare - 1; the evaluation share is the
    executor's evaluation seconds over its job seconds, also with the screen off."""
    from dataclasses import replace

    import torch

    from ptexec.models import load_model
    from ptexec.train import TuningConfig, TuningJob

    torch.set_num_threads(1)
    task = _task(model)
    cfg = TuningConfig(batch_size=batch, max_steps=steps, target_accuracy=None, target_loss=-1.0)
    loaded = load_model(model, kind=kind, device=device)  # type: ignore[arg-type]
    pool[0].load(model, kind)
    base = root if root is not None else Path(tempfile.gettempdir())
    for _ in range(10):  # warm-up of both paths
        TuningJob(loaded, task, cfg, job_id="warm").train_step()
    _executor_round(model, kind, replace(cfg, max_steps=10), 10, pool, batch, base)
    bare: list[tuple[float, float]] = []
    execd: list[tuple[float, float]] = []
    for r in range(rounds):
        for which in ("bare", "exec") if r % 2 == 0 else ("exec", "bare"):
            if which == "bare":
                job = TuningJob(loaded, task, cfg, job_id=f"bare{r}")
                job.evaluate()  # step 0, as the executor's job does before its first step
                bare.append(_bare_round(job, steps))
            else:
                execd.append(_executor_round(model, kind, cfg, steps, pool, batch, base))
    ratios = [e[0] / b[0] for b, e in zip(bare, execd, strict=True)]
    no_screen = _executor_round(
        model, kind, replace(cfg, eval_screen=None), steps, pool, batch, base
    )
    n = steps - 1
    return {
        "model": model,
        "batch": batch,
        "steps": steps,
        "rounds": rounds,
        "bare_ms": round(statistics.median(b[0] for b in bare) / n * 1000, 3),
        "executor_ms": round(statistics.median(e[0] for e in execd) / n * 1000, 3),
        "overhead_vs_bare": round(statistics.median(ratios) - 1.0, 4),
        "overhead_min_max": [round(min(ratios) - 1, 4), round(max(ratios) - 1, 4)],
        "eval_share": round(sum(e[1] for e in execd) / sum(e[0] for e in execd), 4),
        "eval_share_no_screen": round(no_screen[1] / no_screen[0], 4),
        "eval_every": cfg.eval_every,
        "eval_examples": cfg.eval_examples,
        "eval_screen": cfg.eval_screen,
    }


class _Flip:
    """Job on worker 0 with worker 1 pre-warmed; grow to both at ``grow`` steps, shrink back at
    ``shrink`` steps."""

    name = "flip"

    def __init__(self, model: str, grow: set[int], shrink: set[int]) -> None:
        self.model, self.grow, self.shrink = model, grow, shrink
        self.prewarmed = False

    def decide(self, snap: Any) -> Any:
        from ptsim.core.types import Decision

        for j in snap.jobs:
            wake = snap.now + 0.005
            if not j.gpus:
                pre = {} if self.prewarmed else {1: self.model}
                self.prewarmed = True
                return Decision(allocations={j.job_id: (0,)}, prewarm=pre, wake_at=wake)
            done = int(j.iters_done)
            if len(j.gpus) == 1 and any(done >= g for g in self.grow):
                self.grow = {g for g in self.grow if g > done}
                return Decision(allocations={j.job_id: (0, 1)}, wake_at=wake)
            if len(j.gpus) == 2 and any(done >= s for s in self.shrink):
                self.shrink = {s for s in self.shrink if s > done}
                return Decision(allocations={j.job_id: (0,)}, wake_at=wake)
            return Decision(wake_at=wake)
        return Decision()


def warm_join(model: str, batch: int, pool: Any, kind: str | None, joins: int) -> dict[str, Any]:
    from ptexec.driver import Executor
    from ptexec.jobs import ExecJob, TaskCatalog
    from ptexec.train import TuningConfig
    from ptsim.core.types import JobSpec

    period = 20
    grow = {period * (2 * i + 1) for i in range(joins)}
    shrink = {period * (2 * i + 2) for i in range(joins)}
    total = period * 2 * joins + 5
    cfg = TuningConfig(
        batch_size=batch, max_steps=total, target_accuracy=None, target_loss=-1.0, eval_every=10**9
    )
    stamps: list[tuple[int, float, int]] = []

    def on_step(jid: str, step: int, ex: Any) -> None:
        stamps.append((step, time.perf_counter(), len(ex.runs[jid].workers)))

    spec = JobSpec("j", 0.0, model, "synthetic:bench", 1e6, batch, total, 1, 1, 2)
    with tempfile.TemporaryDirectory(prefix="exec-bench-") as d:
        ex = Executor(
            [ExecJob(spec, model, kind, "synthetic:bench", cfg)],  # type: ignore[arg-type]
            lambda ctx: _Flip(model, grow, shrink),
            pool,
            _profiles(model, batch),
            Path(d),
            tasks=TaskCatalog(),
            on_step=on_step,
        )
        out = ex.run()
    two = [b[1] - a[1] for a, b in itertools.pairwise(stamps) if a[2] == b[2] == 2]
    step2 = statistics.median(two)
    joins_s = [b[1] - a[1] - step2 for a, b in itertools.pairwise(stamps) if (a[2], b[2]) == (1, 2)]
    run = out.runs["j"]
    table = out.state.jobs["j"]
    return {
        "model": model,
        "batch": batch,
        "joins": len(joins_s),
        "warm_hits": table.warm_hits,
        "cold_starts": table.cold_starts,
        "join_s_median": round(statistics.median(joins_s), 4),
        "join_s_max": round(max(joins_s), 4),
        "step_2_workers_ms": round(step2 * 1000, 3),
        "driver_pause_s_total": round(run.exec_pause_s, 4),
        "rescales": table.rescales,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny-gpt2")
    ap.add_argument("--batches", default="8,32,128")
    ap.add_argument("--steps", type=int, default=40, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved bare/executor rounds")
    ap.add_argument("--joins", type=int, default=5)
    ap.add_argument("--devices", default="cpu,cpu", help="the two workers' devices")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    import torch

    import ptsim.core.policies  # noqa: F401
    from ptexec.models import available_models
    from ptexec.workers import WorkerPool

    torch.set_num_threads(1)
    avail = available_models()
    rows: list[dict[str, Any]] = []
    joins: list[dict[str, Any]] = []
    devices = args.devices.split(",")
    if len(devices) != 2:
        raise SystemExit("--devices: give two devices, e.g. cpu,cpu or cuda:0,cuda:1")
    with WorkerPool(2, devices=devices, threads=1) as pool:
        for model in args.models.split(","):
            if avail.get(model, "ok") != "ok":
                print(f"skip {model}: {avail[model]}")
                continue
            for b in (int(x) for x in args.batches.split(",")):
                r = step_times(model, b, args.steps, pool, None, devices[0], args.rounds)
                rows.append(r)
                print(json.dumps(r))
            j = warm_join(model, 32, pool, None, args.joins)
            joins.append(j)
            print(json.dumps(j))
    print()
    print(
        "| model | batch | bare ms/step | executor ms/step | overhead (median; min, max) | "
        "eval share (screen; off) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["overhead_min_max"]
        print(
            f"| {r['model']} | {r['batch']} | {r['bare_ms']:.2f} | {r['executor_ms']:.2f} | "
            f"{r['overhead_vs_bare']:+.1%} ({lo:+.1%}, {hi:+.1%}) | "
            f"{r['eval_share']:.1%}; {r['eval_share_no_screen']:.1%} |"
        )
    print()
    print("| model | batch | joins | join s (median / max) | 2-worker step ms | warm hits |")
    print("|---|---|---|---|---|---|")
    for j in joins:
        print(
            f"| {j['model']} | {j['batch']} | {j['joins']} | {j['join_s_median']:.4f} / "
            f"{j['join_s_max']:.4f} | {j['step_2_workers_ms']:.2f} | {j['warm_hits']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": rows, "joins": joins}, indent=2))


if __name__ == "__main__":
    main()
