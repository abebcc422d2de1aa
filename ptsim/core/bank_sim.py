"""The Prompt Bank in simulation: a modelled scorer and synthetic bank histories.

The simulator uses the same :class:`~ptsim.core.bank.PromptBankIndex` as the executor; only the
scorer differs. Here a score assessment returns the expected saving of the candidate's source
task for the target (from the :class:`~ptsim.core.convergence.ConvergenceModel`) plus Gaussian
noise standing for the imprecision of a short evaluation.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from ptsim.core.bank import (
    BankEntry,
    FloatArray,
    IntArray,
    LookupResult,
    PromptBankIndex,
    init_choice,
)
from ptsim.core.convergence import ConvergenceModel
from ptsim.core.estimator import DEFAULT_ESTIMATOR, READING_CAP, EstimatorSettings, IterPrior
from ptsim.core.profiles import UnknownName
from ptsim.core.seeding import first_normals, seeded_normals
from ptsim.core.types import InitChoice, JobSpec

DEFAULT_SCORE_SIGMA = 0.02
"""Noise of one simulated score assessment, in units of saving (fraction of iterations).

The assumed model's value (``bank.convergence=assumed``): about the gap between the best and the
second-best source of the same family in the default space, so a lookup usually, not always,
ranks same-family sources right; cross-family sources (saving 0) are never confused with them.
The fitted model's noise is measured (``ptsim.convergence_io``, docs/convergence.md).
"""

_NOISE_BATCH = 64  # at most this many of a job's simulated evaluations drawn together


class SimScorer:
    """Scorer for simulation: expected saving of the entry's source task for the target under
    ``convergence``, plus N(0, sigma^2) drawn from the scorer's own ``rng`` (so a run's lookups
    are reproducible from one seed). An entry's key (:class:`~ptsim.core.bank.KeyedScorer`) is
    its source task's index in the task space; entries whose source task is unknown raise
    :class:`~ptsim.core.profiles.UnknownName`."""

    def __init__(
        self,
        convergence: ConvergenceModel,
        rng: np.random.Generator,
        sigma: float = DEFAULT_SCORE_SIGMA,
    ) -> None:
        if sigma < 0:
            raise ValueError("score sigma must be >= 0")
        self.convergence = convergence
        self.rng = rng
        self.sigma = sigma
        self._savings: dict[str, FloatArray] = {}  # target -> expected saving by source key

    def key(self, entry: BankEntry) -> int:
        return self.convergence.space.index(entry.source_task)

    def score_keys(self, keys: IntArray, target_task: str) -> FloatArray:
        savings = self._savings.get(target_task)
        if savings is None:
            table = self.convergence.expected_savings_to(target_task)
            names = self.convergence.space.names
            savings = self._savings[target_task] = np.array([table[n] for n in names])
        means = savings[keys]
        if self.sigma == 0:
            return means
        return means + self.rng.normal(0.0, self.sigma, size=len(keys))

    def score(self, entry: BankEntry, target_task: str) -> float:
        return float(self.score_many([entry], target_task)[0])

    def score_many(self, entries: Sequence[BankEntry], target_task: str) -> FloatArray:
        keys = np.fromiter(map(self.key, entries), np.intp, len(entries))
        return self.score_keys(keys, target_task)

    def score_default(self, target_task: str) -> float:
        """One assessment of the default initial prompt for ``target_task``: its expected
        saving (0 by definition) plus the same noise as any other assessment."""
        self.convergence.space.index(target_task)
        return float(self.rng.normal(0.0, self.sigma)) if self.sigma else 0.0


def keep_if_beats_default(result: LookupResult, default_score: float) -> LookupResult:
    """The lookup after also assessing the default initial prompt (one more assessment): the
    chosen entry is kept only when its score beats the default's, else the default is used."""
    best = result.best_score
    keep = result.entry is not None and best is not None and best > default_score
    entry = result.entry if keep else None
    return LookupResult(entry, result.assessments + 1, result.scored, result.scores, result.layout)


