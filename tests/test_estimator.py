"""The iterations estimator (ptsim.core.estimator): the truncated lognormal is right, progress
and accuracy readings move the estimate the right way, and the prior comes from the model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptsim.core.bank import PromptBankIndex
from ptsim.core.bank_sim import SimPromptBank
from ptsim.core.bank_types import BankConfig
from ptsim.core.convergence import ConvergenceModel, SavingCurve, TaskSpace
from ptsim.core.estimator import EstimatorSettings, IterPrior, estimate
from ptsim.core.state import ClusterState
from ptsim.core.types import Decision, LoadModel, Reconfigure
from tests._util import job, linear_profiles


def test_known_iterations_give_the_median_or_the_steps_done() -> None:
    p = IterPrior(100.0, 0.0)
    assert estimate(p, 0).total == 100.0
    assert estimate(p, 40).remaining == 60.0
    assert estimate(p, 130).total == 130.0
    assert estimate(p, 40).remaining_sd == 0.0


@pytest.mark.parametrize("done", [0.0, 50.0, 100.0, 180.0])
def test_truncated_lognormal_matches_monte_carlo(done: float) -> None:
    prior = IterPrior(100.0, 0.4)
    rng = np.random.default_rng(0)
    t = 100.0 * np.exp(rng.normal(0.0, 0.4, size=2_000_000))
    t = t[t > done]
    est = estimate(prior, done)
    assert est.total == pytest.approx(float(t.mean()), rel=0.01)
    assert est.remaining_sd == pytest.approx(float(t.std()), rel=0.03)
    assert est.q90 + done == pytest.approx(float(np.quantile(t, 0.9)), rel=0.01)


def test_overrunning_jobs_look_longer() -> None:
    prior = IterPrior(100.0, 0.3)
    totals = [estimate(prior, d).total for d in (0, 50, 100, 150, 300, 3000)]
    assert totals == sorted(totals)
    assert all(t >= d for t, d in zip(totals, (0, 50, 100, 150, 300, 3000), strict=True))
    assert math.isfinite(estimate(prior, 1e9).total)


def test_an_accuracy_reading_pulls_towards_what_it_says() -> None:
    prior = IterPrior(100.0, 0.5)
    st = EstimatorSettings(curve_power=1.0, obs_sigma=0.2)
    plain = estimate(prior, 30)
    fast = estimate(prior, 30, progress_fraction=0.6, settings=st)  # says total ~ 50
    slow = estimate(prior, 30, progress_fraction=0.15, settings=st)  # says total ~ 200
    assert fast.total < plain.total < slow.total
    assert fast.remaining_sd < plain.remaining_sd
    assert estimate(prior, 30, progress_fraction=0.01, settings=st) == plain  # too early


def test_prior_from_the_model() -> None:
    m = ConvergenceModel(TaskSpace.default(), SavingCurve(noise_sigma=0.1), spread_sigma=0.2)
    p = m.prior(1000.0, 0.3)
    assert p.median == pytest.approx(700.0)
    assert p.sigma == pytest.approx(math.sqrt(0.2**2 + (0.1 / 0.7) ** 2))
    assert m.prior(1000.0, 0.0).sigma == pytest.approx(0.2)
    assumed = ConvergenceModel.default()
    assert assumed.prior(1000.0, 0.3) == IterPrior(700.0, 0.0)


def test_spread_draw_is_lognormal_around_the_base() -> None:
    m = ConvergenceModel(TaskSpace.default(), spread_sigma=0.3)
    draws = [
        m.realized_iterations(100.0, None, "sst2", np.random.default_rng(i)) for i in range(4000)
    ]
    assert float(np.median(draws)) == pytest.approx(100.0, rel=0.03)
    assert float(np.std(np.log(draws))) == pytest.approx(0.3, rel=0.05)
    # the assumed model draws nothing for the default prompt
    rng = np.random.default_rng(1)
    assert ConvergenceModel.default().realized_iterations(100.0, None, "sst2", rng) == 100.0
    assert rng.random() == np.random.default_rng(1).random()


def test_negative_transfer_below_s0() -> None:
    c = SavingCurve(s_max=0.6, s0=0.2, gamma=1.0, s_neg=-0.3)
    assert c.expected(0.0) == pytest.approx(-0.3)
    assert c.expected(1.0) == pytest.approx(0.6)
    assert c.expected(0.6) == pytest.approx(-0.3 + 0.9 * 0.5)
    assert SavingCurve().expected(0.65) == SavingCurve(s_neg=0.0).expected(0.65)


def _running_job() -> tuple[ClusterState, int]:
    """A cluster state (as both drivers build it, with a convergence model's prior) with job
    "a" (1000 iterations, 1 it/s) training since t = 10.5."""
    m = ConvergenceModel(TaskSpace.default(), SavingCurve(noise_sigma=0.1), spread_sigma=0.3)
    s = ClusterState(
        1,
        4,
        linear_profiles(("m",)),
        iterations=lambda spec, init: 1300.0,  # the true count: hidden from the policies
        prior=lambda spec, init: m.prior(spec.iterations, init.expected_saving),
        estimator=EstimatorSettings(curve_power=0.6, obs_sigma=0.3),
    )
    s.add_job(job("a", 0, 1000, 5000), 0.0)
    (load,) = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    assert isinstance(load, LoadModel)
    (rc,) = s.gpu_ready(0, load.token, 10.0)
    assert isinstance(rc, Reconfigure)
    s.job_resumed("a", rc.epoch, 10.5)
    return s, rc.epoch


def test_both_drivers_get_the_same_estimate_for_the_same_progress() -> None:
    """The simulator extrapolates progress at the profile's rate; the executor reports the
    steps it measured (``set_progress``). At the same progress the policies see the same
    estimate, from the one estimator, and never the true count."""
    sim, _ = _running_job()
    exe, _ = _running_job()
    now = 10.5 + 600.0  # 600 iterations done at 1 it/s
    exe.set_progress("a", 600.0, now)
    got_sim = sim.snapshot(now).jobs_by_id["a"].estimate_at(now)
    got_exe = exe.snapshot(now).jobs_by_id["a"].estimate_at(now)
    assert (
        got_sim
        == got_exe
        == estimate(IterPrior(1000.0, 0.3), 600.0, None, EstimatorSettings(0.6, 0.3))
    )
    assert got_sim.total != 1300.0
    # past the median the estimate grows with progress; the true count stays hidden
    later = 10.5 + 1200.0
    exe.set_progress("a", 1200.0, later)
    a_sim = sim.snapshot(later).jobs_by_id["a"]
    a_exe = exe.snapshot(later).jobs_by_id["a"]
    assert a_sim.estimate_at(later) == a_exe.estimate_at(later)
    assert a_sim.estimate_at(later).total > 1200.0
    assert a_sim.remaining_at(later) == pytest.approx(a_sim.estimate_at(later).remaining)
    # an accuracy reading (executor) refines it the same way the estimator says
    exe.set_progress("a", 1200.0, later, progress_fraction=0.9)
    want = estimate(IterPrior(1000.0, 0.3), 1200.0, 0.9, EstimatorSettings(0.6, 0.3))
    assert exe.snapshot(later).jobs_by_id["a"].estimate_at(later) == want


def test_simulated_accuracy_readings_inform_the_estimate() -> None:
    """The simulator's readings are noisy views of the true count with the fitted log-error,
    and a job's estimate with them is closer to its true count than the prior alone."""
    st = EstimatorSettings(curve_power=0.6, obs_sigma=0.3)
    model = ConvergenceModel(TaskSpace.default(), spread_sigma=0.4)
    bank = SimPromptBank(
        PromptBankIndex(BankConfig()), model, {"m": 0.25}, 0, estimator=st, evals_per_job=20
    )
    errs, with_r, without = [], [], []
    for i in range(400):
        spec = job(f"j{i}", 0, 1000, 10**6)
        true = model.realized_iterations(1000.0, None, "sst2", np.random.default_rng(i))
        done = 0.5 * true
        got = bank.readings(spec, true, done)
        assert got is not None and got[1] <= done
        frac, at = got
        errs.append(math.log(at / frac ** (1 / st.curve_power)) - math.log(true))
        prior = model.prior(1000.0, 0.0)
        with_r.append(abs(math.log(estimate(prior, done, frac, st, at).total / true)))
        without.append(abs(math.log(estimate(prior, done).total / true)))
    assert float(np.std(errs)) == pytest.approx(0.3, rel=0.15)
    assert float(np.mean(with_r)) < float(np.mean(without))
    assert bank.readings(job("x", 0, 1000, 10**6), 1000.0, 10.0) is None  # before the first
    assert bank.readings(job("x", 0, 1000, 10**6), 1000.0, 500.0) == bank.readings(
        job("x", 0, 1000, 10**6), 1000.0, 510.0
    )  # one reading per evaluation
    x = job("x", 0, 1000, 10**6)
    for done in (10.0, 49.99, 50.0, 420.0, 999.0):
        until = bank.readings_until(x, done)  # evaluations every 50 iterations
        assert until == pytest.approx(50.0 * (math.floor(done / 50.0) + 1), rel=1e-9)
        for d in np.linspace(done, until, 50, endpoint=False):
            assert bank.readings(x, 1000.0, float(d)) == bank.readings(x, 1000.0, done)
        assert bank.readings(x, 1000.0, until + 1e-6) != bank.readings(x, 1000.0, done)


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.2])
@pytest.mark.parametrize("reading", [None, (0.4, 300.0)])
def test_planned_bounds_hold_over_the_window_and_planned_at_is_exact(
    sigma: float, reading: tuple[float, float] | None
) -> None:
    """What the prompttuner policy relies on to skip re-evaluating a job: ``planned_at`` is
    bit for bit what ``remaining_mean_sd`` gives, and ``planned_bounds`` holds at every count
    done in its window (before, around and far past the prior's median)."""
    from ptsim.core.estimator import (
        planned_at,
        planned_bounds,
        posterior_moments,
        remaining_mean_sd,
    )

    prior = IterPrior(1000.0, sigma)
    frac, at = reading if reading is not None else (None, 300.0)
    z = 1.0
    for d0, d1 in [(300.0, 400.0), (900.0, 1100.0), (2500.0, 4000.0), (300.0, 300.0)]:
        moments = posterior_moments(prior, d0, frac, DEFAULT, at)
        if moments is None:  # the far tail (2.5x the median at sigma 0.1): no bound offered
            assert sigma < 0.5 and d0 > 2000.0
            continue
        rem, sd = remaining_mean_sd(prior, d0, frac, DEFAULT, at)
        assert planned_at(moments, d0, z) == rem + z * sd
        bounds = planned_bounds(moments, d0, d1, z)
        assert bounds is not None
        low, high = bounds
        for d in np.linspace(d0, d1, 41):
            rem, sd = remaining_mean_sd(prior, float(d), frac, DEFAULT, at)
            assert low <= rem + z * sd <= high
    assert posterior_moments(IterPrior(1000.0, 0.0), 300.0, None, DEFAULT, 0.0) is None


