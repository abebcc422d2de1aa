"""Seeded generators made cheaply: ``np.random.default_rng(entropy)`` for a short list of
non-negative integers, without building a ``SeedSequence`` and a ``PCG64`` per call.

A run draws from a fresh generator seeded by (run seed, purpose, job, ...) once per job and per
simulated accuracy reading, tens of thousands of times; ``default_rng`` spends about 30-50 us
on the seeding alone. :func:`pcg64_state` computes the state ``PCG64(SeedSequence(entropy))``
starts in (numpy's seeding algorithm, whose output numpy keeps stable across versions), and
:class:`Reseeder` loads it into one reused generator. tests/test_seeding.py checks the states
against numpy's on random entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_M32 = 0xFFFFFFFF
_M128 = (1 << 128) - 1
_MIX_L = 0xCA01F9DD
_MIX_R = 0x4973F715
_PCG_MULT = (2549297995355413924 << 64) | 4865540595714422341


def _powers(init: int, mult: int, n: int) -> list[int]:
    out = [init]
    for _ in range(n):
        out.append((out[-1] * mult) & _M32)
    return out


_HASH_A = _powers(0x43B0D7E5, 0x931E8875, 64)  # SeedSequence's mixing constants, in use order
_HASH_B = _powers(0x8B51F9DD, 0x58F38DED, 8)  # and its output hash's
_PAIRS = [(s, d) for s in range(4) for d in range(4) if s != d]


def _words(entropy: Sequence[int]) -> list[int]:
    """The 32-bit words SeedSequence reads from a list of non-negative integers."""
    out: list[int] = []
    for n in entropy:
        n = int(n)
        if n < 0:
            raise ValueError(f"entropy must be non-negative integers, got {n}")
        if n <= _M32:
            out.append(n)
            continue
        while n > 0:
            out.append(n & _M32)
            n >>= 32
    return out


def pcg64_state(entropy: Sequence[int]) -> dict[str, Any]:
    """``np.random.PCG64(np.random.SeedSequence(entropy)).state`` (no spawn key, pool of 4)."""
    ent = _words(entropy)
    need = 18 + 4 * len(ent)
    ha = _HASH_A if need <= len(_HASH_A) else _powers(0x43B0D7E5, 0x931E8875, need)
    pool = [0, 0, 0, 0]
    for i in range(4):
        v = (ent[i] if i < len(ent) else 0) ^ ha[i]
        v = (v * ha[i + 1]) & _M32
        pool[i] = v ^ (v >> 16)
    k = 4
    for s, d in _PAIRS:
        v = pool[s] ^ ha[k]
        k += 1
        v = (v * ha[k]) & _M32
        r = (_MIX_L * pool[d] - _MIX_R * (v ^ (v >> 16))) & _M32
        pool[d] = r ^ (r >> 16)
    for s in range(4, len(ent)):
        for d in range(4):
            v = ent[s] ^ ha[k]
            k += 1
            v = (v * ha[k]) & _M32
            r = (_MIX_L * pool[d] - _MIX_R * (v ^ (v >> 16))) & _M32
            pool[d] = r ^ (r >> 16)
    st = []
    for i in range(8):
        v = pool[i & 3] ^ _HASH_B[i]
        v = (v * _HASH_B[i + 1]) & _M32
        st.append(v ^ (v >> 16))
    # four little-endian 64-bit words: (state high, state low, increment high, low)
    initstate = st[0] << 64 | st[1] << 96 | st[2] | st[3] << 32
    inc = ((st[4] << 64 | st[5] << 96 | st[6] | st[7] << 32) << 1 | 1) & _M128
    state = ((inc + initstate) * _PCG_MULT + inc) & _M128
    return {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }


class Reseeder:
    """One generator, re-seeded per use: ``rng(entropy)`` is in the state
    ``np.random.default_rng(entropy)`` starts in, until the next call (draw from it at once)."""

    def __init__(self) -> None:
        self._gen = np.random.Generator(np.random.PCG64(0))

    def rng(self, entropy: Sequence[int]) -> np.random.Generator:
        self._gen.bit_generator.state = pcg64_state(entropy)
        return self._gen
