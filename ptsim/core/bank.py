"""The Prompt Bank index: stored prompts by base model, and the lookup that picks a new job's
initial prompt with as few score assessments as it can.

One index serves both drivers; only the :class:`Scorer` differs (a model of the score in ptsim,
a short real evaluation in ptexec; what the index asks of one, and the index's
:class:`~ptsim.core.bank_types.BankConfig`, are in :mod:`ptsim.core.bank_types`). Layouts, by
name (:data:`~ptsim.core.bank_types.LAYOUTS`):

- ``flat``: score every entry of the model.
- ``two_layer`` (the paper's): K-medoids clusters on the feature vectors; score the K medoids,
  then the other members of the ``probe`` best clusters; keep the best scored.
- ``three_layer`` (the variant the paper rejected): the K medoids are clustered again into
  ``top_k`` groups; score the top medoids, then the other medoids of the ``probe`` best groups,
  then the other members of the ``probe`` best clusters among those.
- ``random``: one entry drawn at random (one assessment).
- ``none``: the default initial prompt (no assessment).

Every assessment scores one entry (a call of the scorer's ``score``, or one element of its
``score_many`` or ``score_keys``: :class:`Scorer`, :class:`BatchScorer`, :class:`KeyedScorer`);
no entry is scored twice in a lookup. The caller turns assessments into seconds (assessments x
the model's evaluation time), see :func:`init_choice`.
"""

from __future__ import annotations

import bisect
import functools
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, cast, overload

import numpy as np
import numpy.typing as npt

from ptsim.core.bank_types import BankConfig, BatchScorer, KeyedScorer, Scorer, check_layout
from ptsim.core.types import InitChoice

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
MetaValue = float | int | str | bool

