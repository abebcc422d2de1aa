"""Fill EXPERIMENTS.md's numbers from the saved result tables, so prose and tables cannot drift.

Every number of the results summary sits between two markers, ``<!--=NAME-->`` and
``<!--/=-->`` (HTML comments: invisible on a rendered page). ``NAME`` is one of the
:data:`QUANTITIES` below, each a function of the result tables that returns the text to put
between the markers (a value, a range, or a whole Markdown table). The tables are the committed
snapshot in ``experiments/tables/<figure>/``: small aggregated CSVs copied from a figure's
output folder by ``--snapshot``.

    python experiments/render_experiments.py                  # rewrite EXPERIMENTS.md
    python experiments/render_experiments.py --check          # exit 1 if it would change
    python experiments/render_experiments.py --snapshot results   # copy results/<fig>/ tables
                                                                  # into the snapshot, then render

After rerunning figure 1 or 2 (``python experiments/fig1_end_to_end.py`` ...), run it with
``--snapshot results`` and commit the snapshot with the document. ``tests/test_experiments_doc.py``
checks that the committed document is what the committed tables render to.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "EXPERIMENTS.md"
SNAPSHOT = ROOT / "experiments" / "tables"

SNAPSHOT_FILES = {
    "fig1_end_to_end": (
        "fig1_end_to_end.csv",
        "ratios.csv",
        "by_model.csv",
        "job_stats.csv",
        "per_policy.csv",
        "by_deadline_ratio.csv",
        "sensitivity.csv",
    ),
    "fig2_ablation": ("fig2_ablation.csv", "deltas.csv"),
    "fig3_slo_tightness": ("fig3_slo_tightness.csv",),
    "fig4_cold_start": ("fig4_cold_start.csv",),
    "fig5_bank": ("fig5_bank.csv",),
    "fig6_scale": ("fig6_scale.csv",),
    "fig7_timelines": (),
}
"""The tables of each figure's output folder the document cites (``per_policy.csv`` is made by
:func:`per_policy` from ``points.csv`` when the snapshot is taken). Every figure's
``sweep.yaml`` (what ran: runs, worker count, wall time) is copied as well."""

MARKER = re.compile(r"<!--=([\w.\-]+)-->(.*?)<!--/=-->", re.DOTALL)
NAMES = {"prompttuner": "PromptTuner", "infless": "INFless", "elasticflow": "ElasticFlow"}
LOAD = "workload.load"


class Tables:
    """The snapshot's tables, read on first use."""

    def __init__(self, root: Path = SNAPSHOT) -> None:
        self.root = root
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}

    def __call__(self, figure: str, name: str) -> pd.DataFrame:
        key = (figure, name)
        if key not in self._cache:
            path = self.root / figure / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing from the snapshot (run --snapshot)")
            self._cache[key] = pd.read_csv(path)
        return self._cache[key]

    def sweep(self, figure: str) -> dict[str, Any]:
        """The figure's ``sweep.yaml``: what ran and how long it took."""
        path = self.root / figure / "sweep.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing from the snapshot (run --snapshot)")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a mapping")
        return data


# ------------------------------------------------------------------------------ formatting


def ci(row: pd.Series, metric: str, digits: int = 3, scale: float = 1.0, sign: bool = False) -> str:
    """``mean [lo, hi]`` of an aggregated row (``_mean/_lo/_hi`` or ``d_..`` columns)."""
    mean, lo, hi = (float(row[f"{metric}_{s}"]) * scale for s in ("mean", "lo", "hi"))
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if pd.isna(lo) or pd.isna(hi):
        return f.format(mean)
    return f"{f.format(mean)} [{lo:.{digits}f}, {hi:.{digits}f}]"


