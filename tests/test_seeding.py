"""``ptsim.core.seeding`` gives the generators numpy's own seeding gives."""

from __future__ import annotations

import random

import numpy as np

from ptsim.core.seeding import seeded_rng


def test_draws_equal_default_rng() -> None:
    r = random.Random(0)
    for _ in range(2000):
        n = r.randrange(1, 9)
        entropy = [
            r.choice((0, r.randrange(2**32), r.randrange(100), 2**32 - 1, r.randrange(2**70)))
            for _ in range(n)
        ]
        want = np.random.default_rng(entropy)
        got = seeded_rng(entropy)
        assert got.bit_generator.state == want.bit_generator.state, entropy
        assert got.normal(0.0, 0.3) == want.normal(0.0, 0.3)
        assert got.random(3).tolist() == want.random(3).tolist()
