"""Profile tables: step time by model x global batch x GPU count, cold-start and evaluation time
per model, and the driver mechanics (hand-over and reconfiguration pauses).

Tables follow ElasticFlow's throughput layout: one row per global batch size, one column per GPU
count, each cell in iterations per second (NaN where not measured). Loading them from files is the
drivers' job (``ptsim.profiles_io``); this module only holds them and answers queries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


class UnknownName(KeyError):
    """A name (model, policy, layout...) that is not known; the message lists what exists."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind, self.name, self.known = kind, name, tuple(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(self.known))}")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ThroughputTable:
    """Iterations per second of one model by global batch size (rows) and GPU count (columns).

    Queries between measured points interpolate linearly in samples per second; GPU counts
    beyond the last measured column get no further speed-up; batches outside the measured rows
    keep the nearest row's samples per second.
    """

    batches: tuple[int, ...]
    gpu_counts: tuple[int, ...]
    iters_per_s: npt.NDArray[np.float64]  # shape (len(batches), len(gpu_counts))
    _cache: dict[tuple[int, int], float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        arr = np.asarray(self.iters_per_s, dtype=np.float64)
        if arr.shape != (len(self.batches), len(self.gpu_counts)):
            raise ValueError(
                f"throughput table shape {arr.shape} != ({len(self.batches)}, "
                f"{len(self.gpu_counts)})"
            )
        if list(self.batches) != sorted(set(self.batches)) or not self.batches:
            raise ValueError("throughput table batches must be distinct and ascending")
        if list(self.gpu_counts) != sorted(set(self.gpu_counts)) or not self.gpu_counts:
            raise ValueError("throughput table GPU counts must be distinct and ascending")
        if self.gpu_counts[0] != 1:
            raise ValueError("throughput table must have a 1-GPU column")
        if np.any(arr[~np.isnan(arr)] <= 0):
            raise ValueError("throughput table cells must be > 0 (or empty)")
        if np.any(np.isnan(arr[:, 0])):
            raise ValueError("throughput table needs a value for 1 GPU in every row")
        object.__setattr__(self, "iters_per_s", arr)

    def _samples_per_s_row(self, row: int, gpus: int) -> float:
        vals = self.iters_per_s[row] * self.batches[row]
        ok = ~np.isnan(vals)
        counts = np.asarray(self.gpu_counts, dtype=np.float64)[ok]
        return float(np.interp(gpus, counts, vals[ok]))  # flat beyond the last column

    def iters_per_second(self, gpus: int, batch: int) -> float:
        """Iterations per second on ``gpus`` GPUs at global batch ``batch``."""
        key = (gpus, batch)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if gpus < 1 or batch < 1:
            raise ValueError(f"need gpus >= 1 and batch >= 1, got {gpus}, {batch}")
        rows = [self._samples_per_s_row(r, gpus) for r in range(len(self.batches))]
        sps = float(np.interp(batch, np.asarray(self.batches, dtype=np.float64), rows))
        value = sps / batch
        self._cache[key] = value
        return value


@dataclass(frozen=True)
class ModelProfile:
    """Everything the scheduler knows about one model on one kind of GPU.

    ``cold_start_s``: bring a free GPU into service (container + weight load + runtime init).
    ``reload_s``: swap the model on a GPU that already runs the tuning runtime (weights only).
    ``eval_s``: one Prompt Bank score assessment (a short evaluation on the new task's data).
    ``heldout_eval_s``: one held-out evaluation of a running job (charged every
    ``Mechanics.eval_every`` steps and once before its first step); ``checkpoint_s``: one
    checkpoint write (charged every ``Mechanics.checkpoint_every`` steps). Both default to 0:
    not modelled.

    Contention (workers that share a machine, e.g. CPU slots): ``contended`` is the step-rate
    table measured while every other worker of the node trains a job of its own, and
    ``contended_heldout_eval_s`` the evaluation then; ``throughput`` and ``heldout_eval_s`` are
    then measured with the other workers idle. ``None``: no contention (GPUs).

    Screened evaluations: ``heldout_eval_s`` is an evaluation on a screening subset of the
    held-out data; ``full_eval_s`` the full held-out evaluation that follows a screen within
    ``Mechanics.full_eval_margin`` of the target (and always the one that meets it), and
    ``contended_full_eval_s`` that while every other worker of the node trains. 0 / ``None``:
    not charged (every evaluation is its screen).

    Driver loop: ``loop_overhead_s`` is what a driver's own work adds to every training step
    of a job (``ptexec profile`` measures the executor's loop: the median interval between
    consecutive steps through it minus the back-to-back step); ``contended_loop_overhead_s``
    that while every other worker of the node trains. 0 / ``None``: not charged.
    """

    name: str
    params: float
    throughput: ThroughputTable
    cold_start_s: float
    reload_s: float
    eval_s: float
    heldout_eval_s: float = 0.0
    checkpoint_s: float = 0.0
    contended: ThroughputTable | None = None
    contended_heldout_eval_s: float | None = None
    full_eval_s: float = 0.0
    contended_full_eval_s: float | None = None
    loop_overhead_s: float = 0.0
    contended_loop_overhead_s: float | None = None

    def __post_init__(self) -> None:
        for f in (
            "cold_start_s",
            "reload_s",
            "eval_s",
            "heldout_eval_s",
            "checkpoint_s",
            "full_eval_s",
            "loop_overhead_s",
        ):
            if getattr(self, f) < 0:
                raise ValueError(f"model {self.name}: {f} must be >= 0")
        for f in ("contended_heldout_eval_s", "contended_full_eval_s", "contended_loop_overhead_s"):
            value = getattr(self, f)
            if value is not None and value < 0:
                raise ValueError(f"model {self.name}: {f} must be >= 0")


@dataclass(frozen=True)
class Mechanics:
    """Driver mechanics charged on top of training time, in seconds.

    - ``handover_s``: a warm GPU (model loaded) joins a job: the prompt hand-over.
    - ``reconfig_s`` + ``reconfig_per_level_s`` x (log2 n + 1): pause when a job's GPU set changes
      while it runs (ElasticFlow's restart model is ``reconfig_s=0, reconfig_per_level_s=2``).
    - ``cold_start_scale``: multiplies every model's cold-start and reload time (sensitivity).
    - ``start_partial``: a job trains on the GPUs that are ready while others still load; when
      False it waits until every GPU it holds is ready.
    - ``eval_every``: a running job evaluates on its held-out data every this many steps and
      once before its first step, each costing its model's ``heldout_eval_s``; 0: not modelled.
    - ``checkpoint_every``: a running job writes a checkpoint every this many steps, each
      costing its model's ``checkpoint_s``; 0: not modelled.
    - ``full_eval_margin``: screened evaluations (a model with ``full_eval_s`` > 0, and
      ``eval_every`` > 0): an evaluation whose accuracy reading (the fraction of the way from
      the job's initial held-out accuracy to its target, ``ClusterState``'s readings) is at
      least ``1 - full_eval_margin`` also runs the full evaluation (``full_eval_s``), as does
      the evaluation that meets the target; 0: only that last one.

    Evaluations and checkpoints are charged as a per-step overhead (``ProfileSet.step_overhead``,
    their cost spread evenly over the steps between them), the evaluation before the first step
    as part of the first start's pause (``ProfileSet.start_overhead``); so is a model's
    ``loop_overhead_s`` (every step, whatever the cadences).
    """

    handover_s: float = 0.5
    reconfig_s: float = 2.0
    reconfig_per_level_s: float = 0.0
    cold_start_scale: float = 1.0
    start_partial: bool = True
    eval_every: int = 0
    checkpoint_every: int = 0
    full_eval_margin: float = 0.0

    def __post_init__(self) -> None:
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("mechanics eval_every and checkpoint_every must be >= 0")
        if not 0.0 <= self.full_eval_margin <= 1.0:
            raise ValueError("mechanics full_eval_margin must be in [0, 1]")

    def reconfig_pause(self, gpus: int) -> float:
        """Pause of a running job whose GPU set changes to ``gpus`` GPUs."""
        if gpus <= 0:
            return 0.0
        return self.reconfig_s + self.reconfig_per_level_s * (math.log2(gpus) + 1.0)


def _between(idle: float, contended: float | None, busy_share: float) -> float:
    """A duration a ``busy_share`` of the way from its idle to its contended value (the idle
    value when there is no contended one); the same arithmetic as ``train_step_time``'s."""
    if busy_share > 0.0 and contended is not None:
        idle += busy_share * (contended - idle)
    return idle


@dataclass(frozen=True)
class ProfileSet:
    """The models a run knows, by name, plus the mechanics."""

    models: Mapping[str, ModelProfile]
    mechanics: Mechanics = Mechanics()
    name: str = "profiles"

    def model(self, name: str) -> ModelProfile:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownName("model", name, list(self.models)) from None

    @property
    def contention(self) -> bool:
        """Whether some model has a contended table (step times depend on whether the other
        GPUs of the node train: ``busy_share`` below)."""
        return any(m.contended is not None for m in self.models.values())

    def train_step_time(self, model: str, gpus: int, batch: int, busy_share: float = 0.0) -> float:
        """Seconds of one training step (the throughput table alone, no overheads). With a
        contended table, ``busy_share`` (the fraction of the node's other GPUs that train
        another job) interpolates linearly between the idle (0) and the contended (1) table,
        the two points measured."""
        m = self.model(model)
        t = 1.0 / m.throughput.iters_per_second(gpus, batch)
        if busy_share > 0.0 and m.contended is not None:
            t += busy_share * (1.0 / m.contended.iters_per_second(gpus, batch) - t)
        return t

    def step_overhead(self, model: str, busy_share: float = 0.0) -> float:
        """Seconds added to every step for held-out evaluations and checkpoints (their cost
        spread over the steps between them; 0 when the mechanics model neither) and for the
        driver's loop (``loop_overhead_time``); the evaluation and the loop are contended like
        a step (``train_step_time``)."""
        m, mech = self.model(model), self.mechanics
        over = self.loop_overhead_time(model, busy_share)
        if mech.eval_every > 0:
            over += self.heldout_eval_time(model, busy_share) / mech.eval_every
        if mech.checkpoint_every > 0:
            over += m.checkpoint_s / mech.checkpoint_every
        return over

    def loop_overhead_time(self, model: str, busy_share: float = 0.0) -> float:
        """Seconds the driver's loop adds to every training step (``loop_overhead_s``, 0 when
        the profile has none), contended like a step (``train_step_time``)."""
        m = self.model(model)
        return _between(m.loop_overhead_s, m.contended_loop_overhead_s, busy_share)

    def heldout_eval_time(self, model: str, busy_share: float = 0.0) -> float:
        """Seconds of one held-out evaluation, contended like a step (``train_step_time``)."""
        m = self.model(model)
        return _between(m.heldout_eval_s, m.contended_heldout_eval_s, busy_share)

    def full_eval_time(self, model: str, busy_share: float = 0.0) -> float:
        """Seconds of the full held-out evaluation after a screen near the target, contended
        like a step (``train_step_time``); 0 when evaluations are not modelled
        (``Mechanics.eval_every`` 0) or the model has no ``full_eval_s``."""
        m = self.model(model)
        if self.mechanics.eval_every <= 0 or m.full_eval_s <= 0.0:
            return 0.0
        return _between(m.full_eval_s, m.contended_full_eval_s, busy_share)

    def start_overhead(self, model: str) -> float:
        """Seconds a job spends before its first step besides the hand-over: the held-out
        evaluation at step 0 when evaluations are modelled."""
        return self.model(model).heldout_eval_s if self.mechanics.eval_every > 0 else 0.0

    def step_time(self, model: str, gpus: int, batch: int) -> float:
        """Seconds per iteration of ``model`` on ``gpus`` GPUs at global batch ``batch``,
        including the per-step overhead of evaluations and checkpoints."""
        return self.train_step_time(model, gpus, batch) + self.step_overhead(model)

    def iters_per_second(self, model: str, gpus: int, batch: int, busy_share: float = 0.0) -> float:
        """Iterations per second, overheads included (the table's value when there are none);
        ``busy_share``: contention (``train_step_time``)."""
        if busy_share > 0.0:
            return 1.0 / (
                self.train_step_time(model, gpus, batch, busy_share)
                + self.step_overhead(model, busy_share)
            )
        rate = self.model(model).throughput.iters_per_second(gpus, batch)
        over = self.step_overhead(model)
        return rate if over == 0.0 else 1.0 / (1.0 / rate + over)

    def cold_start(self, model: str) -> float:
        return self.model(model).cold_start_s * self.mechanics.cold_start_scale

    def reload(self, model: str) -> float:
        return self.model(model).reload_s * self.mechanics.cold_start_scale

    def eval_time(self, model: str) -> float:
        return self.model(model).eval_s

    def run_time(self, model: str, gpus: int, batch: int, iters: float) -> float:
        """Training time of ``iters`` iterations, no pauses."""
        return iters * self.step_time(model, gpus, batch)


def cold_start_estimate(
    params: float,
    *,
    container_s: float,
    bandwidth_gb_s: float,
    init_s: float,
    bytes_per_param: float = 2.0,
) -> float:
    """Cold start = container start + weights (bytes_per_param x params) / bandwidth + init."""
    if bandwidth_gb_s <= 0:
        raise ValueError("bandwidth_gb_s must be > 0")
    return container_s + bytes_per_param * params / (bandwidth_gb_s * 1e9) + init_s
