"""Figure 1, end to end: reproduces the paper's headline end-to-end comparison (SLO violation
rate and cost of PromptTuner against INFless and ElasticFlow at three loads) and the ratios
its abstract reports (violations 4.0x / 7.9x lower, cost 1.6x / 4.5x lower).

    python experiments/fig1_end_to_end.py [--quick] [--plot-only] [--jobs N] [--out DIR]
                                          [--seeds K] [--policies a,b] [hydra overrides...]

Config: ``conf/experiment/fig1_end_to_end.yaml`` (32 A100s, 1-hour windows of the default workload,
loads 0.3/0.5/0.7, policies prompttuner/infless/elasticflow, 20 seeds; the paper's ratios as
reference values). Writes into ``--out`` (default ``results/fig1_end_to_end``):

- ``points.csv``: one row per run (policy, load, seed, every summary metric);
- ``reference.csv``: the paper's ratios with their source (copied from the config);
- ``fig1_end_to_end.csv``: per policy and load, violation rate pooled over seeds with a 95%
  Wilson interval, other metrics' means with 95% t-intervals (docs/metrics.md; drawn);
- ``ratios.csv``: baseline / target per load and over all loads, with 95% paired-bootstrap
  intervals over seeds, beside the paper's value;
- ``jobs.csv``: every run's per-job table; ``by_model.csv``: violation rate per policy and
  model (all loads pooled, 95% bootstrap interval over runs), drawn as the third panel;
- ``sensitivity_points.csv``: one row per run of the sensitivity sweep (``sweep.sensitivity``:
  each baseline under both values of its adaptation choice, at one load, same seeds);
  ``sensitivity.csv``: per variant (Wilson intervals for rates, t otherwise), with
  PromptTuner's runs at that load, and baseline / PromptTuner ratios (paired bootstrap) for
  violations and cost (drawn);
- ``fig1_end_to_end.png``: violation rate and cost bars with CIs, violations by model, the
  sensitivity panel and the ratio table.
"""

from __future__ import annotations

import sys
import warnings
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
    ordered,
    save,
    table_height,
    table_panel,
)
from runner import (
    MIN_SEEDS,
    FigureArgs,
    Point,
    Sweep,
    aggregate,
    figure_main,
    read_table,
    run_points,
)
from scipy import stats

from ptsim.outcome import write_csv

FIGURE = "fig1_end_to_end"
LOAD = "workload.load"
METRICS = ("slo_violation_rate", "cost_gpu_hours", "cost_usd", "mean_jct_s", "p99_jct_s")
PANELS = (("slo_violation_rate", "SLO violation rate"), ("cost_gpu_hours", "cost [GPU-hours]"))


def extra_work(sweep: Sweep, args: FigureArgs) -> dict[str, Any]:
    """After the main sweep: the reference table and the sensitivity sweep."""
    save_reference(sweep, args)
    return run_sensitivity(sweep, args)


def sensitivity_points(sweep: Sweep) -> list[Point]:
    """The sensitivity sweep: each variant of ``sweep.sensitivity`` x the sweep's seeds, at
    its load (none if the config has no ``sensitivity`` key or ``--policies`` left none)."""
    sens = sweep.spec.get("sensitivity") or {}
    load = sens.get("load")
    points = []
    for name, ovr in (sens.get("variants") or {}).items():
        ovr = [str(o) for o in ovr]
        policy = next((o.split("=", 1)[1] for o in ovr if o.startswith("scheduler=")), None)
        if policy not in {sweep.policy_of(v) for v in sweep.variants}:
            continue
        for seed in sweep.seeds:
            labels = {"figure": sweep.figure, "variant": str(name), "policy": policy}
            grid_ovr = [f"{LOAD}={load}"]
            overrides = sweep.point_overrides(ovr, grid_ovr, seed=seed)
            points.append(Point(overrides, labels, False, sweep.config_dir))
    return points


