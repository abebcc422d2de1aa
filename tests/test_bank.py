"""The Prompt Bank index: layouts, assessment counts, online growth, determinism, sim scorer."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptsim.core.bank import BankEntry, LookupResult, PromptBankIndex, init_choice
from ptsim.core.bank_sim import SimScorer, choose_init, synthetic_bank
from ptsim.core.bank_types import LAYOUTS, BankConfig, KeyedScorer
from ptsim.core.convergence import ConvergenceModel
from ptsim.core.profiles import UnknownName

CONV = ConvergenceModel.default()
DET = settings(derandomize=True, max_examples=40, deadline=None)


class PlantedScorer:
    """Score = value of the entry's task + a small per-entry bonus; counts its calls."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self.calls: list[str] = []

    def score(self, entry: BankEntry, target_task: str) -> float:
        self.calls.append(entry.entry_id)
        return self.values[entry.source_task] + float(entry.metadata["bonus"])


def planted(sizes: Sequence[int], dim: int = 8, seed: int = 0, model: str = "m") -> list[BankEntry]:
    """Well separated clusters (centres 10 apart, noise 0.1); cluster i has task c{i}."""
    rng = np.random.default_rng(seed)
    out: list[BankEntry] = []
    for c, size in enumerate(sizes):
        centre = np.zeros(max(dim, len(sizes)))
        centre[c] = 10.0
        for j in range(size):
            out.append(
                BankEntry(
                    entry_id=f"{model}-c{c}-{j:03d}",
                    model=model,
                    source_task=f"c{c}",
                    feature=centre + rng.normal(0, 0.1, size=centre.size),
                    metadata={"bonus": float(rng.uniform(0, 1e-3))},
                )
            )
    return out


def groups_of(entries: Sequence[BankEntry]) -> set[frozenset[str]]:
    by: dict[str, set[str]] = {}
    for e in entries:
        by.setdefault(e.source_task, set()).add(e.entry_id)
    return {frozenset(v) for v in by.values()}


def lookup(
    idx: PromptBankIndex, scorer: object, layout: str, target: str = "x", model: str = "m"
) -> LookupResult:
    return idx.lookup(model, target, scorer, np.random.default_rng(0), layout=layout)  # type: ignore[arg-type]


# -- planted structure -------------------------------------------------------------------------


@pytest.mark.parametrize("probe", [1, 2, 3])
def test_two_layer_equal_clusters_counts_and_finds_best(probe: int) -> None:
    k, per = 8, 25
    entries = planted([per] * k)
    idx = PromptBankIndex(BankConfig(k=k, probe=probe, max_assessments=0), entries)
    assert {frozenset(c) for c in idx.clusters("m")} == groups_of(entries)
    values = {f"c{i}": float(i) for i in range(k)}
    values["c5"] = 100.0
    scorer = PlantedScorer(values)
    res = lookup(idx, scorer, "two_layer")
    assert res.entry is not None and res.entry.source_task == "c5"
    # every member of the best cluster was scored: the chosen one is that cluster's best
    best = max((e for e in entries if e.source_task == "c5"), key=lambda e: e.metadata["bonus"])
    assert res.entry == best
    # medoids are not scored twice: K + c (N/K - 1)
    assert res.assessments == k + probe * (per - 1)
    assert res.assessments == len(scorer.calls) == len(set(res.scored)) == len(res.scores)
    assert list(res.scored) == scorer.calls


def test_two_layer_unequal_clusters_counts_exactly() -> None:
    sizes = [5, 10, 15, 20, 25, 30]
    entries = planted(sizes)
    values = {f"c{i}": v for i, v in enumerate([3.0, 1.0, 6.0, 2.0, 5.0, 4.0])}
    for probe in (1, 2):
        idx = PromptBankIndex(BankConfig(k=len(sizes), probe=probe, max_assessments=0), entries)
        res = lookup(idx, PlantedScorer(values), "two_layer")
        best = sorted(range(len(sizes)), key=lambda i: -values[f"c{i}"])[:probe]
        assert res.assessments == len(sizes) + sum(sizes[i] - 1 for i in best)
        assert res.entry is not None and res.entry.source_task == "c2"


