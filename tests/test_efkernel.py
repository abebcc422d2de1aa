"""The compiled build's C kernels of ElasticFlow's planner (``ptsim/core/policies/_efkernel.c``)
give exactly what their Python definitions give, on random inputs. Skipped in the pure-Python
package; tests/test_native.py runs this file against a fresh build of the checkout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptsim.core.policies import elasticflow as ef
from tests.test_policy_elasticflow import _random_levels, plan_case

pytestmark = pytest.mark.skipif(
    ef._KERNELS is None, reason="no compiled kernels (the compiled build: ./dev native)"
)


def _kernels() -> ef._Kernels:
    assert ef._KERNELS is not None
    return ef._KERNELS


def test_level_change_equals_its_python_definition() -> None:
    rng = np.random.default_rng(3)
    change = _kernels().level_change
    hits = 0
    for _ in range(20000):
        table = np.sort(rng.integers(0, 5, int(rng.integers(1, 40)))).astype(np.int64)
        length = int(rng.integers(1, 300))
        cur = rng.integers(-3, len(table) + 3, length).astype(np.int64)
        slots = np.flatnonzero(rng.random(length) < rng.uniform(0.0, 0.5)).astype(np.int64)
        delta = rng.integers(-6, 7, len(slots)).astype(np.int64)
        lo = int(rng.integers(-2, length + 1))
        hi = int(rng.integers(lo, length + 3))
        want = ef._level_change(table, cur, slots, delta, lo, hi)
        assert change(table, cur, slots, delta, lo, hi) is want
        hits += want
    assert 2000 < hits < 18000  # both answers, many times


@pytest.mark.parametrize("mode", ["slot", "free_change"])
def test_plan_runs_kernel_equals_its_python_definition(mode: str) -> None:
    """Same answer (defer, no level, or the same plan) and the same shape as
    ``_Planner._plan_runs_py``; where it answers, the slot-by-slot plan's."""
    rng = np.random.default_rng(11)
    py = ef._Planner(0.0, 60.0, mode, kernels=None)
    compiled = ef._Planner(0.0, 60.0, mode, kernels=_kernels())
    answered = 0
    cases = 6000
    for _ in range(cases):
        # one free-GPU value per slot in a fifth of the cases: the kernel must give up where
        # the Python does (too many runs)
        lv, k_max, free, fits, last, need = plan_case(rng, k_top=200, many_runs=0.2)
        if need <= 0:
            continue
        py.shape = compiled.shape = ef._NO_SHAPE
        want = py._plan_runs_py(lv, need, last, k_max, free)
        got = compiled._plan_runs(lv, need, last, k_max, free)
        if want is None or got is None:
            assert want is None and got is None
            continue
        answered += 1
        assert (got is ef._NO_LEVEL) == (want is ef._NO_LEVEL)
        assert got.dtype == np.int64 and got.tolist() == want.tolist()
        q, point, slack = compiled.shape
        assert (q, point) == py.shape[:2] and type(q) is int and type(point) is int
        assert slack == py.shape[2] or (math.isinf(slack) and math.isinf(py.shape[2]))
        slots = ef._Planner(0.0, 60.0, mode, kernels=None)._plan_slots(
            lv, fits, need, last, k_max, free
        )
        assert got.tolist() == slots.tolist()
    assert answered > 0.5 * cases


def test_kernels_refuse_arrays_of_another_type() -> None:
    k = _kernels()
    ints = np.zeros(4, dtype=np.int64)
    with pytest.raises(TypeError, match="cur: a contiguous 1-d int64 array expected"):
        k.level_change(ints, ints.astype(np.int32), ints, ints, 0, 4)
    with pytest.raises(ValueError, match="slots and delta differ in length"):
        k.level_change(ints, ints, ints, ints[:2], 0, 4)
    with pytest.raises(TypeError, match="thr_ext: a contiguous 1-d float64 array expected"):
        k.plan_runs(ints, ints, 3, ints, ints, 60.0, 1.0, 60.0, True, False, 64)
    lane, _ = _random_lane(np.random.default_rng(0), "slot")
    args = (0, ints, ints, ints[:0], ints[:0], ints[:0], 0, True)
    with pytest.raises(TypeError, match="the lane's five columns expected"):
        k.scan(lane, *args)  # the lane itself, not its columns
    plans, kmax, top, tops, tables = lane.cols
    with pytest.raises(TypeError, match=r"lane\.tops: a list of the lane's length expected"):
        k.scan((plans, kmax, top, tops[:-1], tables), *args)