def run_sensitivity(sweep: Sweep, args: FigureArgs) -> dict[str, Any]:
    """Run the sensitivity sweep into ``sensitivity_points.csv``."""
    pts = sensitivity_points(sweep)
    target = args.out / "sensitivity_points.csv"
    if not pts:
        target.unlink(missing_ok=True)
        return {"sensitivity_points": 0}
    desc = f"{args.figure} sensitivity"
    result = run_points(
        pts,
        jobs=args.jobs,
        desc=desc,
        progress=args.progress,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    write_csv(result.points, target)
    return {"sensitivity_points": len(pts)}


def sensitivity_table(points: pd.DataFrame, sens: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval of violations and cost per sensitivity variant, PromptTuner's
    runs at the same load first, and each variant's ratio to PromptTuner paired by seed."""
    load = float(sens[LOAD].iloc[0])
    pt = points[(points.policy == "prompttuner") & np.isclose(points[LOAD], load)]
    rows = pd.concat([pt.assign(variant="prompttuner"), sens], ignore_index=True)
    metrics = ["slo_violation_rate", "cost_gpu_hours"]
    agg = aggregate(rows, ["variant", "policy"], metrics)
    agg.insert(2, LOAD, load)
    for metric, short in (("slo_violation_rate", "violations"), ("cost_gpu_hours", "cost")):
        vals: list[tuple[float, float, float]] = []
        for variant in agg.variant:
            both = sens[sens.variant == variant].merge(pt, on="seed", suffixes=("_b", "_t"))
            if variant == "prompttuner" or both.empty:
                vals.append((float("nan"),) * 3)
                continue
            b, t = both[f"{metric}_b"].to_numpy(float), both[f"{metric}_t"].to_numpy(float)
            vals.append(paired_ratio(b, t))
        agg[f"{short}_ratio"] = [v[0] for v in vals]
        agg[f"{short}_ratio_lo"] = [v[1] for v in vals]
        agg[f"{short}_ratio_hi"] = [v[2] for v in vals]
    return agg


def save_reference(sweep: Sweep, args: FigureArgs) -> dict[str, Any]:
    """Write the config's reference ratios (the paper's) as ``reference.csv``."""
    ref = sweep.spec.get("reference") or {}
    rows = [
        {**r, "target": ref.get("target"), "source": " ".join(str(ref.get("source", "")).split())}
        for r in ref.get("ratios") or []
    ]
    cols = ["target", "baseline", "metric", "paper", "source"]
    write_csv(pd.DataFrame(rows, columns=cols), args.out / "reference.csv")
    return {}


def paired_ratio(base: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """mean(base) / mean(target) and its 95% percentile bootstrap interval over the pairs
    (scipy.stats.bootstrap, paired, fixed seed; none below MIN_SEEDS pairs). A zero
    denominator gives inf."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # all-equal pairs: NaN
        point = float(np.mean(base) / np.mean(target)) if len(base) else float("nan")
        if len(base) < MIN_SEEDS:  # too few pairs for an interval that means anything
            return point, float("nan"), float("nan")

        def ratio(b: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.asarray(np.mean(b, axis=axis) / np.mean(t, axis=axis))

        res = stats.bootstrap(
            (base, target),
            ratio,
            paired=True,
            vectorized=True,
            n_resamples=2000,
            confidence_level=0.95,
            method="percentile",
            rng=np.random.default_rng(0),
        )
    lo, hi = res.confidence_interval
    return point, float(lo), float(hi)


def ratio_table(points: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Baseline / target for each reference row, per load and over all loads, paired by
    (load, seed): both policies replayed the same trace."""
    rows = []
    for ref in reference.itertuples(index=False):
        tgt = points[points.policy == ref.target]
        base = points[points.policy == ref.baseline]
        if tgt.empty or base.empty:
            continue
        both = tgt.merge(base, on=[LOAD, "seed"], suffixes=("_t", "_b"))
        groups: list[tuple[str, pd.DataFrame]] = [
            (f"{v:g}", both[both[LOAD] == v]) for v in ordered(both[LOAD])
        ]
        groups.append(("all", both))
        for load, grp in groups:
            b = grp[f"{ref.metric}_b"].to_numpy(float)
            t = grp[f"{ref.metric}_t"].to_numpy(float)
            r, lo, hi = paired_ratio(b, t)
            rows.append(
                {
                    "metric": ref.metric,
                    "ratio": f"{ref.baseline}/{ref.target}",
                    "load": load,
                    "measured": r,
                    "lo": lo,
                    "hi": hi,
                    "paper": ref.paper,
                    "pairs": len(grp),
                }
            )
    cols = ["metric", "ratio", "load", "measured", "lo", "hi", "paper", "pairs"]
    return pd.DataFrame(rows, columns=cols)


def plot(out: Path) -> list[Path]:
    """Draw the figure from ``points.csv`` and ``reference.csv``."""
    points = read_table(out, "points.csv")
    agg = aggregate(points, ["policy", LOAD], [m for m in METRICS if m in points])
    write_csv(agg, out / f"{FIGURE}.csv")
    ref_path = out / "reference.csv"
    reference = pd.read_csv(ref_path) if ref_path.is_file() else pd.DataFrame()
    ratios = ratio_table(points, reference) if not reference.empty else pd.DataFrame()
    if not ratios.empty:
        write_csv(ratios, out / "ratios.csv")
    jobs_path = out / "jobs.csv"
    jobs = pd.read_csv(jobs_path) if jobs_path.is_file() else pd.DataFrame()
    models = by_model(jobs) if not jobs.empty else pd.DataFrame()
    if not models.empty:
        write_csv(models, out / "by_model.csv")
        if "ideal_s" in jobs.columns:
            write_csv(by_deadline_ratio(jobs), out / "by_deadline_ratio.csv")
        write_csv(job_stats(jobs), out / "job_stats.csv")
    sens_path = out / "sensitivity_points.csv"
    sens = pd.DataFrame()
    if sens_path.is_file():
        sens = sensitivity_table(points, pd.read_csv(sens_path))
        write_csv(sens, out / "sensitivity.csv")
    pols = ordered(agg.policy, ["prompttuner", "infless", "elasticflow"])
    pal = colors(pols)
    has_table = not ratios.empty
    cols = 3 if not models.empty else 2
    tab_h = table_height(len(wide_ratios(ratios)), 7.5) if has_table else 0.0
    heights = [3.6] + ([3.0] if not sens.empty else []) + ([tab_h] if has_table else [])
    fig = figure(5.2 * cols, sum(heights) + 0.6)
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
    if not models.empty:
        ax = fig.add_subplot(grid[0, 2])
        label = "SLO violation rate by model (all loads)"
        grouped_bars(
            ax,
            models,
            x="model",
            hue="policy",
            metric="violation_rate",
            x_order=sorted(models.model.unique()),
            ylabel="SLO violation rate",
            hue_order=pols,
            palette=pal,
        )
        ax.set_title(label)
    for i, (metric, label) in enumerate(PANELS):
        ax = fig.add_subplot(grid[0, i])
        grouped_bars(
            ax,
            agg,
            x=LOAD,
            hue="policy",
            metric=metric,
            ylabel=label,
            hue_order=pols,
            palette=pal,
            x_fmt="load {:g}",
        )
        ax.set_title(label)
    figure_legend(fig, fig.axes[:1])
    if not sens.empty:
        for i, (metric, label) in enumerate(PANELS):
            sensitivity_panel(fig.add_subplot(grid[1, i]), sens, metric, label, pal)
        if cols == 3:
            table_panel(
                fig.add_subplot(grid[1, 2]),
                sensitivity_text(sens),
                fontsize=7.5,
                title="baseline / PromptTuner [95% bootstrap CI]",
            )
    fig.suptitle(f"End to end, {int(points.gpus.iloc[0])} GPUs: {interval_caption(agg)}")
    if has_table:
        table_panel(
            fig.add_subplot(grid[len(heights) - 1, :]),
            wide_ratios(ratios),
            fontsize=7.5,
            title="baseline / PromptTuner ('x lower'): measured [95% bootstrap CI] vs the paper",
        )
    return [save(fig, out / f"{FIGURE}.png"), out / f"{FIGURE}.csv"]


def sensitivity_panel(
    ax: Any, sens: pd.DataFrame, metric: str, label: str, pal: dict[Any, str]
) -> None:
    """Bars of one metric per sensitivity variant (95% CI), each baseline bar marked with its
    ratio to PromptTuner ("x2.1")."""
    pos = np.arange(len(sens), dtype=float)
    mean = sens[f"{metric}_mean"].to_numpy(float)
    err = np.vstack([mean - sens[f"{metric}_lo"], sens[f"{metric}_hi"] - mean])
    ax.bar(
        pos,
        mean,
        0.7,
        yerr=np.nan_to_num(err),
        capsize=2,
        color=[pal.get(p) for p in sens.policy],
        error_kw={"elinewidth": 0.8},
    )
    short = "violations" if metric == "slo_violation_rate" else "cost"
    for x, m, r in zip(pos, mean, sens[f"{short}_ratio"], strict=True):
        if not np.isnan(r):
            ax.annotate(f"x{r:.2f}", (x, m), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(pos)
    ax.set_xticklabels([v.replace(" ", "\n") for v in sens.variant], fontsize=7.5)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    clip_axis(ax, metric)
    load = float(sens[LOAD].iloc[0])
    ax.set_title(f"baseline choices at load {load:g} (x = ratio to PromptTuner)", fontsize=9)


def sensitivity_text(sens: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity ratios for display: one row per baseline variant."""
    rows = []
    for r in sens[sens.variant != "prompttuner"].itertuples(index=False):
        rows.append(
            {
                "variant": r.variant,
                "violations": _ci_text(
                    r.violations_ratio, r.violations_ratio_lo, r.violations_ratio_hi
                ),
                "cost": _ci_text(r.cost_ratio, r.cost_ratio_lo, r.cost_ratio_hi),
            }
        )
    return pd.DataFrame(rows, columns=["variant", "violations", "cost"])


def by_model(jobs: pd.DataFrame) -> pd.DataFrame:
    """Violation rate per policy and model: one value per run (load, seed), then mean and 95%
    interval over runs (bootstrap: inside [0, 1]), with the mean number of jobs of that model
    per run."""
    per_run = (
        jobs.assign(violation_rate=~jobs.met_deadline.astype(bool))
        .groupby(["policy", "model", LOAD, "seed"], sort=False)
        .agg(violation_rate=("violation_rate", "mean"), jobs=("job_id", "size"))
        .reset_index()
    )
    return aggregate(per_run, ["policy", "model"], ["violation_rate", "jobs"])


def by_deadline_ratio(jobs: pd.DataFrame) -> pd.DataFrame:
    """Violation rate per policy and deadline ratio (``(deadline_s - arrival_s) / ideal_s``,
    rounded to 2 decimals: the workload's ratio), pooled over every run, with the job count."""
    ratio = ((jobs.deadline_s - jobs.arrival_s) / jobs.ideal_s).round(2)
    j = jobs.assign(deadline_ratio=ratio, missed=~jobs.met_deadline.astype(bool))
    out = j.groupby(["policy", "deadline_ratio"], sort=True).agg(
        jobs=("job_id", "size"), violation_rate=("missed", "mean")
    )
    return out.reset_index()


def job_stats(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per policy and model, over every run: share of the jobs, medians of the deadline slack
    (``deadline_s - arrival_s``), bank lookup seconds and assessments (the numbers the
    results summary of EXPERIMENTS.md cites)."""
    j = jobs.assign(slack_s=jobs.deadline_s - jobs.arrival_s)
    total = j.groupby("policy", sort=False).job_id.size()
    out = (
        j.groupby(["policy", "model"], sort=False)
        .agg(
            jobs=("job_id", "size"),
            slack_s_median=("slack_s", "median"),
            bank_lookup_s_median=("bank_lookup_s", "median"),
            bank_assessments_median=("bank_assessments", "median"),
        )
        .reset_index()
    )
    out["job_share"] = out.jobs / out.policy.map(total)
    return out


def wide_ratios(ratios: pd.DataFrame) -> pd.DataFrame:
    """The ratio table for display: one row per (metric, ratio), one column per load."""
    rows = []
    for (metric, ratio), grp in ratios.groupby(["metric", "ratio"], sort=False):
        row: dict[str, Any] = {"metric": metric, "ratio": ratio}
        cols = (grp.load.astype(str), grp.measured.astype(float), grp.lo, grp.hi)
        for load, m, lo, hi in zip(*cols, strict=True):
            row[f"load {load}"] = _ci_text(m, lo, hi)
        row["paper"] = f"{grp.paper.iloc[0]:g}"
        rows.append(row)
    return pd.DataFrame(rows)


def _ci_text(m: float, lo: float, hi: float) -> str:
    if np.isnan(lo):
        return f"{m:.2f}"
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def main(argv: list[str] | None = None) -> int:
    return figure_main(FIGURE, __doc__, plot, argv, extra=extra_work)


if __name__ == "__main__":
    sys.exit(main())
