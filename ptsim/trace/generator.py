"""The default workload generator (DESIGN.md section 5): bursty per-minute arrivals, Poisson
within each minute, at a target offered load on a cluster of a given size.

Offered load = expected GPU-seconds demanded per second / number of GPUs, where a job demands
its ideal run time (iterations x step time on its requested GPUs at its batch) x its GPU count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from ptsim.core.profiles import ProfileSet
from ptsim.core.types import JobSpec
from ptsim.trace.arrival_shape import read_shape, synthesize_shape

DEFAULT_MODELS = ("gpt2-base", "gpt2-large", "vicuna-7b")
DEFAULT_MODEL_WEIGHTS = (0.45, 0.35, 0.20)  # our assumption: the paper gives no mix
DEFAULT_TASKS = (
    "sst2",
    "imdb",
    "yelp",
    "mnli",
    "qnli",
    "rte",
    "boolq",
    "multirc",
    "copa",
    "agnews",
    "dbpedia",
    "trec",
)
DEFAULT_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass(frozen=True)
class WorkloadSpec:
    """What the generator draws from. Defaults follow DESIGN.md section 5.

    - ``duration_s``: length of the arrival window (1200 s: the end-to-end figure's 20 minutes).
    - ``load``: target offered load (see the module docstring), e.g. 0.3, 0.5, 0.7.
    - ``models``/``model_weights``: LLMs and their share of jobs (the weights are our
      assumption; the paper does not give a mix). ``tasks``: drawn uniformly.
    - ``iterations_min``/``iterations_max``: iterations to target, uniform integers, inclusive.
    - ``deadline_ratios``: deadline = arrival + ratio x ideal run time, ratio drawn uniformly.
    - ``multi_gpu_fraction``: share of jobs that ask for more than one GPU; they ask for one
      of ``multi_gpu_counts`` (uniformly). Global batch = ``per_gpu_batch`` x GPUs asked for.
    - ``min_gpus``/``max_gpus``: the GPU range every job may use.
    - ``shape_path``: a ``minute,intensity`` CSV; ``None`` uses the default synthetic shape
      (the same series as traces/arrival_shape.csv).
    - ``shape_offset_min``: first minute of the window taken from the shape (wrapping around
      its end); ``None`` takes the busiest window.
    """

    duration_s: float = 1200.0
    load: float = 0.5
    models: tuple[str, ...] = DEFAULT_MODELS
    model_weights: tuple[float, ...] = DEFAULT_MODEL_WEIGHTS
    tasks: tuple[str, ...] = DEFAULT_TASKS
    iterations_min: int = 200
    iterations_max: int = 1800
    deadline_ratios: tuple[float, ...] = DEFAULT_RATIOS
    multi_gpu_fraction: float = 0.02
    multi_gpu_counts: tuple[int, ...] = (2, 4, 8)
    per_gpu_batch: int = 16
    min_gpus: int = 1
    max_gpus: int = 8
    shape_path: str | None = None
    shape_offset_min: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # accept lists (e.g. from a config file) for tuple fields
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if self.duration_s <= 0 or self.load <= 0:
            raise ValueError("duration_s and load must be > 0")
        if not self.models or len(self.models) != len(self.model_weights):
            raise ValueError("models and model_weights must be non-empty and of equal length")
        if any(w < 0 for w in self.model_weights) or sum(self.model_weights) <= 0:
            raise ValueError("model_weights must be >= 0 with a positive sum")
        if not self.tasks or not self.deadline_ratios or min(self.deadline_ratios) < 0:
            raise ValueError("need tasks, and deadline_ratios that are >= 0")
        if not 1 <= self.iterations_min <= self.iterations_max:
            raise ValueError("need 1 <= iterations_min <= iterations_max")
        if not 0 <= self.multi_gpu_fraction <= 1:
            raise ValueError("multi_gpu_fraction must be in [0, 1]")
        if not 1 <= self.min_gpus <= self.max_gpus or self.per_gpu_batch < 1:
            raise ValueError("need 1 <= min_gpus <= max_gpus and per_gpu_batch >= 1")
        if self.shape_offset_min is not None and self.shape_offset_min < 0:
            raise ValueError("shape_offset_min must be >= 0")
        counts = (1, *self.multi_gpu_counts)
        if not all(self.min_gpus <= g <= self.max_gpus for g in counts):
            raise ValueError("1 and every multi_gpu_counts value must be in [min_gpus, max_gpus]")

    def gpu_choices(self) -> tuple[tuple[int, ...], npt.NDArray[np.float64]]:
        """GPU counts a job may ask for and their probabilities."""
        k = len(self.multi_gpu_counts)
        multi = [self.multi_gpu_fraction / k] * k if k else []
        probs = np.array([1.0 - (self.multi_gpu_fraction if k else 0.0), *multi])
        return (1, *self.multi_gpu_counts), probs


def model_probs(cfg: WorkloadSpec) -> npt.NDArray[np.float64]:
    """The model mix as probabilities."""
    w = np.asarray(cfg.model_weights, dtype=np.float64)
    return np.asarray(w / w.sum(), dtype=np.float64)


def ideal_run_time(profiles: ProfileSet, job: JobSpec) -> float:
    """Seconds the job trains on its requested GPUs, without pauses or cold starts."""
    return profiles.run_time(job.model, job.num_gpus, job.batch_size, job.iterations)


def mean_demand(cfg: WorkloadSpec, profiles: ProfileSet) -> float:
    """Expected GPU-seconds one generated job demands (ideal run time x GPUs)."""
    mean_iters = (cfg.iterations_min + cfg.iterations_max) / 2.0
    counts, gpu_p = cfg.gpu_choices()
    per_iter = sum(
        pm * pg * g * profiles.step_time(m, g, cfg.per_gpu_batch * g)
        for m, pm in zip(cfg.models, model_probs(cfg), strict=True)
        for g, pg in zip(counts, gpu_p, strict=True)
    )
    return float(mean_iters * per_iter)


def offered_load(
    jobs: Sequence[JobSpec], profiles: ProfileSet, num_gpus: int, duration_s: float
) -> float:
    """Realised offered load of a trace: GPU-seconds demanded / (duration x GPUs)."""
    demand = sum(ideal_run_time(profiles, j) * j.num_gpus for j in jobs)
    return demand / (duration_s * num_gpus)


def _window(cfg: WorkloadSpec, minutes: int) -> npt.NDArray[np.float64]:
    shape = read_shape(cfg.shape_path) if cfg.shape_path else synthesize_shape()
    n = len(shape)
    if cfg.shape_offset_min is None:
        reps = math.ceil((n + minutes - 1) / n)
        cyclic = np.tile(shape, reps)[: n + minutes - 1]
        sums = np.convolve(cyclic, np.ones(minutes), mode="valid")[:n]
        offset = int(np.argmax(sums))
    else:
        offset = cfg.shape_offset_min
    return np.asarray(shape[(offset + np.arange(minutes)) % n], dtype=np.float64)


def generate_workload(
    cfg: WorkloadSpec, profiles: ProfileSet, num_gpus: int, rng: np.random.Generator
) -> list[JobSpec]:
    """Jobs arriving over ``cfg.duration_s`` seconds at offered load ``cfg.load`` on
    ``num_gpus`` GPUs, sorted by arrival, with ids ``j000000``, ``j000001``, ...

    All randomness comes from ``rng``: the same seed gives the same jobs.
    """
    if num_gpus < 1:
        raise ValueError("num_gpus must be >= 1")
    for m in cfg.models:
        profiles.model(m)  # unknown models fail here, naming the known ones
    rate = cfg.load * num_gpus / mean_demand(cfg, profiles)  # jobs per second
    minutes = math.ceil(cfg.duration_s / 60.0)
    starts = 60.0 * np.arange(minutes)
    lengths = np.minimum(starts + 60.0, cfg.duration_s) - starts
    w = _window(cfg, minutes)
    if np.dot(w, lengths) <= 0:
        raise ValueError("the arrival shape's window has zero intensity throughout")
    w = w / (np.dot(w, lengths) / cfg.duration_s)  # time-weighted mean 1
    counts = rng.poisson(rate * w * lengths)
    arrivals = np.sort(
        np.repeat(starts, counts) + rng.random(counts.sum()) * np.repeat(lengths, counts)
    )
    n = len(arrivals)
    model_idx = rng.choice(len(cfg.models), size=n, p=model_probs(cfg))
    task_idx = rng.integers(0, len(cfg.tasks), size=n)
    iters = rng.integers(cfg.iterations_min, cfg.iterations_max + 1, size=n)
    ratios = rng.choice(np.asarray(cfg.deadline_ratios, dtype=np.float64), size=n)
    gpu_counts, gpu_p = cfg.gpu_choices()
    gpus = np.asarray(gpu_counts)[rng.choice(len(gpu_counts), size=n, p=gpu_p)]
    jobs = []
    for i in range(n):
        model, g, it = cfg.models[model_idx[i]], int(gpus[i]), int(iters[i])
        batch = cfg.per_gpu_batch * g
        arrival = float(arrivals[i])
        ideal = it * profiles.step_time(model, g, batch)
        jobs.append(
            JobSpec(
                job_id=f"j{i:06d}",
                arrival=arrival,
                model=model,
                task=cfg.tasks[task_idx[i]],
                deadline=arrival + float(ratios[i]) * ideal,
                batch_size=batch,
                iterations=it,
                num_gpus=g,
                min_gpus=cfg.min_gpus,
                max_gpus=cfg.max_gpus,
            )
        )
    return jobs