_EMPTY_META: Mapping[str, MetaValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BankEntry:
    """One stored prompt.

    ``feature`` is the vector the index clusters on (read-only, 1-D); in ptexec for example the
    frozen model's mean activation over the prompt, in ptsim the source task's point embedded
    in feature space. ``shape`` is the prompt tensor's shape (virtual tokens, hidden size);
    ``metadata`` anything else worth keeping (measured convergence, tuning run id...).
    Equality and hashing use the id, model, source task and shape.
    """

    entry_id: str
    model: str
    source_task: str
    feature: FloatArray = field(compare=False)
    shape: tuple[int, ...] = ()
    metadata: Mapping[str, MetaValue] = field(default_factory=lambda: _EMPTY_META, compare=False)

    def __post_init__(self) -> None:
        if not self.entry_id or not self.model or not self.source_task:
            raise ValueError("bank entry needs a non-empty entry_id, model and source_task")
        feat = np.array(self.feature, dtype=np.float64)
        if feat.ndim != 1 or feat.size == 0 or not np.isfinite(feat).all():
            raise ValueError(f"bank entry {self.entry_id}: feature must be a finite 1-D vector")
        feat.setflags(write=False)
        object.__setattr__(self, "feature", feat)
        object.__setattr__(self, "shape", tuple(map(int, self.shape)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


class ScoredIds(Sequence[str]):
    """The ids of a lookup's scored entries in the order scored (``LookupResult.scored``), an
    immutable sequence equal to the tuple of those ids. The index reads them from its rows only
    when they are first asked for: the simulator reads a lookup's chosen entry alone, and
    building the tuple touches every scored entry's id (benchmarks/README.md, thirteenth
    pass)."""

    __slots__ = ("_got", "_ids", "_rows")

    def __init__(self, ids: Sequence[str], rows: IntArray) -> None:
        """``ids``: the index's ids by row (only ever appended to); ``rows``: those scored."""
        self._ids = ids
        self._rows = rows
        self._got: tuple[str, ...] | None = None

    def _tuple(self) -> tuple[str, ...]:
        got = self._got
        if got is None:
            got = self._got = tuple(map(self._ids.__getitem__, self._rows.tolist()))
        return got

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tuple())

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return self._tuple()[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScoredIds | tuple):
            return self._tuple() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        return repr(self._tuple())

    def __reduce__(self) -> tuple[type[tuple[str, ...]], tuple[tuple[str, ...]]]:
        return (tuple, (self._tuple(),))  # pickled as the ids alone, not the index's list


@dataclass(frozen=True)
class LookupResult:
    """What a lookup did: the chosen entry (``None`` = default prompt), the number of score
    assessments, the scored entry ids in the order scored (a tuple, or a :class:`ScoredIds`
    equal to one) with their scores, and the layout."""

    entry: BankEntry | None
    assessments: int
    scored: tuple[str, ...] | ScoredIds
    scores: tuple[float, ...]
    layout: str

    @property
    def best_score(self) -> float | None:
        return max(self.scores) if self.scores else None


def init_choice(result: LookupResult, eval_s: float, expected_saving: float = 0.0) -> InitChoice:
    """The :class:`InitChoice` for a lookup: cost = assessments x ``eval_s`` (one evaluation of
    the model); ``expected_saving`` is what the convergence model predicts for the chosen
    entry (forced to 0 when the default prompt was chosen)."""
    if eval_s < 0:
        raise ValueError("eval_s must be >= 0")
    entry = result.entry
    return InitChoice(
        source=entry.entry_id if entry is not None else None,
        source_task=entry.source_task if entry is not None else None,
        layout=result.layout,
        assessments=result.assessments,
        lookup_s=result.assessments * eval_s,
        expected_saving=expected_saving if entry is not None else 0.0,
    )


def nearest(
    points: FloatArray, centres: FloatArray, chunk: int = 8192, c_sq: FloatArray | None = None
) -> IntArray:
    """Index of the nearest centre (Euclidean) of every point, in chunks of rows. ``c_sq``:
    the centres' squared norms as ``np.einsum("ij,ij->i", centres, centres)`` gives them
    (computed when not given)."""
    if c_sq is None:
        c_sq = np.einsum("ij,ij->i", centres, centres)
    if 0 < len(points) <= chunk:  # one chunk (an entry joining its cluster): no copy into ``out``
        return cast(IntArray, np.argmin(c_sq[None, :] - 2.0 * (points @ centres.T), axis=1))
    out = np.empty(len(points), dtype=np.intp)
    for s in range(0, len(points), chunk):
        d = c_sq[None, :] - 2.0 * (points[s : s + chunk] @ centres.T)
        out[s : s + chunk] = np.argmin(d, axis=1)
    return out


def kmedoids_cluster(
    points: FloatArray, k: int, rng: np.random.Generator, max_iter: int
) -> tuple[IntArray, IntArray]:
    """FasterPAM on Euclidean distances: (medoid rows, label of every row). With ``k >= n``
    every row is its own medoid. Single-threaded, seeded from ``rng``: reproducible."""
    n = len(points)
    if k >= n:
        idx = np.arange(n, dtype=np.intp)
        return idx, idx.copy()
    diss = _distances(points)
    seed = int(rng.integers(2**31 - 1))
    fasterpam = _rand_fasterpam_f64()
    if fasterpam is None:  # another release of the package: its public function
        import kmedoids

        res = kmedoids.fasterpam(
            diss, k, max_iter=max_iter, init="random", random_state=seed, n_cpu=1
        )
        return np.asarray(res.medoids, dtype=np.intp), np.asarray(res.labels, dtype=np.intp)
    # what ``kmedoids.fasterpam(diss, k, max_iter, init="random", random_state=seed,
    # n_cpu=1)`` does: k distinct random rows from a ``RandomState(seed)``, then FasterPAM
    # with the rows' processing order shuffled by ``seed``
    start = np.random.RandomState(seed).choice(n, k, False).astype(np.uintp)
    _loss, labels, medoids = fasterpam(diss, start, max_iter, seed)[:3]
    return np.asarray(medoids, dtype=np.intp), np.asarray(labels, dtype=np.intp)


def prepare_clustering() -> None:
    """Load what clustering runs (FasterPAM, the pairwise distances) now instead of at the
    first clustered lookup (ptexec does before its run's clock starts)."""
    if _rand_fasterpam_f64() is None:
        import kmedoids  # noqa: F401
    if _pdist_euclidean() is None:
        import scipy.spatial.distance  # noqa: F401


def _distances(points: FloatArray) -> FloatArray:
    """``scipy.spatial.distance.squareform(pdist(points))`` (Euclidean), the same floats: the
    pairs' distances from scipy's compiled ``pdist``, put in both triangles of a zero
    matrix as ``squareform`` puts them."""
    pdist = _pdist_euclidean()
    if pdist is None:  # another scipy release: its public functions
        from scipy.spatial.distance import pdist as public_pdist
        from scipy.spatial.distance import squareform

        return cast(FloatArray, squareform(public_pdist(points)))
    n = len(points)
    out = np.zeros((n, n), dtype=np.float64)
    if n > 1:
        # the pairs (i, j), i < j, in row-major order: pdist's order
        upper = ~np.tri(n, n, 0, dtype=bool)
        dists = pdist(np.ascontiguousarray(points, dtype=np.float64))
        out[upper] = dists
        out.T[upper] = dists  # (j, i) for the same pairs, in the same order
    return out


@functools.cache
def _pdist_euclidean() -> Callable[[FloatArray], FloatArray] | None:
    """scipy's compiled Euclidean ``pdist`` (what ``pdist(x)`` calls for float64 ``x``), loaded
    without importing ``scipy.spatial``, whose ``__init__`` imports its k-d trees, Qhull and
    ``scipy.sparse`` (~0.5 s, once per process that clusters) for a function this module
    does not use; None when this scipy release keeps it elsewhere."""
    mod = _compiled_submodule("scipy.spatial", "_distance_pybind")
    return cast("Callable[[FloatArray], FloatArray] | None", getattr(mod, "pdist_euclidean", None))


@functools.cache
def _rand_fasterpam_f64() -> Callable[..., tuple[Any, ...]] | None:
    """The ``kmedoids`` package's compiled FasterPAM (float64, random order, one thread),
    loaded without running the package's ``__init__``, which imports scikit-learn when it is
    installed (2-5 s, for an estimator class this module does not use); None when the
    package's compiled module does not have it (then ``kmedoids.fasterpam`` is used)."""
    mod = _compiled_submodule("kmedoids", "kmedoids")
    return cast("Callable[..., tuple[Any, ...]] | None", getattr(mod, "_rand_fasterpam_f64", None))


def _compiled_submodule(package: str, name: str) -> ModuleType | None:
    """The compiled extension module ``package.name``, loaded without running the
    ``__init__`` of ``package`` or of any package above it, and registered under its full name
    (a later import of it, direct or through its package, gets this module); None when the
    package or the module's file is not there."""
    import importlib.machinery
    import importlib.util

    full = f"{package}.{name}"
    mod = sys.modules.get(full)
    if mod is not None:
        return mod
    top, *below = package.split(".")
    pkg = importlib.util.find_spec(top)  # a top-level package: found without importing it
    if pkg is None or not pkg.submodule_search_locations:
        return None
    finder = importlib.machinery.FileFinder(
        "/".join([pkg.submodule_search_locations[0], *below]),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    spec = finder.find_spec(full)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[full]
        raise
    return mod


class _Rows:
    """The rows of one cluster, the medoid first, then in the order they joined (``n`` of
    ``buf``, which doubles when full: a member joins in constant time)."""

    __slots__ = ("buf", "n")

    def __init__(self, rows: IntArray) -> None:
        self.buf = rows
        self.n = len(rows)

    def append(self, row: int) -> None:
        n = self.n
        if n == len(self.buf):
            grown = np.empty(2 * n, dtype=np.intp)
            grown[:n] = self.buf
            self.buf = grown
        self.buf[n] = row
        self.n = n + 1

    @property
    def rows(self) -> IntArray:
        return self.buf[: self.n]


class _Nearest:
    """The ``keep`` members of one cluster nearest its medoid, as of its first ``n`` rows:
    their distances, ascending, and their positions in ``rows[1:]``, ties by position (the
    first ``keep`` of a stable sort of every member by distance); and the last rows a lookup
    asked for (``asked`` of them, sorted by position, while the cluster had ``n`` rows)."""

    __slots__ = ("asked", "dists", "keep", "n", "pos", "rows")

    def __init__(self, n: int, keep: int, dists: list[float], pos: list[int]) -> None:
        self.n, self.keep, self.dists, self.pos = n, keep, dists, pos
        self.asked = -1
        self.rows = _NO_ROWS


@dataclass
class _Clusters:
    """The clustered structure of one model's entries: ``members[c]`` the rows of cluster c,
    the medoid first; ``groups[g]`` (three-layer) lists cluster indices, starting with the top
    medoid's."""

    medoids: IntArray
    medoid_feats: FloatArray
    members: list[_Rows]
    groups: list[list[int]]
    built_n: int
    near: dict[int, _Nearest] = field(default_factory=dict)  # cluster -> its nearest members
    medoid_sq: FloatArray = field(init=False, repr=False)  # for ``nearest``

    def __post_init__(self) -> None:
        self.medoid_sq = np.einsum("ij,ij->i", self.medoid_feats, self.medoid_feats)


class _ModelBank:
    """Entries of one base model, their feature matrix and clustered structure."""

    def __init__(self, dim: int) -> None:
        self.entries: list[BankEntry] = []
        self.ids: list[str] = []
        self._feats = np.empty((16, dim), dtype=np.float64)
        self.clusters: _Clusters | None = None
        self.stale = False
        self._keys = np.empty(16, dtype=np.intp)  # every entry's key under ``_keyed``
        self._keyed: KeyedScorer | None = None
        self._nkeys = 0  # rows whose key is in ``_keys``

    @property
    def dim(self) -> int:
        return int(self._feats.shape[1])

    @property
    def n(self) -> int:
        return len(self.entries)

    @property
    def feats(self) -> FloatArray:
        return self._feats[: self.n]

    def append(self, entry: BankEntry) -> None:
        n = self.n
        if n == len(self._feats):
            grown = np.empty((2 * n, self.dim), dtype=np.float64)
            grown[:n] = self._feats
            self._feats = grown
        self._feats[n] = entry.feature
        self.entries.append(entry)
        self.ids.append(entry.entry_id)
        cl = self.clusters
        if cl is not None:  # its nearest medoid's cluster, as ``nearest`` finds it
            d = cl.medoid_sq[None, :] - 2.0 * (entry.feature[None, :] @ cl.medoid_feats.T)
            cl.members[int(d.argmin())].append(n)

    def keys(self, scorer: KeyedScorer) -> IntArray:
        """Every entry's key under ``scorer``, by row (each entry asked once per scorer)."""
        if scorer is not self._keyed:
            self._keyed, self._nkeys = scorer, 0
        n, done = self.n, self._nkeys
        if done < n:
            if len(self._keys) < n:
                grown = np.empty(max(n, 2 * len(self._keys)), dtype=np.intp)
                grown[:done] = self._keys[:done]
                self._keys = grown
            self._keys[done:n] = [scorer.key(e) for e in self.entries[done:n]]
            self._nkeys = n
        return self._keys[:n]


class PromptBankIndex:
    """Stored prompts keyed by base model, and the lookup over them (see the module doc).

    Entries are added with :meth:`add`; the clustering is built at the first clustered lookup
    and rebuilt (when ``config.online``) at the first lookup after ``config.rebuild_every``
    additions (or ``config.rebuild_growth`` x its size at the last build, if more). Between
    rebuilds a new entry joins its nearest medoid's cluster, so every lookup sees every entry.
    Entry ids are unique across models.
    """

    def __init__(self, config: BankConfig | None = None, entries: Iterable[BankEntry] = ()) -> None:
        self.config = config if config is not None else BankConfig()
        self._models: dict[str, _ModelBank] = {}
        self._ids: set[str] = set()
        self._kinds: dict[type, str] = {}
        for e in entries:
            self.add(e)

    # -- contents --------------------------------------------------------------------------

    def add(self, entry: BankEntry) -> None:
        """Store ``entry``; raises ValueError on a duplicate id or a feature of another length
        than the model's other entries."""
        if entry.entry_id in self._ids:
            raise ValueError(f"bank entry id {entry.entry_id!r} already stored")
        mb = self._models.get(entry.model)
        if mb is None:
            mb = self._models[entry.model] = _ModelBank(entry.feature.size)
        elif entry.feature.size != mb.dim:
            raise ValueError(
                f"bank entry {entry.entry_id}: feature length {entry.feature.size} != "
                f"{mb.dim} of model {entry.model}'s other entries"
            )
        mb.append(entry)
        self._ids.add(entry.entry_id)
        cl = mb.clusters
        if cl is not None and self.config.online:
            mb.stale = mb.stale or mb.n - cl.built_n >= self._rebuild_after(cl.built_n)

    def _rebuild_after(self, built_n: int) -> int:
        """Additions after which a clustering built on ``built_n`` entries is rebuilt."""
        cfg = self.config
        return max(cfg.rebuild_every, math.floor(cfg.rebuild_growth * built_n))

    def copy(self) -> PromptBankIndex:
        """An independent copy of the index as it is now, clustering included (entries are
        immutable and shared): a lookup planned now can run later on the bank as it was."""
        other = PromptBankIndex(self.config)
        other._ids = set(self._ids)
        for name, mb in self._models.items():
            c = _ModelBank(mb.dim)
            c.entries = list(mb.entries)
            c.ids = list(mb.ids)
            c._feats = mb._feats.copy()
            cl = mb.clusters
            if cl is not None:
                c.clusters = _Clusters(
                    cl.medoids.copy(),
                    cl.medoid_feats.copy(),
                    [_Rows(m.rows.copy()) for m in cl.members],
                    [list(g) for g in cl.groups],
                    cl.built_n,
                )
            c.stale = mb.stale
            other._models[name] = c
        return other

    def extend(self, entries: Iterable[BankEntry]) -> None:
        for e in entries:
            self.add(e)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._ids

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def size(self, model: str) -> int:
        mb = self._models.get(model)
        return 0 if mb is None else mb.n

    def entries(self, model: str) -> tuple[BankEntry, ...]:
        """Entries of ``model`` in the order added (empty for a model with none)."""
        mb = self._models.get(model)
        return () if mb is None else tuple(mb.entries)

    def clusters(self, model: str) -> tuple[tuple[str, ...], ...]:
        """Entry ids of every cluster of ``model``, medoid first (builds when needed)."""
        mb = self._models.get(model)
        if mb is None or mb.n == 0:
            return ()
        cl = self._built(mb)
        return tuple(tuple(map(mb.ids.__getitem__, m.rows.tolist())) for m in cl.members)

    def groups(self, model: str) -> tuple[tuple[int, ...], ...]:
        """Cluster indices (into :meth:`clusters`) of every three-layer top group."""
        mb = self._models.get(model)
        if mb is None or mb.n == 0:
            return ()
        return tuple(tuple(g) for g in self._built(mb).groups)

    # -- clustering ------------------------------------------------------------------------

    def rebuild(self, model: str | None = None) -> None:
        """Re-cluster ``model`` (every model when ``None``) now."""
        names = self.models if model is None else (model,)
        for name in names:
            mb = self._models.get(name)
            if mb is not None and mb.n > 0:
                mb.clusters = self._cluster(mb)
                mb.stale = False

    def _built(self, mb: _ModelBank) -> _Clusters:
        if mb.clusters is None or mb.stale:
            mb.clusters = self._cluster(mb)
            mb.stale = False
        return mb.clusters

    def _cluster(self, mb: _ModelBank) -> _Clusters:
        cfg = self.config
        n = mb.n
        feats = mb.feats
        rng = np.random.default_rng([cfg.seed, n])
        k = cfg.clusters_for(n)
        sample_size = max(cfg.sample_limit, 4 * k)
        if n > sample_size:
            sample = np.sort(rng.choice(n, size=sample_size, replace=False))
            med_rows, _ = kmedoids_cluster(feats[sample], k, rng, cfg.max_iter)
            medoids = sample[med_rows]
            labels = nearest(feats, feats[medoids])
        else:
            medoids, labels = kmedoids_cluster(feats, k, rng, cfg.max_iter)
        k = len(medoids)
        labels[medoids] = np.arange(k)  # a medoid belongs to its own cluster, even on ties
        members = [_Rows(m) for m in _split(labels, medoids)]
        med_feats = feats[medoids].copy()
        top = cfg.groups_for(k)
        top_meds, top_labels = kmedoids_cluster(med_feats, top, rng, cfg.max_iter)
        top_labels[top_meds] = np.arange(len(top_meds))
        groups = [g.tolist() for g in _split(top_labels, top_meds)]
        return _Clusters(medoids, med_feats, members, groups, n)

    # -- lookup ----------------------------------------------------------------------------

    def lookup(
        self,
        model: str,
        target_task: str,
        scorer: Scorer,
        rng: np.random.Generator,
        *,
        layout: str | None = None,
    ) -> LookupResult:
        """Choose an initial prompt of ``model`` for ``target_task`` (layout: the config's
        unless given). ``rng`` is used by the ``random`` layout only. With no entry for the
        model, or layout ``none``, the result is the default prompt with no assessment."""
        lay = check_layout(layout if layout is not None else self.config.layout)
        mb = self._models.get(model)
        if lay == "none" or mb is None or mb.n == 0:
            return LookupResult(None, 0, (), (), lay)
        run = _Run(mb, scorer, target_task, self._kind(scorer))
        if lay == "flat":
            run.score(np.arange(mb.n, dtype=np.intp))
        elif lay == "random":
            run.score(np.array([int(rng.integers(mb.n))], dtype=np.intp))
        else:
            cl = self._built(mb)
            probe = self.config.probe
            members = cl.members
            clusters: Sequence[int]
            if lay == "three_layer":
                top_scores = run.score(cl.medoids[[g[0] for g in cl.groups]])
                clusters = [c for g in _top(top_scores, probe) for c in cl.groups[g]]
                med_scores = run.score(cl.medoids[clusters], fresh=False)  # (the top ones again)
            else:
                clusters = range(len(members))
                med_scores = run.score(cl.medoids)
            cap = self.config.assessment_cap(mb.n)
            for i in _top(med_scores, probe):
                cluster = members[clusters[i]]
                left = cap - run.n
                if left <= 0:
                    break
                if cluster.n - 1 > left:  # keep the members nearest their medoid
                    rows = self._nearest_members(mb, cl, clusters[i], left)
                else:
                    rows = cluster.buf[1 : cluster.n]
                run.score(rows, want=False)  # (no medoid: none scored yet)
        return run.result(lay, self.config.min_score)

    @staticmethod
    def _nearest_members(mb: _ModelBank, cl: _Clusters, c: int, left: int) -> IntArray:
        """The rows of the ``left`` members of cluster ``c`` nearest its medoid (ties by the
        order they joined), in the order they joined. Kept between lookups: members that
        joined since (appended, so after every earlier one) are compared with the kept ones
        by their distances, each computed as the whole cluster's would be (a row's norm does
        not depend on the rows around it); only a request for more than are kept sorts the
        whole cluster again."""
        rows = cl.members[c].rows
        n = len(rows)
        near = cl.near.get(c)
        if near is None or left > near.keep:
            d = _norms(mb.feats[rows[1:]] - mb.feats[rows[0]])
            order = np.argsort(d, kind="stable")[:left]  # ties by position
            near = cl.near[c] = _Nearest(n, left, d[order].tolist(), order.tolist())
        elif near.n < n:
            dists, pos, keep = near.dists, near.pos, near.keep
            new = _norms(mb.feats[rows[near.n :]] - mb.feats[rows[0]]).tolist()
            for p, d in enumerate(new, near.n - 1):
                if len(dists) < keep or d < dists[-1]:  # (finite: features are)
                    at = bisect.bisect_right(dists, d)  # after the earlier equal ones
                    dists.insert(at, d)
                    pos.insert(at, p)
                    if len(dists) > keep:
                        dists.pop()
                        pos.pop()
                    if at < near.asked:  # the rows last asked for changed
                        near.asked = -1
            near.n = n
        if near.asked != left:
            sel = np.array(sorted(near.pos[:left]), dtype=np.intp)
            sel += 1
            near.rows, near.asked = cl.members[c].buf[sel], left
        return near.rows

    def _kind(self, scorer: Scorer) -> str:
        """How ``scorer`` is called: "keys" (a :class:`KeyedScorer`), "many" (a
        :class:`BatchScorer`) or "one"; decided once per scorer class (a runtime protocol check
        inspects the class's attributes on every call)."""
        cls = type(scorer)
        got = self._kinds.get(cls)
        if got is None:
            batch = isinstance(scorer, BatchScorer)
            got = "keys" if isinstance(scorer, KeyedScorer) else "many" if batch else "one"
            self._kinds[cls] = got
        return got


class _Run:
    """The scoring of one lookup: scores each entry at most once and remembers the order."""

    def __init__(self, mb: _ModelBank, scorer: Scorer, target: str, kind: str) -> None:
        self.mb, self.scorer, self.target, self.kind = mb, scorer, target, kind
        self.rows: list[IntArray] = []  # the rows scored, by call
        self.values: list[FloatArray] = []  # their scores
        self.n = 0

    def score(self, rows: IntArray, *, want: bool = True, fresh: bool = True) -> FloatArray:
        """Score ``rows`` (none scored yet unless ``fresh`` is false: then those not scored
        yet, in order); returns the scores of all ``rows`` (an empty array when ``want`` is
        false)."""
        seen: dict[int, float] | None = None
        new = rows
        if not fresh and self.n:
            rows_so_far, vals_so_far = _joined(self.rows).tolist(), _joined(self.values).tolist()
            seen = dict(zip(rows_so_far, vals_so_far, strict=True))
            new = rows[np.array([r not in seen for r in rows.tolist()], dtype=bool)]
        vals = _NO_SCORES
        if len(new):
            kind = self.kind
            if kind == "keys":
                keyed = cast(KeyedScorer, self.scorer)
                got = keyed.score_keys(self.mb.keys(keyed)[new], self.target)
            else:
                entries = list(map(self.mb.entries.__getitem__, new.tolist()))
                if kind == "many":
                    got = cast(BatchScorer, self.scorer).score_many(entries, self.target)
                else:
                    score = self.scorer.score
                    got = np.fromiter((score(e, self.target) for e in entries), np.float64)
            vals = np.asarray(got, dtype=np.float64)
            if vals.shape != (len(new),):
                raise ValueError(f"scorer returned shape {vals.shape}, not ({len(new)},)")
            self.rows.append(new)
            self.values.append(vals)
            self.n += len(new)
            if seen is not None:
                seen.update(zip(new.tolist(), vals.tolist(), strict=True))
        if not want:
            return _NO_SCORES
        if seen is None:
            return vals
        return np.array([seen[r] for r in rows.tolist()], dtype=np.float64)

    def result(self, layout: str, min_score: float | None) -> LookupResult:
        if not self.n:
            return LookupResult(None, 0, (), (), layout)
        rows, values = _joined(self.rows), _joined(self.values)
        best = int(np.argmax(values))  # the first highest (or the first NaN)
        entry: BankEntry | None = None
        if min_score is None or values[best] >= min_score:
            entry = self.mb.entries[rows[best]]
        scored = ScoredIds(self.mb.ids, rows.copy())  # (``rows`` may view a buffer that changes)
        return LookupResult(entry, self.n, scored, tuple(values.tolist()), layout)


_NO_SCORES: FloatArray = np.empty(0, dtype=np.float64)
_NO_ROWS: IntArray = np.empty(0, dtype=np.intp)


def _norms(diffs: FloatArray) -> FloatArray:
    """Every row's Euclidean norm: ``np.linalg.norm(diffs, axis=1)``, the same operations."""
    return cast(FloatArray, np.sqrt(np.add.reduce(diffs * diffs, axis=1)))


def _joined(parts: list[Any]) -> Any:
    """The arrays of ``parts`` end to end (the one array itself when there is one)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _top(scores: FloatArray, c: int) -> list[int]:
    """Indices of the ``c`` highest scores, best first; ties go to the lower index."""
    if c == 1 and len(scores):
        best = int(np.argmax(scores))  # the first highest, or the first NaN if there is one
        if not math.isnan(scores[best]):
            return [best]
    order = np.argsort(-scores, kind="stable")
    return cast(list[int], order[:c].tolist())


def _split(labels: IntArray, medoids: IntArray) -> list[IntArray]:
    """Rows of every label, the medoid first, then ascending."""
    order = np.argsort(labels, kind="stable").astype(np.intp, copy=False)
    counts = np.bincount(labels, minlength=len(medoids))
    meds = medoids.astype(np.intp, copy=False)
    return [
        np.concatenate((meds[c : c + 1], rows[rows != meds[c]]))
        for c, rows in enumerate(np.split(order, np.cumsum(counts)[:-1]))
    ]
