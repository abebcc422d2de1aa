"""Fit ptsim's convergence model to a convergence campaign (``ptexec.campaign``).

    python -m ptsim.tools.fit_convergence traces/convergence/<name>          # writes fit.json
    python -m ptsim.tools.fit_convergence traces/convergence/<name> --check  # shipped == refit

From ``runs.csv`` (steps to target per run), ``scores.csv`` (score assessments) and
``curves.csv`` (held-out accuracy per evaluation) it fits, pure numpy/scipy:

- **spread**: the coefficient of variation of steps to target across seeds, per (target,
  initial prompt) group, pooled (root mean square, weighted by degrees of freedom), and the
  lognormal log-standard deviation with that CV, ``spread_sigma = sqrt(log(1 + CV^2))``;
- **saving versus similarity**: per (target, source) pair (at the rule similarity for the
  generated family, the contrast similarity otherwise; ``ptexec.campaign``), the saving
  ``1 - mean(steps from the stored prompt) / mean(steps from the default prompt)`` over seeds;
  the curve ``s_neg + (s_max - s_neg) * clip((s - s0) / (1 - s0), 0, 1) ** gamma`` by least
  squares on the pairs, each suite weighing the same (negative ``s_neg``: unrelated prompts
  cost steps); ``noise_sigma`` is the pairs' residual standard deviation around it less the
  part explained by the seed-sampling noise of each pair's mean (which the simulator draws
  separately, as the run-to-run spread);
- **score noise**: per suite, the pairs' saving regressed on their score minus the default
  prompt's score; the score's sampling standard deviation (repeats on other samples) times the
  slope gives the noise of one assessment in units of saving (``score_sigma``), the residual
  how well a score predicts the saving (``score_sigma_total``); and how often "the stored
  prompt's score beats the default's" agrees with "it saves steps";
- **estimator**: how the fraction of the way to the target accuracy grows with the fraction of
  the steps done (``curve_power``) and how far a total read off one evaluation is from the true
  one (``obs_sigma``), for :class:`ptsim.core.estimator.EstimatorSettings`.

``fit.json`` records the inputs (with their SHA-256), the command and the date, every
intermediate table, and a ``model`` block that ``ptsim.convergence_io`` turns into a
:class:`~ptsim.core.convergence.ConvergenceModel`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FIT_FILE = "fit.json"
FIT_FORMAT = 1
CURVE_BOUNDS = {"s_max": (0.0, 0.99), "s0": (0.0, 0.95), "gamma": (0.2, 5.0), "s_neg": (-0.95, 0.0)}


def curve(sim: Any, s_max: float, s0: float, gamma: float, s_neg: float) -> Any:
    """The saving curve (the same formula as ``ptsim.core.convergence.SavingCurve``)."""
    x = np.clip((np.asarray(sim, dtype=np.float64) - s0) / (1.0 - s0), 0.0, 1.0)
    return s_neg + (s_max - s_neg) * x**gamma


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (run python -m ptexec.campaign first)")
    return pd.read_csv(path)


def run_steps(runs: pd.DataFrame) -> pd.Series:
    """Steps to target of each run; a run that missed its target counts its whole budget
    (a lower bound: such runs are counted in ``censored``)."""
    reached = runs["reached"].astype(int) == 1
    return runs["steps_to_target"].where(reached, runs["max_steps"]).astype(float)


def spread(runs: pd.DataFrame) -> dict[str, Any]:
    """Pooled CV of steps across seeds per (suite, target, source) group of target runs."""
    t = runs[runs["role"] == "target"].copy()
    t["st"] = run_steps(t)
    rows = []
    for (suite, target, source), g in t.groupby(
        ["suite", "target_task", t["source_task"].fillna("")], sort=True
    ):
        n = len(g)
        mean = float(g["st"].mean())
        sd = float(g["st"].std(ddof=1)) if n > 1 else math.nan
        rows.append(
            {
                "suite": suite,
                "target_task": target,
                "source_task": source,
                "n": n,
                "mean": mean,
                "sd": sd,
                "cv": sd / mean if mean > 0 and n > 1 else math.nan,
            }
        )
    groups = pd.DataFrame(rows)

    def pooled(df: pd.DataFrame) -> float:
        ok = df[df["cv"].notna()]
        if ok.empty:
            return math.nan
        w = ok["n"] - 1
        return float(math.sqrt(float((w * ok["cv"] ** 2).sum() / w.sum())))

    out: dict[str, Any] = {"groups": groups.to_dict(orient="records")}
    out["cv_all"] = pooled(groups)
    out["cv_default"] = pooled(groups[groups["source_task"] == ""])
    out["cv_by_suite"] = {s: pooled(g) for s, g in groups.groupby("suite", sort=True)}
    out["sigma"] = math.sqrt(math.log1p(out["cv_all"] ** 2))
    return out


def pair_savings(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, target, source) pair: similarity, mean steps from the stored and
    the default prompt, the saving and the paired per-seed savings' spread."""
    t = runs[runs["role"] == "target"].copy()
    t["st"] = run_steps(t)
    t["source_task"] = t["source_task"].fillna("")
    rows = []
    for (suite, target), g in t.groupby(["suite", "target_task"], sort=True):
        d = g[g["source_task"] == ""]
        if d.empty:
            continue
        d_mean = float(d["st"].mean())
        by_seed = dict(zip(d["seed"], d["st"], strict=True))
        for source, w in g[g["source_task"] != ""].groupby("source_task", sort=True):
            paired = [
                1.0 - s / by_seed[seed]
                for seed, s in zip(w["seed"], w["st"], strict=True)
                if by_seed.get(seed, 0) > 0
            ]
            rows.append(
                {
                    "suite": suite,
                    "model": str(w["model"].iloc[0]),
                    "target_task": target,
                    "source_task": source,
                    "relation": str(w["relation"].iloc[0]),
                    "similarity": _similarity(w.iloc[0]),
                    "contrast_similarity": float(w["similarity"].iloc[0]),
                    "seeds": len(w),
                    "default_steps": d_mean,
                    "stored_steps": float(w["st"].mean()),
                    "saving": 1.0 - float(w["st"].mean()) / d_mean if d_mean > 0 else math.nan,
                    "saving_paired_sd": float(np.std(paired, ddof=1))
                    if len(paired) > 1
                    else math.nan,
                    "score": float(w["score_mean"].iloc[0]),
                    "default_score": float(w["default_score_mean"].iloc[0]),
                    "censored": int((w["reached"].astype(int) == 0).sum()),
                }
            )
    return pd.DataFrame(rows)