def span(values: pd.Series | list[float], fmt: str = "{:.0f}") -> str:
    """``a-b`` of the smallest and largest value (one value if they print the same)."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def one(df: pd.DataFrame, **where: object) -> pd.Series:
    """The single row of ``df`` where every column equals its value."""
    sel = df
    for col, val in where.items():
        sel = sel[sel[col.replace("__", ".")] == val]
    if len(sel) != 1:
        raise KeyError(f"expected one row where {where}, found {len(sel)}")
    return sel.iloc[0]


def loads(df: pd.DataFrame) -> list[float]:
    return sorted(df[LOAD].unique()) if LOAD in df else sorted(df["load"].unique())


# ------------------------------------------------------------------------------ figure 1


def fig1_table(t: Tables) -> str:
    agg = t("fig1_end_to_end", "fig1_end_to_end.csv")
    lines = ["| load | policy | SLO violation rate | cost [GPU-h] |", "|---|---|---|---|"]
    for load in loads(agg):
        for pol in NAMES:
            r = one(agg, policy=pol, workload__load=load)
            lines.append(
                f"| {load:g} | {NAMES[pol]} | {ci(r, 'slo_violation_rate')} | "
                f"{ci(r, 'cost_gpu_hours', 2)} |"
            )
    return "\n" + "\n".join(lines) + "\n"


def _ratio(t: Tables, metric: str, baseline: str, load: str = "all") -> pd.Series:
    r = t("fig1_end_to_end", "ratios.csv")
    return one(r, metric=metric, ratio=f"{baseline}/prompttuner", load=load)


def fig1_ratios(t: Tables) -> str:
    lines = ["| ratio | measured | paper |", "|---|---|---|"]
    for metric, what in (("slo_violation_rate", "violations"), ("cost_gpu_hours", "cost")):
        for base in ("infless", "elasticflow"):
            r = _ratio(t, metric, base)
            lines.append(
                f"| {what}, {NAMES[base]} / PromptTuner | {r.measured:.2f} "
                f"[{r.lo:.2f}, {r.hi:.2f}] | {r.paper:.1f} |"
            )
    return "\n" + "\n".join(lines) + "\n"


def _by_model(t: Tables, pol: str, model: str) -> pd.Series:
    return one(t("fig1_end_to_end", "by_model.csv"), policy=pol, model=model)


def _stats(t: Tables, pol: str, model: str) -> pd.Series:
    return one(t("fig1_end_to_end", "job_stats.csv"), policy=pol, model=model)


def _per_policy(t: Tables, pol: str) -> pd.Series:
    return one(t("fig1_end_to_end", "per_policy.csv"), policy=pol)


def _pct_ci(row: pd.Series, metric: str) -> str:
    """``38.6% [36.1, 41.0]``: a rate's mean and interval in percent."""
    mean, lo, hi = (100.0 * float(row[f"{metric}_{s}"]) for s in ("mean", "lo", "hi"))
    if pd.isna(lo) or pd.isna(hi):
        return f"{mean:.1f}%"
    return f"{mean:.1f}% [{lo:.1f}, {hi:.1f}]"


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _cost_ratio_by_load(t: Tables) -> str:
    r = t("fig1_end_to_end", "ratios.csv")
    sel = r[(r.metric == "cost_gpu_hours") & (r.ratio == "infless/prompttuner") & (r.load != "all")]
    first, last = sel.iloc[0], sel.iloc[-1]
    return f"{first.measured:.2f} at {first.load} to {last.measured:.2f} at {last.load}"


def _smaller(t: Tables, base: str) -> str:
    r = _ratio(t, "slo_violation_rate", base)
    return f"{r.paper / r.measured:.1f}x"


def _pt_floor(t: Tables) -> str:
    agg = t("fig1_end_to_end", "fig1_end_to_end.csv")
    return span(agg[agg.policy == "prompttuner"].slo_violation_rate_mean, "{:.2f}")


def _ef_cost_per_met(t: Tables) -> str:
    ef, pt = _per_policy(t, "elasticflow"), _per_policy(t, "prompttuner")
    return f"{ef.cost_per_met_job / pt.cost_per_met_job:.2f}x"


# ------------------------------------------------------------------------------ figure 2


def _delta(t: Tables, variant: str, load: float) -> pd.Series:
    return one(t("fig2_ablation", "deltas.csv"), variant=variant, load=load)


