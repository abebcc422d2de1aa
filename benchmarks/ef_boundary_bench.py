"""ElasticFlow's re-planning boundaries, one by one: what each costs and how much of its plan a
re-plan could have carried over from the previous boundary's.

Run:  .venv/bin/python benchmarks/ef_boundary_bench.py                 # 1k and 10k live jobs
      .venv/bin/python benchmarks/ef_boundary_bench.py --sizes 1000 --no-carry

The scenario is ``policy_bench.py``'s (the same trace, cluster and warm-up; its p99 at these
sizes is about the second-costliest of these boundaries). For every decision that re-plans,
from the warm-up on, it prints the simulated time, the jobs admitted after it, the newcomers
tested and rejected, and the decision's CPU time (``time.thread_time``). With the carry-over
count (pure build only: it records the plans through a subclass, which a compiled policy class
refuses) each boundary also counts the jobs admitted before it by two questions: did the job's
remaining work change since the previous re-plan (a running job's does; a waiting job's does
not), and is its new plan the previous plan without the slots that passed (``same``)? A plan
can be carried over only when it is the same, and an exact re-plan has to plan at least the
jobs whose inputs changed to know that, so ``rem changed`` bounds from below the plans any
exact incremental re-plan computes. ``first diff`` is the place, in deadline order, of the
first admitted job whose plan is not the same: every later job's free GPUs may differ from
there on. Decisions are deterministic, so the counts are exact; the times are one run's. Not a
test.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from policy_bench import MAX_DECISIONS, WARMUP_S, Enough, _build, run_scenario

from ptsim.core.policies.elasticflow import ElasticFlow, ElasticFlowConfig
from ptsim.core.policy import PolicyContext
from ptsim.core.types import Decision, Snapshot
from ptsim.profiles_io import load_profiles

# one re-plan: its time, the plan (job -> (meets its deadline, GPUs per slot)), the remaining
# work of the jobs planned, and the admitted jobs in deadline order
Plan = tuple[float, dict[str, Any], dict[str, float], list[str]]


def _recording(ctx: PolicyContext, cfg: ElasticFlowConfig) -> Any:
    """An ElasticFlow that keeps each re-plan's plan and its admitted jobs' remaining work, in
    deadline order (defined here: a compiled ElasticFlow cannot be subclassed)."""

    class Recording(ElasticFlow):
        def __init__(self) -> None:
            super().__init__(ctx, cfg)
            self.plans: list[Plan] = []

        def _admit(self, planner: Any, admitted: list[Any], newcomers: list[Any], base: Any) -> Any:
            got = super()._admit(planner, admitted, newcomers, base)
            accepted, _, items, plans, _ = got
            plan = {it.job_id: p for it, p in zip(items, plans, strict=True)}
            remaining = {it.job_id: it.remaining for it in (*admitted, *accepted)}
            self.plans.append((planner.now, plan, remaining, [it.job_id for it in admitted]))
            return got

    return Recording()


@dataclasses.dataclass
class Boundary:
    now: float
    admitted: int
    newcomers: int
    rejected: int
    cpu_ms: float
    carry: Counter[str] | None = None
    first_diff: int | None = None


def _same(new: tuple[bool, Any], old: tuple[bool, Any], shift: int) -> bool:
    """Whether plan ``new`` is plan ``old`` less its first ``shift`` slots (zeros past a row's
    end: a row ends where its job holds nothing more)."""
    a, b = np.asarray(new[1]), np.asarray(old[1])[shift:]
    n = max(len(a), len(b))
    return bool(
        new[0] == old[0] and np.array_equal(np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b))))
    )


def run(n: int, carry: bool, seed: int, slot_s: float) -> list[Boundary]:
    """The re-planning boundaries of ``policy_bench``'s scenario with ``n`` live jobs."""
    profiles = load_profiles({"name": "a100", "dir": "a100"})
    cfg = ElasticFlowConfig()
    ctx = PolicyContext(profiles)
    recording = _recording(ctx, cfg) if carry else None
    policy: ElasticFlow = recording if recording is not None else ElasticFlow(ctx, cfg)
    out: list[Boundary] = []
    seen = 0

    class Timed:
        name = policy.name

        def decide(self, snap: Snapshot) -> Decision:
            nonlocal seen
            before = policy._last_plan
            newcomers = sum(
                1
                for j in snap.queued
                if j.job_id not in policy._admitted and not j.gpus and j.first_start is None
            )
            t0 = time.thread_time()
            d = policy.decide(snap)
            ms = (time.thread_time() - t0) * 1e3
            if policy._last_plan != before and snap.now >= WARMUP_S:
                admitted = len(policy._admitted)
                out.append(Boundary(snap.now, admitted, newcomers, len(d.reject), ms))
            if snap.now >= WARMUP_S:
                seen += 1
                if seen >= MAX_DECISIONS:
                    raise Enough
            return d

    run_scenario(Timed(), n, profiles, seed)
    if recording is not None:
        _count(recording.plans, out, slot_s)
    return out


def _count(
    plans: Sequence[Plan],
    out: list[Boundary],
    slot_s: float,
) -> None:
    by_time = {p[0]: p for p in plans}
    times = sorted(by_time)
    for b in out:
        i = times.index(b.now)
        if i == 0:
            continue
        prev_now, prev_plan, prev_rem, _ = by_time[times[i - 1]]
        _, plan, rem, order = by_time[b.now]
        shift = round((b.now - prev_now) / slot_s)
        c: Counter[str] = Counter()
        for pos, job_id in enumerate(order):
            old = prev_plan.get(job_id)
            if old is None:
                c["new since"] += 1
                continue
            changed = abs(prev_rem[job_id] - rem[job_id]) > 1e-9
            same = _same(plan[job_id], old, shift)
            c[
                ("rem changed" if changed else "rem same") + (", same" if same else ", not same")
            ] += 1
            if not same and b.first_diff is None:
                b.first_diff = pos
        b.carry = c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-carry", action="store_true", help="times only (the compiled build)")
    args = ap.parse_args()
    if min(args.sizes) < 2:
        ap.error("--sizes: each size must be at least 2 live jobs")
    build = _build()
    carry = not args.no_carry
    if carry and build != "pure Python":
        ap.error("the carry-over count needs the pure build (or pass --no-carry)")
    print(f"# {build}; CPU ms per re-planning decision")
    slot = ElasticFlowConfig().slot_s
    for n in args.sizes:
        for b in run(n, carry, args.seed, slot):
            line = (
                f"{n:>6} t={b.now:>6.0f} admitted after {b.admitted:>5} "
                f"newcomers {b.newcomers:>5} rejected {b.rejected:>4} {b.cpu_ms:>8.2f} ms"
            )
            if b.carry is not None:
                kinds = ("rem changed, same", "rem changed, not same", "rem same, same",
                         "rem same, not same", "new since")  # fmt: skip
                line += "  " + "; ".join(f"{k} {b.carry[k]}" for k in kinds)
                line += f"; first diff {b.first_diff}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