def test_assessment_cap_keeps_the_members_nearest_their_medoid() -> None:
    sizes = [5, 10, 15, 20, 25, 30]
    entries = planted(sizes)
    values = {f"c{i}": v for i, v in enumerate([3.0, 1.0, 6.0, 2.0, 5.0, 4.0])}
    n = sum(sizes)
    default = PromptBankIndex(BankConfig(k=len(sizes), probe=3), entries)
    res = lookup(default, PlantedScorer(values), "two_layer")
    assert res.assessments == math.floor(2 * math.sqrt(n)) + 10  # 30: the default budget
    idx = PromptBankIndex(BankConfig(k=len(sizes), probe=1, max_assessments=10), entries)
    res = lookup(idx, PlantedScorer(values), "two_layer")
    assert res.assessments == 10 and res.entry is not None and res.entry.source_task == "c2"
    (cluster,) = [c for c in idx.clusters("m") if "m-c2-000" in c or c[0].startswith("m-c2")]
    feats = {e.entry_id: e.feature for e in entries}
    medoid = feats[cluster[0]]
    dist = sorted(cluster[1:], key=lambda i: float(np.linalg.norm(feats[i] - medoid)))
    assert set(res.scored[len(sizes) :]) == set(dist[:4])  # 10 - 6 medoids = 4 nearest
    with pytest.raises(ValueError, match="max_assessments"):
        BankConfig(max_assessments=-1)


def test_capped_lookups_stay_exact_as_clusters_gain_members() -> None:
    """The nearest-member order a capped lookup keeps per cluster follows the members a
    frozen clustering gains: each lookup scores what a fresh copy of the index scores."""
    sizes = [12, 18, 25, 30]
    values = {f"c{i}": v for i, v in enumerate([3.0, 1.0, 6.0, 2.0])}
    cfg = BankConfig(k=len(sizes), probe=2, max_assessments=12, online=False)
    idx = PromptBankIndex(cfg, planted(sizes, seed=3))
    # later entries sit nearer their cluster's centre than any earlier one (noise 0.001, not
    # 0.1): a capped lookup must prefer them
    gen = np.random.default_rng(4)
    later = []
    for j in range(40):
        c = j % len(sizes)
        centre = np.zeros(8)
        centre[c] = 10.0
        feat = centre + gen.normal(0, 0.001, size=8)
        later.append(BankEntry(f"m-near{j}", "m", f"c{c}", feat, metadata={"bonus": 0.0}))
    capped = 0
    for e in later:
        res = lookup(idx, PlantedScorer(values), "two_layer")
        fresh = lookup(idx.copy(), PlantedScorer(values), "two_layer")
        assert res.scored == fresh.scored and res.entry == fresh.entry
        capped += res.assessments == 12
        idx.add(e)
    assert capped == len(later)
    assert any(i.startswith("m-near") for i in res.scored)


def test_capped_lookups_stay_exact_with_tied_distances() -> None:
    """Members at exactly the same distance from their medoid (copies of one feature) are
    kept in the order they joined, whether the order was computed at once or merged as they
    joined: each capped lookup scores what a fresh copy of the index scores."""
    sizes = [15, 15]
    values = {"c0": 5.0, "c1": 1.0}
    cfg = BankConfig(k=len(sizes), probe=1, max_assessments=8, online=False)
    base = planted(sizes, seed=5)
    idx = PromptBankIndex(cfg, base)
    for j in range(30):
        twin = base[j % 5]  # one of five features of cluster 0, again and again
        idx.add(BankEntry(f"m-twin{j}", "m", "c0", twin.feature, metadata={"bonus": 0.0}))
        res = lookup(idx, PlantedScorer(values), "two_layer")
        fresh = lookup(idx.copy(), PlantedScorer(values), "two_layer")
        assert res.scored == fresh.scored and res.assessments == 8


def test_capped_lookups_stay_exact_when_the_member_budget_changes() -> None:
    """A cluster's kept nearest members serve lookups that may score more or fewer of them
    (the budget grows with the bank, and a three-layer lookup scores fewer medoids than a
    two-layer one), with ties among them: each lookup scores what a fresh copy scores."""
    sizes = [40, 40, 40, 40]
    values = {f"c{i}": v for i, v in enumerate([1.0, 4.0, 2.0, 3.0])}
    cfg = BankConfig(k=len(sizes), top_k=2, probe=1, online=False)
    base = planted(sizes, seed=6)
    idx = PromptBankIndex(cfg, base)
    gen = np.random.default_rng(7)
    budgets = set()
    for j in range(60):
        c = int(gen.integers(len(sizes)))
        twin = base[40 * c + int(gen.integers(3))]  # ties with members already kept
        feat = twin.feature if j % 3 else twin.feature + gen.normal(0, 0.05, size=8)
        idx.add(BankEntry(f"m-more{j}", "m", f"c{c}", feat, metadata={"bonus": 0.0}))
        for layout in ("two_layer", "three_layer")[:: 1 if j % 2 else -1]:
            res = lookup(idx, PlantedScorer(values), layout)
            fresh = lookup(idx.copy(), PlantedScorer(values), layout)
            assert res.scored == fresh.scored and res.entry == fresh.entry
            budgets.add((layout, res.assessments))
    assert len(budgets) > 4  # the budget did change