def choose_init(
    index: PromptBankIndex,
    model: str,
    target_task: str,
    scorer: SimScorer,
    eval_s: float,
    rng: np.random.Generator,
    *,
    layout: str | None = None,
    against_default: bool = False,
) -> tuple[InitChoice, LookupResult]:
    """One simulated lookup turned into the job's :class:`InitChoice` (cost = assessments x
    ``eval_s``; expected saving from the scorer's convergence model). With
    ``against_default`` the default prompt is assessed too when the lookup found an entry,
    and the entry is used only if it scores higher (:func:`keep_if_beats_default`)."""
    res = index.lookup(model, target_task, scorer, rng, layout=layout)
    if against_default and res.entry is not None:
        res = keep_if_beats_default(res, scorer.score_default(target_task))
    src = res.entry.source_task if res.entry is not None else None
    saving = scorer.convergence.expected_saving(src, target_task)
    return init_choice(res, eval_s, saving), res


def feature_map(
    convergence: ConvergenceModel, feature_dim: int, rng: np.random.Generator
) -> FloatArray:
    """A seeded map from the task space into ``feature_dim`` dimensions: distance-preserving
    (orthonormal) when ``feature_dim >= dim``, a scaled random projection otherwise."""
    gauss = rng.normal(size=(feature_dim, convergence.space.dim))
    if feature_dim >= convergence.space.dim:
        embed, _ = np.linalg.qr(gauss)
        return np.asarray(embed, dtype=np.float64)
    return np.asarray(gauss / np.sqrt(feature_dim), dtype=np.float64)


def task_features(convergence: ConvergenceModel, embed: FloatArray) -> FloatArray:
    """Every task's point mapped by ``embed`` (rows in task-space order)."""
    return np.asarray(convergence.space.points @ embed.T, dtype=np.float64)


def synthetic_bank(
    model_names: Sequence[str],
    convergence: ConvergenceModel,
    n_entries: int,
    rng: np.random.Generator,
    feature_dim: int = 16,
    *,
    tasks: Sequence[str] | None = None,
    feature_noise: float = 0.1,
    shape: tuple[int, ...] = (20, 768),
    id_prefix: str = "syn",
) -> list[BankEntry]:
    """A synthetic history of ``n_entries`` tuned prompts: entry i belongs to model
    ``model_names[i % len]``, its source task is drawn uniformly from ``tasks`` (default: every
    task of the space), and its feature is the task's point mapped into ``feature_dim``
    dimensions (a seeded, distance-preserving map when ``feature_dim >= dim``, a scaled random
    projection otherwise) plus N(0, ``feature_noise``^2) per dimension, so clustering the
    features recovers the task families. Ids are ``f"{id_prefix}{i:06d}"``."""
    if not model_names:
        raise ValueError("need at least one model name")
    if n_entries < 0 or feature_dim < 1 or feature_noise < 0:
        raise ValueError("need n_entries >= 0, feature_dim >= 1 and feature_noise >= 0")
    space = convergence.space
    pool = tuple(space.names if tasks is None else tasks)
    if not pool:
        raise ValueError("need at least one task")
    task_rows = np.array([space.index(t) for t in pool], dtype=np.intp)
    pts = task_features(convergence, feature_map(convergence, feature_dim, rng))
    picks = rng.integers(len(pool), size=n_entries)
    feats = pts[task_rows[picks]] + rng.normal(0.0, feature_noise, size=(n_entries, feature_dim))
    return [
        BankEntry(
            entry_id=f"{id_prefix}{i:06d}",
            model=model_names[i % len(model_names)],
            source_task=pool[int(picks[i])],
            feature=feats[i],
            shape=shape,
            metadata={"synthetic": True},
        )
        for i in range(n_entries)
    ]