def _agg2(t: Tables, variant: str, load: float) -> pd.Series:
    return one(t("fig2_ablation", "fig2_ablation.csv"), variant=variant, workload__load=load)


FIG2_ROWS = (
    ("pt_no_bank", "no bank vs PromptTuner", ("slo_violation_rate", "cost_gpu_hours")),
    ("pt_no_warm_pool", "no warm pool vs PromptTuner", ("slo_violation_rate", "cost_gpu_hours")),
    ("pt_no_elasticity", "no elasticity vs PromptTuner", ("slo_violation_rate", "cost_gpu_hours")),
    ("pt_none", "none of the three vs PromptTuner", ("slo_violation_rate",)),
    ("infless_bank", "INFless + bank vs INFless", ("slo_violation_rate", "cost_gpu_hours")),
    (
        "elasticflow_bank",
        "ElasticFlow + bank vs ElasticFlow",
        ("slo_violation_rate", "cost_gpu_hours"),
    ),
)


def fig2_deltas(t: Tables) -> str:
    d = t("fig2_ablation", "deltas.csv")
    ls = loads(d)
    head = "| variant vs reference | " + " | ".join(f"load {v:g}" for v in ls) + " |"
    lines = [head, "|---|" + "---|" * len(ls)]
    for variant, text, metrics in FIG2_ROWS:
        for m in metrics:
            what = "violations" if m == "slo_violation_rate" else "cost [GPU-h]"
            digits = 3 if m == "slo_violation_rate" else 2
            cells = [ci(_delta(t, variant, v), f"d_{m}", digits, sign=True) for v in ls]
            lines.append(f"| {text}: {what} | " + " | ".join(cells) + " |")
    return "\n" + "\n".join(lines) + "\n"


def _points(t: Tables, variant: str) -> str:
    """Violation difference in percentage points, over loads."""
    d = t("fig2_ablation", "deltas.csv")
    return span(list(100 * d[d.variant == variant].d_slo_violation_rate_mean))


def _cost_change(t: Tables, variant: str, reference: str) -> str:
    """Relative cost difference variant vs reference in %, over loads (absolute values)."""
    d = t("fig2_ablation", "deltas.csv")
    out = []
    for v in loads(d):
        ref = _agg2(t, reference, v).cost_gpu_hours_mean
        out.append(abs(100 * _delta(t, variant, v).d_cost_gpu_hours_mean / ref))
    return span(out) + "%"


def _cost_vs(t: Tables, variant: str, reference: str) -> str:
    d = t("fig2_ablation", "deltas.csv")
    out = [
        100
        * (
            _agg2(t, variant, v).cost_gpu_hours_mean / _agg2(t, reference, v).cost_gpu_hours_mean
            - 1
        )
        for v in loads(d)
    ]
    return span(out) + "%"


def _viol_range(t: Tables, variant: str) -> str:
    a = t("fig2_ablation", "fig2_ablation.csv")
    return span(a[a.variant == variant].slo_violation_rate_mean, "{:.2f}")


def _mean_over_loads(t: Tables, variant: str, metric: str, fmt: str) -> str:
    a = t("fig2_ablation", "fig2_ablation.csv")
    return fmt.format(a[a.variant == variant][f"{metric}_mean"].mean())


def _miss_at_ratio(t: Tables, ratio: float) -> str:
    """Each policy's violation rate at one deadline ratio, e.g. 'PromptTuner 57%, INFless 70%,
    ElasticFlow 75%'."""
    df = t("fig1_end_to_end", "by_deadline_ratio.csv")
    rows = df[(df.deadline_ratio - ratio).abs() < 1e-9].set_index("policy")
    return ", ".join(
        f"{NAMES[p]} {_pct(rows.loc[p, 'violation_rate'], 0)}" for p in NAMES if p in rows.index
    )


def _sensitivity_cost(t: Tables, variant: str) -> str:
    """A baseline variant's cost ratio to PromptTuner in figure 1's sensitivity panel."""
    df = t("fig1_end_to_end", "sensitivity.csv").set_index("variant")
    return f"{df.loc[variant, 'cost_ratio']:.2f}"


