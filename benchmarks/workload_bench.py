"""Statistics of the workload generator against those of real LLM-cluster windows.

    PYTHONPATH=. python benchmarks/workload_bench.py [--seeds 10] [--gpus 32] [--load 1.0]
        [--hours 6] [--profiles a100] [--workload default|short]

Generates one trace per seed (6 h at load 1.0 on 32 GPUs by default) and prints, per seed and
as mean / range over seeds, the statistics of ``ptsim.trace.generator.workload_stats``, with
the ranges of real 6-hour windows of an LLM development cluster (issue 16, DESIGN.md section 5;
docs/traces.md section 2). Deterministic: no timing.
"""

from __future__ import annotations

import argparse

import numpy as np

from ptsim.profiles_io import load_profiles
from ptsim.trace.generator import WorkloadSpec, generate_workload, workload_stats

REAL = {
    "jobs_per_min": (6.0, 11.0),
    "count_cv": (1.1, 1.5),
    "peak_to_mean": (7.0, 15.0),
    "one_gpu_share": (0.97, 0.99),
    "median_ideal_s": (516.0, 918.0),
}
COLUMNS = (
    "jobs",
    "jobs_per_min",
    "count_cv",
    "peak_to_mean",
    "one_gpu_share",
    "median_ideal_s",
    "p90_ideal_s",
    "offered_load",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--gpus", type=int, default=32)
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--profiles", default="a100")
    ap.add_argument("--workload", choices=("default", "short"), default="default")
    a = ap.parse_args()
    duration = a.hours * 3600.0
    make = WorkloadSpec if a.workload == "default" else WorkloadSpec.short
    cfg = make(duration_s=duration, load=a.load)
    profiles = load_profiles(a.profiles)
    rows = []
    print(f"{a.workload} workload, {a.hours:g} h at load {a.load:g} on {a.gpus} GPUs")
    print("seed " + " ".join(f"{c:>14}" for c in COLUMNS))
    for seed in range(a.seeds):
        jobs = generate_workload(cfg, profiles, a.gpus, np.random.default_rng(seed))
        st = workload_stats(jobs, profiles, a.gpus, duration)
        rows.append(st)
        print(f"{seed:>4} " + " ".join(f"{st[c]:>14.3f}" for c in COLUMNS))
    table = {c: np.array([r[c] for r in rows]) for c in COLUMNS}
    print("mean " + " ".join(f"{table[c].mean():>14.3f}" for c in COLUMNS))
    print("\nstatistic        mean    min    max   real range   seeds in range")
    for c, (lo, hi) in REAL.items():
        x = table[c]
        inside = int(np.sum((x >= lo) & (x <= hi)))
        print(
            f"{c:<14} {x.mean():>7.3f} {x.min():>6.3f} {x.max():>6.3f}   "
            f"{lo:g}-{hi:g}   {inside}/{len(x)}"
        )
    both = int(
        np.sum(
            (table["count_cv"] >= 1.1)
            & (table["count_cv"] <= 1.5)
            & (table["peak_to_mean"] >= 7)
            & (table["peak_to_mean"] <= 15)
        )
    )
    print(f"seeds with both CV and peak/mean in range: {both}/{len(rows)}")


if __name__ == "__main__":
    main()
