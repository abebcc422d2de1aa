"""``ptsim.core.seeding`` gives the generators numpy's own seeding gives, in the pure package and
with the compiled build's seeding kernel (``ptsim/core/_seedkernel.c``; tests/test_native.py
runs this file against a fresh build)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ptsim.core import seeding
from ptsim.core.seeding import first_normals, seeded_normals, seeded_rng

needs_kernel = pytest.mark.skipif(
    seeding._KERNEL is None, reason="no seeding kernel (the compiled build: ./dev native)"
)


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)])
def test_draws_equal_default_rng(kernel: bool) -> None:
    r = random.Random(0)
    use = seeding._KERNEL if kernel else None
    for _ in range(2000):
        n = r.randrange(1, 9)
        entropy = [
            r.choice((0, r.randrange(2**32), r.randrange(100), 2**32 - 1, r.randrange(2**70)))
            for _ in range(n)
        ]
        want = np.random.default_rng(entropy)
        got = seeding._seeded_rng(entropy, use)
        assert got.bit_generator.state == want.bit_generator.state, entropy
        if not kernel:
            assert seeded_rng(entropy).bit_generator.state == want.bit_generator.state
        assert got.normal(0.0, 0.3) == want.normal(0.0, 0.3)
        assert got.random(3).tolist() == want.random(3).tolist()


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)])
def test_first_normals_equal_one_generator_each(kernel: bool) -> None:
    """The Python definition and the kernel (where built) draw what ``default_rng`` draws."""
    r = random.Random(1)
    use = seeding._KERNEL if kernel else None
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
        assert seeding._first_normals(prefix, ks, sigma, use) == want, (prefix, ks)
        assert first_normals(prefix, ks, sigma) == want, (prefix, ks)
        cases += len(ks)
    assert cases > 5000


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)])
def test_seeded_normals_equal_default_rngs_draws(kernel: bool) -> None:
    """Every draw of ``default_rng(entropy).normal(0, sigma, size=n)``, with and without the
    kernel (where built): entropy of 1 to 70 words (the kernel's limit is 64), words out of
    32 bits (numpy's own seeding), and enough draws to take numpy's slow path."""
    r = random.Random(3)
    use = seeding._KERNEL if kernel else None
    draws = 0
    for _ in range(300):
        n_ent = r.choice((1, 3, 3, 3, 4, 64, 70))
        entropy = [
            r.choice((0, 2**32 - 1, r.randrange(2**32), r.randrange(100))) for _ in range(n_ent)
        ]
        if r.random() < 0.05:
            entropy[0] = 2**40
        n, sigma = r.choice((0, 1, 16, 16, 200)), r.choice((0.1, 1.0, 2.5))
        want = np.random.default_rng(entropy).normal(0.0, sigma, size=n)
        got = seeding._seeded_normals(entropy, n, sigma, use)
        assert got.dtype == np.float64 and got.tolist() == want.tolist(), entropy
        assert seeded_normals(entropy, n, sigma).tolist() == want.tolist()
        draws += n
    assert draws > 10000


@needs_kernel
def test_the_kernel_draws_what_the_python_draws_on_many_seeds() -> None:
    """Long runs of consecutive ``k`` (a job's readings) from random prefixes: every draw,
    including numpy's rare slow path of its normal sampler, is the same float."""
    rng = np.random.default_rng(7)
    draws = 0
    for _ in range(400):
        prefix = [int(w) for w in rng.integers(0, 2**32, 3)]
        k0 = int(rng.integers(0, 2**32 - 200))
        ks = list(range(k0, k0 + int(rng.integers(1, 200))))
        sigma = float(rng.uniform(0.01, 3.0))
        want = seeding._first_normals(prefix, ks, sigma, None)
        assert seeding._first_normals(prefix, ks, sigma, seeding._KERNEL) == want
        draws += len(ks)
    assert draws > 30000  # the slow path (about 1% of draws) is taken hundreds of times


@needs_kernel
def test_the_kernel_seeds_as_seed_sequence_does() -> None:
    """``seed_words`` against numpy's ``SeedSequence`` on entropy of 0 to 64 words (the pool
    padded, filled and overflowed)."""
    kernel = seeding._KERNEL
    assert kernel is not None
    rng = np.random.default_rng(11)
    assert kernel.max_entropy == 64
    for n in [*range(0, 12), 63, 64] * 40:
        entropy = [int(w) for w in rng.integers(0, 2**32, n)]
        if n and rng.random() < 0.3:
            entropy[int(rng.integers(n))] = int(rng.choice([0, 2**32 - 1]))
        want = np.random.SeedSequence(np.array(entropy, dtype=np.uint32)).generate_state(
            4, np.uint64
        )
        got = kernel.seed_words(seeding._KERNEL_CONSTS, entropy)
        assert got.dtype == np.uint64 and got.tolist() == want.tolist(), entropy
    # longer entropy than the kernel takes: numpy's seeding
    long = [int(w) for w in rng.integers(0, 2**32, 70)]
    want_state = np.random.default_rng(long).bit_generator.state
    assert seeding._seeded_rng(long, kernel).bit_generator.state == want_state


@needs_kernel
def test_the_kernel_refuses_words_out_of_range() -> None:
    kernel = seeding._KERNEL
    assert kernel is not None
    consts = seeding._KERNEL_CONSTS
    with pytest.raises(ValueError, match="a k must be an int in"):
        kernel.first_normals(consts, [1, 2, 3], [1, 2**32], 1.0)
    with pytest.raises(ValueError, match="a prefix word must be an int in"):
        kernel.first_normals(consts, [1, -2, 3], [1], 1.0)
    with pytest.raises(ValueError, match="an entropy word must be an int in"):
        kernel.seed_words(consts, [2**40])
    with pytest.raises(ValueError, match="at most 64 words"):
        kernel.seed_words(consts, [1] * 65)
    with pytest.raises(TypeError, match="6 words"):
        kernel.seed_words(consts[:-1], [1])
    with pytest.raises(ValueError, match="an entropy word must be an int in"):
        kernel.normals(consts, [1, -1], 4, 1.0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        kernel.normals(consts, [1], -1, 1.0)