# ------------------------------------------------------------------------------ figures 3 and 4

AXES = {
    "fig3_slo_tightness": "deadline_scale",
    "fig4_cold_start": "profile.mechanics.cold_start_scale",
    "fig6_scale": "gpus",
}
"""The swept axis of each one-axis figure's aggregated table."""


def _axis_rows(t: Tables, fig: str, policy: str) -> pd.DataFrame:
    df = t(fig, f"{fig}.csv")
    return df[df.policy == policy].sort_values(AXES[fig])


def _ends(t: Tables, fig: str, policy: str, metric: str, digits: int = 2) -> str:
    """A policy's mean at the smallest and the largest value of the figure's axis: ``a -> b``."""
    rows = _axis_rows(t, fig, policy)
    a, b = rows[f"{metric}_mean"].iloc[0], rows[f"{metric}_mean"].iloc[-1]
    return f"{a:.{digits}f} -> {b:.{digits}f}"


def _all_ends(t: Tables, fig: str, metric: str, digits: int = 2) -> str:
    """Every policy's :func:`_ends`, named: ``PromptTuner 0.60 -> 0.02, INFless ...``."""
    return ", ".join(f"{NAMES[p]} {_ends(t, fig, p, metric, digits)}" for p in NAMES)


def _rel_change(t: Tables, fig: str, policy: str, metric: str) -> str:
    """Relative change of a policy's mean from the first to the last axis value, in %."""
    rows = _axis_rows(t, fig, policy)
    a, b = rows[f"{metric}_mean"].iloc[0], rows[f"{metric}_mean"].iloc[-1]
    return f"{100 * (b / a - 1):+.0f}%"


def _lowest(t: Tables, fig: str, metric: str, policy: str = "prompttuner") -> str:
    """At how many axis values ``policy`` has the lowest mean: ``k of n``."""
    df = t(fig, f"{fig}.csv")
    axis = AXES[fig]
    best = df.loc[df.groupby(axis)[f"{metric}_mean"].idxmin()]
    return f"{int((best.policy == policy).sum())} of {len(best)}"


def axis_table(fig: str, label: str, metrics: tuple[tuple[str, str, int], ...]) -> Callable:
    """A Markdown table of one-axis figure ``fig``: per axis value and policy, each metric's
    mean [95% interval]."""

    def table(t: Tables) -> str:
        df = t(fig, f"{fig}.csv")
        axis = AXES[fig]
        head = f"| {label} | policy | " + " | ".join(h for _, h, _ in metrics) + " |"
        lines = [head, "|---|---|" + "---|" * len(metrics)]
        for v in sorted(df[axis].unique()):
            for pol in NAMES:
                r = one(df, policy=pol, **{axis.replace(".", "__"): v})
                cells = [ci(r, m, d) for m, _, d in metrics]
                lines.append(f"| {v:g} | {NAMES[pol]} | " + " | ".join(cells) + " |")
        return "\n" + "\n".join(lines) + "\n"

    return table


def _runs(t: Tables, fig: str) -> str:
    sw = t.sweep(fig)
    extra = sw.get("sensitivity_points")
    return f"{sw['runs']} + {extra}" if extra else str(sw["runs"])


def _wall(t: Tables, fig: str) -> str:
    sw = t.sweep(fig)
    return f"{float(sw['sweep_wall_s']) + float(sw.get('extra_wall_s') or 0):.0f} s"


def _workers(t: Tables) -> str:
    return span([int(t.sweep(f)["jobs"]) for f in SNAPSHOT_FILES], "{:d}")


# ------------------------------------------------------------------------------ figure 5

LAYOUT_NAMES = {"flat": "flat", "two_layer": "two-layer", "three_layer": "three-layer"}


def _index(t: Tables) -> pd.DataFrame:
    df = t("fig5_bank", "fig5_bank.csv")
    return df[df.part == "index"]


