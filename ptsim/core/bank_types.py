"""The Prompt Bank's configuration and what its index asks of a scorer: the parts of the bank
that stay Python when the compiled build (``ptsim.native``) compiles the index
(:mod:`ptsim.core.bank`).

- :class:`BankConfig`: the index's knobs (config group ``bank``). The config checks read its
  fields' types, which a compiled dataclass loses for unions such as ``int | None``
  (``ptsim.schema.fields_of``).
- :class:`Scorer`, :class:`BatchScorer`, :class:`KeyedScorer`: runtime-checkable protocols,
  which mypyc cannot compile; the index checks once per scorer class which one a scorer is.
- :data:`LAYOUTS` and :func:`check_layout`: the lookup layouts by name (described in
  :mod:`ptsim.core.bank`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ptsim.core.profiles import UnknownName

if TYPE_CHECKING:
    from ptsim.core.bank import BankEntry, FloatArray, IntArray

LAYOUTS: tuple[str, ...] = ("flat", "two_layer", "three_layer", "random", "none")


def check_layout(layout: str) -> str:
    """``layout`` if it is a known layout name, else :class:`UnknownName` listing them."""
    if layout not in LAYOUTS:
        raise UnknownName("bank layout", layout, LAYOUTS)
    return layout


@runtime_checkable
class Scorer(Protocol):
    """Answers "how good is this stored prompt as a start for this task" from a short
    evaluation; higher is better. Each call is one score assessment."""

    def score(self, entry: BankEntry, target_task: str) -> float: ...


@runtime_checkable
class BatchScorer(Scorer, Protocol):
    """A scorer that can also score several entries at once (in order, one assessment each).
    The index uses ``score_many`` when a scorer has it."""

    def score_many(self, entries: Sequence[BankEntry], target_task: str) -> FloatArray: ...


@runtime_checkable
class KeyedScorer(Scorer, Protocol):
    """A scorer whose score of an entry depends on the entry only through an integer key (in
    ptsim the entry's source task), and that scores keys in bulk: ``score_keys`` of the
    entries' keys is what ``score_many`` of the entries would be (in order, one assessment
    each). The index asks an entry's key once and keeps it with the entry's row, so a lookup
    reads only the entries it returns. The index prefers ``score_keys`` when a scorer has it."""

    def key(self, entry: BankEntry) -> int: ...

    def score_keys(self, keys: IntArray, target_task: str) -> FloatArray: ...


@dataclass(frozen=True)
class BankConfig:
    """Knobs of the index (config group ``bank``).

    - ``layout``: the default layout of :meth:`PromptBankIndex.lookup` (:data:`LAYOUTS`).
    - ``probe`` (c): clusters (and, in ``three_layer``, top groups) whose members are scored.
      Default 1: with K = sqrt(N) this costs about 2 sqrt(N) assessments (up to the bound of
      ``max_clusters``).
    - ``k``: clusters; ``None`` = ceil(sqrt(probe x N)), which minimises K + probe x N / K, up
      to ``max_clusters``.
    - ``max_clusters``: most clusters when ``k`` is ``None``; the default assessment cap stops
      growing at the same bank size (N = max_clusters^2 / probe), so a lookup's cost is bounded
      however large an online bank grows. ``None`` = no bound (K and the cap grow as sqrt(N)).
    - ``top_k``: ``three_layer`` top groups; ``None`` = ceil(sqrt(probe x K)).
    - ``online``: re-cluster as entries are added; ``False`` freezes the clustering after its
      first build (new entries still join their nearest medoid's cluster).
    - ``rebuild_every``: re-cluster at the first lookup after this many additions.
    - ``rebuild_growth``: ... or, once a model's bank is large, after it has grown by this
      fraction since the last build, whichever is more (``max(rebuild_every, rebuild_growth x
      N_built)``): rebuilds become geometric, so an online bank that grows by every finished
      job re-clusters O(log N) times, not N / ``rebuild_every`` times. ``0`` = every
      ``rebuild_every`` additions always. The default (0.5) changes nothing below
      ``rebuild_every / rebuild_growth`` = 200 entries of a model.
    - ``sample_limit``: above this many entries (or 4 x K, K the number of clusters, if
      larger), K-medoids runs on a seeded sample of that size and every entry joins its
      nearest medoid (with K <= ``max_clusters`` = 32, about 30 sampled entries per cluster; a
      build of 100k entries takes ~0.1 s).
    - ``max_iter``: FasterPAM iteration limit.
    - ``min_score``: if the best score is below it, the default prompt is used instead
      (``None``: always take the best entry).
    - ``max_assessments``: most score assessments a ``two_layer`` / ``three_layer`` lookup makes;
      members of a probed cluster beyond it are skipped, farthest from their medoid first.
      ``None`` = floor(2 sqrt(N')) + 10 with N' = N up to max_clusters^2 / probe (the budget the
      benchmark checks; with balanced clusters a lookup stays under it anyway); ``0`` = no cap.
    - ``seed``: seeds the sample and FasterPAM, so builds are reproducible.
    """

    layout: str = "two_layer"
    probe: int = 1
    k: int | None = None
    max_clusters: int | None = 32
    top_k: int | None = None
    online: bool = True
    rebuild_every: int = 100
    rebuild_growth: float = 0.5
    sample_limit: int = 1000
    max_iter: int = 100
    min_score: float | None = None
    max_assessments: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_layout(self.layout)
        if self.probe < 1 or self.rebuild_every < 1 or self.max_iter < 1:
            raise ValueError("bank probe, rebuild_every and max_iter must be >= 1")
        if self.rebuild_growth < 0:
            raise ValueError("bank rebuild_growth must be >= 0")
        if self.max_assessments is not None and self.max_assessments < 0:
            raise ValueError("bank max_assessments must be >= 0 (0: no cap)")
        if any(v is not None and v < 1 for v in (self.k, self.top_k, self.max_clusters)):
            raise ValueError("bank k, top_k and max_clusters must be >= 1 when given")
        if self.sample_limit < 2:
            raise ValueError("bank sample_limit must be >= 2")

    def clusters_for(self, n: int) -> int:
        """K, the number of clusters of a model's bank of ``n`` entries."""
        if self.k is not None:
            return min(n, self.k)
        k = math.ceil(math.sqrt(self.probe * n))
        return min(n, k if self.max_clusters is None else min(k, self.max_clusters))

    def groups_for(self, k: int) -> int:
        """The three-layer top groups over ``k`` clusters."""
        return min(
            k, self.top_k if self.top_k is not None else math.ceil(math.sqrt(self.probe * k))
        )

    def assessment_cap(self, n: int) -> int:
        """The assessment budget of one clustered lookup in a bank of ``n`` entries."""
        cap = self.max_assessments
        if cap is not None:
            return cap if cap > 0 else n
        if self.max_clusters is not None:
            n = min(n, self.max_clusters**2 // self.probe)
        return math.floor(2 * math.sqrt(n)) + 10
