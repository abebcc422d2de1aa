"""Iterations to target: how much a stored prompt saves a new job, by task similarity.

The model has three parts (DESIGN.md section 3):

- a :class:`TaskSpace`: every task is a point in R^d; similarity is a Gaussian kernel on the
  distance between two points;
- a :class:`SavingCurve`: the expected fraction of iterations saved against the default initial
  prompt, as a function of the similarity of the source task (where the stored prompt was tuned)
  to the target task, plus the spread of the realised saving around it;
- a :class:`ConvergenceModel` tying the two together and drawing realised iteration counts.

Every default below is a placeholder with a stated rationale, to be replaced by values calibrated
from ``ptexec profile`` convergence runs (with and without a bank prompt); ``docs/bank.md`` keeps
the provenance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from ptsim.core.estimator import IterPrior
from ptsim.core.profiles import UnknownName
from ptsim.core.types import InitChoice, JobSpec

FloatArray = npt.NDArray[np.float64]

DEFAULT_FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "sentiment": ("sst2", "imdb", "yelp"),
        "nli": ("mnli", "qnli", "rte"),
        "qa": ("boolq", "multirc", "copa"),
        "topic": ("agnews", "dbpedia", "trec"),
    }
)
"""The paper's 12 datasets grouped into 4 families (our grouping; the paper lists no families)."""

DEFAULT_SPACE_SEED = 20260305
"""Seed of the default task layout (the arXiv id's date): fixed so the default space never moves."""


