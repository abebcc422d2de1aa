"""The compiled build's estimator kernels (``ptsim/core/_estkernel.c``) give the numbers, the
Nones and the errors of their Python definitions (``_tail_moments_x_py``,
``_planned_exact_py``); tests/test_native.py runs this file against the compiled build."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from ptsim.core import estimator

needs_kernel = pytest.mark.skipif(
    estimator._KERNEL is None, reason="no estimator kernel (the compiled build: ./dev native)"
)


def _bits(values: object) -> object:
    """Floats by their bits (NaN equal to NaN, -0.0 apart from 0.0); None and tuples kept."""
    if values is None:
        return None
    if isinstance(values, tuple):
        return tuple(_bits(v) for v in values)
    assert isinstance(values, float)
    return struct.pack("<d", values)


def _cases() -> list[tuple[float, float, float, float, float, float]]:
    """(mu, sigma, e0, e1, done, z): posteriors of totals from ~1 to ~1e6 iterations, counts
    done across and far past them (the far-tail paths), and awkward values."""
    gen = np.random.default_rng(7)
    out = []
    for _ in range(4000):
        mu = float(gen.uniform(0.0, 14.0))
        sigma = float(10 ** gen.uniform(-3.0, 0.4))
        e0, e1 = estimator.tail_exps(mu, sigma)
        done = float(math.exp(mu + sigma * gen.normal(0.0, 3.0)))
        out.append((mu, sigma, e0, e1, done, float(gen.uniform(0.0, 3.0))))
    e0, e1 = estimator.tail_exps(5.0, 0.5)
    for done in (1e-300, 5e-324, 1.0, math.exp(5.0), 1e300, math.inf, math.nan):
        out.append((5.0, 0.5, e0, e1, done, 1.0))
    out.append((5.0, 0.5, e0, e1, 200.0, 0.0))
    out.append((5.0, 1e-300, e0, e1, 200.0, 1.0))
    out.append((math.nan, 0.5, e0, e1, 200.0, 1.0))
    return out


@needs_kernel
def test_tail_moments_x_is_its_python() -> None:
    kernel = estimator._KERNEL
    assert kernel is not None
    for mu, sigma, e0, e1, done, _ in _cases():
        want = estimator._tail_moments_x_py(mu, sigma, (e0, e1), done)
        got = kernel.tail_moments_x(mu, sigma, e0, e1, done)
        assert _bits(got) == _bits(want), (mu, sigma, done)


@needs_kernel
def test_planned_exact_is_its_python() -> None:
    kernel = estimator._KERNEL
    assert kernel is not None
    for mu, sigma, e0, e1, done, z in _cases():
        want = estimator._planned_exact_py(mu, sigma, (e0, e1), done, z)
        got = kernel.planned_exact(mu, sigma, e0, e1, done, z)
        assert _bits(got) == _bits(want), (mu, sigma, done, z)
    e0, e1 = estimator.tail_exps(5.0, 0.5)
    for done in (0.0, -1.0, -math.inf, math.nan):  # not done > 0: no estimate
        assert kernel.planned_exact(5.0, 0.5, e0, e1, done, 1.0) is None
        assert estimator._planned_exact_py(5.0, 0.5, (e0, e1), done, 1.0) is None


@pytest.mark.parametrize(
    ("mu", "sigma", "done", "error"),
    [
        (5.0, 0.5, 0.0, ValueError),
        (5.0, 0.5, -3.0, ValueError),
        (5.0, 0.5, -math.inf, ValueError),
        (5.0, 0.0, 200.0, ZeroDivisionError),
    ],
)
def test_the_errors_are_pythons(mu: float, sigma: float, done: float, error: type) -> None:
    """Both raise what Python's ``math.log`` and float division raise (the kernel where
    built, the Python everywhere)."""
    with pytest.raises(error):
        estimator._tail_moments_x_py(mu, sigma, (1.0, 1.0), done)
    kernel = estimator._KERNEL
    if kernel is not None:
        with pytest.raises(error):
            kernel.tail_moments_x(mu, sigma, 1.0, 1.0, done)
        if done > 0.0:
            with pytest.raises(error):
                kernel.planned_exact(mu, sigma, 1.0, 1.0, done, 1.0)


def test_the_estimator_calls_its_definitions_or_the_kernel() -> None:
    """``_tail_moments_x`` and ``planned_exact`` answer as the definitions (by the kernel in
    the compiled build)."""
    e0, e1 = estimator.tail_exps(6.0, 0.4)
    for done in (50.0, 400.0, 3000.0):
        assert _bits(estimator._tail_moments_x(6.0, 0.4, (e0, e1), done)) == _bits(
            estimator._tail_moments_x_py(6.0, 0.4, (e0, e1), done)
        )
        assert _bits(estimator.planned_exact(6.0, 0.4, (e0, e1), done, 1.5)) == _bits(
            estimator._planned_exact_py(6.0, 0.4, (e0, e1), done, 1.5)
        )
