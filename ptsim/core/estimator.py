"""What a scheduler can know about a job's iterations to target: an estimate with uncertainty.

A job's true iterations are unknown until it reaches its target. Before it starts, the service
knows a *prior*: the median iterations of such a job from its initial prompt
(``base x (1 - expected saving)``) and the measured spread around it, a lognormal with
log-standard deviation ``sigma`` (``docs/convergence.md``). While it trains, the scheduler sees
how many steps it has done and, when the driver has one, its held-out accuracy so far.

:func:`estimate` turns that into an :class:`IterEstimate` (expected total, expected remaining,
the standard deviation of the remaining, and a quantile), the one estimator both drivers use:

1. **Progress**: the total is at least the steps done, so the prior is truncated there: the
   estimate is ``E[T | T > done]`` under the lognormal (closed form), and its spread is the
   truncated lognormal's standard deviation. A job past its median therefore looks longer,
   the more it overruns.
2. **Accuracy** (optional): the fraction of the way from the initial accuracy to the target
   (``progress_fraction``) after ``k`` steps gives a direct reading of the total,
   ``T_obs = k / fraction ** (1 / curve_power)``, trusted with log-standard deviation
   ``obs_sigma``. It is combined with the prior in log space (precision-weighted, the
   conjugate normal update), then truncated at ``done`` as in 1.

Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class _Kernel:
    """The compiled build's estimator kernels (``_estkernel.c``): ``tail_moments_x(mu, sigma,
    e0, e1, done)`` is ``_tail_moments_x_py(mu, sigma, (e0, e1), done)`` and
    ``planned_exact(mu, sigma, e0, e1, done, z)`` is ``_planned_exact_py(mu, sigma, (e0, e1),
    done, z)``."""

    tail_moments_x: Callable[[float, float, float, float, float], tuple[float, float, float]]
    planned_exact: Callable[[float, float, float, float, float, float], float | None]


def _load_kernel() -> _Kernel | None:
    """The estimator kernels when the compiled build made them, else None (a stale build's
    refusal is raised, not taken for a pure package)."""
    try:
        mod = importlib.import_module("ptsim.core._estkernel")
    except ModuleNotFoundError:
        return None
    return _Kernel(mod.tail_moments_x, mod.planned_exact)


_KERNEL = _load_kernel()


@dataclass(frozen=True, slots=True)
class IterPrior:
    """A job's iterations to target before it trains: lognormal with this ``median`` and
    log-standard deviation ``sigma`` (0 = known exactly)."""

    median: float
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if not self.median > 0 or self.sigma < 0:
            raise ValueError(
                f"iteration prior needs median > 0 and sigma >= 0, got {self.median}, {self.sigma}"
            )

    @property
    def mean(self) -> float:
        """Expected iterations (``median x exp(sigma^2 / 2)``)."""
        return self.median * math.exp(0.5 * self.sigma**2)


@dataclass(frozen=True, slots=True)
class EstimatorSettings:
    """How accuracy readings are trusted (fitted from the campaign's curves).

    ``curve_power`` p: the fraction of the way to the target after k of T steps is taken as
    ``(k / T) ** p``; ``obs_sigma``: log-standard deviation of the total read off one
    accuracy reading; ``min_fraction``: readings below this fraction are ignored (too early
    to say anything)."""

    curve_power: float = 1.0
    obs_sigma: float = 0.5
    min_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.curve_power <= 0 or self.obs_sigma <= 0 or not 0 < self.min_fraction < 1:
            raise ValueError("need curve_power > 0, obs_sigma > 0 and 0 < min_fraction < 1")


DEFAULT_ESTIMATOR = EstimatorSettings()

READING_CAP = 0.999
"""Accuracy readings are capped below 1: a reading of 1 while the target is not met (a noisy
or screening evaluation above it) says nothing about the total. Both drivers' readings (the
simulator's ``SimPromptBank.readings``, the executor's ``ptexec.jobrun.accuracy_reading``)."""


@dataclass(frozen=True, slots=True)
class IterEstimate:
    """The estimate at some progress: expected ``total`` iterations, expected ``remaining``
    (``total - done``), the standard deviation of the remaining (``remaining_sd``), and its
    ``q90`` (90th percentile of the remaining)."""

    total: float
    remaining: float
    remaining_sd: float
    q90: float

    # written out, not generated: the compiled build compiles it (DEVELOPERS.md)
    def __init__(
        self,
        total: float,
        remaining: float,
        remaining_sd: float,
        q90: float,
    ) -> None:
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "remaining", remaining)
        object.__setattr__(self, "remaining_sd", remaining_sd)
        object.__setattr__(self, "q90", q90)


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / _SQRT2)


def _ppf(p: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9 after one
    Newton step)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability {p} not in (0, 1)")
    a = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690,
         -30.66479806614716, 2.506628277459239)  # fmt: skip
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
         -13.28068155288572)  # fmt: skip
    c = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
         4.374664141464968, 2.938163982698783)  # fmt: skip
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    elif p > 1 - lo:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        )
    e = _phi(x) - p  # one Newton step
    return x - e * math.sqrt(2 * math.pi) * math.exp(0.5 * x * x)


def _tail_moments(mu: float, sigma: float, done: float) -> tuple[float, float, float, float]:
    """(z, P(T > done), E[T | T > done], E[T^2 | T > done]) of T ~ LogNormal(mu, sigma), with
    ``done > 0`` and ``sigma > 0`` (the moments are NaN when the tail is below 1e-12)."""
    return ((math.log(done) - mu) / sigma, *_tail_moments_x(mu, sigma, tail_exps(mu, sigma), done))


def tail_exps(mu: float, sigma: float) -> tuple[float, float]:
    """The two factors of :func:`_tail_moments` that depend only on the posterior, for
    :func:`planned_exact` and the ``exps`` arguments below."""
    return math.exp(mu + 0.5 * sigma**2), math.exp(2 * mu + 2 * sigma**2)


def _tail_moments_x(
    mu: float, sigma: float, exps: tuple[float, float], done: float
) -> tuple[float, float, float]:
    """(P(T > done), E[T | T > done], E[T^2 | T > done]) of :func:`_tail_moments` given the
    posterior's :func:`tail_exps` (the same floating-point operations, less the two
    exponentials): :func:`_tail_moments_x_py`, by the compiled build's kernel when there is
    one."""
    kernel = _KERNEL
    if kernel is not None:
        return kernel.tail_moments_x(mu, sigma, exps[0], exps[1], done)
    return _tail_moments_x_py(mu, sigma, exps, done)


def _tail_moments_x_py(
    mu: float, sigma: float, exps: tuple[float, float], done: float
) -> tuple[float, float, float]:
    """:func:`_tail_moments_x`'s definition (``_estkernel.c`` computes the same)."""
    z = (math.log(done) - mu) / sigma
    erfc = math.erfc  # ``_phi`` inlined (the same operations): this runs per job and decision
    tail = 0.5 * erfc(z / _SQRT2)  # _phi(-z): -(-z) is z
    if tail < 1e-12:
        return tail, math.nan, math.nan
    mean = exps[0] * (0.5 * erfc(-(sigma - z) / _SQRT2)) / tail
    second = exps[1] * (0.5 * erfc(-(2 * sigma - z) / _SQRT2)) / tail
    return tail, mean, second