def _random_lane(rng: np.random.Generator, mode: str) -> tuple[ef._Lane, int]:
    """Admitted jobs planned in deadline order on a random cluster, as the admission tests
    see them, and the cluster's GPUs."""
    total = int(rng.choice([8, 16, 64]))
    planner = ef._Planner(0.0, 60.0, mode, kernels=None)
    items = []
    for n in range(int(rng.integers(1, 40))):
        lv = _random_levels(rng, total)
        deadline = float(rng.uniform(-100.0, 6000.0))
        items.append(
            ef._Item(f"j{n}", (deadline, 0.0, f"j{n}"), deadline, float(rng.uniform(1, 4e4)), lv, 0)
        )
    items.sort(key=lambda it: it.order)
    return ef._Lane(items, planner, ef._Free(total)), total


@pytest.mark.parametrize("mode", ["slot", "free_change"])
def test_scan_kernel_equals_its_python_definition(mode: str) -> None:
    """Same stopping job and reason and the same free GPUs left: those before it less the
    rows of the jobs passed over."""
    rng = np.random.default_rng(5)
    scan = _kernels().scan
    seen = set()
    for _ in range(3000):
        lane, total = _random_lane(rng, mode)
        longest = max([len(p[1]) for p in lane.plans] + lane.kmax)
        length = max(1, longest + int(rng.integers(-20, 20)))
        cur = rng.integers(-2, total + 1, length).astype(np.int64)
        diff = np.where(rng.random(length) < 0.1, rng.integers(-3, 4, length), 0).astype(np.int64)
        nz = diff.nonzero()[0]
        by_period = mode == "free_change" and rng.random() < 0.7
        steps = (diff[1:] != diff[:-1]).nonzero()[0] + 1 if by_period else ef._EMPTY
        floor = int(rng.choice([0, int(rng.integers(0, total + 1)), ef._INT_MAX]))
        start = int(rng.integers(0, len(lane.plans) + 1))
        check = bool(rng.random() < 0.5)
        args = (diff, nz, diff[nz], steps, floor, check)
        want_cur, got_cur = cur.copy(), cur.copy()
        want = ef._scan(lane.cols, start, want_cur, *args)
        got = scan(lane.cols, start, got_cur, *args)
        assert got == want
        assert got_cur.tolist() == want_cur.tolist()
        kept = cur.copy()  # the jobs it passed over keep their plans: their rows are taken
        for ok_row in lane.plans[start : got[0]]:
            kept[: len(ok_row[1])] -= ok_row[1]
        assert got_cur.tolist() == kept.tolist()
        seen.add(want[1])
    assert seen == {ef._SCAN_END, ef._SCAN_ALL_KEPT, ef._SCAN_GROW, ef._SCAN_CHANGE} | (
        {ef._SCAN_STEPS} if mode == "free_change" else set()
    )


