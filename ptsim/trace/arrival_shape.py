"""Per-minute arrival shapes: relative arrival intensity by minute, mean 1.

The default shape is synthetic (no real cluster trace can be fetched here): a log-normal AR(1)
rate, times a daily cycle, times occasional decaying bursts. It is modelled on the burstiness
that published GPU-cluster traces (Helios, Philly) show, not fitted to them; docs/traces.md
gives its statistics. ``shape_from_arrivals`` turns a real trace into a shape instead.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ptsim.outcome import atomic_write
from ptsim.trace.cells import CellError, to_float, to_int
from ptsim.trace.loader import TraceError, read_text

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShapeSpec:
    """Parameters of the synthetic shape.

    - ``minutes``: length of the series (1440 = one day).
    - ``seed``: seed of the ``numpy.random.Generator`` that draws it.
    - ``ar_phi``: minute-to-minute autocorrelation of the log rate.
    - ``ar_sigma``: stationary standard deviation of the log rate.
    - ``diurnal_amplitude``: relative amplitude of the daily cosine; peak at ``diurnal_peak_min``.
    - ``burst_prob``: chance that a burst starts in a given minute.
    - ``burst_mean``: mean extra intensity when a burst starts (exponential), in base-rate units.
    - ``burst_decay``: fraction of a burst left one minute later.
    """

    minutes: int = 1440
    seed: int = 2603
    ar_phi: float = 0.8
    ar_sigma: float = 0.5
    diurnal_amplitude: float = 0.4
    diurnal_peak_min: int = 840
    burst_prob: float = 0.05
    burst_mean: float = 1.0
    burst_decay: float = 0.5

    def __post_init__(self) -> None:
        if self.minutes < 1:
            raise ValueError("minutes must be >= 1")
        if not 0 <= self.ar_phi < 1 or self.ar_sigma < 0:
            raise ValueError("need 0 <= ar_phi < 1 and ar_sigma >= 0")
        if not 0 <= self.diurnal_amplitude < 1:
            raise ValueError("diurnal_amplitude must be in [0, 1)")
        if not 0 <= self.burst_prob <= 1 or self.burst_mean < 0 or not 0 <= self.burst_decay < 1:
            raise ValueError("need burst_prob in [0, 1], burst_mean >= 0, burst_decay in [0, 1)")


def ar1(eps: FloatArray, phi: float, sigma: float) -> FloatArray:
    """A stationary AR(1) series with lag-one autocorrelation ``phi`` and standard deviation
    ``sigma``, driven by the standard normal draws ``eps`` (one per step)."""
    innov = sigma * math.sqrt(1.0 - phi**2)
    out = np.empty(len(eps))
    x = 0.0
    for t in range(len(eps)):
        x = sigma * eps[0] if t == 0 else phi * x + innov * eps[t]
        out[t] = x
    return out


def modulated_rate(rng: np.random.Generator, minutes: int, phi: float, sigma: float) -> FloatArray:
    """A random per-minute intensity, mean 1 over the ``minutes``: ``exp`` of a stationary
    AR(1) log rate (autocorrelation ``phi``, standard deviation ``sigma``), drawn from ``rng``
    (``minutes`` standard normals). Poisson counts at this intensity form a doubly stochastic
    (Cox) arrival process; docs/traces.md gives the parameters' origin."""
    w = np.exp(ar1(rng.standard_normal(minutes), phi, sigma))
    return np.asarray(w / w.mean(), dtype=np.float64)


def synthesize_shape(spec: ShapeSpec | None = None) -> FloatArray:
    """The synthetic per-minute intensity series of ``spec`` (default: ``ShapeSpec()``), mean 1."""
    spec = spec or ShapeSpec()
    rng = np.random.default_rng(spec.seed)
    n = spec.minutes
    eps = rng.standard_normal(n)
    starts = rng.random(n) < spec.burst_prob
    sizes = rng.exponential(spec.burst_mean, n) if spec.burst_mean > 0 else np.zeros(n)
    log_rate = ar1(eps, spec.ar_phi, spec.ar_sigma)
    burst = np.empty(n)
    b = 0.0
    for t in range(n):
        b = spec.burst_decay * b + (sizes[t] if starts[t] else 0.0)
        burst[t] = b
    minute = np.arange(n)
    daily = 1.0 + spec.diurnal_amplitude * np.cos(
        2 * np.pi * (minute - spec.diurnal_peak_min) / 1440.0
    )
    intensity = np.exp(log_rate) * daily * (1.0 + burst)
    return np.asarray(intensity / intensity.mean(), dtype=np.float64)


