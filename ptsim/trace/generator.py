"""The workload generator (DESIGN.md section 5): bursty per-minute arrivals, Poisson within
each minute, at a target offered load on a cluster of a given size.

Two workloads, chosen by ``WorkloadSpec.arrivals`` and ``WorkloadSpec.lengths``:

- the default (``WorkloadSpec()``): arrivals from a random log-normal AR(1) per-minute rate
  (``arrivals="modulated"``) and job lengths drawn as ideal run times from a capped log-normal
  distribution (``lengths="lognormal"``), set to match real 6-hour windows of an LLM
  development cluster (docs/traces.md section 2 gives the statistics and their source);
- the earlier short-job workload (``WorkloadSpec.short()``): arrivals from the fixed
  synthetic arrival shape (``arrivals="shape"``) and uniform iterations 200-1800
  (``lengths="iterations"``), kept unchanged for comparison.

Offered load = expected GPU-seconds demanded per second / number of GPUs, where a job demands
its ideal run time (iterations x step time on its requested GPUs at its batch) x its GPU count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ptsim.core.profiles import ProfileSet
from ptsim.core.types import JobSpec
from ptsim.trace.arrival_shape import modulated_rate, read_shape, synthesize_shape

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
MAX_JOBS = 10_000_000
"""Most jobs a workload may be expected to have (rate x duration): 100 times the largest day
the benchmarks run; more would exhaust memory before a run could start."""
ARRIVALS = ("modulated", "shape")
LENGTHS = ("lognormal", "iterations")
_UNUSED_BY_ARRIVALS = {
    "modulated": ("shape_path", "shape_offset_min"),
    "shape": ("rate_phi", "rate_sigma"),
}
_UNUSED_BY_LENGTHS = {
    "lognormal": ("iterations_min", "iterations_max"),
    "iterations": ("length_median_s", "length_sigma", "length_cap_s"),
}


@dataclass(frozen=True)
class WorkloadSpec:
    """What the generator draws from. Defaults follow DESIGN.md section 5 (docs/traces.md).

    - ``duration_s``: length of the arrival window (default 6 h, the real windows' length;
      ``short()``: 1200 s, the end-to-end figure's window before it moved to 1 h).
    - ``load``: target offered load (see the module docstring), e.g. 0.3, 0.5, 0.7.
    - ``models``/``model_weights``: LLMs and their share of jobs (the weights are our
      assumption; the paper does not give a mix). ``tasks``: drawn uniformly.
    - ``lengths``: ``"lognormal"`` (default): a job's ideal run time on its requested GPUs is
      ``min(length_cap_s, length_median_s x exp(length_sigma x N(0, 1)))`` seconds, turned into
      iterations of its model's step time; ``"iterations"``: iterations to target are uniform
      integers in ``iterations_min``..``iterations_max``, inclusive.
    - ``deadline_ratios``: deadline = arrival + ratio x ideal run time, ratio drawn uniformly.
    - ``multi_gpu_fraction``: share of jobs that ask for more than one GPU; they ask for one
      of ``multi_gpu_counts`` (uniformly). Global batch = ``per_gpu_batch`` x GPUs asked for.
    - ``min_gpus``/``max_gpus``: the GPU range every job may use.
    - ``arrivals``: ``"modulated"`` (default): each run draws its own per-minute rate,
      ``exp`` of an AR(1) log rate with autocorrelation ``rate_phi`` and standard deviation
      ``rate_sigma`` (``arrival_shape.modulated_rate``); ``"shape"``: the rate follows a fixed
      per-minute shape:
    - ``shape_path``: a ``minute,intensity`` CSV; ``None`` uses the default synthetic shape
      (the same series as traces/arrival_shape.csv).
    - ``shape_offset_min``: first minute of the window taken from the shape (wrapping around
      its end); ``None`` takes the busiest window.

    A field that the chosen ``arrivals``/``lengths`` does not use must keep its default: a
    changed value there is refused rather than ignored.
    """

    duration_s: float = 21600.0
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
    arrivals: str = "modulated"
    rate_phi: float = 0.7
    rate_sigma: float = 1.0
    lengths: str = "lognormal"
    length_median_s: float = 690.0
    length_sigma: float = 1.0
    length_cap_s: float = 1800.0

    @classmethod
    def short(cls, **changes: Any) -> WorkloadSpec:
        """The earlier short-job workload (``conf/workload/short.yaml``): the fixed synthetic
        arrival shape and uniform iterations, 20 minutes at load 0.5."""
        base: dict[str, Any] = {"duration_s": 1200.0, "arrivals": "shape", "lengths": "iterations"}
        return cls(**{**base, **changes})

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
            raise ValueError(
                f"need 1 <= min_gpus <= max_gpus and per_gpu_batch >= 1; got min_gpus "
                f"{self.min_gpus}, max_gpus {self.max_gpus}, per_gpu_batch {self.per_gpu_batch}"
            )
        if self.shape_offset_min is not None and self.shape_offset_min < 0:
            raise ValueError("shape_offset_min must be >= 0")
        if self.arrivals not in ARRIVALS or self.lengths not in LENGTHS:
            raise ValueError(
                f"arrivals must be one of {', '.join(ARRIVALS)} and lengths one of "
                f"{', '.join(LENGTHS)}; got {self.arrivals!r}, {self.lengths!r}"
            )
        if not 0 <= self.rate_phi < 1 or self.rate_sigma < 0:
            raise ValueError("need 0 <= rate_phi < 1 and rate_sigma >= 0")
        if not (self.length_median_s > 0 and self.length_sigma >= 0 and self.length_cap_s > 0):
            raise ValueError("need length_median_s > 0, length_sigma >= 0, length_cap_s > 0")
        unused = [
            name
            for name in self.unused_fields()
            if getattr(self, name) != WorkloadSpec.__dataclass_fields__[name].default
        ]
        if unused:
            raise ValueError(
                f"not used with arrivals={self.arrivals}, lengths={self.lengths}: "
                f"{', '.join(unused)} (keep the default, or choose other arrivals/lengths)"
            )
        counts = (1, *self.multi_gpu_counts)
        if not all(self.min_gpus <= g <= self.max_gpus for g in counts):
            raise ValueError("1 and every multi_gpu_counts value must be in [min_gpus, max_gpus]")

    def unused_fields(self) -> tuple[str, ...]:
        """The fields that the chosen ``arrivals`` and ``lengths`` do not use."""
        return _UNUSED_BY_ARRIVALS[self.arrivals] + _UNUSED_BY_LENGTHS[self.lengths]

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


def mean_length(cfg: WorkloadSpec) -> float:
    """Expected ideal run time of a job with ``lengths="lognormal"``: the mean of
    ``min(cap, median x exp(sigma x Z))``, Z standard normal (closed form)."""
    mu, sig, cap = math.log(cfg.length_median_s), cfg.length_sigma, cfg.length_cap_s
    if sig == 0:
        return min(cap, cfg.length_median_s)
    z = (math.log(cap) - mu) / sig
    below = math.exp(mu + sig * sig / 2) * _phi(z - sig)  # E[X; X < cap]
    return below + cap * (1.0 - _phi(z))


def _phi(x: float) -> float:
    """Standard normal distribution function."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def mean_demand(cfg: WorkloadSpec, profiles: ProfileSet) -> float:
    """Expected GPU-seconds one generated job demands (ideal run time x GPUs)."""
    counts, gpu_p = cfg.gpu_choices()
    if cfg.lengths == "lognormal":  # run time drawn in seconds: independent of the model
        return mean_length(cfg) * float(np.dot(counts, gpu_p))
    mean_iters = (cfg.iterations_min + cfg.iterations_max) / 2.0
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

    All randomness comes from ``rng``: the same seed gives the same jobs. More than
    ``MAX_JOBS`` expected jobs is a ``ValueError``, raised before anything is drawn.
    """
    if num_gpus < 1:
        raise ValueError("num_gpus must be >= 1")
    for m in cfg.models:
        profiles.model(m)  # unknown models fail here, naming the known ones
    rate = cfg.load * num_gpus / mean_demand(cfg, profiles)  # jobs per second
    expected = rate * cfg.duration_s
    if not expected <= MAX_JOBS:
        raise ValueError(
            f"about {expected:.3g} jobs would arrive (load {cfg.load:g} on {num_gpus} GPUs over "
            f"{cfg.duration_s:g} s); at most {MAX_JOBS:,} are generated"
        )
    minutes = math.ceil(cfg.duration_s / 60.0)
    starts = 60.0 * np.arange(minutes)
    lengths = np.minimum(starts + 60.0, cfg.duration_s) - starts
    if cfg.arrivals == "modulated":
        w = modulated_rate(rng, minutes, cfg.rate_phi, cfg.rate_sigma)
    else:
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
    lognormal = cfg.lengths == "lognormal"
    if lognormal:
        draws = cfg.length_median_s * np.exp(cfg.length_sigma * rng.standard_normal(n))
        run_s = np.minimum(draws, cfg.length_cap_s)
    else:
        iters = rng.integers(cfg.iterations_min, cfg.iterations_max + 1, size=n)
    ratios = rng.choice(np.asarray(cfg.deadline_ratios, dtype=np.float64), size=n)
    gpu_counts, gpu_p = cfg.gpu_choices()
    gpus = np.asarray(gpu_counts)[rng.choice(len(gpu_counts), size=n, p=gpu_p)]
    jobs = []
    for i in range(n):
        model, g = cfg.models[model_idx[i]], int(gpus[i])
        batch = cfg.per_gpu_batch * g
        step = profiles.step_time(model, g, batch)
        it = max(1, round(float(run_s[i]) / step)) if lognormal else int(iters[i])
        arrival = float(arrivals[i])
        ideal = it * step
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


def workload_stats(
    jobs: Sequence[JobSpec], profiles: ProfileSet, num_gpus: int, duration_s: float
) -> dict[str, float]:
    """The statistics docs/traces.md compares with real clusters: jobs per minute, the
    coefficient of variation and peak-to-mean ratio of per-minute arrival counts over the
    ``duration_s`` window, the share of one-GPU jobs, the median and 90th percentile of the
    ideal run time (``ideal_s``, on the requested GPUs), and the realised offered load."""
    minutes = math.ceil(duration_s / 60.0)
    counts = np.bincount([int(j.arrival // 60.0) for j in jobs], minlength=minutes)[:minutes]
    ideal = np.array([ideal_run_time(profiles, j) for j in jobs])
    mean = float(counts.mean())
    return {
        "jobs": float(len(jobs)),
        "jobs_per_min": mean,
        "count_cv": float(counts.std() / mean) if mean else math.nan,
        "peak_to_mean": float(counts.max() / mean) if mean else math.nan,
        "one_gpu_share": float(np.mean([j.num_gpus == 1 for j in jobs])),
        "median_ideal_s": float(np.median(ideal)),
        "p90_ideal_s": float(np.percentile(ideal, 90)),
        "offered_load": offered_load(jobs, profiles, num_gpus, duration_s),
    }
