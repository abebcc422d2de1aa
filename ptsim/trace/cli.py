"""``ptsim-trace``: convert, validate and generate traces, and regenerate the arrival shape."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ptsim.core.profiles import ProfileSet, UnknownName
from ptsim.trace.arrival_shape import (
    ShapeSpec,
    shape_from_arrivals,
    shape_stats,
    synthesize_shape,
    synthetic_provenance,
    write_shape,
)
from ptsim.trace.converters import (
    TIME_UNITS,
    TimeUnit,
    convert_elasticflow,
    convert_generic,
    convert_philly,
)
from ptsim.trace.generator import WorkloadSpec, generate_workload, offered_load
from ptsim.trace.loader import TraceWarning, load_trace, write_trace


class CliError(Exception):
    """A problem reported to the user as one line, exit status 2."""


def _load_profiles(name: str) -> ProfileSet:
    """The profile set ``name`` (a shipped name such as ``a100``, or a path)."""
    try:
        from ptsim.profiles_io import load_profiles
    except ModuleNotFoundError as e:
        if e.name != "ptsim.profiles_io":
            raise
        raise CliError(f"cannot load profiles {name!r}: ptsim.profiles_io is missing") from None
    profiles: ProfileSet = load_profiles(name)
    return profiles


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None


def _model_map(text: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in text.split(",") if p]
    if not pairs or any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL[,NAME=MODEL...]: {text!r}")
    return dict((k, v) for k, v in pairs)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ptsim-trace", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("convert", help="convert a public trace to the canonical format")
    c.add_argument(
        "--from", dest="fmt", required=True, choices=("elasticflow", "generic", "philly")
    )
    c.add_argument("src", metavar="IN")
    c.add_argument("out", metavar="OUT", help="canonical trace to write (.csv or .parquet)")
    c.add_argument("--profile-model", help="give every job this model (and use its profile)")
    c.add_argument("--model-map", type=_model_map, help="elasticflow: NAME=MODEL,... renaming")
    c.add_argument("--profiles", default="a100", help="profile set (generic, philly)")
    c.add_argument("--ratios", type=_floats, help="deadline ratios, e.g. 0.5,1.0,1.5")
    c.add_argument(
        "--deadline",
        choices=("absolute", "relative"),
        default="absolute",
        help="elasticflow: how its deadline column is read",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--time-unit",
        choices=tuple(TIME_UNITS),
        help="unit of the source's numeric submission times (and elasticflow deadlines); "
        "default s; not for philly",
    )
    c.add_argument(
        "--duration-unit",
        choices=tuple(TIME_UNITS),
        help="unit of the source's duration column (default s; not for philly)",
    )
    c.add_argument(
        "--gpus",
        type=int,
        default=32,
        help="cluster size for the plausibility check of the offered load (default 32)",
    )
    c.add_argument(
        "--max-gpus",
        type=int,
        default=WorkloadSpec.max_gpus,
        help="most GPUs an elastic policy may give a job (ElasticFlow allows 64)",
    )

    v = sub.add_parser(
        "validate",
        help="check a canonical trace as `ptsim workload.trace=PATH` does",
        description="Check a canonical trace with the checks ptsim applies when it loads one: "
        "the schema, models against a profile set, tasks against the task space and (with "
        "--gpus) every job fitting the cluster.",
    )
    v.add_argument("path", metavar="PATH")
    v.add_argument("--models", help="comma-separated known model names (instead of --profiles)")
    v.add_argument("--profiles", default="a100", help="profile set naming the known models")
    v.add_argument("--tasks", help="comma-separated known task names (default: the task space)")
    v.add_argument("--gpus", type=int, help="cluster size: no job may ask for more GPUs")

    g = sub.add_parser("generate", help="generate the default workload")
    g.add_argument("out", metavar="OUT")
    g.add_argument(
        "--workload",
        choices=("default", "short"),
        default="default",
        help="default, or the earlier short-job workload (docs/traces.md)",
    )
    g.add_argument("--load", type=float, default=WorkloadSpec.load)
    g.add_argument("--duration", type=float, help="seconds (default: 21600; short: 1200)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--gpus", type=int, default=32)
    g.add_argument("--profiles", default="a100")
    g.add_argument("--shape", help="short: minute,intensity CSV (default: the synthetic shape)")
    g.add_argument("--offset", type=int, help="short: first minute of the shape (default: busiest)")

    s = sub.add_parser("shape", help="write the per-minute arrival shape")
    s.add_argument("out", metavar="OUT")
    s.add_argument("--from-trace", help="take the shape from this canonical trace instead")
    s.add_argument("--seed", type=int, default=ShapeSpec.seed)
    s.add_argument("--minutes", type=int, default=ShapeSpec.minutes)
    return ap


def _convert(a: argparse.Namespace) -> str:
    cfg = WorkloadSpec(max_gpus=a.max_gpus)
    if a.ratios:
        cfg = WorkloadSpec(deadline_ratios=a.ratios, max_gpus=a.max_gpus)
    if a.gpus < 1:
        raise CliError(f"--gpus must be >= 1, got {a.gpus}")
    rng = np.random.default_rng(a.seed)
    unit: TimeUnit = "s" if a.time_unit is None else a.time_unit
    dur_unit: TimeUnit = "s" if a.duration_unit is None else a.duration_unit
    if a.fmt == "elasticflow":
        res = convert_elasticflow(
            a.src,
            cfg,
            rng,
            model=a.profile_model or a.model_map,
            deadline=a.deadline,
            time_unit=unit,
            duration_unit=dur_unit,
        )
    elif a.fmt == "generic":
        profiles = _load_profiles(a.profiles)
        res = convert_generic(
            a.src,
            cfg,
            profiles,
            rng,
            model=a.profile_model,
            time_unit=unit,
            duration_unit=dur_unit,
        )
    else:
        if a.time_unit is not None or a.duration_unit is not None:
            raise CliError("--time-unit/--duration-unit do not apply to philly: it has clock times")
        res = convert_philly(a.src, cfg, _load_profiles(a.profiles), rng, model=a.profile_model)
    warning = res.implausible(a.src, a.gpus)
    if warning:
        print(f"ptsim-trace: warning: {warning}", file=sys.stderr)
    write_trace(res.jobs, a.out)
    return f"wrote {a.out}: {res.summary()}"


def _names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _validate(a: argparse.Namespace) -> str:
    from ptsim.core.convergence import ConvergenceModel

    known = _names(a.models) if a.models else list(_load_profiles(a.profiles).models)
    tasks = _names(a.tasks) if a.tasks else ConvergenceModel.default().space.names
    if a.gpus is not None and a.gpus < 1:
        raise CliError(f"--gpus {a.gpus}: expected an integer >= 1")
    found: list[TraceWarning] = []
    jobs = load_trace(
        a.path, known_models=known, known_tasks=tasks, num_gpus=a.gpus, warn=found.append
    )
    for w in found[:10]:
        print(f"ptsim-trace: {w}", file=sys.stderr)
    if len(found) > 10:
        print(f"ptsim-trace: ... and {len(found) - 10} more warnings", file=sys.stderr)
    first, last = jobs[0].arrival, jobs[-1].arrival
    models = Counter(j.model for j in jobs)
    mix = ", ".join(f"{m} ({n})" for m, n in sorted(models.items()))
    return (
        f"{a.path}: {len(jobs)} job{'s' if len(jobs) > 1 else ''}, "
        f"arrivals {first:g}-{last:g} s (span {last - first:g} s), "
        f"last deadline {max(j.deadline for j in jobs):g} s; models: {mix}"
    )


def _generate(a: argparse.Namespace) -> str:
    make = WorkloadSpec.short if a.workload == "short" else WorkloadSpec
    changes = {"duration_s": a.duration, "shape_path": a.shape, "shape_offset_min": a.offset}
    cfg = make(load=a.load, **{k: v for k, v in changes.items() if v is not None})
    profiles = _load_profiles(a.profiles)
    jobs = generate_workload(cfg, profiles, a.gpus, np.random.default_rng(a.seed))
    if not jobs:
        raise CliError("no job arrived; raise --load or --duration")
    write_trace(jobs, a.out)
    load = offered_load(jobs, profiles, a.gpus, cfg.duration_s)
    return f"wrote {a.out}: {len(jobs)} jobs, offered load {load:.3f} (target {a.load:g})"


def _shape(a: argparse.Namespace) -> str:
    if a.from_trace:
        intensity = shape_from_arrivals([j.arrival for j in load_trace(a.from_trace)])
        write_shape(intensity, a.out, [f"Per-minute arrival counts of {a.from_trace}."])
    else:
        spec = ShapeSpec(minutes=a.minutes, seed=a.seed)
        intensity = synthesize_shape(spec)
        write_shape(intensity, a.out, synthetic_provenance(spec, a.out))
    st = shape_stats(intensity)
    return (
        f"wrote {a.out}: {int(st['minutes'])} minutes, cv {st['cv']:.3f}, "
        f"peak/mean {st['peak_to_mean']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ptsim-trace``; returns the exit status (0 ok, 2 bad input)."""
    a = _parser().parse_args(argv)
    run = {"convert": _convert, "validate": _validate, "generate": _generate, "shape": _shape}
    try:
        print(run[a.cmd](a))
    except (CliError, ValueError, UnknownName) as e:
        print(f"ptsim-trace: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ptsim-trace: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