def _similarity(row: Any) -> float:
    """The similarity a pair is fitted at: the generated family's exact rule similarity (its
    task space) when recorded, else the contrast similarity of the frozen model's features."""
    rule = row.get("rule_similarity")
    if rule is not None and not pd.isna(rule):
        return float(rule)
    return float(row["similarity"])


def fit_curve(pairs: pd.DataFrame) -> dict[str, Any]:
    """Least-squares saving curve over the pairs (several starts; bounded). Each suite weighs
    the same in total (a pair's weight is 1 / the pairs of its suite), so a suite with many
    cheap pairs does not drown the others; ``noise_sigma`` is the weighted residual spread."""
    from scipy.optimize import least_squares

    ok = pairs[pairs["saving"].notna()]
    x = ok["similarity"].to_numpy(float)
    y = ok["saving"].to_numpy(float)
    counts = ok.groupby("suite")["saving"].transform("size").to_numpy(float)
    w = (1.0 / counts) / float(np.mean(1.0 / counts))  # mean weight 1
    sw = np.sqrt(w)
    names = tuple(CURVE_BOUNDS)
    lo = np.array([CURVE_BOUNDS[n][0] for n in names])
    hi = np.array([CURVE_BOUNDS[n][1] for n in names])
    best = None
    for s0 in (0.05, 0.2, 0.4, 0.6):
        for gamma in (0.5, 1.0, 2.0):
            p0 = np.array(
                [min(0.98, max(0.01, float(y.max()))), s0, gamma, min(0.0, float(y.min()))]
            )
            p0 = np.clip(p0, lo + 1e-9, hi - 1e-9)
            r = least_squares(lambda p: sw * (curve(x, *p) - y), p0, bounds=(lo, hi), method="trf")
            if best is None or r.cost < best.cost - 1e-12:
                best = r
    assert best is not None
    params = {n: float(v) for n, v in zip(names, best.x, strict=True)}
    resid = y - curve(x, *best.x)
    dof = max(1, len(y) - len(names))
    total_var = float(w @ resid**2) / dof
    # a pair's measured saving is a mean over a few seeds: part of the residual is that
    # sampling noise, which the simulator draws separately (the run-to-run spread)
    if "saving_paired_sd" in ok and "seeds" in ok:
        sd = ok["saving_paired_sd"].to_numpy(float)
        n = ok["seeds"].to_numpy(float)
        sampling = np.where(np.isfinite(sd) & (n > 0), sd**2 / np.maximum(n, 1.0), 0.0)
        sampling_var = float(w @ sampling) / len(y)
    else:
        sampling_var = 0.0
    params["residual_sigma"] = float(math.sqrt(total_var))
    params["sampling_sigma"] = float(math.sqrt(sampling_var))
    params["noise_sigma"] = float(math.sqrt(max(0.0, total_var - sampling_var)))
    params["rms_residual"] = float(math.sqrt(float(w @ resid**2) / len(y)))
    params["pairs"] = len(y)
    return params


