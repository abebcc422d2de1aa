"""Simulator throughput: events per second, wall time and peak memory of ptsim under edf.

Grid: 1k, 10k and 100k-job traces from the default workload generator on 32, 256 and 1,024
A100s at offered load 0.7 (each trace lasts as long as that takes), plus the target case:
100k jobs arriving over 24 h on 1,024 GPUs. Each case runs in its own process so its peak RSS
is its own. Not a test: run it with `./dev bench` or `python benchmarks/sim_bench.py`.

Targets (issue 2): 100k jobs over 24 h on 1,024 GPUs in under 60 s on one core, under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(jobs: int, gpus: int, load: float | None, duration: float | None) -> dict[str, float]:
    import numpy as np

    from ptsim.profiles_io import load_profiles
    from ptsim.run import run_policy
    from ptsim.specs import ClusterSpec
    from ptsim.trace import WorkloadSpec, generate_workload
    from ptsim.trace.generator import mean_demand

    profiles = load_profiles("a100")
    base = WorkloadSpec()
    demand = mean_demand(base, profiles)  # GPU-seconds per job
    if duration is None:  # fixed load: the trace lasts as long as `jobs` arrivals take
        assert load is not None
        duration = jobs * demand / (load * gpus)
    else:  # fixed duration: the load follows
        load = jobs * demand / (gpus * duration)
    spec = WorkloadSpec(duration_s=duration, load=load)
    trace = generate_workload(spec, profiles, gpus, np.random.default_rng(0))
    t0 = time.perf_counter()
    res = run_policy(trace, "edf", {}, profiles, ClusterSpec(gpus // 8, 8), series_interval_s=60.0)
    wall = time.perf_counter() - t0
    s = res.summary
    return {
        "jobs": len(trace),
        "gpus": gpus,
        "load": round(load, 3),
        "trace_hours": round(duration / 3600, 2),
        "events": s["events"],
        "decisions": s["decisions"],
        "wall_s": round(wall, 2),
        "events_per_s": round(s["events"] / wall),
        "decide_share": round(s["decide_wall_s"] / wall, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "slo_violation_rate": round(s["slo_violation_rate"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=4, metavar=("JOBS", "GPUS", "LOAD", "DURATION"))
    ap.add_argument("--quick", action="store_true", help="only the 1k and 10k-job cases")
    args = ap.parse_args()
    if args.one:
        j, g, load, dur = args.one
        out = one(int(j), int(g), None if load == "-" else float(load),
                  None if dur == "-" else float(dur))  # fmt: skip
        print(json.dumps(out))
        return
    cases = [(j, g, "0.7", "-") for j in (1_000, 10_000, 100_000) for g in (32, 256, 1024)]
    cases.append((100_000, 1024, "-", "86400"))
    if args.quick:
        cases = [c for c in cases if c[0] <= 10_000]
    cols = ["jobs", "gpus", "load", "trace_hours", "events", "wall_s", "events_per_s",
            "decide_share", "peak_rss_mb", "slo_violation_rate"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for j, g, load, dur in cases:
        cmd = [sys.executable, __file__, "--one", str(j), str(g), load, dur]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print("| " + " | ".join(str(row[c]) for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
