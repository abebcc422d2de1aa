"""Figure 5, the Prompt Bank: reproduces the paper's Prompt Bank study: (a) the cost of a
lookup (score assessments, modelled lookup seconds, index wall time) and the quality of the
prompt it finds versus bank size, for the flat scan, the paper's two-layer index and the
three-layer K-medoid variant; (b) how much a stored prompt saves versus the similarity of its
source task to the target task, from the convergence model and from simulated PromptTuner runs.

    python experiments/fig5_bank.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                    [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig5_bank.yaml``. Part (a) builds synthetic banks
(``ptsim.core.bank_sim.synthetic_bank``) of each size in each task space and looks up random
targets with the simulation scorer through ``PromptBankIndex``, like
``benchmarks/bank_bench.py`` (index wall time is measured here, in worker processes: keep
``--jobs`` at most the core count for it). Part (b) runs PromptTuner with each bank layout and
keeps the per-job tables. Writes into ``--out`` (default ``results/fig5_bank``):

- ``points.csv`` / ``jobs.csv`` / ``timeseries.csv``: the simulated runs of (b); ``jobs.csv``
  gains ``similarity`` (of the chosen source task to the job's task; empty for the default
  prompt) and ``realised_saving`` (1 - iterations_needed / iterations_default);
- ``index.csv``: (a), one row per (space, size, seed, layout);
- ``curve.csv`` (the model's expected saving on a similarity grid) and ``pairs.csv`` (every
  source-target pair of the default task space); ``reference.csv``: the paper's lookup time;
- ``fig5_bank.csv`` (the aggregated numbers drawn), ``fig5_bank.png`` (lookups vs bank size)
  and ``fig5_bank_saving.png`` (saving vs similarity, and per bank variant).
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotting import (
    clip_axis,
    colors,
    figure,
    figure_legend,
    grouped_bars,
    interval_caption,
    log_labels,
    ordered,
    rotate_xticks,
    save,
    yerr,
)
from runner import (
    FigureArgs,
    Sweep,
    SweepError,
    aggregate,
    ci95,
    figure_main,
    parallel_map,
    plain,
    read_table,
)

from ptsim.convergence_io import load_convergence
from ptsim.core.bank import PromptBankIndex
from ptsim.core.bank_sim import SimScorer, synthetic_bank
from ptsim.core.bank_types import BankConfig
from ptsim.core.convergence import ConvergenceModel, TaskSpace
from ptsim.outcome import write_csv
from ptsim.profiles_io import load_profiles

FIGURE = "fig5_bank"
LAYOUTS = ("flat", "two_layer", "three_layer")
INDEX_METRICS = ("assessments_mean", "lookup_s_mean", "lookup_ms_median", "quality", "build_s")
SIM_METRICS = (
    "bank_saving_mean",
    "bank_assessments_mean",
    "bank_lookup_s_mean",
    "slo_violation_rate",
    "cost_gpu_hours",
)


@dataclass(frozen=True)
class IndexTask:
    """One synthetic bank of ``n`` entries in task space ``space``, looked up ``targets``
    times per layout."""

    space: str
    n: int
    seed: int
    layouts: tuple[str, ...]
    targets: int
    eval_s: float
    generic_tasks: int
    generic_families: int
    convergence: str = "fitted"


def convergence_for(task: IndexTask) -> ConvergenceModel:
    """The run's convergence model (``bank.convergence``) in the task's space (``paper12`` =
    the model's own 12 tasks; ``generic`` = many task families, same saving curve)."""
    model = load_convergence(task.convergence).model
    if task.space == "paper12":
        return model
    if task.space == "generic":
        space = TaskSpace.generic(task.generic_tasks, task.generic_families, seed=task.seed)
        return replace(model, space=space)
    raise SweepError(f"unknown task space {task.space!r}; known: paper12, generic")


def index_task(task: IndexTask) -> list[dict[str, Any]]:
    """Build one bank, look up the same targets with every layout; one row per layout."""
    conv = convergence_for(task)
    rng = np.random.default_rng([task.seed, task.n])
    entries = synthetic_bank(["m"], conv, task.n, rng)
    index = PromptBankIndex(BankConfig(seed=task.seed), entries)
    t0 = time.perf_counter()
    index.rebuild()
    build_s = time.perf_counter() - t0
    targets = [str(t) for t in rng.choice(conv.space.names, size=task.targets)]
    present = sorted({e.source_task for e in entries})
    best = {t: max(conv.expected_saving(s, t) for s in present) for t in set(targets)}
    rows = []
    for layout in task.layouts:
        scorer = SimScorer(conv, np.random.default_rng([task.seed, task.n, 1]))
        lrng = np.random.default_rng([task.seed, task.n, 2])
        walls, ass, sav, orc = [], [], [], []
        for t in targets:
            t1 = time.perf_counter()
            res = index.lookup("m", t, scorer, lrng, layout=layout)
            walls.append(time.perf_counter() - t1)
            src = res.entry.source_task if res.entry is not None else None
            ass.append(res.assessments)
            sav.append(conv.expected_saving(src, t))
            orc.append(best[t])
        oracle = float(np.mean(orc))
        rows.append(
            {
                "space": task.space,
                "entries": task.n,
                "seed": task.seed,
                "layout": layout,
                "targets": task.targets,
                "build_s": build_s,
                "lookup_ms_median": 1e3 * float(np.median(walls)),
                "assessments_mean": float(np.mean(ass)),
                "assessments_max": int(np.max(ass)),
                "lookup_s_mean": float(np.mean(ass)) * task.eval_s,
                "saving_mean": float(np.mean(sav)),
                "oracle_saving": oracle,
                "quality": float(np.mean(sav)) / oracle if oracle > 0 else float("nan"),
            }
        )
    return rows


def extra(sweep: Sweep, args: FigureArgs) -> dict[str, Any]:
    """(a) the index study, (b)'s similarity columns, the model's curve and the reference."""
    spec = sweep.spec.get("index") or {}
    profiles = load_profiles(plain(sweep.config.profile))
    model = str(spec.get("model", "vicuna-7b"))
    eval_s = profiles.eval_time(model)
    layouts = tuple(str(x) for x in spec.get("layouts") or LAYOUTS)
    tasks = [
        IndexTask(
            str(space),
            int(n),
            seed,
            layouts,
            int(spec.get("targets", 60)),
            eval_s,
            int(spec.get("generic_tasks", 600)),
            int(spec.get("generic_families", 30)),
            str(sweep.config.bank.convergence),
        )
        for space in spec.get("spaces") or ["paper12"]
        for n in spec.get("sizes") or [100, 1000]
        for seed in range(int(spec.get("seeds", 1)))
    ]
    rows = parallel_map(
        index_task, tasks, jobs=args.jobs, desc=f"{FIGURE} index", progress=args.progress
    )
    write_csv(pd.DataFrame([r for rs in rows for r in rs]), args.out / "index.csv")

    conv = load_convergence(str(sweep.config.bank.convergence)).model
    jobs = pd.read_csv(args.out / "jobs.csv")
    write_csv(with_similarity(jobs, conv), args.out / "jobs.csv")
    grid = np.linspace(0.0, 1.0, 101)
    curve = pd.DataFrame({"similarity": grid, "expected_saving": conv.curve.expected_many(grid)})
    write_csv(curve, args.out / "curve.csv")
    names = conv.space.names
    pairs = pd.DataFrame(
        [
            {
                "source": s,
                "target": t,
                "same_family": conv.space.family(s) == conv.space.family(t),
                "similarity": conv.space.similarity(s, t),
                "expected_saving": conv.expected_saving(s, t),
            }
            for s in names
            for t in names
        ]
    )
    write_csv(pairs, args.out / "pairs.csv")
    ref = sweep.spec.get("reference") or {}
    refs = pd.DataFrame(
        [{"key": "lookup_s", "value": ref.get("lookup_s"), "source": _one_line(ref.get("source"))}]
        if "lookup_s" in ref
        else [],
        columns=["key", "value", "source"],
    )
    write_csv(refs, args.out / "reference.csv")
    return {"index_model": model, "index_eval_s": eval_s, "index_tasks": len(tasks)}


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def with_similarity(jobs: pd.DataFrame, conv: ConvergenceModel) -> pd.DataFrame:
    """``jobs`` plus ``similarity`` (chosen source task to the job's task, NaN for the default
    prompt) and ``realised_saving`` (1 - iterations_needed / iterations_default)."""
    src = jobs["init_source_task"]
    sim = [
        conv.space.similarity(str(s), str(t)) if isinstance(s, str) and s else float("nan")
        for s, t in zip(src, jobs["task"], strict=True)
    ]
    out = jobs.drop(columns=["similarity", "realised_saving"], errors="ignore")
    out["similarity"] = sim
    out["realised_saving"] = 1.0 - out["iterations_needed"] / out["iterations_default"]
    return out


def plot(out: Path) -> list[Path]:
    """Draw both parts from ``index.csv``, ``points.csv``, ``jobs.csv``, ``curve.csv`` and
    ``pairs.csv`` (and ``reference.csv`` when present)."""
    index = read_table(out, "index.csv")
    points = read_table(out, "points.csv")
    jobs = read_table(out, "jobs.csv")
    curve = read_table(out, "curve.csv")
    pairs = read_table(out, "pairs.csv")
    ref_path = out / "reference.csv"
    ref = pd.read_csv(ref_path) if ref_path.is_file() else pd.DataFrame(columns=["key", "value"])
    idx = aggregate(index, ["space", "layout", "entries"], INDEX_METRICS, bootstrap=INDEX_METRICS)
    sim = aggregate(points, ["variant"], [m for m in SIM_METRICS if m in points])
    bins = binned_saving(jobs)
    drawn = pd.concat(
        [idx.assign(part="index"), sim.assign(part="simulation"), bins.assign(part="binned")],
        ignore_index=True,
    )
    write_csv(drawn, out / f"{FIGURE}.csv")

    layouts = ordered(idx.layout, LAYOUTS)
    pal = colors(layouts)
    markers = dict(zip(layouts, "osD^v<>", strict=False))
    styles = {sp: ls for sp, ls in zip(ordered(idx.space), ["-", "--", ":", "-."], strict=False)}
    fig = figure(16, 4.4)
    axes = fig.subplots(1, 4)
    panels = (
        ("assessments_mean", "score assessments per lookup", True),
        ("lookup_s_mean", "modelled lookup time [s]", True),
        ("lookup_ms_median", "index wall time per lookup [ms]", True),
        ("quality", "saving found / best in bank", False),
    )
    # layouts side by side around each bank size (x 0.94..1.06), so lines at 1.0 stay apart
    dodge = {lay: 1.0 + 0.06 * (i - (len(layouts) - 1) / 2) for i, lay in enumerate(layouts)}
    for ax, (metric, label, logy) in zip(axes, panels, strict=True):
        for sp, ls in styles.items():
            for lay in layouts:
                sub = idx[(idx.space == sp) & (idx.layout == lay)].sort_values("entries")
                ax.errorbar(
                    sub.entries.to_numpy(float) * dodge[lay],
                    sub[f"{metric}_mean"].to_numpy(float),
                    yerr=yerr(sub, metric),
                    color=pal[lay],
                    ls=ls,
                    marker=markers[lay],
                    ms=4,
                    capsize=2,
                )
        ax.set_xscale("log")
        if logy and bool((idx[f"{metric}_mean"] > 0).all()):
            ax.set_yscale("log")
            log_labels(ax.yaxis)
        else:
            clip_axis(ax, metric)
        ax.set_xlabel("bank size [entries of one model]")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    lookup_ref = ref[ref.key == "lookup_s"]
    if not lookup_ref.empty:
        axes[1].axhline(
            float(lookup_ref.value.iloc[0]), color="k", ls=":", lw=1, label="paper: two-layer"
        )
    for lay in layouts:
        axes[0].plot([], [], color=pal[lay], marker=markers[lay], label=f"layout {lay}")
    for sp, ls in styles.items():
        axes[0].plot([], [], color="k", ls=ls, label=f"task space {sp}")
    figure_legend(fig, axes[:2])
    fig.suptitle(f"Prompt Bank lookups vs bank size, per size: {interval_caption(idx, 'bank')}")
    files = [save(fig, out / f"{FIGURE}.png")]

    fig = figure(15, 4.6)
    axes = fig.subplots(1, 3, width_ratios=[1.4, 1, 1])
    ax = axes[0]
    ax.scatter(
        pairs.similarity, pairs.expected_saving, s=10, color="#8C8C8C", label="task pairs (model)"
    )
    chosen = jobs.dropna(subset=["similarity"])
    ax.scatter(
        chosen.similarity,
        chosen.realised_saving,
        s=6,
        alpha=0.25,
        color="#4C72B0",
        label="simulated jobs",
    )
    ax.plot(curve.similarity, curve.expected_saving, color="k", lw=1.2, label="expected (model)")
    ax.errorbar(
        bins.similarity_mid,
        bins.realised_saving_mean,
        yerr=[
            bins.realised_saving_mean - bins.realised_saving_lo,
            bins.realised_saving_hi - bins.realised_saving_mean,
        ],
        fmt="o",
        ms=5,
        capsize=2,
        color="#C44E52",
        label="simulated jobs, binned mean (95% t)",
    )
    ax.set_xlabel("similarity of source task to target task")
    ax.set_ylabel("iterations saved [fraction of default]")
    ax.grid(alpha=0.3)

    sim = sim.assign(run="PromptTuner")
    for ax, (metric, label) in zip(
        axes[1:],
        (
            ("bank_saving_mean", "mean iterations saved per job [fraction]"),
            ("bank_lookup_s_mean", "mean lookup time per job [s]"),
        ),
        strict=True,
    ):
        grouped_bars(
            ax,
            sim,
            x="variant",
            hue="run",
            metric=metric,
            ylabel=label,
            x_order=ordered(sim.variant, LAYOUTS),
            palette={"PromptTuner": "#4C72B0"},
        )
        rotate_xticks(ax)
    figure_legend(fig, axes[:1])
    fig.suptitle(
        f"Iteration saving vs similarity, simulated PromptTuner runs per bank variant: "
        f"{interval_caption(sim)}"
    )
    files.append(save(fig, out / f"{FIGURE}_saving.png"))
    return [*files, out / f"{FIGURE}.csv"]


def binned_saving(jobs: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Mean realised saving (95% CI) of jobs started from a stored prompt, by similarity bin."""
    chosen = jobs.dropna(subset=["similarity"])
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        sel = chosen[(chosen.similarity >= lo) & (chosen.similarity < hi + (hi == 1.0))]
        if sel.empty:
            continue
        m, clo, chi = ci95(sel.realised_saving)
        rows.append(
            {
                "similarity_lo": lo,
                "similarity_hi": hi,
                "similarity_mid": float(sel.similarity.mean()),
                "jobs": len(sel),
                "realised_saving_mean": m,
                "realised_saving_lo": clo if not np.isnan(clo) else m,
                "realised_saving_hi": chi if not np.isnan(chi) else m,
                "expected_saving_mean": float(sel.expected_saving.mean()),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv, extra=extra)


if __name__ == "__main__":
    sys.exit(main())