def _index_row(t: Tables, space: str, layout: str, entries: float) -> pd.Series:
    return one(_index(t), space=space, layout=layout, entries=entries)


def fig5_index_table(t: Tables) -> str:
    idx = _index(t)
    lines = [
        "| task space | entries | two-layer: assessments | lookup [s] | quality "
        "| three-layer: assessments | quality |",
        "|---|---|---|---|---|---|---|",
    ]
    for space in ("paper12", "generic"):
        for n in sorted(idx[idx.space == space].entries.unique()):
            two = _index_row(t, space, "two_layer", n)
            three = _index_row(t, space, "three_layer", n)
            lines.append(
                f"| {space} | {n:,.0f} | {two.assessments_mean_mean:.0f} | "
                f"{two.lookup_s_mean_mean:.0f} | {two.quality_mean:.2f} | "
                f"{three.assessments_mean_mean:.0f} | {three.quality_mean:.2f} |"
            )
    return "\n" + "\n".join(lines) + "\n"


def _eval_s(t: Tables) -> str:
    r = _index(t)
    r = r[r.layout == "flat"].iloc[0]
    return f"{r.lookup_s_mean_mean / r.assessments_mean_mean:.2f} s"


def _quality_span(t: Tables, space: str, layout: str) -> str:
    idx = _index(t)
    return span(idx[(idx.space == space) & (idx.layout == layout)].quality_mean, "{:.2f}")


def _sim5(t: Tables) -> pd.DataFrame:
    df = t("fig5_bank", "fig5_bank.csv")
    return df[df.part == "simulation"].set_index("variant")


def fig5_sim_table(t: Tables) -> str:
    sim = _sim5(t)
    lines = [
        "| bank variant | iterations saved | assessments / job | lookup [s / job] "
        "| SLO violation rate | cost [GPU-h] |",
        "|---|---|---|---|---|---|",
    ]
    for v, r in sim.iterrows():
        lines.append(
            f"| {v} | {ci(r, 'bank_saving_mean', 3)} | {r.bank_assessments_mean_mean:.1f} | "
            f"{r.bank_lookup_s_mean_mean:.1f} | {ci(r, 'slo_violation_rate')} | "
            f"{ci(r, 'cost_gpu_hours', 2)} |"
        )
    return "\n" + "\n".join(lines) + "\n"


def fig5_binned_table(t: Tables) -> str:
    df = t("fig5_bank", "fig5_bank.csv")
    b = df[df.part == "binned"].sort_values("similarity_lo")
    lines = [
        "| similarity of the chosen source | jobs | realised saving | model's expectation |",
        "|---|---|---|---|",
    ]
    for _, r in b.iterrows():
        lines.append(
            f"| {r.similarity_lo:.1f}-{r.similarity_hi:.1f} | {r.jobs:.0f} | "
            f"{ci(r, 'realised_saving', 3)} | {r.expected_saving_mean:.3f} |"
        )
    return "\n" + "\n".join(lines) + "\n"


def _sim5_value(t: Tables, variant: str, metric: str, fmt: str) -> str:
    return fmt.format(_sim5(t).loc[variant, f"{metric}_mean"])


# ------------------------------------------------------------------------------ figure 6


def _at(t: Tables, fig: str, policy: str, value: float, metric: str) -> float:
    return float(one(t(fig, f"{fig}.csv"), policy=policy, **{AXES[fig]: value})[f"{metric}_mean"])


def _ef_idle_share(t: Tables) -> str:
    top = max(t("fig6_scale", "fig6_scale.csv").gpus)
    idle = _at(t, "fig6_scale", "elasticflow", top, "gpu_hours_warm_idle")
    cost = _at(t, "fig6_scale", "elasticflow", top, "cost_gpu_hours")
    return f"{100 * idle / cost:.0f}%"


def _top_value(t: Tables, policy: str, metric: str, fmt: str) -> str:
    top = max(t("fig6_scale", "fig6_scale.csv").gpus)
    return fmt.format(_at(t, "fig6_scale", policy, top, metric))