def test_capped_lookups_keep_the_earliest_of_members_at_one_distance() -> None:
    """Six copies of one feature tie at one distance from their cluster's medoid: a lookup
    that scores fewer of the cluster's members than the one before (two-layer after
    three-layer), with its budget ending among the copies, keeps the earliest copies, also
    when a later copy joined in between."""
    f0 = np.zeros(8)
    f0[0] = 10.0
    near = [f0.copy() for _ in range(6)]
    near += [f0 + np.eye(8)[1] * 0.01 * (1 + j) for j in range(10)]
    c0 = [
        BankEntry(f"m-c0-{j:03d}", "m", "c0", f, metadata={"bonus": 0.0})
        for j, f in enumerate(near)
    ]
    values = {"c0": 9.0, **{f"c{i}": float(i) for i in range(1, 6)}}
    cfg = BankConfig(k=6, top_k=3, probe=1, max_assessments=14, online=False)
    idx = PromptBankIndex(cfg, [*c0, *planted([0, 10, 10, 10, 10, 10], seed=9)])
    wide = lookup(idx, PlantedScorer(values), "three_layer")
    idx.add(BankEntry("m-late", "m", "c0", f0.copy(), metadata={"bonus": 0.0}))
    res = lookup(idx, PlantedScorer(values), "two_layer")
    fresh = lookup(idx.copy(), PlantedScorer(values), "two_layer")
    members = [i for i in res.scored if i.startswith("m-c0-")]
    assert len([i for i in wide.scored if i.startswith("m-c0-")]) > len(members) >= 3
    assert "m-late" not in res.scored and res.scored == fresh.scored


def test_flat_scores_everything_and_finds_global_best() -> None:
    entries = planted([7, 11, 13])
    scorer = PlantedScorer({"c0": 0.0, "c1": 0.5, "c2": 0.2})
    res = lookup(PromptBankIndex(BankConfig(layout="flat"), entries), scorer, "flat")
    assert res.assessments == len(entries) == len(set(res.scored))
    best = max(entries, key=lambda e: scorer.values[e.source_task] + float(e.metadata["bonus"]))
    assert res.entry == best
    assert res.best_score == pytest.approx(max(res.scores))


def test_three_layer_counts_exactly() -> None:
    sizes = [10] * 9
    entries = planted(sizes, dim=9)
    idx = PromptBankIndex(BankConfig(k=9, top_k=3), entries)
    values = {f"c{i}": float(i) for i in range(9)}
    scorer = PlantedScorer(values)
    res = lookup(idx, scorer, "three_layer")
    clusters, groups = idx.clusters("m"), idx.groups("m")
    assert sorted(c for g in groups for c in g) == list(range(9))
    task_of = {e.entry_id: e.source_task for e in entries}

    def value(cluster: int) -> float:
        return values[task_of[clusters[cluster][0]]]

    # top medoids, then the other medoids of the best group, then the best cluster's members
    best_group = max(groups, key=lambda g: value(g[0]))
    assert res.assessments == len(groups) + (len(best_group) - 1) + (10 - 1)
    assert res.assessments == len(scorer.calls) == len(set(scorer.calls))
    assert res.entry is not None
    assert res.entry.source_task == task_of[clusters[max(best_group, key=value)][0]]


def test_random_and_none() -> None:
    entries = planted([5, 5])
    idx = PromptBankIndex(BankConfig(), entries)
    scorer = PlantedScorer({"c0": 0.0, "c1": 1.0})
    r = lookup(idx, scorer, "random")
    assert r.assessments == 1 and r.entry is not None and r.layout == "random"
    n = lookup(idx, scorer, "none")
    assert n == LookupResult(None, 0, (), (), "none")


def test_empty_bank_and_unknown_model_give_default_prompt() -> None:
    idx = PromptBankIndex()
    scorer = PlantedScorer({})
    for lay in LAYOUTS:
        res = lookup(idx, scorer, lay)
        assert res.entry is None and res.assessments == 0
    idx.extend(planted([3]))
    assert lookup(idx, scorer, "flat", model="other").entry is None


def test_min_score_falls_back_to_default() -> None:
    idx = PromptBankIndex(BankConfig(min_score=0.5), planted([4, 4]))
    res = lookup(idx, PlantedScorer({"c0": 0.0, "c1": 0.1}), "flat")
    assert res.entry is None and res.assessments == 8