def score_noise(pairs: pd.DataFrame, scores: pd.DataFrame) -> dict[str, Any]:
    """Per suite: saving regressed on (score - default score); assessment noise in saving
    units; agreement of the rule "use a stored prompt only if it scores above the default"
    with "it saves steps"."""
    out: dict[str, Any] = {}
    sc = scores.copy()
    sc["source_task"] = sc["source_task"].fillna("")
    for suite, g in pairs.groupby("suite", sort=True):
        g = g[g["saving"].notna()]
        dx = (g["score"] - g["default_score"]).to_numpy(float)
        y = g["saving"].to_numpy(float)
        if len(g) >= 3 and float(np.ptp(dx)) > 0:
            slope, icpt = np.polyfit(dx, y, 1)
            resid = y - (slope * dx + icpt)
            total = float(math.sqrt(float(resid @ resid) / max(1, len(y) - 2)))
        else:
            slope, icpt, total = math.nan, math.nan, math.nan
        s = sc[sc["suite"] == suite]
        sds = s.groupby(["target_task", "source_task"], sort=True)["score"].std(ddof=1).dropna()
        sampling_sd = float(math.sqrt(float((sds**2).mean()))) if len(sds) else math.nan
        agree = float(np.mean((dx > 0) == (y > 0))) if len(g) else math.nan
        out[str(suite)] = {
            "metric": str(s["metric"].iloc[0]) if len(s) else "",
            "slope": float(slope),
            "intercept": float(icpt),
            "score_sd": sampling_sd,
            "score_sigma": abs(float(slope)) * sampling_sd,
            "score_sigma_total": total,
            "rule_agrees": agree,
            "pairs": len(g),
            "harmful_pairs": int((y < 0).sum()),
            "harmful_kept_by_rule": int(((y < 0) & (dx > 0)).sum()),
        }
    return out