@dataclass(frozen=True, eq=False)
class TaskSpace:
    """Tasks as points in R^d, each with a family label.

    ``similarity(a, b) = exp(-||p_a - p_b||^2 / (2 length_scale^2))``: 1 for the same task,
    symmetric, in [0, 1], falling with distance. With the default layouts (family centres
    ``family_distance`` apart, tasks spread ``spread`` around them) tasks of one family have
    similarity about 0.6-0.9 and tasks of different families below 0.05.
    """

    names: tuple[str, ...]
    families: tuple[str, ...]
    points: FloatArray
    length_scale: float = 1.0
    _index: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pts = np.array(self.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] != len(self.names):
            raise ValueError(
                f"task points shape {pts.shape} does not match {len(self.names)} tasks"
            )
        if len(self.families) != len(self.names):
            raise ValueError("need one family label per task")
        if len(set(self.names)) != len(self.names):
            raise ValueError("task names must be distinct")
        if not self.length_scale > 0:
            raise ValueError("length_scale must be > 0")
        pts.setflags(write=False)
        object.__setattr__(self, "points", pts)
        object.__setattr__(
            self, "_index", MappingProxyType({n: i for i, n in enumerate(self.names)})
        )

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    def index(self, task: str) -> int:
        """Row of ``task`` in ``points``; raises :class:`UnknownName` for an unknown task."""
        try:
            return self._index[task]
        except KeyError:
            raise UnknownName("task", task, self.names) from None

    def __contains__(self, task: object) -> bool:
        return task in self._index

    def point(self, task: str) -> FloatArray:
        row: FloatArray = self.points[self.index(task)]
        return row

    def family(self, task: str) -> str:
        return self.families[self.index(task)]

    def tasks_in(self, family: str) -> tuple[str, ...]:
        """Tasks of ``family`` in the space's order; raises :class:`UnknownName` if none."""
        out = tuple(n for n, f in zip(self.names, self.families, strict=True) if f == family)
        if not out:
            raise UnknownName("task family", family, sorted(set(self.families)))
        return out

    def similarity(self, a: str, b: str) -> float:
        """Similarity of tasks ``a`` and ``b`` in [0, 1]; 1 when ``a == b``."""
        if a == b:
            self.index(a)
            return 1.0
        d = self.point(a) - self.point(b)
        return math.exp(-float(d @ d) / (2.0 * self.length_scale**2))

    def similarities_to(self, target: str) -> FloatArray:
        """Similarity of every task (in ``names`` order) to ``target``."""
        d = self.points - self.point(target)
        sim: FloatArray = np.exp(-np.einsum("ij,ij->i", d, d) / (2.0 * self.length_scale**2))
        sim[self.index(target)] = 1.0
        return sim

    @classmethod
    def clustered(
        cls,
        families: Mapping[str, Sequence[str]],
        *,
        seed: int,
        dim: int = 8,
        family_distance: float = 3.0,
        spread: float = 0.5,
        length_scale: float = 1.0,
    ) -> TaskSpace:
        """Tasks grouped in families: family centres on orthogonal axes, all
        ``family_distance`` apart; each task at its centre plus N(0, spread^2 / dim I) (seeded),
        so ``spread`` is a task's RMS distance from its family centre whatever ``dim`` is.

        ``dim`` is raised to the number of families when smaller. The two defaults give a
        within-family squared distance of about ``2 spread^2`` (0.5, similarity ~0.78) and
        an across-family distance of about ``family_distance`` (similarity ~0.01).
        """
        if family_distance <= 0 or spread < 0:
            raise ValueError("family_distance must be > 0 and spread >= 0")
        fams = list(families)
        if not fams:
            raise ValueError("need at least one family")
        dim = max(dim, len(fams))
        rng = np.random.default_rng(seed)
        scale = family_distance / math.sqrt(2.0)
        names: list[str] = []
        labels: list[str] = []
        rows: list[FloatArray] = []
        for f_idx, fam in enumerate(fams):
            centre = np.zeros(dim)
            centre[f_idx] = scale
            for task in families[fam]:
                names.append(task)
                labels.append(fam)
                rows.append(centre + rng.normal(0.0, spread / math.sqrt(dim), size=dim))
        return cls(tuple(names), tuple(labels), np.array(rows), length_scale)

    @classmethod
    def default(cls) -> TaskSpace:
        """The paper's 12 tasks in 4 families (:data:`DEFAULT_FAMILIES`), fixed layout."""
        return cls.clustered(DEFAULT_FAMILIES, seed=DEFAULT_SPACE_SEED)

    @classmethod
    def generic(
        cls,
        n_tasks: int,
        n_families: int,
        *,
        seed: int = 0,
        dim: int = 8,
        family_distance: float = 3.0,
        spread: float = 0.5,
        length_scale: float = 1.0,
    ) -> TaskSpace:
        """``n_tasks`` tasks named ``t000``, ``t001``... in ``n_families`` families named ``f00``...
        in contiguous, near-equal blocks (task i in family ``i * n_families // n_tasks``), so
        ``names`` is in numeric order; the layout as in :meth:`clustered`."""
        if n_tasks < 1 or not 1 <= n_families <= n_tasks:
            raise ValueError("need n_tasks >= 1 and 1 <= n_families <= n_tasks")
        width = max(3, len(str(n_tasks - 1)))
        fwidth = max(2, len(str(n_families - 1)))
        fams: dict[str, list[str]] = {f"f{f:0{fwidth}d}": [] for f in range(n_families)}
        keys = list(fams)
        for i in range(n_tasks):
            fams[keys[i * n_families // n_tasks]].append(f"t{i:0{width}d}")
        return cls.clustered(
            fams,
            seed=seed,
            dim=dim,
            family_distance=family_distance,
            spread=spread,
            length_scale=length_scale,
        )


@dataclass(frozen=True)
class SavingCurve:
    """Fraction of iterations saved against the default initial prompt, by similarity s:

    ``expected(s) = s_neg + (s_max - s_neg) * clip((s - s0) / (1 - s0), 0, 1) ** gamma``

    and the realised saving is ``expected(s) + N(0, noise_sigma^2)``. ``s_neg <= 0`` is the
    saving of a prompt from an unrelated task (negative: it costs iterations).

    These defaults are the *assumed* curve (``bank.convergence=assumed``); the measured one is
    fitted from the convergence campaign (``docs/convergence.md``):

    - ``s_max = 0.48``: a prompt tuned on the very task saves 48% of the iterations (it starts
      near the optimum but the run still has to fit the new job's data and seed).
    - ``s0 = 0.3``: below this similarity a stored prompt is no better than the default one
      (with the default space, every prompt from another family).
    - ``gamma = 1.0``: linear between the two.
    - ``noise_sigma = 0.05``: run-to-run spread of the saving (seeds, data order).
    - ``s_neg = 0``: an unrelated prompt costs nothing.

    With the default :class:`TaskSpace`, the best same-family source of a task (another task of
    its family) saves 30% on average over the 12 tasks, matching the ~30% fewer tuning epochs
    reported for the paper's Prompt Bank; ``tests/test_convergence.py`` checks this.
    """

    s_max: float = 0.48
    s0: float = 0.3
    gamma: float = 1.0
    noise_sigma: float = 0.05
    s_neg: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.s_max < 1.0:
            raise ValueError("s_max must be in [0, 1)")
        if not 0.0 <= self.s0 < 1.0:
            raise ValueError("s0 must be in [0, 1)")
        if self.gamma <= 0 or self.noise_sigma < 0:
            raise ValueError("gamma must be > 0 and noise_sigma >= 0")
        if not -1.0 < self.s_neg <= 0.0:
            raise ValueError("s_neg must be in (-1, 0]")

    def expected(self, similarity: float) -> float:
        """Expected saving in [s_neg, s_max] at ``similarity`` in [0, 1]."""
        x = min(1.0, max(0.0, (similarity - self.s0) / (1.0 - self.s0)))
        return float(self.s_neg + (self.s_max - self.s_neg) * x**self.gamma)

    def expected_many(self, similarity: FloatArray) -> FloatArray:
        x = np.clip((np.asarray(similarity, dtype=np.float64) - self.s0) / (1.0 - self.s0), 0, 1)
        return self.s_neg + (self.s_max - self.s_neg) * x**self.gamma


@dataclass(frozen=True)
class ConvergenceModel:
    """Iterations a job needs, given where its initial prompt came from.

    ``source_task=None`` is the default initial prompt: PEFT's TEXT init (a short task
    description) or SAMPLE_VOCAB, never RANDOM. RANDOM draws the prompt from a standard normal,
    far from the scale of the model's token embeddings, so it converges unusually slowly; any
    stored prompt beats it and a saving measured against it would be inflated. Savings here are
    against TEXT/SAMPLE_VOCAB, and the job's base iteration count is measured from that init.

    The realised saving is clipped to ``[min_saving, max_saving]``: a dissimilar prompt may cost
    a little (down to ``min_saving = -0.25``, i.e. 25% more iterations), and no prompt saves more
    than ``max_saving = 0.9`` (a run always needs some iterations). Both are placeholders.

    ``spread_sigma`` is the run-to-run spread of the iterations of one job (seeds, data order),
    the log-standard deviation of a lognormal factor with median 1: a job's true iterations are
    ``base_iters x exp(N(0, spread_sigma^2)) x (1 - saving)``, so ``base_iters`` (a trace's
    ``iterations``) is the median. 0 (the assumed model) draws nothing: the default prompt then
    needs exactly ``base_iters``. Policies never see the true count, only
    :mod:`ptsim.core.estimator`'s estimate from :meth:`prior`.
    """

    space: TaskSpace
    curve: SavingCurve = SavingCurve()
    min_saving: float = -0.25
    max_saving: float = 0.9
    spread_sigma: float = 0.0
    name: str = "assumed"

    def __post_init__(self) -> None:
        if not -1.0 < self.min_saving <= 0.0 <= self.max_saving < 1.0:
            raise ValueError("need -1 < min_saving <= 0 <= max_saving < 1")
        if self.spread_sigma < 0:
            raise ValueError("spread_sigma must be >= 0")

    @classmethod
    def default(cls) -> ConvergenceModel:
        """The default task space and curve."""
        return cls(TaskSpace.default())

    def expected_saving(self, source_task: str | None, target_task: str) -> float:
        """Expected fraction of iterations saved by starting from a prompt tuned on
        ``source_task``; 0 for the default initial prompt (``None``)."""
        if source_task is None:
            self.space.index(target_task)
            return 0.0
        return self.curve.expected(self.space.similarity(source_task, target_task))

    def expected_savings_to(self, target_task: str) -> Mapping[str, float]:
        """Expected saving of every task of the space as a source for ``target_task``."""
        sav = self.curve.expected_many(self.space.similarities_to(target_task))
        return dict(zip(self.space.names, sav.tolist(), strict=True))

    def realized_saving(
        self, source_task: str | None, target_task: str, rng: np.random.Generator
    ) -> float:
        """One draw of the saving; exactly 0 (no draw) for the default initial prompt."""
        mean = self.expected_saving(source_task, target_task)
        if source_task is None:
            return 0.0
        return self._saving(mean, float(rng.normal(0.0, self.curve.noise_sigma)))

    def _saving(self, mean: float, noise: float) -> float:
        """The realised saving of a stored prompt whose expected saving is ``mean``, for one
        draw of its noise."""
        return min(self.max_saving, max(self.min_saving, mean + noise))

    def realized_iterations(
        self,
        base_iters: float,
        source_task: str | None,
        target_task: str,
        rng: np.random.Generator,
    ) -> float:
        """Iterations to target from a prompt of ``source_task``, given the median ``base_iters``
        from the default prompt: when ``spread_sigma > 0``, one draw of the run-to-run factor, then
        one draw of the saving (stored prompts only). The assumed model's default
        prompt returns ``base_iters`` unchanged and draws nothing."""
        return self.realized_iterations_and_default(base_iters, source_task, target_task, rng)[0]

    def realized_iterations_and_default(
        self,
        base_iters: float,
        source_task: str | None,
        target_task: str,
        rng: np.random.Generator,
    ) -> tuple[float, float]:
        """(``realized_iterations(...)``, what it gives for the same job's default prompt): the
        second is ``realized_iterations(base_iters, None, target_task, r)`` for a generator
        ``r`` in ``rng``'s state (the same run-to-run draw, no saving drawn)."""
        if base_iters < 0:
            raise ValueError(f"base_iters must be >= 0, got {base_iters}")
        n = (1 if self.spread_sigma else 0) + (source_task is not None)
        normals = rng.standard_normal(n).tolist()
        return self.realized_from_normals(base_iters, source_task, target_task, normals)

    def realized_from_normals(
        self,
        base_iters: float,
        source_task: str | None,
        target_task: str,
        normals: Sequence[float],
    ) -> tuple[float, float]:
        """:meth:`realized_iterations_and_default` for a generator whose standard normal draws
        are ``normals``: the run-to-run factor's first when ``spread_sigma > 0``, then the
        saving's for a stored prompt (any more are not read), each scaled as ``rng.normal(0,
        sigma)`` scales its draw."""
        if base_iters < 0:
            raise ValueError(f"base_iters must be >= 0, got {base_iters}")
        # the job's own difficulty first, so it is the same whichever prompt a policy picks
        spread, used = 1.0, 0
        if self.spread_sigma:
            spread, used = math.exp(0.0 + self.spread_sigma * normals[0]), 1
        mean = self.expected_saving(source_task, target_task)
        default = float(base_iters) * spread
        if source_task is None:
            return default, default
        saving = self._saving(mean, 0.0 + self.curve.noise_sigma * normals[used])
        return float(base_iters) * (1.0 - saving) * spread, default

    def prior(self, base_iters: float, expected_saving: float) -> IterPrior:
        """What a scheduler may know about a job's iterations before it trains: the median
        ``base_iters x (1 - expected_saving)`` and a log-spread combining the run-to-run spread
        with the saving's noise (``noise_sigma / (1 - expected_saving)``, first order) for a
        stored prompt (``expected_saving != 0``)."""
        median = max(1.0, float(base_iters) * (1.0 - expected_saving))
        var = self.spread_sigma**2
        if expected_saving != 0.0:
            var += (self.curve.noise_sigma / max(1e-6, 1.0 - expected_saving)) ** 2
        return IterPrior(median, math.sqrt(var) if self.spread_sigma > 0 else 0.0)

    def job_prior(self, spec: JobSpec, init: InitChoice) -> IterPrior:
        """:meth:`prior` of a job started from ``init`` (its trace ``iterations`` as the base):
        the cluster state's ``PriorFn``, the one both drivers build their state with."""
        return self.prior(float(spec.iterations), init.expected_saving)
