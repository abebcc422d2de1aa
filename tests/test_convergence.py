"""The iterations-to-target model: task space, saving curve, realised iterations."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptsim.core.convergence import (
    DEFAULT_FAMILIES,
    ConvergenceModel,
    SavingCurve,
    TaskSpace,
)
from ptsim.core.profiles import UnknownName
from ptsim.core.seeding import seeded_normals

SPACE = TaskSpace.default()
MODEL = ConvergenceModel.default()
TASKS = st.sampled_from(SPACE.names)
DET = settings(derandomize=True, max_examples=200, deadline=None)


def test_default_space_has_the_papers_tasks_in_four_families() -> None:
    assert len(SPACE.names) == 12
    assert set(SPACE.families) == {"sentiment", "nli", "qa", "topic"}
    for fam, tasks in DEFAULT_FAMILIES.items():
        assert SPACE.tasks_in(fam) == tasks
    assert SPACE.family("imdb") == "sentiment"


def test_default_space_is_fixed() -> None:
    again = TaskSpace.default()
    assert np.array_equal(SPACE.points, again.points)
    assert not SPACE.points.flags.writeable


def test_within_family_similar_across_family_not() -> None:
    for a in SPACE.names:
        for b in SPACE.names:
            s = SPACE.similarity(a, b)
            if a == b:
                continue
            if SPACE.family(a) == SPACE.family(b):
                assert s > 0.5, (a, b, s)
            else:
                assert s < 0.1, (a, b, s)


@DET
@given(TASKS, TASKS)
def test_similarity_symmetric_bounded_one_on_diagonal(a: str, b: str) -> None:
    s = SPACE.similarity(a, b)
    assert s == pytest.approx(SPACE.similarity(b, a))
    assert 0.0 <= s <= 1.0
    assert SPACE.similarity(a, a) == 1.0
    assert SPACE.similarities_to(b)[SPACE.index(a)] == pytest.approx(s)


@DET
@given(st.integers(1, 60), st.integers(1, 12), st.integers(0, 2**16))
def test_generic_space(n: int, f: int, seed: int) -> None:
    f = min(f, n)
    space = TaskSpace.generic(n, f, seed=seed)
    assert space.names[0] == "t000" and len(space.names) == n
    assert list(space.names) == sorted(space.names)
    assert len(set(space.families)) == f
    sizes = [len(space.tasks_in(fam)) for fam in sorted(set(space.families))]
    assert max(sizes) - min(sizes) <= 1
    a, b = space.names[0], space.names[-1]
    assert space.similarity(a, b) == pytest.approx(space.similarity(b, a))
    assert space.similarity(a, a) == 1.0


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnknownName, match="sst2") as err:
        SPACE.similarity("sst2", "nope")
    assert "nope" in str(err.value)
    with pytest.raises(UnknownName):
        MODEL.expected_saving(None, "nope")
    with pytest.raises(UnknownName):
        MODEL.expected_saving("nope", "sst2")
    with pytest.raises(UnknownName, match="topic"):
        SPACE.tasks_in("nofamily")


def test_default_init_saves_nothing_and_draws_nothing() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    for t in SPACE.names:
        assert MODEL.expected_saving(None, t) == 0.0
        assert MODEL.realized_iterations(1234.0, None, t, rng) == 1234.0
    assert rng.bit_generator.state == state


def test_best_same_family_source_saves_about_30_percent() -> None:
    best = [
        max(MODEL.expected_saving(s, t) for s in SPACE.tasks_in(SPACE.family(t)) if s != t)
        for t in SPACE.names
    ]
    assert 0.27 <= float(np.mean(best)) <= 0.33


def test_cross_family_sources_save_nothing_same_task_saves_most() -> None:
    for t in SPACE.names:
        for s in SPACE.names:
            sav = MODEL.expected_saving(s, t)
            if SPACE.family(s) != SPACE.family(t):
                assert sav == 0.0
            assert sav <= MODEL.expected_saving(t, t) == MODEL.curve.s_max


@DET
@given(st.floats(0, 1), st.floats(0, 1))
def test_curve_monotone_and_bounded(s1: float, s2: float) -> None:
    c = SavingCurve()
    lo, hi = sorted((s1, s2))
    assert 0.0 <= c.expected(lo) <= c.expected(hi) <= c.s_max
    assert c.expected_many(np.array([hi]))[0] == pytest.approx(c.expected(hi))


@DET
@given(
    st.floats(0, 1e6),
    st.one_of(st.none(), TASKS),
    TASKS,
    st.integers(0, 2**32 - 1),
)
def test_realized_iterations_in_range(base: float, src: str | None, tgt: str, seed: int) -> None:
    it = MODEL.realized_iterations(base, src, tgt, np.random.default_rng(seed))
    assert it >= 0.0
    assert base * (1 - MODEL.max_saving) - 1e-9 <= it <= base * (1 - MODEL.min_saving) + 1e-9


@DET
@given(
    st.sampled_from([0.0, 0.3]),
    st.floats(0, 1e6),
    st.one_of(st.none(), TASKS),
    TASKS,
    st.integers(0, 2**32 - 1),
)
def test_realized_iterations_are_the_models_draws(
    spread: float, base: float, src: str | None, tgt: str, seed: int
) -> None:
    """The definition drawn as it reads (a run-to-run factor, then a clamped saving, each one
    ``normal`` call of the generator) against both ways of drawing: the generator's, and a
    seeded generator's first standard normals (as the simulated bank draws them)."""
    model = dataclasses.replace(MODEL, spread_sigma=spread)
    rng = np.random.default_rng([seed, 1])
    factor = math.exp(float(rng.normal(0.0, spread))) if spread else 1.0
    saving = 0.0
    if src is not None:
        draw = model.expected_saving(src, tgt) + float(rng.normal(0.0, model.curve.noise_sigma))
        saving = min(model.max_saving, max(model.min_saving, draw))
    want = (base * (1.0 - saving) * factor if src else base * factor, base * factor)
    got = model.realized_iterations_and_default(base, src, tgt, np.random.default_rng([seed, 1]))
    assert got == want
    normals = seeded_normals([seed, 1], 2, 1.0).tolist()
    assert model.realized_from_normals(base, src, tgt, normals) == want


def test_realized_saving_averages_to_expected() -> None:
    rng = np.random.default_rng(7)
    draws = [MODEL.realized_saving("imdb", "sst2", rng) for _ in range(4000)]
    assert float(np.mean(draws)) == pytest.approx(MODEL.expected_saving("imdb", "sst2"), abs=0.005)


def test_realized_iterations_deterministic_under_seed() -> None:
    a = [MODEL.realized_iterations(500, "rte", "mnli", np.random.default_rng(3)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError):
        SavingCurve(s_max=1.0)
    with pytest.raises(ValueError):
        SavingCurve(s0=1.0)
    with pytest.raises(ValueError):
        ConvergenceModel(SPACE, min_saving=0.1)
    with pytest.raises(ValueError):
        MODEL.realized_iterations(-1, "sst2", "sst2", np.random.default_rng(0))
    with pytest.raises(ValueError):
        TaskSpace(("a", "a"), ("f", "f"), np.zeros((2, 2)))
