"""The simulated Prompt Bank alone, as a day uses it: a lookup for every job and the job's
prompt added back some arrivals later, timed apart from the rest of the simulation.

Run:  python benchmarks/bank_loop_bench.py                       (the first 40,000 jobs)
      python benchmarks/bank_loop_bench.py --jobs 99287 --lag 300 -o workload.load=1.03

The jobs are those of the ``sim_bench.py --target`` day (``cluster=a100_1024``, 24 h; add
``-o`` overrides, e.g. the overloaded day's ``workload.load=1.03``), in arrival order; job i
is looked up (``SimPromptBank.choose``), and job i - ``lag`` is added to the bank before it
(``add_finished``: the addition happens at the next read of the index, as in a run). A run
adds finished jobs in finishing order, not this one, so the choices are not a run's; the
costs are of the same kind: lookups in a bank that grows by one entry per lookup, clusters
that gain members between lookups, re-clusterings as the bank grows. Prints the CPU seconds
of the additions and of the lookups (each per call), the re-clusterings, and a hash of every
choice (source, assessments, expected saving) to check that two versions choose the same.
"""

from __future__ import annotations

import argparse
import hashlib
import time

from hydra import compose, initialize_config_dir

from ptsim.core.bank import PromptBankIndex
from ptsim.paths import conf_root
from ptsim.run import plan_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=40000, help="jobs of the day to look up")
    ap.add_argument("--lag", type=int, default=300, help="arrivals before a job is added")
    ap.add_argument("--hours", type=float, default=24.0, help="window of the day (default 24)")
    ap.add_argument("-o", "--override", action="append", default=[], help="a ptsim override")
    args = ap.parse_args()
    if args.jobs < 1 or args.lag < 0 or not args.hours > 0:
        ap.error("need --jobs >= 1, --lag >= 0 and --hours > 0")
    ov = ["cluster=a100_1024", f"workload.duration_s={args.hours * 3600:g}"]
    ov += ["scheduler=prompttuner", "progress=false", *args.override]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = compose("config", overrides=ov)
    plan = plan_config(cfg)
    if plan.bank is None:
        ap.error("the config has no bank")
    jobs = list(plan.jobs)[: args.jobs]
    bank = plan.bank.build(plan.profiles, [j.model for j in plan.jobs], plan.seed)
    builds = 0
    cluster = PromptBankIndex._cluster

    def counted(index: PromptBankIndex, mb: object) -> object:
        nonlocal builds
        builds += 1
        return cluster(index, mb)  # type: ignore[arg-type]

    PromptBankIndex._cluster = counted  # type: ignore[assignment,method-assign]
    digest = hashlib.sha256()
    add_s = look_s = 0.0
    added = 0
    try:
        for i, spec in enumerate(jobs):
            if i >= args.lag:
                bank.add_finished(jobs[i - args.lag])
                added += 1
            t0 = time.process_time()
            bank.index  # noqa: B018  (the pending addition)
            t1 = time.process_time()
            choice = bank.choose(spec)
            t2 = time.process_time()
            add_s += t1 - t0
            look_s += t2 - t1
            digest.update(
                repr((choice.source, choice.assessments, choice.expected_saving)).encode()
            )
    finally:
        PromptBankIndex._cluster = cluster  # type: ignore[method-assign]
    print(f"jobs {len(jobs)} (lag {args.lag}), bank {len(bank.index)} entries at the end")
    print(f"additions {added}: {add_s:.2f} s CPU, {1e6 * add_s / max(1, added):.1f} us each")
    print(
        f"lookups {len(jobs)}: {look_s:.2f} s CPU, {1e6 * look_s / len(jobs):.1f} us each "
        f"(with {builds} re-clusterings)"
    )
    print(f"choices sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