QUANTITIES: dict[str, Callable[[Tables], str]] = {
    "fig1.miss_at_0.5": lambda t: _miss_at_ratio(t, 0.5),
    "fig1.miss_at_1.5": lambda t: _miss_at_ratio(t, 1.5),
    "fig1.sens_infless_per_config": lambda t: _sensitivity_cost(t, "infless per_config"),
    "fig1.sens_infless_per_model": lambda t: _sensitivity_cost(t, "infless per_model"),
    "fig1.sens_ef_released": lambda t: _sensitivity_cost(t, "elasticflow released"),
    "fig1.sens_ef_dedicated": lambda t: _sensitivity_cost(t, "elasticflow dedicated"),
    "fig1.table": fig1_table,
    "fig1.ratios": fig1_ratios,
    "fig1.seeds": lambda t: str(int(t("fig1_end_to_end", "fig1_end_to_end.csv").n.max())),
    "fig1.infless_cost_ratio": lambda t: f"{_ratio(t, 'cost_gpu_hours', 'infless').measured:.2f}",
    "fig1.infless_cost_ratio_by_load": _cost_ratio_by_load,
    "fig1.ef_cost_ratio": lambda t: f"{_ratio(t, 'cost_gpu_hours', 'elasticflow').measured:.2f}",
    "fig1.infless_smaller": lambda t: _smaller(t, "infless"),
    "fig1.ef_smaller": lambda t: _smaller(t, "elasticflow"),
    "fig1.pt_floor": _pt_floor,
    "fig1.pt_miss_gpt2_base": lambda t: _pct_ci(
        _by_model(t, "prompttuner", "gpt2-base"), "violation_rate"
    ),
    "fig1.pt_miss_gpt2_large": lambda t: _pct(
        _by_model(t, "prompttuner", "gpt2-large").violation_rate_mean
    ),
    "fig1.pt_miss_vicuna": lambda t: _pct(
        _by_model(t, "prompttuner", "vicuna-7b").violation_rate_mean
    ),
    "fig1.gpt2_base_lookup": lambda t: (
        f"{_stats(t, 'prompttuner', 'gpt2-base').bank_lookup_s_median:.1f} s"
    ),
    "fig1.gpt2_base_assessments": lambda t: (
        f"{_stats(t, 'prompttuner', 'gpt2-base').bank_assessments_median:.0f}"
    ),
    "fig1.ef_rejected": lambda t: (
        f"{_per_policy(t, 'elasticflow').rejected:.1f} of {_per_policy(t, 'elasticflow').jobs:.1f}"
    ),
    "fig1.ef_cost_per_met": _ef_cost_per_met,
    "fig2.deltas": fig2_deltas,
    "fig2.bank_cost_more": lambda t: _cost_change(t, "pt_no_bank", "prompttuner"),
    "fig2.bank_points": lambda t: _points(t, "pt_no_bank"),
    "fig2.pt_saving": lambda t: _mean_over_loads(t, "prompttuner", "bank_saving_mean", "{:.0%}"),
    "fig2.infless_bank_cost_cut": lambda t: _cost_change(t, "infless_bank", "infless"),
    "fig2.infless_bank_viol": lambda t: _viol_range(t, "infless_bank"),
    "fig2.infless_bank_vs_pt_cost": lambda t: _cost_vs(t, "infless_bank", "prompttuner"),
    "fig2.warm_pool_points": lambda t: _points(t, "pt_no_warm_pool"),
    "fig2.warm_pool_cost_cut": lambda t: _cost_change(t, "pt_no_warm_pool", "prompttuner"),
    "fig2.pt_rescales": lambda t: _mean_over_loads(t, "prompttuner", "rescales", "{:.0f}"),
    "fig2.none_points": lambda t: _points(t, "pt_none"),
    "fig2.elasticity_points": lambda t: _points(t, "pt_no_elasticity"),
    "fig2.elasticity_cost_cut": lambda t: _cost_change(t, "pt_no_elasticity", "prompttuner"),
    "fig3.table": axis_table(
        "fig3_slo_tightness",
        "deadline scale",
        (
            ("slo_violation_rate", "SLO violation rate", 3),
            ("cost_gpu_hours", "cost [GPU-h]", 2),
            ("rejected", "rejected / run", 1),
        ),
    ),
    "fig3.viol_ends": lambda t: _all_ends(t, "fig3_slo_tightness", "slo_violation_rate"),
    "fig3.pt_lowest_viol": lambda t: _lowest(t, "fig3_slo_tightness", "slo_violation_rate"),
    "fig3.pt_lowest_cost": lambda t: _lowest(t, "fig3_slo_tightness", "cost_gpu_hours"),
    "fig3.cost_ends": lambda t: _all_ends(t, "fig3_slo_tightness", "cost_gpu_hours", 1),
    "fig3.ef_rejected_ends": lambda t: _ends(t, "fig3_slo_tightness", "elasticflow", "rejected", 1),
    "fig3.jct_ends": lambda t: _all_ends(t, "fig3_slo_tightness", "mean_jct_s", 0),
    "fig4.table": axis_table(
        "fig4_cold_start",
        "load-time scale",
        (
            ("slo_violation_rate", "SLO violation rate", 3),
            ("cost_gpu_hours", "cost [GPU-h]", 2),
            ("gpu_hours_loading", "GPU-h loading", 2),
            ("warm_hit_rate", "warm-hit rate", 2),
        ),
    ),
    "fig4.viol_ends": lambda t: _all_ends(t, "fig4_cold_start", "slo_violation_rate"),
    "fig4.loading_ends": lambda t: _all_ends(t, "fig4_cold_start", "gpu_hours_loading"),
    "fig4.pt_lowest_viol": lambda t: _lowest(t, "fig4_cold_start", "slo_violation_rate"),
    "fig4.pt_warm_hit_ends": lambda t: _ends(t, "fig4_cold_start", "prompttuner", "warm_hit_rate"),
    "fig4.infless_warm_hit_ends": lambda t: _ends(t, "fig4_cold_start", "infless", "warm_hit_rate"),
    "fig4.pt_cost_change": lambda t: _rel_change(
        t, "fig4_cold_start", "prompttuner", "cost_gpu_hours"
    ),
    "fig4.infless_cost_change": lambda t: _rel_change(
        t, "fig4_cold_start", "infless", "cost_gpu_hours"
    ),
    "fig4.queue_ends": lambda t: _all_ends(t, "fig4_cold_start", "mean_queue_delay_s", 0),
    "fig5.seeds": lambda t: str(len(t.sweep("fig5_bank")["seeds"])),
    "fig5.index_table": fig5_index_table,
    "fig5.eval_s": _eval_s,
    "fig5.two_layer_paper12_quality": lambda t: _quality_span(t, "paper12", "two_layer"),
    "fig5.two_layer_generic_quality": lambda t: _quality_span(t, "generic", "two_layer"),
    "fig5.three_layer_generic_quality": lambda t: _quality_span(t, "generic", "three_layer"),
    "fig5.sim_table": fig5_sim_table,
    "fig5.binned_table": fig5_binned_table,
    "fig5.flat_lookup_s": lambda t: _sim5_value(t, "flat", "bank_lookup_s_mean", "{:.0f} s"),
    "fig5.two_layer_lookup_s": lambda t: _sim5_value(
        t, "two_layer", "bank_lookup_s_mean", "{:.0f} s"
    ),
    "fig6.table": axis_table(
        "fig6_scale",
        "GPUs",
        (
            ("slo_violation_rate", "SLO violation rate", 3),
            ("cost_per_job_gpu_hours", "GPU-h per job", 3),
            ("sim_wall_s", "simulator wall [s]", 2),
            ("decision_ms", "decision [ms]", 2),
        ),
    ),
    "fig6.jobs_ends": lambda t: _ends(t, "fig6_scale", "prompttuner", "jobs", 0),
    "fig6.viol_ends": lambda t: _all_ends(t, "fig6_scale", "slo_violation_rate"),
    "fig6.pt_lowest_viol": lambda t: _lowest(t, "fig6_scale", "slo_violation_rate"),
    "fig6.cost_per_job_ends": lambda t: _all_ends(t, "fig6_scale", "cost_per_job_gpu_hours"),
    "fig6.ef_idle_share": _ef_idle_share,
    "fig6.ef_rejected_top": lambda t: _top_value(t, "elasticflow", "rejected", "{:.0f}"),
    "fig6.jobs_top": lambda t: _top_value(t, "elasticflow", "jobs", "{:.0f}"),
    "fig6.pt_assessments_ends": lambda t: _ends(
        t, "fig6_scale", "prompttuner", "bank_assessments_mean", 1
    ),
    "fig6.pt_lookup_ends": lambda t: _ends(t, "fig6_scale", "prompttuner", "bank_lookup_s_mean", 1),
    "fig6.pt_wall_top": lambda t: _top_value(t, "prompttuner", "sim_wall_s", "{:.1f} s"),
    "fig6.infless_wall_top": lambda t: _top_value(t, "infless", "sim_wall_s", "{:.1f} s"),
    "fig6.pt_decision_top": lambda t: _top_value(t, "prompttuner", "decision_ms", "{:.1f} ms"),
}
"""Every name a marker may use, and how its text is made from the tables."""