def test_plain_scorer_and_batch_scorer_agree() -> None:
    entries = synthetic_bank(["m"], CONV, 300, np.random.default_rng(4))
    idx = PromptBankIndex(BankConfig(), entries)

    class Plain:
        def __init__(self) -> None:
            self.inner = SimScorer(CONV, np.random.default_rng(9), sigma=0.0)

        def score(self, entry: BankEntry, target_task: str) -> float:
            return self.inner.score(entry, target_task)

    a = lookup(idx, Plain(), "two_layer", target="rte")
    b = lookup(idx, SimScorer(CONV, np.random.default_rng(9), sigma=0.0), "two_layer", "rte")
    assert a == b


# -- unknown names, bad input ------------------------------------------------------------------


def test_unknown_layout_lists_layouts() -> None:
    with pytest.raises(UnknownName, match="two_layer"):
        BankConfig(layout="tree")
    idx = PromptBankIndex(entries=planted([3]))
    with pytest.raises(UnknownName, match="three_layer"):
        lookup(idx, PlantedScorer({"c0": 0.0}), "bogus")


def test_bad_entries_rejected() -> None:
    idx = PromptBankIndex(entries=planted([3]))
    with pytest.raises(ValueError, match="already"):
        idx.add(planted([3])[0])
    with pytest.raises(ValueError, match="feature length"):
        idx.add(BankEntry("new", "m", "c0", np.zeros(3)))
    for bad in ([np.nan], [1.0, -np.inf], [np.inf, -np.inf], [], [[1.0, 2.0]], 3.0):
        with pytest.raises(ValueError, match="finite 1-D"):
            BankEntry("x", "m", "c0", np.array(bad))
    huge = BankEntry("x", "m", "c0", np.array([1e308, 1e308]))  # finite, its sum is not
    assert huge.feature.tolist() == [1e308, 1e308]
    with pytest.raises(ValueError):
        BankConfig(probe=0)


def test_entry_is_immutable_and_hashable() -> None:
    e = planted([1])[0]
    assert not e.feature.flags.writeable
    with pytest.raises(TypeError):
        e.metadata["bonus"] = 1.0  # type: ignore[index]
    twin = BankEntry(e.entry_id, e.model, e.source_task, e.feature + 1.0)
    assert e == twin and hash(e) == hash(twin)


# -- online growth -------------------------------------------------------------------------------


@DET
@given(
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 3),
    st.sampled_from(["two_layer", "three_layer", "flat"]),
)
def test_rebuilds_keep_every_entry(rebuild_every: int, online: bool, seed: int, lay: str) -> None:
    rng = np.random.default_rng(seed)
    entries = synthetic_bank(["m", "n"], CONV, 260, rng, id_prefix="g")
    idx = PromptBankIndex(
        BankConfig(rebuild_every=rebuild_every, online=online, sample_limit=60, seed=seed)
    )
    scorer = SimScorer(CONV, np.random.default_rng(seed))
    added: dict[str, set[str]] = {"m": set(), "n": set()}
    for i, e in enumerate(entries):
        idx.add(e)
        added[e.model].add(e.entry_id)
        if i % 17 == 0:
            res = idx.lookup(e.model, "sst2", scorer, rng, layout=lay)
            assert res.entry is not None
    assert len(idx) == len(entries)
    for model, ids in added.items():
        flat = [i for c in idx.clusters(model) for i in c]
        assert len(flat) == len(set(flat)) == len(ids)
        assert set(flat) == ids
        res = idx.lookup(model, "sst2", scorer, rng, layout="flat")
        assert res.assessments == len(ids)


def test_frozen_index_keeps_its_clusters_but_sees_new_entries() -> None:
    first = planted([10, 10, 10])
    idx = PromptBankIndex(BankConfig(k=3, online=False, rebuild_every=1), first)
    assert len(idx.clusters("m")) == 3
    late = planted([0, 0, 0, 6], seed=5)  # a new, far-away group
    idx.extend(late)
    clusters = idx.clusters("m")
    assert len(clusters) == 3
    assert sum(len(c) for c in clusters) == 36
    scorer = PlantedScorer({"c0": 0.0, "c1": 0.0, "c2": 0.0, "c3": 1.0})
    res = lookup(idx, scorer, "flat")
    assert res.entry is not None and res.entry.source_task == "c3"


def test_online_index_reclusters_after_rebuild_every() -> None:
    idx = PromptBankIndex(BankConfig(rebuild_every=30), planted([20, 20]))
    assert len(idx.clusters("m")) == math.ceil(math.sqrt(40))
    idx.extend(planted([0, 0, 29], seed=1))
    assert len(idx.clusters("m")) == math.ceil(math.sqrt(40))  # 29 < 30: not yet
    idx.extend(planted([0, 0, 0, 1], seed=2))
    assert len(idx.clusters("m")) == math.ceil(math.sqrt(70))