class SimPromptBank:
    """The Prompt Bank as the simulator runs it: the shared index, the modelled scorer and the
    iterations model.

    ``choose(spec)`` answers a policy's lookup for a new job (an ``InitChooser``; with
    ``against_default`` a found entry must also out-score the default prompt); ``iterations``
    is the cluster state's ``IterationsFn`` (the realised iterations of a job started from its
    chosen prompt, noise drawn from a generator seeded by the run seed and the job id, so a job
    gets the same draw under every policy that picks the same source); ``add_finished`` adds a
    finished job's tuned prompt to the bank (online growth; its feature is its task's point
    mapped like the synthetic history's, plus noise; the additions wait until the index is
    next read, through ``index``, so a run whose policy never looks the bank up never pays for
    them, and one that does sees the same bank); ``prior`` what the policies may know
    of the iterations before the job trains, and ``estimator`` the estimator's settings that go
    with the convergence model.
    """

    def __init__(
        self,
        index: PromptBankIndex,
        convergence: ConvergenceModel,
        eval_s: Mapping[str, float],
        seed: int,
        *,
        layout: str | None = None,
        score_sigma: float = DEFAULT_SCORE_SIGMA,
        feature_dim: int = 16,
        feature_noise: float = 0.1,
        online: bool = True,
        against_default: bool = False,
        estimator: EstimatorSettings = DEFAULT_ESTIMATOR,
        evals_per_job: int = 0,
    ) -> None:
        self._index = index
        self._pending: list[JobSpec] = []  # finished jobs not added yet (``add_finished``)
        self.against_default = against_default
        self.estimator = estimator
        self.evals_per_job = evals_per_job
        # job -> (first evaluation k, the noise e of evaluation k, k + 1, ...): drawn together
        self._noise: dict[str, tuple[int, list[float]]] = {}
        # job -> (evaluation, total it was read for, the reading): re-read at every re-plan
        self._last: dict[str, tuple[int, float, tuple[float, float]]] = {}
        # job -> its default prompt's iterations, drawn with a stored prompt's (``iterations``)
        self._default_iters: dict[str, float] = {}
        self.convergence = convergence
        self.eval_s = dict(eval_s)
        self.seed = seed
        self.layout = layout
        self.online = online
        self.feature_noise = feature_noise
        self._rng = np.random.default_rng([seed, 1])
        self.scorer = SimScorer(convergence, np.random.default_rng([seed, 2]), score_sigma)
        self._features = task_features(
            convergence, feature_map(convergence, feature_dim, np.random.default_rng([seed, 3]))
        )
        self._added = 0

    @property
    def index(self) -> PromptBankIndex:
        """The bank's index, every finished job handed to ``add_finished`` added."""
        if self._pending:
            pending, self._pending = self._pending, []
            dim, sigma = int(self._features.shape[1]), self.feature_noise
            for spec in pending:
                self._added += 1
                noise = seeded_normals([self.seed, 5, self._added], dim, sigma)
                self._add(spec.model, spec.task, f"job-{spec.job_id}", noise)
        return self._index

    def seed_synthetic(self, models: Sequence[str], n_entries: int) -> None:
        """Pre-populate with ``n_entries`` synthetic tuned prompts (see ``synthetic_bank``)."""
        self.index  # noqa: B018  (pending additions first)
        rng = np.random.default_rng([self.seed, 4])
        picks = rng.integers(len(self.convergence.space.names), size=n_entries)
        shape = self._features.shape[1:]
        for i, t in enumerate(picks):
            task = self.convergence.space.names[int(t)]
            noise = rng.normal(0.0, self.feature_noise, size=shape)
            self._add(models[i % len(models)], task, f"syn{i:06d}", noise)

    def seed_history(self, history: Sequence[tuple[str, str, str]]) -> None:
        """Pre-populate with given (entry id, model, source task) triples, e.g. a real bank
        store's; features come from the task space, like every other entry's."""
        self.index  # noqa: B018  (pending additions first)
        rng = np.random.default_rng([self.seed, 6])
        shape = self._features.shape[1:]
        for entry_id, model, task in history:
            self._add(model, task, entry_id, rng.normal(0.0, self.feature_noise, size=shape))

    def _add(self, model: str, task: str, entry_id: str, noise: FloatArray) -> None:
        """Store an entry of ``task`` whose feature is the task's point plus ``noise``."""
        feat = self._features[self.convergence.space.index(task)] + noise
        self._index.add(BankEntry(entry_id, model, task, feat, metadata={"synthetic": True}))

    def choose(self, spec: JobSpec) -> InitChoice:
        if spec.model not in self.eval_s:
            raise UnknownName("model", spec.model, sorted(self.eval_s))
        choice, _ = choose_init(
            self.index,
            spec.model,
            spec.task,
            self.scorer,
            self.eval_s[spec.model],
            self._rng,
            layout=self.layout,
            against_default=self.against_default,
        )
        return choice

    def prior(self, spec: JobSpec, init: InitChoice) -> IterPrior:
        """What a policy may know about the job's iterations before it trains (the cluster
        state's ``PriorFn``): see :meth:`ConvergenceModel.job_prior`."""
        return self.convergence.job_prior(spec, init)

    def iterations(self, spec: JobSpec, init: InitChoice) -> float:
        """The job's realised iterations from ``init`` (the cluster state asks for a stored
        prompt's, then for the default prompt's of the same job draw: the second answer is kept
        from the first's generator instead of seeding another)."""
        if init.source_task is None:
            kept = self._default_iters.pop(spec.job_id, None)
            if kept is not None:
                return kept
        # (a draw that is not read costs nothing: the generator is the job's alone)
        normals = seeded_normals([self.seed, zlib.crc32(spec.job_id.encode())], 2, 1.0)
        iters, default = self.convergence.realized_from_normals(
            float(spec.iterations), init.source_task, spec.task, normals.tolist()
        )
        if init.source_task is not None:
            self._default_iters[spec.job_id] = default
        return iters

    def readings(self, spec: JobSpec, total: float, done: float) -> tuple[float, float] | None:
        """The simulated accuracy reading of a job with ``total`` true iterations after
        ``done``: held-out evaluations every ``spec.iterations / evals_per_job`` iterations;
        the last one, after k iterations, reads the fraction of the way to the target accuracy
        as ``(k / total) ** p x exp(p x e)``, e ~ N(0, obs_sigma^2) (drawn once per job and
        evaluation, seeded by the run seed and the job id), with ``p`` and ``obs_sigma`` the
        estimator's, so that a total read off it is off by a factor ``exp(-e)``. Returns
        (fraction, k), or None before the first evaluation, after the target, or when
        ``evals_per_job`` is 0 (no readings)."""
        if self.evals_per_job <= 0:
            return None
        every = max(1.0, spec.iterations / self.evals_per_job)
        k = math.floor(done / every)
        at = k * every
        if k < 1 or at >= total:
            return None
        job_id = spec.job_id
        hit = self._last.get(job_id)
        if hit is not None and hit[0] == k and hit[1] == total:
            return hit[2]
        e = self._noise_of(spec, k, math.ceil(total / every) - 1)
        p = self.estimator.curve_power
        got = min(READING_CAP, (at / total) ** p * math.exp(p * e)), at
        self._last[job_id] = (k, total, got)
        return got

    def _noise_of(self, spec: JobSpec, k: int, last: int) -> float:
        """The noise e of the job's evaluation ``k``: the first ``normal(0, obs_sigma)`` draw of
        the generator seeded by (run seed, 7, crc32 of the job id, k). Drawn for ``k`` and the
        job's later evaluations up to ``last`` together (at most ``_NOISE_BATCH``): a job asks
        for its evaluations in order, and a draw does not depend on which others are made."""
        got = self._noise.get(spec.job_id)
        if got is not None and 0 <= k - got[0] < len(got[1]):
            return got[1][k - got[0]]
        ks = list(range(k, max(k, min(last, k + _NOISE_BATCH - 1)) + 1))
        crc = zlib.crc32(spec.job_id.encode())
        noise = first_normals([self.seed, 7, crc], ks, self.estimator.obs_sigma)
        self._noise[spec.job_id] = (k, noise)
        return noise[0]

    def readings_until(self, spec: JobSpec, done: float) -> float:
        """A count of iterations up to which (exclusive) ``readings`` of ``spec`` answers as
        after ``done``: just short of its next evaluation (inf without readings)."""
        if self.evals_per_job <= 0:
            return math.inf
        every = max(1.0, spec.iterations / self.evals_per_job)
        # short by a relative 1e-12: ``floor(d / every)`` must not round up to the next k below it
        return (math.floor(done / every) + 1) * every * (1.0 - 1e-12)

    def add_finished(self, spec: JobSpec) -> None:
        """Add a finished job's tuned prompt to the bank (online growth), at the next read of
        ``index``: the additions, each with its own seeded noise, happen in the same order and
        before the same lookups as if they were made now."""
        # a finished job reads no more accuracies (were it asked, the same draws would be made)
        self._noise.pop(spec.job_id, None)
        self._last.pop(spec.job_id, None)
        self._default_iters.pop(spec.job_id, None)
        if self.online:
            self._pending.append(spec)
