"""Does ptsim predict the executor? ``ptexec validate`` on a contended trace, per policy.

1. Start one pool of ``--workers`` CPU workers (one torch thread each) and measure a profile of
   every model the trace uses on it (``ptexec profile``: steps at the trace's batches on 1..N
   workers, loads, first start, resize, held-out evaluation, checkpoint, assessment), right
   before the runs, so the profile sees the machine as the runs do. By default
   (``--profile-mode contention``) steps and evaluations are timed both with the other workers
   idle and while they train, and ptsim charges each job the one or the other by whether its
   neighbours train at the time (``ModelProfile.contended``); ``busy`` times them only while
   the others train (every job charged the contended time), ``idle`` only with them idle.
2. Write a trace of ``--jobs`` jobs (``make_jobs``): more jobs than workers, two models (the
   tiny GPT-2 as a causal LM and as a classifier, so warm workers of one do not serve the
   other), generated tasks with similar pairs (the bank has something to find), tight and
   loose deadlines, every job elastic in 1..N workers (policies may resize them).
3. For each policy (``--policies``): run the trace on the executor (the same pool, a fresh bank
   per run), then in ptsim with the profile the executor planned with, each job's measured
   step count as its true iterations and the executor's bank choices (``ptexec/validate.py``),
   and compare per job.

Writes ``<out>/<policy>/`` (the executor run, ``ptsim/``, ``validate.csv``, ``validate.json``),
``<out>/profile/`` and ``<out>/summary.json`` (per policy: the targets, what was reached, the
mean residual by mechanism, the load average before and after). Not a test:

    nice -n -5 python benchmarks/validate_bench.py --out runs/validate-bench
    python benchmarks/validate_bench.py --jobs 6 --policies edf --out /tmp/v   # a small check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = (("tiny-gpt2", None), ("tiny-gpt2", "seq_cls"))
REPLAY_KEYS = (
    "median_abs_jct_error",
    "max_abs_jct_error",
    "jobs_above_15pct",
    "same_outcome",
    "mean_residual_s",
)
"""What ``summary.json`` keeps of each replay without a mechanism."""


def make_jobs(
    n: int,
    seed: int = 0,
    *,
    mean_gap_s: float = 5.0,
    est_steps: int = 250,
    step_s: float = 0.015,
    lr: float = 0.002,
) -> list[dict[str, Any]]:
    """``n`` jobs (job-file rows): arrivals about ``mean_gap_s`` apart, alternating models,
    every third job a 75% variant of an earlier task, deadlines tight (1.5 x the planned run
    time on one worker, ``est_steps`` x ``step_s``) or loose (5 x), batch 16 or 32, 1..2
    workers (every fourth asks for 2). Learning rate ``lr`` (0.002: about 100-360 steps to
    90% held-out accuracy, several seconds per job, so that the executor's fixed offsets and
    jitter weigh little against a job's time), evaluations every 20 steps, a budget of 800."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    t = 0.0
    for i in range(n):
        model, kind = MODELS[i % 2]
        base = f"synthetic:v{i // 3}"
        task = base if i % 3 != 2 else f"synthetic:v{i // 3}b~v{i // 3}@0.75"
        tight = i % 2 == 1 if (i // 2) % 2 == 0 else i % 2 == 0
        batch = 32 if i % 4 < 2 else 16
        planned = est_steps * step_s
        row: dict[str, Any] = {
            "job_id": f"j{i:02d}",
            "arrival_s": round(t, 3),
            "model": model,
            "task": task,
            "slo_s": round(planned * (1.5 if tight else 5.0), 3),
            "batch_size": batch,
            "target_accuracy": 0.9,
            "lr": lr,
            "max_steps": 800,
            "iterations": est_steps,
            "num_gpus": 2 if i % 4 == 3 else 1,
            "min_gpus": 1,
            "max_gpus": 2,
            "eval_every": 20,
        }
        if kind:
            row["kind"] = kind
        rows.append(row)
        t += float(rng.exponential(mean_gap_s))
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The per-policy table of a ``summary.json`` (for benchmarks/README.md)."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        "| policy | median abs JCT error | max abs JCT error (job) | jobs > 15% | median abs run "
        "error | same met/missed "
        "| met exec / ptsim | rescales exec / ptsim | mean residual [s]: queue, load, lookup, "
        "handover, eval, checkpoint, step | load average before -> after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["policies"].items():
        res = ", ".join(f"{v:+.2f}" for v in s["mean_residual_s"].values())
        lb, la = s["load_average_before"], s["load_average_after"]
        lines.append(
            f"| {name} | {pct(s['median_abs_jct_error'])} | {pct(s['max_abs_jct_error'])} "
            f"({s['worst_job']}) | {s['jobs_above_15pct']} | {pct(s.get('median_abs_run_error'))} "
            f"| {pct(s['same_outcome'])} | "
            f"{s['exec_met']} / {s['sim_met']} | {s['exec_rescales']} / {s['sim_rescales']} | "
            f"{res} | {lb[0]:.1f} -> {la[0]:.1f} |"
        )

    def errors(
        c: dict[str, Any] | None, eval_residual: bool = False, step_residual: bool = False
    ) -> str:
        """One replay's median / max abs JCT error and same met/missed (and eval or step
        residual)."""
        if c is None:
            return "n/a"
        out = (
            f"{pct(c['median_abs_jct_error'])} / {pct(c['max_abs_jct_error'])} / "
            f"{pct(c['same_outcome'])}"
        )
        if eval_residual:
            out += f"; {c['mean_residual_s']['eval']:+.2f} s"
        if step_residual:
            out += f"; {c['mean_residual_s']['step']:+.2f} s"
        return out

    variants = (
        (
            "without_contention",
            "The same executor runs replayed in ptsim with the contention mechanism and without "
            "it (median / max abs JCT error, same met/missed):",
            ("contention (idle or busy step by neighbours)", "idle steps only", "busy steps only"),
            lambda s, alt: [errors(s), errors(alt.get("idle")), errors(alt.get("busy"))],
        ),
        (
            "without_full_evals",
            "The same executor runs replayed with and without the screened-evaluation mechanic "
            "(median / max abs JCT error, same met/missed; mean eval residual):",
            ("full evaluations charged near the target", "every evaluation its screen"),
            lambda s, alt: [errors(s, True), errors(alt, True)],
        ),
        (
            "without_loop_overhead",
            "The same executor runs replayed with and without the loop-overhead mechanic "
            "(median / max abs JCT error, same met/missed; mean step residual):",
            ("loop overhead charged per step", "no loop overhead"),
            lambda s, alt: [errors(s, step_residual=True), errors(alt, step_residual=True)],
        ),
    )
    for key, caption, heads, cells in variants:
        alts = {n: s[key] for n, s in report["policies"].items() if s.get(key)}
        if not alts:
            continue
        lines += ["", caption, "", "| policy | " + " | ".join(heads) + " |"]
        lines.append("|---" * (len(heads) + 1) + "|")
        for name, alt in alts.items():
            row = cells(report["policies"][name], alt)
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _replay(
    result: Any,
    outcome: Any,
    policy: str,
    params: Any,
    workers: int,
    price: float,
    profiles: Any,
) -> dict[str, Any]:
    """An executor run replayed in ptsim with other ``profiles`` (a mechanism left out): what
    ``summary.json`` keeps of it (``REPLAY_KEYS``)."""
    from ptexec.validate import compare, simulate_like, summary_of

    sim = simulate_like(outcome, policy, params, workers, price, profiles)
    alt = summary_of(compare(result, outcome, sim))
    return {k: alt[k] for k in REPLAY_KEYS}


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="results directory")
    ap.add_argument(
        "--markdown", action="store_true", help="print the table of <out>/summary.json and stop"
    )
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--policies", default="prompttuner,infless,edf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap", type=float, default=5.0, help="mean seconds between arrivals")
    ap.add_argument("--steps", type=int, default=15, help="timed steps per profile cell")
    ap.add_argument(
        "--profile-mode",
        choices=("contention", "busy", "idle"),
        default="contention",
        help="time steps and evaluations with the other workers idle and busy (contention, "
        "the default), only busy, or only idle",
    )
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads((Path(args.out) / "summary.json").read_text())))
        return 0

    import torch

    torch.set_num_threads(1)
    from ptexec import config as C
    from ptexec.jobs import model_id, write_jobs
    from ptexec.profile import ProfileSettings, machine_facts, profile_models
    from ptexec.run import run_jobs, save_exec_result
    from ptexec.validate import (
        compare,
        contention_variants,
        format_summary,
        format_table,
        save_validation,
        simulate_like,
        without_full_evals,
        without_loop_overhead,
    )
    from ptexec.workers import WorkerPool

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = make_jobs(args.jobs, args.seed, mean_gap_s=args.gap)
    jobs_file = out / "jobs.jsonl"
    jobs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batches = tuple(sorted({int(r["batch_size"]) for r in rows}))
    report: dict[str, Any] = {
        "jobs": args.jobs,
        "workers": args.workers,
        "mean_gap_s": args.gap,
        "threads": 1,
        "profile_mode": args.profile_mode,
        "load_average_start": _loadavg(),
        "command": " ".join(["python", *sys.argv]),
        "policies": {},
    }
    with WorkerPool(args.workers, threads=1) as pool:
        st = ProfileSettings(
            batches=batches,
            steps=args.steps,
            convergence=False,
            assessments=3,
            busy=args.profile_mode == "busy",
            contention=args.profile_mode == "contention",
        )
        t0 = time.perf_counter()
        prof = profile_models(
            pool,
            [(m, k) for m, k in MODELS],
            out / "profile",
            st,
            progress=lambda m: print(m, file=sys.stderr),
        )
        report["profile_s"] = round(time.perf_counter() - t0, 1)
        report["profile_models"] = [model_id(m, k) for m, k in MODELS]
        for policy in [p for p in args.policies.split(",") if p]:
            run_dir = out / policy
            cfg = C.compose_config(
                [
                    f"jobs={jobs_file}",
                    f"profile_dir={prof}",
                    f"workers={args.workers}",
                    f"scheduler={policy}",
                    f"out={run_dir}",
                    f"seed={args.seed}",
                    "threads=1",
                ]
            )
            settings = C.settings_from(cfg)
            name, params = C.policy_from(cfg)
            jobs = C.jobs_from(cfg, args.workers)
            exec_dir = run_dir / "executor"
            exec_dir.mkdir(parents=True, exist_ok=True)
            write_jobs(jobs, exec_dir / "jobs.jsonl")
            bank = C.bank_from(cfg, exec_dir)
            load_before = _loadavg()
            t0 = time.perf_counter()
            result, outcome = run_jobs(
                jobs,
                name,
                exec_dir,
                settings,
                params=params,
                bank=bank,
                tasks=C.tasks_from(cfg),
                pool=pool,
                progress=lambda m: print(m, file=sys.stderr),
            )
            wall = time.perf_counter() - t0
            save_exec_result(result, outcome, exec_dir, machine_facts(pool))
            sim = simulate_like(outcome, name, params, args.workers, settings.price_per_gpu_hour)
            table = compare(result, outcome, sim)
            summary = save_validation(run_dir, result, sim, table)
            summary["load_average_before"] = load_before
            summary["load_average_after"] = _loadavg()
            summary["executor_wall_s"] = round(wall, 1)
            summary["reached_target"] = int(result.jobs.reached_target.fillna(False).sum())
            summary["exec_rescales"] = int(table.exec_rescales.sum())
            summary["sim_rescales"] = int(table.sim_rescales.sum())
            summary["exec_met"] = int(table.exec_met_deadline.sum())
            summary["sim_met"] = int(table.sim_met_deadline.sum())
            # the same executor run replayed without each mechanism: contention (every step at
            # the idle time, or every step at the contended time, the old --busy profile), the
            # screened evaluations (every evaluation charged its screen), the loop overhead
            ps0 = outcome.state.profiles
            price = settings.price_per_gpu_hour
            alts = (result, outcome, name, params, args.workers, price)
            summary["without_contention"] = {
                variant: _replay(*alts, ps) for variant, ps in contention_variants(ps0).items()
            }
            if any(m.full_eval_s > 0 for m in ps0.models.values()):
                summary["without_full_evals"] = _replay(*alts, without_full_evals(ps0))
            if any(m.loop_overhead_s or m.contended_loop_overhead_s for m in ps0.models.values()):
                summary["without_loop_overhead"] = _replay(*alts, without_loop_overhead(ps0))
            (run_dir / "validate.json").write_text(json.dumps(summary, indent=2) + "\n")
            report["policies"][name] = summary
            print(f"== {name} ({wall:.1f} s on the executor)")
            print(format_table(table))
            print(format_summary(summary))
    report["load_average_end"] = _loadavg()
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
