"""Seeded generators made cheaply: ``np.random.default_rng(entropy)`` for a short list of
non-negative integers.

A run draws from a fresh generator seeded by (run seed, purpose, job, ...) once per job and per
simulated accuracy reading, about a million times in a day of a large cluster. When every
integer fits in 32 bits, ``SeedSequence`` reads each as one word whether it comes as a Python
list or as a ``uint32`` array, and the array skips numpy's per-integer conversion (about 30%
of the seeding). tests/test_seeding.py checks the draws against ``default_rng``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_M32 = 0xFFFFFFFF


def seeded_rng(entropy: Sequence[int]) -> np.random.Generator:
    """A generator in the state ``np.random.default_rng(list(entropy))`` starts in."""
    if all(0 <= w <= _M32 for w in entropy):
        seq = np.random.SeedSequence(np.array(entropy, dtype=np.uint32))
        return np.random.Generator(np.random.PCG64(seq))
    return np.random.default_rng(list(entropy))