def estimator_fit(runs: pd.DataFrame, curves: pd.DataFrame, min_fraction: float) -> dict[str, Any]:
    """``curve_power`` and ``obs_sigma`` from the held-out curves of reached target runs."""
    t = runs[(runs["role"] == "target") & (runs["reached"].astype(int) == 1)].copy()
    t = t[t["steps_to_target"] > 0]
    c = curves.copy()
    c["source_task"] = c["source_task"].fillna("")
    t["source_task"] = t["source_task"].fillna("")
    key = ["suite", "target_task", "source_task", "seed"]
    merged = c.merge(t[[*key, "steps_to_target", "target_accuracy"]], on=key)
    xs: list[float] = []
    ys: list[float] = []
    recs: list[tuple[float, float, float]] = []
    for _, g in merged.groupby(key, sort=True):
        g = g.sort_values("step")
        a0 = float(g["heldout_accuracy"].iloc[0])
        target = float(g["target_accuracy"].iloc[0])
        total = float(g["steps_to_target"].iloc[0])
        if target - a0 <= 0.02:
            continue
        for step, acc in zip(g["step"], g["heldout_accuracy"], strict=True):
            if not 0 < step < total:
                continue
            f = (float(acc) - a0) / (target - a0)
            if min_fraction <= f < 1.0:
                xs.append(math.log(step / total))
                ys.append(math.log(f))
                recs.append((float(step), f, total))
    if len(xs) < 3:
        return {"curve_power": 1.0, "obs_sigma": 0.5, "points": len(xs), "fitted": False}
    x = np.array(xs)
    y = np.array(ys)
    power = float(max(0.1, (x @ y) / (x @ x)))  # log f = p log(k / T), through the origin
    errs = [math.log(k / f ** (1.0 / power)) - math.log(total) for k, f, total in recs]
    return {
        "curve_power": power,
        "obs_sigma": float(max(0.05, math.sqrt(float(np.mean(np.square(errs)))))),
        "points": len(xs),
        "fitted": True,
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit(directory: Path, *, min_fraction: float = 0.1, command: str = "") -> dict[str, Any]:
    """The whole fit of one campaign directory (what ``fit.json`` holds, minus the date)."""
    runs = _read(directory / "runs.csv")
    scores = _read(directory / "scores.csv")
    curves_df = _read(directory / "curves.csv")
    sp = spread(runs)
    pairs = pair_savings(runs)
    cv = fit_curve(pairs)
    by_suite_curve = {
        str(k): fit_curve(g) for k, g in pairs.groupby("suite", sort=True) if len(g) >= 4
    }
    noise = score_noise(pairs, scores)
    est = estimator_fit(runs, curves_df, min_fraction)
    by_rel = {
        str(r): {
            "pairs": len(g),
            "mean_saving": float(g["saving"].mean()),
            "min_saving": float(g["saving"].min()),
            "max_saving": float(g["saving"].max()),
        }
        for r, g in pairs.groupby("relation", sort=True)
    }
    by_suite_rel = {
        f"{s}/{r}": float(g["saving"].mean())
        for (s, r), g in pairs.groupby(["suite", "relation"], sort=True)
    }
    related = pairs[pairs["relation"] == "related"]
    sig = [v["score_sigma"] for v in noise.values() if not math.isnan(v["score_sigma"])]
    model = {
        "s_max": cv["s_max"],
        "s0": cv["s0"],
        "gamma": cv["gamma"],
        "s_neg": cv["s_neg"],
        "noise_sigma": cv["noise_sigma"],
        "spread_sigma": sp["sigma"],
        "min_saving": float(
            max(-0.95, min(-0.25, float(pairs["saving"].min()) - cv["noise_sigma"]))
        ),
        "max_saving": 0.95,
        "score_sigma": float(math.sqrt(float(np.mean(np.square(sig))))) if sig else 0.02,
        "curve_power": est["curve_power"],
        "obs_sigma": est["obs_sigma"],
    }
    return {
        "format": FIT_FORMAT,
        "source": str(directory.name),
        "command": command,
        "inputs": {n: _sha(directory / n) for n in ("runs.csv", "scores.csv", "curves.csv")},
        "runs": len(runs),
        "model": model,
        "summary": {
            "mean_saving_related": float(related["saving"].mean()) if len(related) else math.nan,
            "mean_saving_stored": float(pairs["saving"].mean()),
            "saving_by_relation": by_rel,
            "saving_by_suite_relation": by_suite_rel,
            "negative_pairs": pairs[pairs["saving"] < 0][
                ["suite", "target_task", "source_task", "relation", "similarity", "saving"]
            ].to_dict(orient="records"),
            "spread_cv": sp["cv_all"],
            "spread_cv_default": sp["cv_default"],
            "spread_cv_by_suite": sp["cv_by_suite"],
            "censored_runs": int((runs["reached"].astype(int) == 0).sum()),
            "paper_saving": 0.30,
        },
        "curve": cv,
        "curve_by_suite": by_suite_curve,
        "score": noise,
        "estimator": est,
        "pairs": pairs.to_dict(orient="records"),
        "spread_groups": sp["groups"],
    }


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python, floats rounded to 6 significant digits."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return None if math.isnan(obj) else float(f"{obj:.6g}")
    return obj


def render(result: Mapping[str, Any]) -> str:
    """fit.json's text (stable: sorted keys, cleaned numbers)."""
    return json.dumps(_clean(result), indent=1, sort_keys=True) + "\n"


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def render_md(result: Mapping[str, Any]) -> str:
    """fit.md: the fit's numbers as tables (generated; docs/convergence.md links here)."""
    m = result["model"]
    s = result["summary"]
    lines = [
        f"# Fit of campaign `{result['source']}`",
        "",
        f"Generated by `{result['command']}` from runs.csv, scores.csv and curves.csv "
        f"({result['runs']} runs; SHA-256 in fit.json). Do not edit by hand.",
        "",
        "## The model ptsim uses (`bank.convergence=fitted`)",
        "",
        "| parameter | value | meaning |",
        "| --- | --- | --- |",
        f"| `s_max` | {_f(m['s_max'])} | saving of a prompt of the same task (similarity 1) |",
        f"| `s0` | {_f(m['s0'])} | similarity at or below which a prompt saves `s_neg` |",
        f"| `gamma` | {_f(m['gamma'])} | shape between `s0` and 1 |",
        f"| `s_neg` | {_f(m['s_neg'])} | saving of an unrelated prompt (negative: costs steps) |",
        f"| `noise_sigma` | {_f(m['noise_sigma'])} | spread of a pair's saving around the curve, "
        f"less seed sampling noise (residual {_f(result['curve']['residual_sigma'])}, sampling "
        f"{_f(result['curve']['sampling_sigma'])}) |",
        f"| `spread_sigma` | {_f(m['spread_sigma'])} | lognormal log-sd of steps across seeds "
        f"(CV {_f(s['spread_cv'])}) |",
        f"| `min_saving` / `max_saving` | {_f(m['min_saving'])} / {_f(m['max_saving'])} | "
        "clip of a realised saving |",
        f"| `score_sigma` | {_f(m['score_sigma'])} | noise of one score assessment, units of "
        "saving |",
        f"| `curve_power` / `obs_sigma` | {_f(m['curve_power'])} / {_f(m['obs_sigma'])} | "
        "estimator: accuracy progress ~ (steps / total)^p; log-sd of a total read off one "
        "evaluation |",
        "",
        "The curve fitted to each suite alone:",
        "",
        "| suite | s_max | s0 | gamma | s_neg | noise_sigma | pairs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {k} | {_f(c['s_max'])} | {_f(c['s0'])} | {_f(c['gamma'])} | {_f(c['s_neg'])} "
            f"| {_f(c['noise_sigma'])} | {c['pairs']} |"
            for k, c in result.get("curve_by_suite", {}).items()
        ),
        "",
        "## Saving by relation of source to target",
        "",
        f"Mean saving of related sources {_f(s['mean_saving_related'])}; of every stored "
        f"prompt {_f(s['mean_saving_stored'])}; the paper reports ~{s['paper_saving']:.0%} "
        "fewer tuning epochs with its bank.",
        "",
        "| suite / relation | mean saving |",
        "| --- | --- |",
        *(f"| {k} | {_f(v)} |" for k, v in s["saving_by_suite_relation"].items()),
        "",
        "## Every (target, source) pair",
        "",
        "| suite | target | source | relation | similarity | seeds | steps default | "
        "steps stored | saving | score - default score | censored |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in result["pairs"]:
        lines.append(
            f"| {p['suite']} | {p['target_task']} | {p['source_task']} | {p['relation']} | "
            f"{_f(p['similarity'])} | {p['seeds']} | {_f(p['default_steps'], 1)} | "
            f"{_f(p['stored_steps'], 1)} | {_f(p['saving'])} | "
            f"{_f(p['score'] - p['default_score'], 4)} | {p['censored']} |"
        )
    lines += [
        "",
        "## Score assessments",
        "",
        "| suite | metric | slope (saving per score) | score sd | score_sigma | residual | "
        "rule agrees | harmful pairs | harmful kept by the rule |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for suite, v in result["score"].items():
        lines.append(
            f"| {suite} | {v['metric']} | {_f(v['slope'])} | {_f(v['score_sd'], 4)} | "
            f"{_f(v['score_sigma'])} | {_f(v['score_sigma_total'])} | {_f(v['rule_agrees'])} | "
            f"{v['harmful_pairs']} | {v['harmful_kept_by_rule']} |"
        )
    lines += [
        "",
        "## Spread of steps across seeds",
        "",
        f"Pooled CV {_f(s['spread_cv'])} (default prompt only: {_f(s['spread_cv_default'])}); "
        "by suite: "
        + ", ".join(f"{k} {_f(v)}" for k, v in s["spread_cv_by_suite"].items())
        + f". Runs that missed the target within the budget: {s['censored_runs']} (counted "
        "at the budget).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m ptsim.tools.fit_convergence", description=__doc__)
    p.add_argument("directory", help="a campaign directory (runs.csv, scores.csv, curves.csv)")
    p.add_argument("--check", action="store_true", help="fail if fit.json differs from a refit")
    ns = p.parse_args(args)
    d = Path(ns.directory)
    result = fit(d, command=f"python -m ptsim.tools.fit_convergence {d.as_posix()}")
    path = d / FIT_FILE
    if ns.check:
        if not path.is_file():
            print(f"{path}: missing", file=sys.stderr)
            return 1
        old = json.loads(path.read_text())
        new = json.loads(render(result))
        for key in ("date", "command"):  # where and when it was run, not what it found
            old.pop(key, None)
            new.pop(key, None)
        if old != new:
            print(f"{path}: differs from a refit of its inputs", file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    result = {**result, "date": datetime.now(UTC).date().isoformat()}
    path.write_text(render(result), encoding="utf-8")
    (d / "fit.md").write_text(render_md(json.loads(render(result))), encoding="utf-8")
    m = result["model"]
    s = result["summary"]
    print(
        f"{path}: spread CV {s['spread_cv']:.3f} (sigma {m['spread_sigma']:.3f}); curve s_max "
        f"{m['s_max']:.3f} s0 {m['s0']:.3f} gamma {m['gamma']:.2f} s_neg {m['s_neg']:.3f} "
        f"noise {m['noise_sigma']:.3f}; related saving {s['mean_saving_related']:.3f}; score "
        f"sigma {m['score_sigma']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
