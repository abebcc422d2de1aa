"""Per-step overhead of the executor's Ray backend (``executor.backend=ray``) against local
worker processes.

The same measurements on two pools of two CPU workers each, one torch thread per worker: local
``spawn`` processes (``WorkerPool``) and Ray actors on a local Ray of two CPUs
(``RayWorkerPool``):

- *round trip*: the no-op command ``info`` on one worker (median of ``--steps`` calls): the cost
  of one request and its reply;
- *pool step, 1 worker*: ``pool.train_step([0])`` (one message per step);
- *pool step, 2 workers*: ``pool.train_step([0, 1])`` (shard gradients back to the driver,
  averaged, the average sent to both: two round trips per step);
- *executor step*: a job run by the executor driver (policy ``edf``, evaluations off) on one
  worker, timed between consecutive steps (``exec_bench.step_times``, the same code the
  executor benchmark runs).

Steps are timed over ``--steps`` steps after 10 warm-up steps; both pools are up at once and the
backends alternate, ``--reps`` rounds, medians reported (the machine's load drifts over both
alike). Overhead = Ray - local, per step. ``bare`` (the step in the benchmark's process) shows how
loaded the machine was during each backend's rounds.

Not a test: ``python benchmarks/ray_bench.py [--batches 8,32] [--steps 100] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "tiny-gpt2"


def measure(pool: Any, batch: int, steps: int) -> dict[str, float]:
    from exec_bench import _task, step_times

    from ptexec.train import TuningConfig
    from ptexec.workers import JobSetup

    trips = []
    for _ in range(steps):
        t0 = time.perf_counter()
        pool[0].info()
        trips.append(time.perf_counter() - t0)
    cfg = TuningConfig(
        batch_size=batch, max_steps=10**6, target_accuracy=None, target_loss=-1.0, eval_every=10**9
    )
    setup = JobSetup("two", MODEL, _task(MODEL), cfg)
    pool.attach([0, 1], setup)
    for _ in range(10):
        pool.train_step([0, 1])
    t0 = time.perf_counter()
    for _ in range(steps):
        pool.train_step([0, 1])
    two = (time.perf_counter() - t0) / steps
    for w in (0, 1):
        pool[w].detach()
    one = step_times(MODEL, batch, steps, pool, None)
    return {
        "round_trip_ms": statistics.median(trips) * 1000,
        "pool_1w_ms": one["pool_ms"],
        "pool_2w_ms": two * 1000,
        "executor_ms": one["executor_ms"],
        "bare_ms": one["bare_ms"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3, help="alternating rounds (median reported)")
    args = ap.parse_args()
    import torch

    import ptsim.core.policies  # noqa: F401  (registers edf)
    from ptexec.ray_backend import RayWorkerPool
    from ptexec.workers import WorkerPool

    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    pools: dict[str, Any] = {}
    start: dict[str, float] = {}
    t0 = time.perf_counter()
    pools["local"] = WorkerPool(2, devices=["cpu", "cpu"])
    start["local"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pools["ray"] = RayWorkerPool(2, num_cpus=2, object_store_mb=100)
    start["ray"] = time.perf_counter() - t0
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        # the two backends alternate, so that the machine's load drifts over both alike
        for rep in range(args.reps):
            for b in batches:
                for backend in ("local", "ray"):
                    m = measure(pools[backend], b, args.steps)
                    samples.setdefault((backend, b), []).append(m)
                    row = {"backend": backend, "batch": b, "rep": rep}
                    print(json.dumps(row | {k: round(v, 3) for k, v in m.items()}), flush=True)
    finally:
        for p in pools.values():
            p.close()
    print(json.dumps({"pool_start_s": {k: round(v, 2) for k, v in start.items()}}))
    print()
    print(f"median of {args.reps} alternating rounds, {args.steps} steps or calls each")
    print()
    print("| batch | measure | local ms | ray ms | ray - local ms |")
    print("|---|---|---|---|---|")
    for b in batches:
        for k in ("round_trip_ms", "pool_1w_ms", "pool_2w_ms", "executor_ms", "bare_ms"):
            loc = statistics.median(m[k] for m in samples[("local", b)])
            ray = statistics.median(m[k] for m in samples[("ray", b)])
            print(f"| {b} | {k[:-3]} | {loc:.2f} | {ray:.2f} | {ray - loc:+.2f} |")


if __name__ == "__main__":
    main()