for _fig in SNAPSHOT_FILES:
    _short = _fig.split("_", 1)[0]
    QUANTITIES[f"{_short}.runs"] = lambda t, f=_fig: _runs(t, f)
    QUANTITIES[f"{_short}.wall"] = lambda t, f=_fig: _wall(t, f)
QUANTITIES["figures.workers"] = _workers


# ------------------------------------------------------------------------------ snapshot


def per_policy(points: pd.DataFrame) -> pd.DataFrame:
    """Per policy over every run of figure 1: mean jobs, rejections, and GPU-hours per job
    that met its deadline (pooled: Σ cost / Σ met jobs)."""
    p = points.assign(met=points.jobs - points.slo_violations)
    g = p.groupby("policy", sort=False)
    out = g.agg(jobs=("jobs", "mean"), rejected=("rejected", "mean"), runs=("jobs", "size"))
    out["cost_per_met_job"] = g.cost_gpu_hours.sum() / g.met.sum()
    return out.reset_index()


def snapshot(results: Path, root: Path = SNAPSHOT) -> list[Path]:
    """Copy the cited tables of ``results/<figure>/`` into the snapshot."""
    written = []
    for fig, names in SNAPSHOT_FILES.items():
        src, dst = results / fig, root / fig
        if not src.is_dir():
            print(f"render_experiments: {src} not found, keeping the old snapshot", file=sys.stderr)
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for name in (*names, "sweep.yaml"):
            if name == "per_policy.csv":
                per_policy(pd.read_csv(src / "points.csv")).to_csv(dst / name, index=False)
            else:
                shutil.copyfile(src / name, dst / name)
            written.append(dst / name)
    return written


# ------------------------------------------------------------------------------ render


def render(text: str, tables: Tables) -> str:
    """``text`` with every marker's content replaced by its quantity; unknown names fail."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in QUANTITIES:
            raise KeyError(f"EXPERIMENTS.md: unknown quantity {name!r} in a marker")
        return f"<!--={name}-->{QUANTITIES[name](tables)}<!--/=-->"

    return MARKER.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if EXPERIMENTS.md would change")
    ap.add_argument("--snapshot", type=Path, default=None, help="results folder to copy from")
    ap.add_argument("--doc", type=Path, default=DOC)
    ns = ap.parse_args(argv)
    if ns.snapshot is not None:
        for p in snapshot(ns.snapshot):
            print(p)
    old = ns.doc.read_text()
    new = render(old, Tables())
    if ns.check:
        if new != old:
            print(f"{ns.doc} is out of date with {SNAPSHOT}: run {Path(__file__).name}")
            return 1
        return 0
    if new != old:
        ns.doc.write_text(new)
        print(f"{ns.doc} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