def shape_from_arrivals(arrivals_s: Sequence[float] | FloatArray) -> FloatArray:
    """Per-minute arrival counts of a trace (minute 0 holds the first arrival), mean 1."""
    t = np.asarray(arrivals_s, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no arrivals")
    minute = np.floor((t - t.min()) / 60.0).astype(np.int64)
    counts = np.bincount(minute).astype(np.float64)
    return np.asarray(counts / counts.mean(), dtype=np.float64)


def shape_stats(intensity: FloatArray, jobs_per_minute: float = 10.0) -> dict[str, float]:
    """Burstiness of a shape: coefficient of variation and peak-to-mean ratio of the
    intensity, and the expected CV of per-minute Poisson counts at ``jobs_per_minute`` on
    average (against 1/sqrt(jobs_per_minute) for a constant-rate Poisson process)."""
    w = np.asarray(intensity, dtype=np.float64)
    w = w / w.mean()
    c = jobs_per_minute
    return {
        "minutes": float(w.size),
        "cv": float(w.std()),
        "peak_to_mean": float(w.max()),
        "count_cv": float(math.sqrt(c + c * c * w.var()) / c),
        "poisson_cv": 1.0 / math.sqrt(c),
    }


def synthetic_provenance(spec: ShapeSpec, path: str | os.PathLike[str]) -> list[str]:
    """Header lines saying how a synthetic shape file was made and how to remake it."""
    return [
        "SYNTHETIC, not a real trace: made by ptsim.trace.arrival_shape.synthesize_shape,",
        "modelled on the burstiness of GPU-cluster traces (Helios, Philly); docs/traces.md.",
        "It is the generator's default shape (WorkloadSpec.shape_path = None).",
        f"Regenerate: ptsim-trace shape {Path(path).as_posix()}"
        + ("" if spec == ShapeSpec() else f" --seed {spec.seed} --minutes {spec.minutes}"),
        "Parameters: " + ", ".join(f"{k}={v}" for k, v in asdict(spec).items()),
    ]


def write_shape(
    intensity: FloatArray, path: str | os.PathLike[str], provenance: Sequence[str] = ()
) -> Path:
    """Write a shape as CSV (``minute,intensity``) under ``#`` comment lines: a title, the
    ``provenance`` lines, and the shape's statistics. Returns the path written."""
    p = Path(path)
    st = shape_stats(intensity)
    lines = [
        "Per-minute relative arrival intensity (mean 1) for ptsim.trace.generator.",
        *provenance,
        f"cv={st['cv']:.3f} peak_to_mean={st['peak_to_mean']:.2f} "
        f"count_cv_at_10_per_min={st['count_cv']:.3f} (Poisson: {st['poisson_cv']:.3f})",
    ]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            f.write("".join(f"# {line}\n" for line in lines))
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["minute", "intensity"])
            w.writerows((i, repr(float(x))) for i, x in enumerate(intensity))

    atomic_write(p, write)
    return p


def read_shape(path: str | os.PathLike[str]) -> FloatArray:
    """Read a ``minute,intensity`` CSV (``#`` lines are comments); returned with mean 1."""
    p = Path(path)
    try:
        rows = csv.reader(io.StringIO(read_text(p), newline=""))
        lines = [r for r in rows if r and not r[0].lstrip().startswith("#")]
    except csv.Error as e:
        raise TraceError(p, f"malformed CSV: {e}") from None
    if not lines or [h.strip() for h in lines[0]] != ["minute", "intensity"]:
        raise TraceError(p, "header must be exactly: minute,intensity")
    values = []
    for i, row in enumerate(lines[1:], start=1):
        if len(row) != 2:
            raise TraceError(p, f"{len(row)} fields, header has 2", row=i)
        try:
            minute = to_int(row[0])
        except CellError as e:
            raise TraceError(p, str(e), row=i, column="minute") from None
        if minute != i - 1:
            raise TraceError(p, f"expected minute {i - 1}, got {minute}", row=i, column="minute")
        try:
            x = to_float(row[1])
        except CellError as e:
            raise TraceError(p, str(e), row=i, column="intensity") from None
        if x < 0:
            raise TraceError(p, f"{x!r} is negative", row=i, column="intensity")
        values.append(x)
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or arr.sum() <= 0:
        raise TraceError(p, "no positive intensity")
    return np.asarray(arr / arr.mean(), dtype=np.float64)