def test_large_online_index_reclusters_after_growing_by_a_fraction() -> None:
    cfg = BankConfig(rebuild_every=10, rebuild_growth=0.5)
    idx = PromptBankIndex(cfg, planted([20, 20]))
    assert len(idx.clusters("m")) == math.ceil(math.sqrt(40))
    idx.extend(planted([0, 0, 19], seed=1))  # 19 >= rebuild_every, < 0.5 x 40
    assert len(idx.clusters("m")) == math.ceil(math.sqrt(40))
    idx.extend(planted([0, 0, 0, 1], seed=2))  # 20 = 0.5 x 40
    assert len(idx.clusters("m")) == math.ceil(math.sqrt(60))
    with pytest.raises(ValueError, match="rebuild_growth"):
        BankConfig(rebuild_growth=-1.0)


@pytest.mark.parametrize("probe", [1, 2, 3])
def test_bounded_k_and_cap_match_the_sqrt_rule_below_the_bound_and_stop_above(probe: int) -> None:
    bounded, unbounded = (
        BankConfig(probe=probe, max_clusters=12),
        BankConfig(max_clusters=None, probe=probe),
    )
    bound_n = 12**2 // probe
    for n in (1, 5, 40, bound_n - 1, bound_n):
        assert bounded.clusters_for(n) == min(n, math.ceil(math.sqrt(probe * n)))
        assert bounded.assessment_cap(n) == math.floor(2 * math.sqrt(n)) + 10
    for n in (bound_n + 1, 10 * bound_n, 10**6):
        assert bounded.clusters_for(n) == 12
        assert bounded.assessment_cap(n) == math.floor(2 * math.sqrt(bound_n)) + 10
        assert unbounded.clusters_for(n) == math.ceil(math.sqrt(probe * n))
        assert unbounded.assessment_cap(n) == math.floor(2 * math.sqrt(n)) + 10
    assert BankConfig(k=50, max_clusters=12).clusters_for(1000) == 50  # an explicit k wins
    assert BankConfig(max_assessments=7, max_clusters=12).assessment_cap(10**6) == 7
    with pytest.raises(ValueError, match="max_clusters"):
        BankConfig(max_clusters=0)


def test_lookup_cost_stops_growing_with_the_bank_at_max_clusters() -> None:
    cfg = BankConfig(max_clusters=8, sample_limit=200)
    scorer = SimScorer(CONV, np.random.default_rng(1))
    costs = {}
    for n in (64, 400, 1600):
        idx = PromptBankIndex(cfg, synthetic_bank(["m"], CONV, n, np.random.default_rng(n)))
        assert len(idx.clusters("m")) == 8
        rng = np.random.default_rng(2)
        got = [idx.lookup("m", t, scorer, rng).assessments for t in CONV.space.names]
        assert max(got) <= cfg.assessment_cap(n) == 2 * 8 + 10
        costs[n] = got
    assert max(costs[1600]) == max(costs[400]) == 26  # members of the probed cluster fill the cap


def test_sampled_build_covers_every_entry_and_recovers_clusters() -> None:
    entries = planted([60] * 5)
    idx = PromptBankIndex(BankConfig(k=5, sample_limit=40), entries)
    assert {frozenset(c) for c in idx.clusters("m")} == groups_of(entries)


# -- determinism -------------------------------------------------------------------------------


def run_lookups(seed: int) -> list[LookupResult]:
    entries = synthetic_bank(["m"], CONV, 800, np.random.default_rng(seed))
    idx = PromptBankIndex(BankConfig(seed=seed, sample_limit=300), entries)
    scorer = SimScorer(CONV, np.random.default_rng(seed + 1))
    rng = np.random.default_rng(seed + 2)
    return [
        idx.lookup("m", t, scorer, rng, layout=lay) for t in CONV.space.names for lay in LAYOUTS
    ]


def test_lookups_deterministic_under_seed() -> None:
    assert run_lookups(11) == run_lookups(11)
    assert run_lookups(11) != run_lookups(12)


# -- simulation scorer and synthetic banks ----------------------------------------------------


