"""Simulator throughput: events per second, wall time and peak memory of ptsim under edf.

Grid: 1k, 10k and 100k-job traces from the default workload generator on 32, 256 and 1,024
A100s at offered load 0.7 (each trace lasts as long as that takes), plus the target case:
100k jobs arriving over 24 h on 1,024 GPUs. Each case runs in its own process so its peak RSS
is its own. Not a test: run it with `./dev bench` or `python benchmarks/sim_bench.py`.

Targets (issue 2): 100k jobs over 24 h on 1,024 GPUs in under 60 s on one core, under 2 GB.

``--target`` runs the issue-15 case per policy instead: exactly what ``ptsim cluster=a100_1024
workload.duration_s=86400 scheduler=P`` runs (the default workload at its default load: 48,464
jobs with issue 16's generator, ``-o workload.load=1.03`` for the issue's ~100k; the default
Prompt Bank, which only ``prompttuner`` uses), each policy in a fresh subprocess, and writes
one JSON record per policy (``--json FILE``) with ``policy, jobs, gpus,
wall_s, cpu_s, events, events_per_s, peak_rss_mb`` (``wall_s``/``cpu_s``: the simulation only,
``run_plan``; ``plan_s``: building the trace before it; ``cpu_s`` is user + system time from
``resource.getrusage``, which a busy shared machine inflates less than wall time).
``--hours H`` shortens the window, ``--profile DIR`` writes a cProfile file per policy, and
``-o key=value`` adds ptsim overrides (e.g. ``-o bank.online=false``).
"""

from __future__ import annotations

import argparse
import json
import os
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


BANK_KEYS = ("bank_saving_mean", "bank_assessments_mean", "bank_lookup_s_mean")


def _native_modules() -> int:
    """How many of the compiled build's modules and kernels this process ran compiled (0: pure
    Python; ``python -m ptsim.tools.native build``)."""
    from ptsim import native

    return len(native.active())


def target_one(policy: str, hours: float, overrides: list[str], profile: str | None) -> dict:
    """One policy on the target case, in this process (the parent starts a fresh one)."""
    from hydra import compose, initialize_config_dir

    from ptsim.paths import conf_root
    from ptsim.run import plan_config, run_plan

    ov = ["cluster=a100_1024", f"workload.duration_s={hours * 3600:g}", f"scheduler={policy}"]
    ov += ["progress=false", *overrides]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = compose("config", overrides=ov)
    t0 = time.perf_counter()
    plan = plan_config(cfg)
    plan_s = time.perf_counter() - t0
    ((name, params),) = plan.policies
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        res = prof.runcall(run_plan, plan, name, params)
        prof.dump_stats(profile)
    else:
        res = run_plan(plan, name, params)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    s = res.summary
    return {
        "policy": policy,
        "jobs": s["jobs"],
        "gpus": s["gpus"],
        "hours": hours,
        "overrides": overrides,
        "plan_s": round(plan_s, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "events": s["events"],
        "decisions": s["decisions"],
        "events_per_s": round(s["events"] / wall),
        "decide_wall_s": round(s["decide_wall_s"], 2),
        "peak_rss_mb": round(r1.ru_maxrss / 1024),
        "slo_violation_rate": round(s["slo_violation_rate"], 4),
        "cost_gpu_hours": round(s["cost_gpu_hours"], 2),
        "profiled": bool(profile),
        "native": _native_modules(),
        **{k: round(s[k], 4) for k in BANK_KEYS if s.get(k) is not None},
    }


def target(args: argparse.Namespace) -> None:
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    records = []
    for policy in args.policies.split(","):
        cmd = [sys.executable, __file__, "--target-one", policy, str(args.hours)]
        cmd += [f"-o={o}" for o in args.override]
        if args.profile:
            cmd += ["--profile", f"{args.profile}/{policy}.prof"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"sim_bench: {policy} failed (exit {out.returncode})")
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        records.append(rec)
        print(json.dumps(rec), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
            f.write("\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=4, metavar=("JOBS", "GPUS", "LOAD", "DURATION"))
    ap.add_argument("--quick", action="store_true", help="only the 1k and 10k-job cases")
    ap.add_argument("--target", action="store_true", help="the issue-15 case, one run per policy")
    ap.add_argument("--policies", default="prompttuner,infless,elasticflow,edf")
    ap.add_argument("--hours", type=float, default=24.0, help="--target window (default 24 h)")
    ap.add_argument("-o", "--override", action="append", default=[], help="a ptsim override")
    ap.add_argument("--json", help="--target: write the records to this file")
    ap.add_argument("--profile", help="--target: write DIR/<policy>.prof (cProfile)")
    ap.add_argument("--target-one", nargs=2, metavar=("POLICY", "HOURS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.target_one:
        pol, hours = args.target_one
        print(json.dumps(target_one(pol, float(hours), args.override, args.profile)))
        return
    if args.target:
        target(args)
        return
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
