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
``first_normals`` makes the first normal draw of many generators whose seeds differ only in
their last word (a job's simulated accuracy readings) with the seed hashing done as array
arithmetic over them, about twice as fast per draw as a ``seeded_rng`` each. The compiled
build (``./dev native``) adds C kernels (``_seedkernel.c``): the seed hashing, and for
``first_normals`` and ``seeded_normals`` (a generator's first draws, made once per entry the
simulated Prompt Bank gains) the generators and draws too, which give the same words and
draws.
tests/test_seeding.py checks the draws against ``default_rng``, with and without the kernels.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

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
    return _seeded_rng(entropy, _KERNEL)


def _seeded_rng(entropy: Sequence[int], kernel: _Kernel | None) -> np.random.Generator:
    """``seeded_rng`` with the kernels given (None: the Python definition)."""
    if entropy and min(entropy) >= 0 and max(entropy) <= _M32:
        if kernel is not None and len(entropy) <= kernel.max_entropy:
            # the words the seed sequence would give (its ``generate_state(4, np.uint64)``)
            given = _Given(kernel.seed_words(_KERNEL_CONSTS, entropy))
            return np.random.Generator(np.random.PCG64(cast(Any, given)))
        seq = _SeedSequence(np.array(entropy, dtype=np.uint32))
        return np.random.Generator(np.random.PCG64(seq))
    return np.random.default_rng(list(entropy))


# ``SeedSequence``'s hashing constants (numpy's ``bit_generator.pyx``, after Melissa O'Neill's
# seed_seq_fe): a pool of four 32-bit words, hash multipliers that evolve with every use (the
# same sequence whatever the data), and a final mix into the words that seed ``PCG64``
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715


def _hash_consts(n: int, init: int, mult: int) -> list[tuple[int, int]]:
    """(xor, multiplier) of each of the first ``n`` uses of an evolving hash constant."""
    out, h = [], init
    for _ in range(n):
        nxt = (h * mult) & _M32
        out.append((h, nxt))
        h = nxt
    return out


_A = _hash_consts(16, _INIT_A, _MULT_A)  # pool of 4: 4 words in, then 4 x 3 cross mixes
_B = _hash_consts(8, _INIT_B, _MULT_B)  # 8 output words (4 uint64 for PCG64)
_B_XOR = np.array([[a] for a, _ in _B], dtype=np.uint32)
_B_MUL = np.array([[m] for _, m in _B], dtype=np.uint32)
_LAST_XOR = np.array([[a] for a, _ in _A[13:16]], dtype=np.uint32)  # the last word into the others
_LAST_MUL = np.array([[m] for _, m in _A[13:16]], dtype=np.uint32)


def _hashmix(v: int, c: tuple[int, int]) -> int:
    v = ((v ^ c[0]) * c[1]) & _M32
    return v ^ (v >> 16)


def _mix(x: int, y: int) -> int:
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> 16)


def _hashmix_arr(v: Any, xor: Any, mul: Any) -> Any:
    v = (v ^ xor) * mul
    return v ^ (v >> np.uint32(16))


def _mix_arr(x: Any, ry: Any) -> Any:
    """``_mix`` of arrays, given ``ry`` = the second operand times ``_MIX_R`` (mod 2**32)."""
    r = np.uint32(_MIX_L) * x - ry
    return r ^ (r >> np.uint32(16))


class _Given(np.random.bit_generator.ISeedSequence):
    """A seed sequence whose state words were computed already."""

    __slots__ = ("words",)

    def __init__(self, words: Any) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> Any:
        return self.words


@dataclass(frozen=True)
class _Kernel:
    """The compiled build's seeding kernels (``_seedkernel.c``): ``seed_words(consts,
    entropy)`` is ``SeedSequence(entropy).generate_state(4, np.uint64)`` and
    ``first_normals(consts, prefix, ks, sigma)`` is ``_first_normals``'s Python and
    ``normals(consts, entropy, n, sigma)`` is ``seeded_rng(entropy).normal(0.0, sigma, n)``,
    for words below 2**32, and at most ``max_entropy`` entropy words."""

    seed_words: Callable[[Any, Sequence[int]], Any]
    first_normals: Callable[[Any, Sequence[int], Sequence[int], float], list[float]]
    normals: Callable[[Any, Sequence[int], int, float], Any]
    max_entropy: int


def _load_kernel() -> _Kernel | None:
    """The seeding kernels when the compiled build made them, else None (a stale build's
    refusal is raised, not taken for a pure package)."""
    try:
        mod = importlib.import_module("ptsim.core._seedkernel")
    except ModuleNotFoundError:
        return None
    return _Kernel(mod.seed_words, mod.first_normals, mod.normals, mod.MAX_ENTROPY)


# SeedSequence's constants, in the kernels' order
_KERNEL_CONSTS = np.array([_INIT_A, _MULT_A, _INIT_B, _MULT_B, _MIX_L, _MIX_R], dtype=np.uint32)
_KERNEL = _load_kernel()