def mean_saving(
    idx: PromptBankIndex, layout: str, seed: int, targets: Sequence[str]
) -> tuple[float, float]:
    scorer = SimScorer(CONV, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    sav, ass = [], []
    for t in targets:
        choice, _ = choose_init(idx, "m", t, scorer, 2.0, rng, layout=layout)
        sav.append(choice.expected_saving)
        ass.append(choice.assessments)
    return float(np.mean(sav)), float(np.mean(ass))


def test_bank_never_worse_than_default_on_average() -> None:
    # a bank without the target tasks: only siblings and other families to choose from
    targets = ["sst2", "mnli", "boolq", "agnews"] * 25
    others = [t for t in CONV.space.names if t not in targets]
    entries = synthetic_bank(["m"], CONV, 900, np.random.default_rng(0), tasks=others)
    idx = PromptBankIndex(BankConfig(), entries)
    none, _ = mean_saving(idx, "none", 1, targets)
    assert none == 0.0
    results = {lay: mean_saving(idx, lay, 1, targets) for lay in LAYOUTS}
    for lay, (sav, _) in results.items():
        assert sav >= none, lay
    flat, two = results["flat"][0], results["two_layer"][0]
    assert two >= 0.9 * flat > 0.2
    assert results["two_layer"][1] <= 2 * math.sqrt(900) + 10


def test_sim_scorer_is_expected_saving_plus_seeded_noise() -> None:
    entries = synthetic_bank(["m"], CONV, 50, np.random.default_rng(0))
    exact = SimScorer(CONV, np.random.default_rng(0), sigma=0.0)
    want = np.array([CONV.expected_saving(e.source_task, "rte") for e in entries])
    assert np.allclose(exact.score_many(entries, "rte"), want)
    a = SimScorer(CONV, np.random.default_rng(5)).score_many(entries, "rte")
    b = SimScorer(CONV, np.random.default_rng(5)).score_many(entries, "rte")
    assert np.array_equal(a, b) and not np.allclose(a, want)
    bad = BankEntry("b", "m", "unknown-task", np.zeros(16))
    with pytest.raises(UnknownName, match="unknown-task"):
        exact.score(bad, "rte")


class _ManyOnly:
    """A scorer that only offers ``score``/``score_many`` (not keys) around a SimScorer."""

    def __init__(self, inner: SimScorer) -> None:
        self.inner = inner

    def score(self, entry: BankEntry, target_task: str) -> float:
        return self.inner.score(entry, target_task)

    def score_many(self, entries: Sequence[BankEntry], target_task: str) -> np.ndarray:
        return self.inner.score_many(entries, target_task)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keyed_scoring_is_score_many_of_the_entries(layout: str) -> None:
    """A KeyedScorer scored by stored keys gives every lookup what scoring the entries gives:
    the same entries scored in the same order, the same scores, the same choice, while the
    bank grows between lookups (keys of later entries asked as they come)."""
    entries = synthetic_bank(["m"], CONV, 700, np.random.default_rng(8))
    cfg = BankConfig(max_clusters=8, rebuild_every=50)
    keyed_idx, many_idx = PromptBankIndex(cfg, entries[:400]), PromptBankIndex(cfg, entries[:400])
    keyed = SimScorer(CONV, np.random.default_rng(9))
    many = _ManyOnly(SimScorer(CONV, np.random.default_rng(9)))
    assert isinstance(keyed, KeyedScorer) and not isinstance(many, KeyedScorer)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for i, e in enumerate(entries[400:]):
        target = CONV.space.names[i % len(CONV.space.names)]
        a = keyed_idx.lookup("m", target, keyed, rng_a, layout=layout)
        b = many_idx.lookup("m", target, many, rng_b, layout=layout)
        assert (a.entry, a.scored, a.scores, a.assessments) == (
            b.entry,
            b.scored,
            b.scores,
            b.assessments,
        )
        assert len(set(a.scored)) == a.assessments  # no entry scored twice
        keyed_idx.add(e)
        many_idx.add(e)
    # a scorer whose key of an entry is unknown fails on the entry's task, naming it
    keyed_idx.add(BankEntry("odd", "m", "unknown-task", entries[0].feature))
    with pytest.raises(UnknownName, match="unknown-task"):
        keyed_idx.lookup(
            "m", "rte", SimScorer(CONV, np.random.default_rng(0)), rng_a, layout="flat"
        )


def test_a_scorer_answering_the_wrong_number_of_scores_is_refused() -> None:
    class Short:  # a keyed scorer one score short
        def __init__(self) -> None:
            self.inner = SimScorer(CONV, np.random.default_rng(0))

        def score(self, entry: BankEntry, target_task: str) -> float:
            return self.inner.score(entry, target_task)

        def key(self, entry: BankEntry) -> int:
            return self.inner.key(entry)

        def score_keys(self, keys: np.ndarray, target_task: str) -> np.ndarray:
            return self.inner.score_keys(keys, target_task)[:-1]

    idx = PromptBankIndex(BankConfig(), synthetic_bank(["m"], CONV, 30, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="shape"):
        idx.lookup("m", "rte", Short(), np.random.default_rng(0))


def test_synthetic_features_cluster_by_family() -> None:
    entries = synthetic_bank(["m"], CONV, 600, np.random.default_rng(2))
    idx = PromptBankIndex(BankConfig(k=12), entries)
    by_id = {e.entry_id: e for e in entries}
    pure = 0
    for cluster in idx.clusters("m"):
        fams = [CONV.space.family(by_id[i].source_task) for i in cluster]
        pure += max(fams.count(f) for f in set(fams))
    assert pure / len(entries) >= 0.99


def test_synthetic_bank_spreads_models_and_is_seeded() -> None:
    a = synthetic_bank(["x", "y", "z"], CONV, 30, np.random.default_rng(1), feature_dim=4)
    b = synthetic_bank(["x", "y", "z"], CONV, 30, np.random.default_rng(1), feature_dim=4)
    assert [e.model for e in a[:3]] == ["x", "y", "z"]
    assert all(np.array_equal(p.feature, q.feature) for p, q in zip(a, b, strict=True))
    assert a[0].feature.shape == (4,)


def test_init_choice() -> None:
    idx = PromptBankIndex(entries=planted([4, 4]))
    res = lookup(idx, PlantedScorer({"c0": 0.0, "c1": 1.0}), "flat")
    choice = init_choice(res, eval_s=1.5, expected_saving=0.3)
    assert res.entry is not None and choice.source == res.entry.entry_id
    assert choice.source_task == "c1" and choice.layout == "flat"
    assert choice.assessments == 8 and choice.lookup_s == pytest.approx(12.0)
    assert choice.expected_saving == 0.3
    none = init_choice(LookupResult(None, 0, (), (), "none"), 1.5, 0.3)
    assert none.source is None and none.expected_saving == 0.0 and none.lookup_s == 0.0


@DET
@given(st.integers(1, 15), st.booleans(), st.integers(1, 3), st.sampled_from(LAYOUTS))
def test_tiny_banks(n: int, identical: bool, probe: int, lay: str) -> None:
    entries = [
        BankEntry(f"e{i}", "m", "c0", np.zeros(3) if identical else np.arange(3.0) * i)
        for i in range(n)
    ]
    idx = PromptBankIndex(BankConfig(probe=probe), entries)
    res = lookup(idx, ConstScorer(), lay)
    assert (res.entry is None) == (lay == "none")
    assert res.assessments == len(set(res.scored)) <= n
    assert sorted(i for c in idx.clusters("m") for i in c) == sorted(e.entry_id for e in entries)


class ConstScorer:
    def score(self, entry: BankEntry, target_task: str) -> float:
        return 1.0


def test_kmedoids_cluster_is_the_packages_fasterpam() -> None:
    import kmedoids
    from scipy.spatial.distance import pdist, squareform

    from ptsim.core.bank import kmedoids_cluster

    gen = np.random.default_rng(5)
    for n, k in ((30, 4), (200, 14), (500, 3), (64, 63)):
        pts = gen.normal(size=(n, 6))
        seed_rng = np.random.default_rng([n, k])
        meds, labels = kmedoids_cluster(pts, k, np.random.default_rng([n, k]), 100)
        want = kmedoids.fasterpam(
            squareform(pdist(pts)),
            k,
            max_iter=100,
            init="random",
            random_state=int(seed_rng.integers(2**31 - 1)),
            n_cpu=1,
        )
        assert meds.tolist() == np.asarray(want.medoids).tolist()
        assert labels.tolist() == np.asarray(want.labels).tolist()


def test_clustering_does_not_import_scikit_learn_or_scipy_spatial() -> None:
    """Clustering loads FasterPAM and scipy's pairwise distances without running the
    ``__init__`` of ``kmedoids`` (which imports scikit-learn) or of ``scipy.spatial`` (its k-d
    trees, Qhull, ``scipy.sparse``)."""
    code = (
        "import sys, numpy as np; from ptsim.core.bank import kmedoids_cluster;"
        "m, l = kmedoids_cluster(np.random.default_rng(0).normal(size=(50, 4)), 5,"
        " np.random.default_rng(1), 100);"
        "assert len(m) == 5 and len(l) == 50;"
        "print(sorted(k for k in sys.modules"
        " if k in ('kmedoids', 'scipy.spatial', 'scipy.sparse') or k.startswith('sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_distances_are_scipys_squareform_of_pdist() -> None:
    """The distance matrix FasterPAM gets is ``squareform(pdist(points))`` to the bit, with
    ties, repeated points, one dimension and magnitudes far apart."""
    from scipy.spatial.distance import pdist, squareform

    from ptsim.core.bank import _distances

    gen = np.random.default_rng(11)
    cases = [gen.normal(size=(n, d)) for n, d in ((2, 1), (3, 16), (17, 6), (200, 16), (64, 2))]
    cases.append(np.repeat(gen.normal(size=(5, 4)), 3, axis=0))  # repeated points
    cases.append(gen.normal(size=(40, 8)) * np.logspace(-8, 8, 8))  # magnitudes far apart
    cases.append(gen.integers(0, 3, size=(30, 3)).astype(np.float64))  # ties
    cases.append(np.asfortranarray(gen.normal(size=(25, 5))))  # not C-contiguous
    for pts in cases:
        want = squareform(pdist(pts))
        got = _distances(pts)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_the_best_clusters_are_a_stable_sort_with_ties_and_nans() -> None:
    """The clusters a lookup probes are the first of a stable descending sort of the medoids'
    scores (ties to the lower index, NaN last), also on the one-cluster fast path, with ties
    and NaN scores (a real scorer may return one)."""
    from ptsim.core.bank import _top

    rng = np.random.default_rng(2)
    for _ in range(2000):
        vals = rng.choice(
            [0.1, 0.2, 0.3, -1.0, -0.0, 0.0, np.nan, np.inf], int(rng.integers(1, 12))
        )
        if rng.random() < 0.5:
            vals = vals[~np.isnan(vals)] if np.any(~np.isnan(vals)) else np.array([0.5])
        for c in (1, 2, 3):
            want = np.argsort(-vals, kind="stable")[:c].tolist()
            assert _top(vals, c) == want, (vals, c)


def test_a_lookups_best_is_the_first_highest_score_or_the_first_nan() -> None:
    """A lookup chooses the first highest score in the order scored (numpy's argmax), also
    with ties and NaN scores (a real scorer may return one)."""

    class Listed:
        def __init__(self, values: np.ndarray) -> None:
            self.values = values

        def score_many(self, entries: Sequence[BankEntry], target_task: str) -> np.ndarray:
            return self.values[: len(entries)].copy()

        def score(self, entry: BankEntry, target_task: str) -> float:
            raise AssertionError("score_many is used")

    entries = planted([6, 6])
    idx = PromptBankIndex(BankConfig(layout="flat"), entries)
    rng = np.random.default_rng(3)
    for _ in range(300):
        vals = rng.choice([0.1, 0.2, 0.3, -1.0, np.nan, np.inf], len(entries))
        res = idx.lookup("m", "t", Listed(vals), rng, layout="flat")
        listed = vals.tolist()
        nans = [i for i, v in enumerate(listed) if math.isnan(v)]
        want = nans[0] if nans else listed.index(max(listed))  # first NaN, else first highest
        assert res.entry is not None and res.entry.entry_id == res.scored[want]


def test_nearest_centres_are_the_same_in_one_chunk_or_many() -> None:
    from ptsim.core.bank import nearest

    rng = np.random.default_rng(9)
    for n in (1, 2, 7, 50):
        points, centres = rng.normal(size=(n, 16)), rng.normal(size=(5, 16))
        whole = nearest(points, centres)
        assert whole.dtype == np.intp and whole.tolist() == nearest(points, centres, 3).tolist()
        assert whole.tolist() == [int(np.argmin(((centres - p) ** 2).sum(axis=1))) for p in points]
    assert nearest(np.empty((0, 16)), np.empty((0, 16))).tolist() == []


@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay != "none"])  # (none scores none)
def test_scored_ids_are_those_scored_at_the_lookup_and_act_as_their_tuple(layout: str) -> None:
    # a lookup's ``scored`` is read from the index lazily: it must still name the entries that
    # lookup scored after the bank grew, re-clustered and merged new members into its clusters
    entries = planted([12] * 6, seed=3)
    idx = PromptBankIndex(BankConfig(rebuild_every=5), entries[:30])
    scorer = PlantedScorer({f"c{i}": float(i % 3) for i in range(6)})
    res = lookup(idx, scorer, layout)
    calls = tuple(scorer.calls)
    for e in entries[30:]:
        idx.add(e)
        lookup(idx, PlantedScorer(scorer.values), layout)  # rebuilds, merges members
    assert len(res.scored) == len(calls) == res.assessments
    assert res.scored == calls and calls == res.scored and list(res.scored) == list(calls)
    assert res.scored[1:4] == calls[1:4] and res.scored[-1] == calls[-1]
    assert hash(res.scored) == hash(calls) and repr(res.scored) == repr(calls)
    plain = LookupResult(res.entry, res.assessments, calls, res.scores, res.layout)
    assert plain == res and hash(plain) == hash(res)
    assert res.scored != calls[:-1]
    # pickled, it is the ids alone (not a reference to the index's list of every id)
    assert pickle.loads(pickle.dumps(res.scored)) == calls
    unscored = next(e.entry_id for e in entries if e.entry_id not in calls)
    assert unscored.encode() not in pickle.dumps(res.scored)