def test_reserve_and_summary_equal_their_python_definitions() -> None:
    rng = np.random.default_rng(9)
    k = _kernels()
    for _ in range(3000):
        length = int(rng.integers(1, 200))
        arr = rng.integers(-5, 50, length).astype(np.int64)
        row = rng.integers(0, 9, int(rng.integers(0, length + 1))).astype(np.int64)
        want, got = arr.copy(), arr.copy()
        ef._reserve(want, row)
        assert k.reserve(got, row) is None
        assert got.tolist() == want.tolist()
        diff = np.where(rng.random(length) < rng.uniform(0, 0.5), rng.integers(-4, 5, length), 0)
        diff = diff.astype(np.int64)
        after = rng.integers(0, 64, length).astype(np.int64)
        # a bound: past the last non-zero slot, anywhere up to past the end
        last = int(diff.nonzero()[0][-1]) + 1 if diff.any() else 0
        hi = int(rng.integers(last, length + 3))
        for by_period in (False, True):
            w = ef._summary(diff, after, by_period, hi)
            g = k.summary(diff, after, by_period, hi)
            assert [x.tolist() for x in (g[0], g[1], g[3])] == [
                x.tolist() for x in (w[0], w[1], w[3])
            ]
            assert g[2] == w[2] and type(g[2]) is int
            if hi + 1 < length:  # the kernel reads nothing past slot hi
                junk = diff.copy()
                junk[hi + 1 :] = 7
                j = k.summary(junk, after, by_period, hi)
                assert [j[0].tolist(), j[3].tolist()] == [w[0].tolist(), w[3].tolist()]
    with pytest.raises(ValueError, match="row longer than arr"):
        k.reserve(np.zeros(2, dtype=np.int64), np.zeros(3, dtype=np.int64))


def test_swap_and_plus_equal_their_python_definitions() -> None:
    rng = np.random.default_rng(11)
    k = _kernels()
    for _ in range(3000):
        length = int(rng.integers(1, 200))
        cur = rng.integers(-5, 50, length).astype(np.int64)
        diff = rng.integers(-4, 5, length).astype(np.int64)
        old = rng.integers(0, 9, int(rng.integers(0, length + 1))).astype(np.int64)
        pick = rng.random()
        if pick < 0.3:  # the same plan (a third of a trial's re-plans)
            new = old.copy()
        elif pick < 0.5:  # the same but for one slot
            new = old.copy()
            if len(new):
                new[int(rng.integers(len(new)))] += 1
        else:
            new = rng.integers(0, 9, int(rng.integers(0, length + 1))).astype(np.int64)
        want = (cur.copy(), diff.copy())
        got = (cur.copy(), diff.copy())
        same = ef._swap(*want, old, new)
        assert k.swap(*got, old, new) is same
        assert same == (len(old) == len(new) and old.tolist() == new.tolist())
        assert [x.tolist() for x in got] == [x.tolist() for x in want]
        n = int(rng.integers(0, length + 1))
        total = k.plus(cur, diff, n)
        assert total.dtype == np.int64 and total.tolist() == ef._plus(cur, diff, n).tolist()
        assert not np.shares_memory(total, cur) and not np.shares_memory(total, diff)
    ints = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="a plan longer than cur or diff"):
        k.swap(ints, ints.copy(), np.zeros(4, dtype=np.int64), ints[:0])
    frozen = ints.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="swap: diff is read-only"):
        k.swap(ints, frozen, ints[:0], ints[:0])
    with pytest.raises(ValueError, match="reserve: arr is read-only"):
        k.reserve(frozen, ints[:0])
    with pytest.raises(ValueError, match="a and b differ in length"):
        k.plus(ints, ints[:2], 2)
    with pytest.raises(ValueError, match=r"n outside 0\.\.len\(a\)"):
        k.plus(ints, ints, 4)


def test_without_equals_its_python_definition() -> None:
    """The free GPUs without a newcomer and the difference it makes, as new arrays, in every
    length case: the row shorter or longer than the free GPUs, padding past both."""
    rng = np.random.default_rng(23)
    k = _kernels()
    for _ in range(3000):
        arr = rng.integers(-5, 50, int(rng.integers(0, 120))).astype(np.int64)
        row = rng.integers(0, 9, int(rng.integers(0, 120))).astype(np.int64)
        size = max(len(arr), len(row)) + int(rng.integers(0, 40))
        total = int(rng.integers(1, 64))
        want = ef._without(arr, row, size, total)
        got = k.without(arr, row, size, total)
        assert [x.dtype for x in got] == [np.int64, np.int64]
        assert [x.tolist() for x in got] == [x.tolist() for x in want]
        assert not any(np.shares_memory(x, y) for x in got for y in (arr, row))
    ints = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="size shorter than arr or row"):
        k.without(ints, ints, 2, 8)
