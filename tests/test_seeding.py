"""``ptsim.core.seeding`` gives the states numpy's own seeding gives."""

from __future__ import annotations

import random

import numpy as np

from ptsim.core.seeding import Reseeder, pcg64_state


def test_states_equal_numpys() -> None:
    r = random.Random(0)
    for _ in range(3000):
        n = r.randrange(1, 9)
        entropy = [
            r.choice((0, r.randrange(2**32), r.randrange(100), r.randrange(2**70)))
            for _ in range(n)
        ]
        assert pcg64_state(entropy) == np.random.PCG64(np.random.SeedSequence(entropy)).state


def test_reseeded_draws_equal_default_rng() -> None:
    re = Reseeder()
    for entropy in ([0, 7, 123456789, 5], [3, 2**32 + 5], [0], [1, 5, 48000]):
        want = np.random.default_rng(entropy)
        got = re.rng(entropy)
        assert got.normal(0.0, 0.3) == want.normal(0.0, 0.3)
        assert got.random(5).tolist() == want.random(5).tolist()
        assert got.integers(10**9, size=3).tolist() == want.integers(10**9, size=3).tolist()