def seeded_normals(entropy: Sequence[int], n: int, sigma: float) -> npt.NDArray[np.float64]:
    """``np.random.default_rng(list(entropy)).normal(0.0, sigma, size=n)``: the same floats,
    by the compiled build's kernel (``_seedkernel.c``) when there is one."""
    return _seeded_normals(entropy, n, sigma, _KERNEL)


def _seeded_normals(
    entropy: Sequence[int], n: int, sigma: float, kernel: _Kernel | None
) -> npt.NDArray[np.float64]:
    """``seeded_normals`` with the kernels given (None: the Python definition)."""
    if (
        kernel is not None
        and 0 < len(entropy) <= kernel.max_entropy
        and min(entropy) >= 0
        and max(entropy) <= _M32
    ):
        return cast("npt.NDArray[np.float64]", kernel.normals(_KERNEL_CONSTS, entropy, n, sigma))
    return _seeded_rng(entropy, kernel).normal(0.0, sigma, size=n)


def first_normals(prefix: Sequence[int], ks: Sequence[int], sigma: float) -> list[float]:
    """``[float(np.random.default_rng([*prefix, k]).normal(0.0, sigma)) for k in ks]``: the
    same floats, with the seeding of all the generators done at once (three prefix words and
    every word below 2**32; otherwise one ``seeded_rng`` each): by the compiled build's kernel
    (``_seedkernel.c``) or, in the pure package, ``_first_normals``'s Python."""
    return _first_normals(prefix, ks, sigma, _KERNEL)


def _first_normals(
    prefix: Sequence[int], ks: Sequence[int], sigma: float, kernel: _Kernel | None
) -> list[float]:
    """``first_normals`` with the kernels given (None: the Python definition).

    With four entropy words the pool's mixing before the last word is used depends on the
    prefix only; the Python does it once in Python integers, the rest as uint32 array
    arithmetic over ``ks`` (the same wrapping 32-bit operations numpy's C code does), then
    seeds a generator per ``k`` from the words."""
    if not ks:
        return []
    if len(prefix) != 3 or min(*prefix, *ks) < 0 or max(*prefix, *ks) > _M32:
        return [float(_seeded_rng([*prefix, k], kernel).normal(0.0, sigma)) for k in ks]
    if kernel is not None:
        return kernel.first_normals(_KERNEL_CONSTS, prefix, ks, sigma)
    m0, m1, m2 = (_hashmix(w, _A[i]) for i, w in enumerate(prefix))
    # cross mixes that read only the prefix's words (source 0, 1 and 2 into the others)
    m1 = _mix(m1, _hashmix(m0, _A[4]))
    m2 = _mix(m2, _hashmix(m0, _A[5]))
    h0 = _hashmix(m0, _A[6])
    m0 = _mix(m0, _hashmix(m1, _A[7]))
    m2 = _mix(m2, _hashmix(m1, _A[8]))
    h1 = _hashmix(m1, _A[9])
    m0 = _mix(m0, _hashmix(m2, _A[10]))
    m1 = _mix(m1, _hashmix(m2, _A[11]))
    h2 = _hashmix(m2, _A[12])
    return _first_normals_py((m0, m1, m2), (h0, h1, h2), ks, sigma)


def _first_normals_py(
    first3: tuple[int, int, int], into3: tuple[int, int, int], ks: Sequence[int], sigma: float
) -> list[float]:
    """The draws for each ``k`` given the prefix's pool words after their cross mixes
    (``first3``) and the hashes they mix into the last word (``into3``)."""
    # the last word (k), mixed with those, then mixed into the other three
    m3 = _hashmix_arr(np.asarray(ks, dtype=np.uint32), np.uint32(_A[3][0]), np.uint32(_A[3][1]))
    for h in into3:
        m3 = _mix_arr(m3, np.uint32((_MIX_R * h) & _M32))
    first = np.array([[first3[0]], [first3[1]], [first3[2]]], dtype=np.uint32)
    pool = np.empty((4, len(ks)), dtype=np.uint32)
    into = _hashmix_arr(m3[None, :], _LAST_XOR, _LAST_MUL)
    pool[:3] = _mix_arr(first, np.uint32(_MIX_R) * into)
    pool[3] = m3
    words = _hashmix_arr(pool[[0, 1, 2, 3, 0, 1, 2, 3]], _B_XOR, _B_MUL)
    # little-endian pairs of 32-bit words -> the four 64-bit words PCG64 is seeded with
    seeds = np.ascontiguousarray(words.T).astype("<u4").view("<u8").astype(np.uint64)
    out = []
    given = _Given(None)
    pcg64, generator = np.random.PCG64, np.random.Generator
    for row in seeds:
        given.words = row
        # PCG64 takes any ``ISeedSequence`` (its stubs name only ``SeedSequence``); numpy's
        # ``normal(loc, scale)`` is ``loc + scale * standard_normal()`` on the same draw
        out.append(0.0 + sigma * float(generator(pcg64(cast(Any, given))).standard_normal()))
    return out