def planned_exact(
    mu: float, sigma: float, exps: tuple[float, float], done: float, z: float
) -> float | None:
    """``planned_at(moments_at(moments, done), done, z)`` for a posterior (mu, sigma) with its
    :func:`tail_exps`: the same floating-point value, or None where ``moments_at`` is None
    (:func:`_planned_exact_py`, by the compiled build's kernel when there is one)."""
    kernel = _KERNEL
    if kernel is not None:
        return kernel.planned_exact(mu, sigma, exps[0], exps[1], done, z)
    return _planned_exact_py(mu, sigma, exps, done, z)


def _planned_exact_py(
    mu: float, sigma: float, exps: tuple[float, float], done: float, z: float
) -> float | None:
    """:func:`planned_exact`'s definition (``_estkernel.c`` computes the same)."""
    if not done > 0.0:
        return None
    zd = (math.log(done) - mu) / sigma
    erfc = math.erfc
    tail = 0.5 * erfc(zd / _SQRT2)
    if not tail >= 1e-10:
        return None
    mean = exps[0] * (0.5 * erfc(-(sigma - zd) / _SQRT2)) / tail
    second = exps[1] * (0.5 * erfc(-(2 * sigma - zd) / _SQRT2)) / tail
    return (max(mean, done) - done) + z * math.sqrt(max(second - mean * mean, 0.0))


