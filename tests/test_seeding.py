"""``ptsim.core.seeding`` gives the generators numpy's own seeding gives."""

from __future__ import annotations

import random

import numpy as np

from ptsim.core.seeding import first_normals, seeded_rng


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


def test_first_normals_equal_one_generator_each() -> None:
    r = random.Random(1)
    cases = 0
    for _ in range(300):
        # three prefix words (the vectorised path) or another count (one generator each)
        n = r.choice((3, 3, 3, 2, 4))
        prefix = [r.choice((0, 2**32 - 1, r.randrange(2**32), r.randrange(100))) for _ in range(n)]
        ks = [
            r.choice((0, 1, 2**32 - 1, r.randrange(2**32), r.randrange(1000), 2**33))
            for _ in range(r.randrange(0, 40))
        ]
        sigma = r.choice((0.49, 1.0, 0.02))
        want = [float(np.random.default_rng([*prefix, k]).normal(0.0, sigma)) for k in ks]
        assert first_normals(prefix, ks, sigma) == want, (prefix, ks)
        cases += len(ks)
    assert cases > 5000
