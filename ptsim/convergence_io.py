"""Convergence models by name: the assumed curve, or one fitted from a measured campaign.

``bank.convergence`` (conf/bank/default.yaml) names the model a simulated run uses:

- ``fitted`` (default): the shipped campaign :data:`DEFAULT_FITTED` restricted to its
  real-data suite :data:`DEFAULT_SUITE` (a pretrained encoder on real text; see below);
- ``fitted-pooled``: the same campaign's fit over all its suites (the real-data suite and the
  generated tasks on a randomly initialised tiny GPT-2, weighted equally);
- ``assumed``: the curve assumed before anything was measured (``ConvergenceModel.default()``:
  no run-to-run spread, no negative transfer, score noise 0.02);
- any other name: a campaign directory under ``traces/convergence/`` holding ``fit.json``
  (written by ``python -m ptsim.tools.fit_convergence``), or a path to such a directory or
  ``fit.json`` file; ``NAME:SUITE`` takes one suite's curve, spread and score noise from it.

Why the real-data suite is the default: the generated tasks on a random-weight model measure
the mechanism (a prompt of the same rule transfers almost fully), not how prompts of real
tasks transfer in a pretrained model, and pooling them would set the saving by how many
generated targets the campaign happened to run.

The task space is the default one in every case; a fit replaces the saving curve, its noise,
the spread of iterations across seeds, the score-assessment noise and the estimator's settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptsim.core.bank_sim import DEFAULT_SCORE_SIGMA
from ptsim.core.convergence import ConvergenceModel, SavingCurve, TaskSpace
from ptsim.core.estimator import DEFAULT_ESTIMATOR, EstimatorSettings
from ptsim.core.profiles import UnknownName
from ptsim.paths import data_root

ASSUMED = "assumed"
FITTED = "fitted"
FITTED_POOLED = "fitted-pooled"
DEFAULT_FITTED = "cpu-2026-12-01"
"""The campaign whose fit ``fitted`` names (traces/convergence/<it>/fit.json)."""
DEFAULT_SUITE = "minilm"
"""The suite of :data:`DEFAULT_FITTED` that ``fitted`` uses: the pretrained MiniLM encoder on
BBC News and tweets."""
EVALS_PER_JOB = 20
"""Simulated held-out evaluations over a job of median length, for fitted models (the
campaign evaluated 5-30 times per run); the assumed model has none."""


@dataclass(frozen=True)
class ConvergenceSetup:
    """A named convergence model with what goes with it: the scorer's noise (units of saving),
    the estimator's settings, whether a stored prompt must out-score the default one, where
    the numbers came from, and how many simulated accuracy readings a job gives."""

    name: str
    model: ConvergenceModel
    score_sigma: float
    estimator: EstimatorSettings
    against_default: bool
    source: str
    evals_per_job: int = 0


def convergence_root() -> Path:
    """Where shipped campaigns live: traces/convergence/."""
    return data_root() / "convergence"


def _known() -> list[str]:
    root = convergence_root()
    found = (
        sorted(d.name for d in root.iterdir() if (d / "fit.json").is_file())
        if root.is_dir()
        else []
    )
    return [ASSUMED, FITTED, FITTED_POOLED, *found]


def fit_path(name: str) -> Path:
    """The fit.json a name or path points to; :class:`UnknownName` if there is none."""
    campaign = DEFAULT_FITTED if name in (FITTED, FITTED_POOLED) else name
    for cand in (convergence_root() / campaign, Path(name).expanduser()):
        if cand.is_file() and cand.suffix == ".json":
            return cand
        if (cand / "fit.json").is_file():
            return cand / "fit.json"
    raise UnknownName("convergence model", name, _known())


def _num(model: dict[str, Any], key: str, path: Path) -> float:
    try:
        return float(model[key])
    except KeyError:
        raise ValueError(f"{path}: model.{key} missing") from None
    except (TypeError, ValueError):
        raise ValueError(f"{path}: model.{key} = {model[key]!r} is not a number") from None


def _suite_model(fit: dict[str, Any], path: Path, suite: str) -> dict[str, Any]:
    """The fit's ``model`` block with one suite's curve, spread and score noise."""
    curves = fit.get("curve_by_suite") or {}
    if suite not in curves:
        raise ValueError(f"{path}: no suite {suite!r}; suites: {', '.join(sorted(curves))}")
    m = dict(fit["model"])
    c = curves[suite]
    for key in ("s_max", "s0", "gamma", "s_neg", "noise_sigma"):
        m[key] = c[key]
    cv = fit.get("summary", {}).get("spread_cv_by_suite", {}).get(suite)
    if cv is not None:
        m["spread_sigma"] = math.sqrt(math.log1p(float(cv) ** 2))
    score = fit.get("score", {}).get(suite, {}).get("score_sigma")
    if score is not None:
        m["score_sigma"] = score
    return m


def model_from_fit(
    fit: dict[str, Any], path: Path, name: str, suite: str | None = None
) -> ConvergenceSetup:
    """A :class:`ConvergenceSetup` from the ``model`` block of a fit (or one suite of it)."""
    m = fit.get("model")
    if not isinstance(m, dict):
        raise ValueError(f"{path}: no 'model' block (not a fit written by fit_convergence)")
    if suite is not None:
        m = _suite_model(fit, path, suite)
    try:
        curve = SavingCurve(
            s_max=_num(m, "s_max", path),
            s0=_num(m, "s0", path),
            gamma=_num(m, "gamma", path),
            noise_sigma=_num(m, "noise_sigma", path),
            s_neg=_num(m, "s_neg", path),
        )
        model = ConvergenceModel(
            TaskSpace.default(),
            curve,
            min_saving=_num(m, "min_saving", path),
            max_saving=_num(m, "max_saving", path),
            spread_sigma=_num(m, "spread_sigma", path),
            name=name,
        )
        est = EstimatorSettings(
            curve_power=_num(m, "curve_power", path), obs_sigma=_num(m, "obs_sigma", path)
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return ConvergenceSetup(
        name, model, _num(m, "score_sigma", path), est, True, str(path), EVALS_PER_JOB
    )


def load_convergence(name: str | None = None) -> ConvergenceSetup:
    """The convergence model called ``name`` (see the module doc; ``None`` = ``fitted``)."""
    name = FITTED if name is None else str(name)
    if name == ASSUMED:
        return ConvergenceSetup(
            ASSUMED,
            ConvergenceModel.default(),
            DEFAULT_SCORE_SIGMA,
            DEFAULT_ESTIMATOR,
            False,
            "assumed (docs/bank.md)",
        )
    suite: str | None = DEFAULT_SUITE if name == FITTED else None
    where = name
    if name not in (FITTED, FITTED_POOLED) and ":" in name:
        where, suite = name.rsplit(":", 1)
    path = fit_path(where)
    try:
        fit = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    return model_from_fit(fit, path, name, suite)