DEFAULT = EstimatorSettings()


@pytest.mark.parametrize("sigma", [0.2, 0.8])
def test_planned_window_later_times_match_planned_remaining_bit_for_bit(sigma: float) -> None:
    """``PlannedWindow.at`` / ``moved`` (what prompttuner uses instead of re-reading the job's
    accuracy and re-deriving the posterior) give exactly ``planned_remaining`` at later times
    with the same reading, and nothing once the reading changes."""
    from ptsim.core.policies.planning import planned_remaining, planned_window
    from ptsim.core.types import JobState, JobView

    every = 250.0

    def readings(done: float) -> tuple[float, float] | None:
        k = math.floor(done / every)
        return None if k < 1 else (min(0.999, 0.1 + 0.13 * k), k * every)

    def until(done: float) -> float:
        return (math.floor(done / every) + 1) * every * (1.0 - 1e-12)

    view = JobView(
        job("a", 0.0, 2000, 1e6), JobState.RUNNING, (0, 1), 2, 180.0, 40.0, 3.7, 2000.0,
        None, 10.0, 0, IterPrior(1500.0, sigma), readings=readings, readings_until=until,
    )  # fmt: skip
    z, checked = 1.0, 0
    for t0 in (40.0, 55.5, 101.0, 300.0):
        win = planned_window(view, t0, z)
        assert win is not None and win.planned == planned_remaining(view, t0, z)
        for t in np.linspace(t0, t0 + 80.0, 33):
            t = float(t)
            got, moved = win.at(t), win.moved(t)
            if t > win.end:
                assert got is None and moved is None
                continue
            checked += 1
            assert got == planned_remaining(view, t, z)
            fresh = planned_window(view, t, z)
            assert moved is not None and fresh is not None
            assert (moved.planned, moved.end) == (fresh.planned, fresh.end)
            assert moved.bounds(min(t + 5.0, fresh.end)) == fresh.bounds(min(t + 5.0, fresh.end))
    assert checked > 20


def test_expected_total_is_the_estimates_total_bit_for_bit() -> None:
    """``expected_total`` (what the cluster state puts in a job view) is ``estimate(...).total``
    for exact and uncertain priors, before any step, with and without readings, and in the far
    tail."""
    from ptsim.core.estimator import expected_total

    rng = np.random.default_rng(4)
    for _ in range(3000):
        sigma = float(rng.choice([0.0, 0.05, 0.3, 1.0, 2.0]))
        prior = IterPrior(float(rng.uniform(10.0, 5000.0)), sigma)
        done = float(rng.choice([0.0, rng.uniform(0.0, 3.0) * prior.median, 50.0 * prior.median]))
        frac = None if rng.random() < 0.4 else float(rng.uniform(0.0, 1.2))
        at = None if rng.random() < 0.5 else done * float(rng.uniform(0.0, 1.0))
        want = estimate(prior, done, frac, DEFAULT, at).total
        assert expected_total(prior, done, frac, DEFAULT, at) == want