def _truncated_lognormal(
    mu: float, sigma: float, done: float, q90: bool = True
) -> tuple[float, float, float]:
    """Mean, standard deviation and 90th percentile of T ~ LogNormal(mu, sigma) given T > done
    (the percentile is NaN when ``q90`` is False: it costs a quantile evaluation)."""
    if sigma == 0.0:
        t = max(math.exp(mu), done)
        return t, 0.0, t
    if done <= 0.0:
        mean = math.exp(mu + 0.5 * sigma**2)
        var = math.expm1(sigma**2) * mean**2
        return mean, math.sqrt(max(var, 0.0)), math.exp(mu + sigma * _ppf(0.9)) if q90 else math.nan
    z, tail, mean, second = _tail_moments(mu, sigma, done)
    if tail < 1e-12:  # far beyond the prior: the total is just past ``done``
        step = done * sigma / max(z, 1.0)
        return done + step, step, done + 2.3 * step
    sd = math.sqrt(max(second - mean * mean, 0.0))
    if not q90:
        return max(mean, done), sd, math.nan
    q = 1.0 - 0.1 * tail  # 90th percentile of the truncated law
    p90 = math.exp(mu + sigma * _ppf(min(q, 1.0 - 1e-15)))
    return max(mean, done), sd, max(p90, done)


def estimate(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None = None,
    settings: EstimatorSettings = DEFAULT_ESTIMATOR,
    fraction_at: float | None = None,
) -> IterEstimate:
    """The estimate of a job's iterations after ``done`` iterations (see the module doc);
    ``progress_fraction`` is the fraction of the way from the initial held-out accuracy to the
    target at the last evaluation, when the driver has one, taken after ``fraction_at``
    iterations (default ``done``)."""
    mu, sigma = _posterior(prior, done, progress_fraction, settings, fraction_at)
    if sigma < 0.0:  # known exactly (the assumed model): no arithmetic on it
        total = max(prior.median, done)
        return IterEstimate(total, total - done, 0.0, total - done)
    total, sd, q90 = _truncated_lognormal(mu, sigma, done)
    return IterEstimate(total, total - done, sd, q90 - done)


def expected_total(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None = None,
    settings: EstimatorSettings = DEFAULT_ESTIMATOR,
    fraction_at: float | None = None,
) -> float:
    """``estimate(...).total``, without the 90th percentile (the same arithmetic, cheaper: the
    cluster state computes it for every job view it builds)."""
    return _total_sd(prior, done, progress_fraction, settings, fraction_at)[0]


def remaining_mean_sd(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None = None,
    settings: EstimatorSettings = DEFAULT_ESTIMATOR,
    fraction_at: float | None = None,
) -> tuple[float, float]:
    """``estimate(...)``'s (remaining, remaining_sd), without its 90th percentile (the same
    arithmetic, cheaper: a policy re-plans running jobs on these at every decision)."""
    total, sd = _total_sd(prior, done, progress_fraction, settings, fraction_at)
    return total - done, sd


def _total_sd(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None,
    settings: EstimatorSettings,
    fraction_at: float | None,
) -> tuple[float, float]:
    """``estimate(...)``'s (total, remaining_sd), without its 90th percentile."""
    mu, sigma = _posterior(prior, done, progress_fraction, settings, fraction_at)
    if sigma < 0.0:
        return max(prior.median, done), 0.0
    total, sd, _ = _truncated_lognormal(mu, sigma, done, q90=False)
    return total, sd


def posterior_moments(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None,
    settings: EstimatorSettings,
    fraction_at: float,
) -> tuple[float, float, float, float] | None:
    """(mu, sigma, E[T | T > done], E[T^2 | T > done]) of the estimate after ``done``
    iterations with this reading, taken at ``fraction_at <= done``, for :func:`planned_at` and
    :func:`planned_bounds`; None where those do not apply (an exact prior, ``done <= 0``, the
    far tail)."""
    got = posterior_moments_exps(prior, done, progress_fraction, settings, fraction_at)
    return None if got is None else got[0]


