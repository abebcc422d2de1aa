"""The convergence fit (ptsim.tools.fit_convergence) reproduces its input data: it recovers a
known model from a synthetic campaign, the shipped fit is what its raw data give, and the
shipped model reproduces the measured savings and spread within tolerance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptexec.campaign import CURVE_COLUMNS, RUN_COLUMNS, SCORE_COLUMNS
from ptsim.convergence_io import ASSUMED, DEFAULT_FITTED, convergence_root, load_convergence
from ptsim.core.profiles import UnknownName
from ptsim.tools import fit_convergence as fc

TRUE = {"s_max": 0.6, "s0": 0.2, "gamma": 1.0, "s_neg": -0.3}
CV = 0.2


def _campaign(d: Path, seeds: int = 40) -> None:
    """A campaign drawn from TRUE: lognormal steps with CV 0.2 (stratified normal quantiles,
    shuffled per pair, so that means over seeds are close to exact), no pair-level noise."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    z = norm.ppf((np.arange(seeds) + 0.5) / seeds)
    perms = {}
    sigma = math.sqrt(math.log1p(CV**2))
    runs, scores, curves = [], [], []
    sims = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
    for t in ("a", "b", "c"):
        base = {"a": 400.0, "b": 600.0, "c": 800.0}[t]
        for seed in range(seeds):
            for k, s in enumerate((None, *sims)):
                sav = 0.0 if s is None else float(fc.curve(s, **TRUE))
                zk = perms.setdefault((t, k), rng.permutation(z))[seed]
                steps = base * (1 - sav) * math.exp(sigma * zk)
                src = "" if s is None else f"{t}{k}"
                row = dict.fromkeys(RUN_COLUMNS, "")
                row.update(
                    suite="syn", model="m", role="target", target_task=t, source_task=src,
                    relation="default" if s is None else ("unrelated" if s == 0 else "related"),
                    similarity="" if s is None else s, seed=seed, reached=1,
                    steps_to_target=round(steps), steps=round(steps), max_steps=10**6,
                    target_accuracy=0.9, score_mean=sav, score_sd=0.01, default_score_mean=0.0,
                )  # fmt: skip
                runs.append(row)
                for step in range(0, round(steps) + 1, max(1, round(steps) // 5)):
                    acc = 0.5 + 0.4 * (step / steps) ** 0.7
                    curves.append(
                        {"suite": "syn", "model": "m", "target_task": t, "source_task": src,
                         "seed": seed, "step": step, "heldout_accuracy": acc, "heldout_loss": 1.0}
                    )  # fmt: skip
            if seed == 0:
                for k, s in enumerate((None, *sims)):
                    for rep in range(3):
                        sav = 0.0 if s is None else float(fc.curve(s, **TRUE))
                        scores.append(
                            {"suite": "syn", "model": "m", "target_task": t,
                             "source_task": "" if s is None else f"{t}{k}", "relation": "x",
                             "sample": rep, "score": sav + rng.normal(0, 0.01), "metric": "m"}
                        )  # fmt: skip
    pd.DataFrame(runs, columns=RUN_COLUMNS).to_csv(d / "runs.csv", index=False)
    pd.DataFrame(scores, columns=SCORE_COLUMNS).to_csv(d / "scores.csv", index=False)
    pd.DataFrame(curves, columns=CURVE_COLUMNS).to_csv(d / "curves.csv", index=False)


def test_fit_recovers_a_known_model(tmp_path: Path) -> None:
    _campaign(tmp_path)
    res = fc.fit(tmp_path)
    m = res["model"]
    assert m["s_max"] == pytest.approx(TRUE["s_max"], abs=0.05)
    assert m["s_neg"] == pytest.approx(TRUE["s_neg"], abs=0.05)
    assert m["s0"] == pytest.approx(TRUE["s0"], abs=0.06)
    assert res["summary"]["spread_cv"] == pytest.approx(CV, abs=0.02)
    assert m["noise_sigma"] < 0.05
    assert m["curve_power"] == pytest.approx(0.7, abs=0.1)
    assert res["score"]["syn"]["slope"] == pytest.approx(1.0, abs=0.1)
    assert res["score"]["syn"]["rule_agrees"] == 1.0
    # it writes, and --check then passes
    assert fc.main([str(tmp_path)]) == 0
    assert fc.main([str(tmp_path), "--check"]) == 0
    assert load_convergence(str(tmp_path)).model.curve.s_neg == pytest.approx(m["s_neg"], abs=1e-5)


SHIPPED = convergence_root() / DEFAULT_FITTED


def test_shipped_fit_is_what_its_data_give() -> None:
    assert fc.main([str(SHIPPED), "--check"]) == 0


def test_shipped_model_reproduces_the_measurements() -> None:
    fit = json.loads((SHIPPED / "fit.json").read_text())
    setup = load_convergence("fitted-pooled")
    pairs = pd.DataFrame(fit["pairs"])
    pred = setup.model.curve.expected_many(pairs["similarity"].to_numpy(float))
    resid = pairs["saving"].to_numpy(float) - pred
    # each suite weighs the same, as in the fit
    w = 1.0 / pairs.groupby("suite")["saving"].transform("size").to_numpy(float)
    w = w / w.mean()
    # the mean saving over measured pairs is reproduced, and the residuals are the noise
    assert abs(float(np.average(resid, weights=w))) < 0.05
    c = fit["curve"]
    assert float(np.sqrt(np.average(resid**2, weights=w))) <= c["residual_sigma"] + 1e-5
    # the model's noise is the residual less the seed-sampling noise of the pair means
    noise = setup.model.curve.noise_sigma
    assert noise**2 == pytest.approx(
        max(0.0, c["residual_sigma"] ** 2 - c["sampling_sigma"] ** 2), abs=1e-4
    )
    # the spread: a lognormal with the fitted sigma has the measured CV
    cv = math.sqrt(math.expm1(setup.model.spread_sigma**2))
    assert cv == pytest.approx(fit["summary"]["spread_cv"], rel=1e-3)


def test_default_fitted_model_is_the_real_data_suite() -> None:
    fit = json.loads((SHIPPED / "fit.json").read_text())
    real = fit["curve_by_suite"]["minilm"]
    setup = load_convergence("fitted")
    assert setup.model.curve.s_max == pytest.approx(real["s_max"])
    assert setup.model.curve.s_neg == pytest.approx(real["s_neg"])
    cv = math.sqrt(math.expm1(setup.model.spread_sigma**2))
    assert cv == pytest.approx(fit["summary"]["spread_cv_by_suite"]["minilm"], rel=1e-6)
    assert setup.score_sigma == pytest.approx(fit["score"]["minilm"]["score_sigma"])
    # the suite reproduces its own pairs' mean saving within the noise of 8 pairs
    pairs = pd.DataFrame(fit["pairs"]).query("suite == 'minilm'")
    pred = setup.model.curve.expected_many(pairs["similarity"].to_numpy(float))
    assert abs(float((pairs["saving"].to_numpy(float) - pred).mean())) < 0.05
    assert load_convergence(f"{DEFAULT_FITTED}:minilm").model.curve == setup.model.curve
    with pytest.raises(ValueError, match="no suite"):
        load_convergence(f"{DEFAULT_FITTED}:nope")


def test_names() -> None:
    assert load_convergence(ASSUMED).model.spread_sigma == 0.0
    with pytest.raises(UnknownName, match="assumed"):
        load_convergence("no-such-campaign")
