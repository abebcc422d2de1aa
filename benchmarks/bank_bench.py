"""Prompt Bank index benchmark: build time, lookup latency, assessments and quality by layout.

Run:  .venv/bin/python benchmarks/bank_bench.py            (N = 100, 1k, 10k, 100k)
      .venv/bin/python benchmarks/bank_bench.py --sizes 100 1000 --targets 24
      .venv/bin/python benchmarks/bank_bench.py --max-clusters none --sample-limit 4000
                                                  (the index's knobs; default: BankConfig's)

- build: wall time of one ``PromptBankIndex.rebuild`` (K-medoids + assignment) at each N.
- latency: wall time of one lookup with a trivial scorer (one vectorised random draw per batch
  of candidates), so it measures the index's own work, not scoring; median and p95 in ms.
- assessments: mean and max per lookup with the simulation scorer (they depend on which
  clusters the scores lead to).
- quality: mean expected saving of the chosen prompt (simulation scorer, default noise) divided
  by flat's, over the same targets; "oracle" is the best expected saving any entry offers.

Two task spaces: ``paper12`` (the default 12 tasks in 4 families; every target's own task is
in the bank) and ``generic`` (600 tasks in 30 families; at small N most targets' own tasks are
missing, so the lookup has to find a sibling).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ptsim.core.bank import BankEntry, FloatArray, PromptBankIndex
from ptsim.core.bank_sim import SimScorer, synthetic_bank
from ptsim.core.bank_types import BankConfig
from ptsim.core.convergence import ConvergenceModel, TaskSpace

VARIANTS = (("flat", 1), ("two_layer", 1), ("three_layer", 1), ("two_layer", 2))
"""(layout, probe c): the default c = 1, and two-layer with c = 2 (K = sqrt(2N))."""


class TrivialScorer:
    """Random scores from one vectorised draw per batch: near-zero scoring cost."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, entry: BankEntry, target_task: str) -> float:
        return float(self.rng.random())

    def score_many(self, entries: Sequence[BankEntry], target_task: str) -> FloatArray:
        return self.rng.random(len(entries))


@dataclass
class Row:
    space: str
    n: int
    layout: str
    build_s: float
    lat_med_ms: float
    lat_p95_ms: float
    ass_mean: float
    ass_max: int
    saving: float
    quality: float
    oracle: float
    cap: int


def bench_one(
    space_name: str,
    conv: ConvergenceModel,
    n: int,
    n_targets: int,
    seed: int,
    knobs: dict[str, int | None] | None = None,
) -> list[Row]:
    rng = np.random.default_rng(seed)
    entries = synthetic_bank(["m"], conv, n, rng)
    indexes: dict[int, PromptBankIndex] = {}
    build: dict[int, float] = {}
    for probe in sorted({p for _, p in VARIANTS}):
        cfg = BankConfig(seed=seed, probe=probe, **(knobs or {}))
        indexes[probe] = PromptBankIndex(cfg, entries)
        t0 = time.perf_counter()
        indexes[probe].rebuild()
        build[probe] = time.perf_counter() - t0
    targets = [str(t) for t in rng.choice(conv.space.names, size=n_targets)]
    present = sorted({e.source_task for e in entries})
    oracle = float(np.mean([max(conv.expected_saving(s, t) for s in present) for t in targets]))
    rows: list[Row] = []
    flat_saving = math.nan
    for layout, probe in VARIANTS:
        idx = indexes[probe]
        reps = n_targets if layout != "flat" or n <= 10_000 else max(10, n_targets // 4)
        trivial = TrivialScorer(seed)
        lat = []
        for t in targets[:reps]:
            t1 = time.perf_counter()
            idx.lookup("m", t, trivial, rng, layout=layout)
            lat.append(time.perf_counter() - t1)
        scorer = SimScorer(conv, np.random.default_rng(seed + 1))
        sav, ass = [], []
        for t in targets:
            res = idx.lookup("m", t, scorer, rng, layout=layout)
            src = res.entry.source_task if res.entry is not None else None
            sav.append(conv.expected_saving(src, t))
            ass.append(res.assessments)
        saving = float(np.mean(sav))
        if layout == "flat":
            flat_saving = saving
        rows.append(
            Row(
                space_name,
                n,
                layout if probe == 1 else f"{layout} c={probe}",
                build[probe],
                1e3 * float(np.median(lat)),
                1e3 * float(np.percentile(lat, 95)),
                float(np.mean(ass)),
                int(np.max(ass)),
                saving,
                saving / flat_saving if flat_saving > 0 else math.nan,
                oracle,
                idx.config.assessment_cap(n),
            )
        )
    return rows


def table(rows: Sequence[Row]) -> str:
    head = (
        "| space | N | layout | build s | lookup ms (med / p95) | assessments mean / max "
        "| cap | saving | vs flat | oracle |"
    )
    out = [head, "|" + "---|" * 10]
    for r in rows:
        out.append(
            f"| {r.space} | {r.n:,} | {r.layout} | {r.build_s:.3f} | "
            f"{r.lat_med_ms:.3f} / {r.lat_p95_ms:.3f} | {r.ass_mean:.1f} / {r.ass_max} | "
            f"{r.cap} | {r.saving:.3f} | {r.quality:.3f} | {r.oracle:.3f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    ap.add_argument("--targets", type=int, default=120, help="lookups per layout and size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-clusters",
        default=None,
        help="bank.max_clusters (an int or none; default: the config's)",
    )
    ap.add_argument("--sample-limit", type=int, default=None, help="bank.sample_limit")
    args = ap.parse_args()
    knobs: dict[str, int | None] = {}
    if args.max_clusters is not None:
        mc = args.max_clusters.lower()
        knobs["max_clusters"] = None if mc in ("none", "null") else int(mc)
    if args.sample_limit is not None:
        knobs["sample_limit"] = args.sample_limit
    spaces = {
        "paper12": ConvergenceModel.default(),
        "generic": ConvergenceModel(TaskSpace.generic(600, 30, seed=args.seed)),
    }
    rows: list[Row] = []
    for name, conv in spaces.items():
        for n in args.sizes:
            rows.extend(bench_one(name, conv, n, args.targets, args.seed, knobs))
            print("\n".join(table(rows).splitlines()[-len(VARIANTS) :]), flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
