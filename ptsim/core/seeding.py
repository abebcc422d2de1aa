"""Seeded generators made cheaply: ``np.random.default_rng(entropy)`` for a short list of
non-negative integers.

A run draws from a fresh generator seeded by (run seed, purpose, job, ...) once per job and per
simulated accuracy reading, about a million times in a day of a large cluster. When every
integer fits in 32 bits, ``SeedSequence`` reads each as one word whether it comes as a Python
list or as a ``uint32`` array, and the array skips numpy's per-integer conversion (about 30%
of the seeding). ``SeedSequence.generate_state``, which ``PCG64`` calls once to seed itself, is
wrapped in ``np.errstate(over="ignore")``, a context switch that costs about a fifth of the
seeding; its hashing is unsigned 32-bit C arithmetic, which never reaches numpy's error
handling, so the generator here calls the function inside the wrapper (the same words).
tests/test_seeding.py checks the draws against ``default_rng``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_M32 = 0xFFFFFFFF

_generate_state: Callable[..., Any] = getattr(
    np.random.SeedSequence.generate_state, "__wrapped__", np.random.SeedSequence.generate_state
)


class _SeedSequence(np.random.SeedSequence):
    """``SeedSequence`` whose ``generate_state`` skips the ``np.errstate`` wrapper."""

    __slots__ = ()

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> Any:
        return _generate_state(self, n_words, dtype)


def seeded_rng(entropy: Sequence[int]) -> np.random.Generator:
    """A generator in the state ``np.random.default_rng(list(entropy))`` starts in."""
    if entropy and min(entropy) >= 0 and max(entropy) <= _M32:
        seq = _SeedSequence(np.array(entropy, dtype=np.uint32))
        return np.random.Generator(np.random.PCG64(seq))
    return np.random.default_rng(list(entropy))
