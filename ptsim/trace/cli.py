"""``ptsim-trace``: convert, validate and generate traces, and regenerate the arrival shape."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptsim.core.profiles import ProfileSet, UnknownName
from ptsim.runfolder import not_a_folder
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
from ptsim.trace.loader import EXTENSIONS, TraceWarning, load_trace, write_trace

SHAPE_EXTENSIONS = (".csv",)
"""What ``shape`` writes: a CSV with comment lines (``read_shape`` reads only that)."""
MAX_SHAPE_MINUTES = 1_000_000
"""Longest shape ``shape`` writes (about 694 days; 27 MB); ptsim's longest window,
``workload.duration_s`` = 1e7 s, is 166,667 minutes."""


class CliError(Exception):
    """A problem reported to the user as one line, exit status 2."""


def _flag_ranges() -> dict[str, tuple[Any, Any]]:
    """Each numeric flag's type and range (``ptsim.schema.Range``): those of the ptsim config
    key it stands for, so ``ptsim-trace`` accepts what ``ptsim`` does."""
    from ptsim.schema import RANGES, Range

    work, cluster = RANGES["workload"], RANGES["cluster"]
    largest_cluster = int((cluster["nodes"].le or 1) * (cluster["gpus_per_node"].le or 1))
    return {
        "--seed": (int, RANGES[""]["seed"]),
        "--gpus": (int, Range(ge=1, le=largest_cluster)),
        "--max-gpus": (int, work["max_gpus"]),
        "--ratios": (tuple[float, ...], work["deadline_ratios"]),
        "--load": (float, work["load"]),
        "--duration": (float, work["duration_s"]),
        "--offset": (int, work["shape_offset_min"]),
        "--minutes": (int, Range(ge=1, le=MAX_SHAPE_MINUTES)),
    }


def _check_flags(a: argparse.Namespace, *flags: str) -> None:
    """Each of ``flags`` that was given within its range, or one line naming the flag, its
    value and what it takes, e.g. ``--load nan: expected a finite number in (0, 100]``."""
    from ptsim.schema import ConfigError, check_value, describe

    ranges = _flag_ranges()
    for flag in flags:
        value = getattr(a, flag[2:].replace("-", "_"))
        if value is None:
            continue
        tp, rng = ranges[flag]
        try:
            check_value(flag, value, tp, rng)
        except ConfigError:
            items = value if isinstance(value, tuple) else (value,)
            shown = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in items)
            raise CliError(f"{flag} {shown}: expected {describe(tp, rng)}") from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return a.resolve() == b.resolve()


def _check_output(out: str, extensions: Sequence[str], inputs: Mapping[str, str | None]) -> None:
    """The checks every command makes of its output before it reads or writes anything: a
    known extension, not one of the ``inputs`` (by what they are called: ``the input file``,
    ``the --shape file``...), not a folder, and no existing file where a folder must be."""
    p = Path(out)
    if p.suffix.lower() not in extensions:
        expected = " or ".join(extensions)
        raise CliError(
            f"OUT {out}: unknown extension {p.suffix or '(none)'!r}; expected {expected}"
        )
    for what, src in inputs.items():
        if src is not None and _same_file(p, Path(src)):
            raise CliError(f"OUT {out} is {what}; choose another output")
    if p.is_dir():
        raise CliError(f"OUT {out}: is a folder; give a file name")
    problem = not_a_folder(p.parent)
    if problem:  # (the output's folder is in the way: name it)
        where = f"{p.parent} {problem}" if problem.startswith("exists") else problem
        raise CliError(f"OUT {out}: {where}")


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


def _check_model(profiles: ProfileSet, set_name: str, given: str, name: str) -> None:
    """A model the user named (``given``: the flag and its value) is in the profile set."""
    try:
        profiles.model(name)
    except UnknownName as e:
        raise CliError(f"{given}: {e} (profile set {set_name}, --profiles)") from None


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
    c.add_argument(
        "--profiles",
        default="a100",
        help="profile set: step times (generic, philly), and the models --profile-model and "
        "--model-map may name",
    )
    c.add_argument("--ratios", type=_floats, help="deadline ratios, e.g. 0.5,1.0,1.5")
    c.add_argument(
        "--deadline",
        choices=("absolute", "relative"),
        help="elasticflow: how its deadline column is read (default absolute)",
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
    s.add_argument("--seed", type=int, help=f"synthetic shape: seed (default {ShapeSpec.seed})")
    s.add_argument(
        "--minutes", type=int, help=f"synthetic shape: length (default {ShapeSpec.minutes})"
    )
    return ap


def _convert(a: argparse.Namespace) -> str:
    _check_flags(a, "--seed", "--gpus", "--max-gpus", "--ratios")
    if a.fmt == "philly" and (a.time_unit is not None or a.duration_unit is not None):
        raise CliError("--time-unit/--duration-unit do not apply to philly: it has clock times")
    if a.fmt == "elasticflow" and a.ratios:
        raise CliError("--ratios does not apply to elasticflow: its trace has deadlines")
    if a.fmt != "elasticflow" and a.model_map:
        raise CliError(f"--model-map applies to elasticflow only: a {a.fmt} log names no models")
    if a.fmt != "elasticflow" and a.deadline:
        raise CliError(f"--deadline applies to elasticflow only: a {a.fmt} log has no deadlines")
    _check_output(a.out, EXTENSIONS, {"the input file": a.src})
    # converters take each job's GPU count from the source: no multi-GPU counts to draw
    cfg = WorkloadSpec(max_gpus=a.max_gpus, multi_gpu_counts=())
    if a.ratios:
        cfg = WorkloadSpec(deadline_ratios=a.ratios, max_gpus=a.max_gpus, multi_gpu_counts=())
    named = [(f"--profile-model {a.profile_model}", a.profile_model)] if a.profile_model else []
    named += [(f"--model-map {k}={m}", m) for k, m in (a.model_map or {}).items()]
    if a.fmt != "elasticflow" and not a.profile_model:
        named += [("the default model mix (or give --profile-model)", m) for m in cfg.models]
    profiles = None
    if a.fmt != "elasticflow" or named:  # elasticflow keeps its own model names otherwise
        profiles = _load_profiles(a.profiles)
        for given, name in named:
            _check_model(profiles, a.profiles, given, name)
    rng = np.random.default_rng(a.seed)
    unit: TimeUnit = "s" if a.time_unit is None else a.time_unit
    dur_unit: TimeUnit = "s" if a.duration_unit is None else a.duration_unit
    if a.fmt == "elasticflow":
        res = convert_elasticflow(
            a.src,
            cfg,
            rng,
            model=a.profile_model or a.model_map,
            deadline=a.deadline or "absolute",
            time_unit=unit,
            duration_unit=dur_unit,
        )
    elif a.fmt == "generic":
        assert profiles is not None
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
        assert profiles is not None
        res = convert_philly(a.src, cfg, profiles, rng, model=a.profile_model)
    warning = res.implausible(a.src, a.gpus)
    if warning:
        print(f"ptsim-trace: warning: {warning}", file=sys.stderr)
    write_trace(res.jobs, a.out)
    return f"wrote {a.out}: {res.summary()}"


def _names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _validate(a: argparse.Namespace) -> str:
    from ptsim.core.convergence import ConvergenceModel

    _check_flags(a, "--gpus")
    known = _names(a.models) if a.models else list(_load_profiles(a.profiles).models)
    tasks = _names(a.tasks) if a.tasks else ConvergenceModel.default().space.names
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
    _check_flags(a, "--load", "--duration", "--seed", "--gpus", "--offset")
    if a.workload != "short" and (a.shape is not None or a.offset is not None):
        flag = "--shape" if a.shape is not None else "--offset"
        raise CliError(f"{flag} applies to --workload short only: the default has no fixed shape")
    _check_output(a.out, EXTENSIONS, {"the --shape file": a.shape})
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
    _check_flags(a, "--seed", "--minutes")
    if a.from_trace is not None and (a.seed is not None or a.minutes is not None):
        flag = "--seed" if a.seed is not None else "--minutes"
        raise CliError(f"{flag} applies to the synthetic shape only, not with --from-trace")
    _check_output(a.out, SHAPE_EXTENSIONS, {"the --from-trace file": a.from_trace})
    if a.from_trace is not None:
        intensity = shape_from_arrivals([j.arrival for j in load_trace(a.from_trace)])
        write_shape(intensity, a.out, [f"Per-minute arrival counts of {a.from_trace}."])
    else:
        defaults = ShapeSpec()
        spec = ShapeSpec(
            minutes=defaults.minutes if a.minutes is None else a.minutes,
            seed=defaults.seed if a.seed is None else a.seed,
        )
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
    except OSError as e:  # a file that cannot be read or written (permissions, disk full...)
        where = f"{e.filename}: " if e.filename else ""
        print(f"ptsim-trace: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ptsim-trace: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
