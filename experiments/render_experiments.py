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

import pandas as pd

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
}
"""The tables of each figure's output folder the document cites (``per_policy.csv`` is made by
:func:`per_policy` from ``points.csv`` when the snapshot is taken)."""

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
}
"""Every name a marker may use, and how its text is made from the tables."""


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
        for name in names:
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