def posterior_moments_exps(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None,
    settings: EstimatorSettings,
    fraction_at: float,
) -> tuple[tuple[float, float, float, float], tuple[float, float]] | None:
    """:func:`posterior_moments` with the posterior's :func:`tail_exps` (computed once for
    both)."""
    if not done > 0.0 or fraction_at > done:
        return None
    mu, sigma = _posterior(prior, done, progress_fraction, settings, fraction_at)
    if sigma <= 0.0:
        return None
    exps = tail_exps(mu, sigma)
    tail, mean, second = _tail_moments_x(mu, sigma, exps, done)
    if not tail >= 1e-10:  # near the far-tail rule of ``_truncated_lognormal``
        return None
    return (mu, sigma, mean, second), exps


def planned_at(moments: tuple[float, float, float, float], done: float, z: float) -> float:
    """``remaining + z * remaining_sd`` of :func:`remaining_mean_sd` at ``done``, from its
    :func:`posterior_moments` (the same floating-point operations)."""
    _, _, mean, second = moments
    return (max(mean, done) - done) + z * math.sqrt(max(second - mean * mean, 0.0))


def moments_at(
    moments: tuple[float, float, float, float],
    done: float,
    exps: tuple[float, float] | None = None,
) -> tuple[float, float, float, float] | None:
    """The :func:`posterior_moments` at ``done`` of the same posterior (same prior and reading,
    ``done`` past the reading's count) from those at another count: what
    ``posterior_moments`` would return there, without re-deriving the posterior (``exps``:
    the posterior's :func:`tail_exps`, when known)."""
    mu, sigma, _, _ = moments
    if not done > 0.0:
        return None
    if exps is None:
        exps = tail_exps(mu, sigma)
    tail, mean, second = _tail_moments_x(mu, sigma, exps, done)
    if not tail >= 1e-10:
        return None
    return mu, sigma, mean, second


def planned_bounds(
    moments: tuple[float, float, float, float],
    d0: float,
    d1: float,
    z: float,
    exps: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """Bounds (low, high) on ``remaining + z * remaining_sd`` of :func:`remaining_mean_sd` for
    every ``done`` in ``[d0, d1]`` with the same reading, as floating point computes it, from
    the :func:`posterior_moments` at ``d0``; None where no cheap bound holds (the far tail).
    A policy re-planning at every decision re-evaluates a job only once the bounds no longer
    settle its tests.

    Exact arithmetic: ``E[T | T > d]`` and ``E[T^2 | T > d]`` never decrease with ``d``, so the
    moments at ``d0`` and ``d1`` bound those in between, and with them the remaining
    (``E[T | T > d] - d``) and its variance; the bounds are widened by far more than the
    rounding error of one evaluation. ``exps``: the posterior's :func:`tail_exps`, when
    known."""
    if not d0 <= d1 or z < 0.0:
        return None
    mu, sigma, mean0, second0 = moments
    if exps is None:
        exps = tail_exps(mu, sigma)
    tail1, mean1, second1 = _tail_moments_x(mu, sigma, exps, d1)
    if not tail1 >= 1e-10:  # the far-tail rule of ``_truncated_lognormal`` may apply inside
        return None
    rem_lo = max(max(mean0, d0) - d1, 0.0)
    rem_hi = max(mean1, d1) - d0
    sd_lo = math.sqrt(max(second0 - mean1 * mean1, 0.0))
    sd_hi = math.sqrt(max(second1 - mean0 * mean0, 0.0))
    slack = (1e-9 * (mean1 + d1) + 1e-7 * math.sqrt(second1)) * (1.0 + z)
    return rem_lo + z * sd_lo - slack, rem_hi + z * sd_hi + slack


def _posterior(
    prior: IterPrior,
    done: float,
    progress_fraction: float | None,
    settings: EstimatorSettings,
    fraction_at: float | None,
) -> tuple[float, float]:
    """(mu, sigma) of the log-total after the reading; sigma -1 when the prior is exact."""
    if done < 0:
        raise ValueError(f"iterations done must be >= 0, got {done}")
    if prior.sigma == 0.0:
        return 0.0, -1.0
    mu = math.log(prior.median)
    sigma = prior.sigma
    f = progress_fraction
    at = done if fraction_at is None else min(fraction_at, done)
    if f is not None and sigma > 0 and at > 0 and settings.min_fraction <= f < 1.0:
        obs = math.log(at) - math.log(f) / settings.curve_power
        w_prior = 1.0 / sigma**2
        w_obs = 1.0 / settings.obs_sigma**2
        mu = (mu * w_prior + obs * w_obs) / (w_prior + w_obs)
        sigma = math.sqrt(1.0 / (w_prior + w_obs))
    return mu, sigma
