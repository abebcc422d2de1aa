"""The sweep runner every figure script shares.

A figure is a hydra experiment config ``conf/experiment/<figure>.yaml``: its body holds the base
settings (plain ptsim config, so ``ptsim experiment=<figure> scheduler=...`` runs one point of
it), and its top-level ``sweep:`` key, which the ``ptsim`` app ignores, holds the sweep:

```yaml
sweep:
  policies: [prompttuner, infless, elasticflow]  # one variant per policy (scheduler=<name>)
  variants: {pt_no_bank: [scheduler=prompttuner, scheduler.bank=false]}  # named override sets
  grid: {workload.load: [0.3, 0.5, 0.7]}         # cartesian product of override values
  seeds: 10                                       # seed=0..9 at every point
  tables: false              # true: keep per-job tables and time series; jobs: per-job only
  overrides: []                                   # added to every point
  quick: {seeds: 2, overrides: [workload.duration_s=300]}  # merged over the above by --quick
```

A *point* is one list of hydra overrides (``experiment=<figure>``, the variant's, the grid
values, the command line's, ``seed=<s>``). ``run_points`` composes each with hydra's compose API
(configs found through :func:`ptsim.paths.conf_root`, never the working directory), runs it with
the functions of :mod:`ptsim.run`, in a process pool (spawn context; ``--jobs``, default
``os.cpu_count()``) with a tqdm bar, and collects one row per run (the point's labels and
override values, then every scalar of the run's summary) into one tidy DataFrame in point order,
so a parallel sweep gives exactly the table a serial one does (wall-clock columns aside).

:func:`figure_main` is the command line every script shares:
``[--quick] [--plot-only] [--jobs N] [--out DIR] [--seeds K] [--policies a,b] [overrides...]``.
It writes into ``--out`` (default ``results/<figure>`` under the working directory, like hydra's
``outputs/``): ``points.csv`` (one row per run), ``jobs.csv`` + ``timeseries.csv`` when the
figure keeps per-job tables, ``sweep.yaml`` (what was run, how, and how long it took), then the
script's plot function draws ``<figure>.png`` and the ``<figure>.csv`` it was drawn from, from
those saved tables alone.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.policy import POLICIES
from ptsim.outcome import atomic_write, write_csv
from ptsim.paths import conf_root

# one implementation with ``ptsim report``: intervals (Student-t; Wilson for count rates;
# bootstrap for other rates; none below MIN_SEEDS seeds) and tidy rows
from ptsim.report import (  # noqa: F401  (re-exported for the figure scripts)
    MIN_SEEDS,
    aggregate,
    ci95,
    fmt_ci,
    override_columns,
    override_value,
    summary_row,
)
from ptsim.run import label_scheduler, plain, simulate_config

T = TypeVar("T")
R = TypeVar("R")

WALL_COLUMNS = ("sim_wall_s", "decide_wall_s")
"""Summary columns measured with the wall clock: the only ones a parallel run may change."""

LABEL_COLUMNS = ("figure", "variant", "policy", "seed")
"""Columns every points table starts with."""

CONTEXT_KEYS = (
    "workload.load",
    "workload.duration_s",
    "cluster.nodes",
    "cluster.gpus_per_node",
    "profile.name",
    "bank.layout",
)
"""Config values every row records (from the composed config), overridden or not."""


class SweepError(Exception):
    """A sweep that cannot run as asked (a missing policy, bad sweep spec, missing tables)."""


# ------------------------------------------------------------------------------ statistics

# ------------------------------------------------------------------------------ one point


@dataclass(frozen=True)
class Point:
    """One run of a sweep: hydra overrides, the labels its rows carry (``variant``, ``policy``
    and any figure-specific axis), whether to keep its per-job tables, and an extra config
    directory to search (``--config-dir``)."""

    overrides: tuple[str, ...]
    labels: Mapping[str, Any] = field(default_factory=dict)
    tables: bool | str = False
    config_dir: str | None = None


@dataclass
class PointOutput:
    """What one point produced: one row per run (several when no scheduler is chosen) and,
    if asked, its per-job tables and time series with the row labels prepended."""

    rows: list[dict[str, Any]]
    jobs: pd.DataFrame | None = None
    series: pd.DataFrame | None = None


@dataclass
class SweepResult:
    """A whole sweep: the points table and, when kept, the per-job and time-series tables."""

    points: pd.DataFrame
    jobs: pd.DataFrame | None = None
    series: pd.DataFrame | None = None


def compose(overrides: Sequence[str], config_dir: str | None = None) -> DictConfig:
    """The ptsim config for ``overrides`` (hydra compose API over ``conf_root()``, plus
    ``config_dir`` on the search path when given)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    extra = [] if config_dir is None else [f"hydra.searchpath=[file://{config_dir}]"]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*extra, *overrides], return_hydra_config=True)
    # the run label, as the ptsim app gives it: the scheduler config's file name
    label_scheduler(cfg, cfg.hydra.runtime.choices.get("scheduler"))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_point(point: Point) -> PointOutput:
    """Compose and run one point; its rows start with the labels and override values."""
    try:
        cfg = compose(point.overrides, point.config_dir)
        results = simulate_config(cfg)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise SweepError(f"point [{' '.join(point.overrides)}]: {why}") from exc
    head = {**dict(point.labels), **override_columns(point.overrides)}
    for key in CONTEXT_KEYS:
        if key not in head:
            head[key] = OmegaConf.select(cfg, key)
    head["overrides"] = " ".join(point.overrides)
    rows, jobs, series = [], [], []
    for res in results:
        labels = {**head, "policy": res.policy, "seed": res.summary["seed"]}
        rows.append(summary_row(labels, (), res.summary))
        if point.tables:
            tag = {k: v for k, v in labels.items() if k != "overrides"}
            jobs.append(_with_labels(res.jobs, tag))
            if point.tables is True:
                series.append(_with_labels(res.series, tag))
    return PointOutput(
        rows,
        pd.concat(jobs, ignore_index=True) if jobs else None,
        pd.concat(series, ignore_index=True) if series else None,
    )


def _with_labels(df: pd.DataFrame, labels: Mapping[str, Any]) -> pd.DataFrame:
    lab = {k: v for k, v in labels.items() if k not in df.columns}
    head = pd.DataFrame({k: [v] * len(df) for k, v in lab.items()}, index=df.index)
    return pd.concat([head, df], axis=1)


# ------------------------------------------------------------------------------ pool


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int | None = None,
    desc: str = "",
    progress: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
) -> list[R]:
    """``[fn(x) for x in items]``, in a spawn-context process pool of ``jobs`` workers
    (default ``os.cpu_count()``; 1 = in this process), with a tqdm bar; results in item order.
    ``fn`` must be importable by name (a module-level function). ``backend="ray"``: as Ray
    tasks (:func:`ptsim.ray_tasks.ray_map`) on the cluster at ``ray_address`` (``None``: a
    local Ray), at most ``jobs`` at a time when given."""
    from tqdm import tqdm

    n_jobs = (os.cpu_count() or 1) if jobs is None else jobs
    n_jobs = max(1, min(n_jobs, len(items)))
    bar = tqdm(total=len(items), desc=desc, unit="run", disable=not progress, file=sys.stderr)
    out: list[Any] = [None] * len(items)
    try:
        if backend == "ray":
            from ptsim.ray_tasks import ray_map

            return ray_map(
                fn, items, address=ray_address, max_in_flight=jobs, on_done=lambda _i: bar.update()
            )
        if n_jobs == 1:
            for i, item in enumerate(items):
                out[i] = fn(item)
                bar.update()
            return out
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    bar.update()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return out
    finally:
        bar.close()


def run_points(
    points: Sequence[Point],
    *,
    jobs: int | None = None,
    desc: str = "",
    progress: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
) -> SweepResult:
    """Run every point (in parallel, see :func:`parallel_map`; on Ray with ``backend="ray"``)
    and collect the tidy tables."""
    outs = parallel_map(
        run_point,
        points,
        jobs=jobs,
        desc=desc,
        progress=progress,
        backend=backend,
        ray_address=ray_address,
    )
    rows = [r for o in outs for r in o.rows]
    table = pd.DataFrame(rows)
    first = [c for c in LABEL_COLUMNS if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    job_tabs = [o.jobs for o in outs if o.jobs is not None]
    series_tabs = [o.series for o in outs if o.series is not None]
    return SweepResult(
        table,
        pd.concat(job_tabs, ignore_index=True) if job_tabs else None,
        pd.concat(series_tabs, ignore_index=True) if series_tabs else None,
    )


# ------------------------------------------------------------------------------ sweep spec


@dataclass
class Sweep:
    """A figure's sweep as this invocation runs it (the experiment's ``sweep:`` key with
    ``--quick``, ``--seeds``, ``--policies`` and command-line overrides applied)."""

    figure: str
    variants: dict[str, list[str]]
    grid: dict[str, list[Any]]
    seeds: list[int]
    overrides: list[str]
    cli: list[str]
    tables: bool | str
    spec: dict[str, Any]
    config: DictConfig
    config_dir: str | None = None

    def policy_of(self, variant: str) -> str | None:
        """The ``scheduler=`` choice of a variant (None: every policy)."""
        for o in self.variants[variant]:
            if o.startswith("scheduler="):
                return o.split("=", 1)[1]
        return None

    def point_overrides(self, *parts: Sequence[str], seed: int) -> tuple[str, ...]:
        """A point's overrides: the experiment, the sweep's own, ``parts`` (variant, grid
        values...), the command line's (which win) and the seed."""
        flat = [o for part in parts for o in part]
        return (f"experiment={self.figure}", *self.overrides, *flat, *self.cli, f"seed={seed}")


def scheduler_available(name: str, config_dir: str | None = None) -> str | None:
    """None if policy ``name`` can run through config, else why not (one line)."""
    dirs = [conf_root()] + ([] if config_dir is None else [Path(config_dir)])
    if name not in POLICIES:
        return (
            f"policy {name!r} is not registered in ptsim.core.policy.POLICIES "
            f"(registered: {', '.join(POLICIES.names())})"
        )
    if not any((d / "scheduler" / f"{name}.yaml").is_file() for d in dirs):
        return f"policy {name!r} has no config file conf/scheduler/{name}.yaml"
    return None


def load_sweep(
    figure: str,
    *,
    quick: bool = False,
    seeds: int | None = None,
    policies: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    config_dir: str | None = None,
) -> Sweep:
    """Compose ``experiment=<figure>`` with ``overrides`` and read its ``sweep:`` key.

    ``quick`` merges ``sweep.quick`` over it (mappings one level deep, so ``quick.grid``
    replaces only the axes it names; ``quick.overrides`` adds to ``overrides``); ``seeds``
    replaces the seed count; ``policies`` replaces ``sweep.policies`` and keeps only the
    variants of those policies; an override of a grid key replaces that axis by its one value.
    Every policy still named must be registered and have a scheduler config, else
    :class:`SweepError` names it."""
    cfg = compose([f"experiment={figure}", *overrides], config_dir)
    if "sweep" not in cfg:
        raise SweepError(f"conf/experiment/{figure}.yaml has no top-level `sweep:` key")
    spec = plain(cfg.sweep)
    quick_spec = spec.pop("quick", None) or {}
    extra_overrides = list(spec.get("overrides") or [])
    if quick:
        extra_overrides += list(quick_spec.get("overrides") or [])
        for key, val in quick_spec.items():
            if key == "overrides":
                continue
            old = spec.get(key)
            spec[key] = {**old, **val} if isinstance(old, dict) and isinstance(val, dict) else val
    names = list(spec.get("policies") or [])
    variants: dict[str, list[str]] = {}
    if policies is not None:
        names = list(policies)
    for p in names:
        variants[p] = [f"scheduler={p}"]
    for name, ovr in (spec.get("variants") or {}).items():
        ovr = [str(o) for o in ovr]
        pol = next((o.split("=", 1)[1] for o in ovr if o.startswith("scheduler=")), None)
        if policies is None or pol in policies:
            variants[str(name)] = ovr
    if not variants:
        variants["all"] = []  # no scheduler: every registered policy
    user = override_columns(overrides)
    grid = {str(k): list(v) for k, v in (spec.get("grid") or {}).items()}
    for key in grid:
        if key in user:
            grid[key] = [user[key]]
    cli = [o for o in overrides if o.split("=", 1)[0] not in grid]
    n_seeds = int(spec.get("seeds", 1)) if seeds is None else seeds
    if n_seeds < 1:
        raise SweepError("need at least one seed")
    first = int(spec.get("first_seed", 0))
    sweep = Sweep(
        figure=figure,
        variants=variants,
        grid=grid,
        seeds=list(range(first, first + n_seeds)),
        overrides=extra_overrides,
        cli=cli,
        tables=_tables(spec.get("tables", False)),
        spec=spec,
        config=cfg,
        config_dir=config_dir,
    )
    problems = []
    for v in variants:
        pol = sweep.policy_of(v)
        why = None if pol is None else scheduler_available(pol, config_dir)
        if why and why not in problems:
            problems.append(why)
    if problems:
        raise SweepError(
            f"{figure} cannot run: {'; '.join(problems)}. Pass --policies to run a subset "
            "(e.g. --policies fifo,edf for a smoke test; those are not the paper's policies)"
        )
    return sweep


def _tables(value: Any) -> bool | str:
    if isinstance(value, bool) or value == "jobs":
        return value
    raise SweepError(f"sweep.tables must be true, false or jobs, got {value!r}")


def grid_points(
    sweep: Sweep, extra: Sequence[tuple[dict[str, Any], list[str]]] = ()
) -> list[Point]:
    """Variants x grid x ``extra`` axes x seeds, in that nesting order. ``extra`` is a list of
    (labels, overrides) pairs, one per value of a figure-specific axis (default: one empty)."""
    axes = list(sweep.grid)
    combos = list(itertools.product(*(sweep.grid[k] for k in axes)))
    extra = list(extra) or [({}, [])]
    points = []
    for variant, ovr in sweep.variants.items():
        for combo in combos:
            for labels, extra_ovr in extra:
                grid_ovr = [f"{k}={_fmt(v)}" for k, v in zip(axes, combo, strict=True)]
                for seed in sweep.seeds:
                    points.append(
                        Point(
                            sweep.point_overrides(ovr, grid_ovr, extra_ovr, seed=seed),
                            {
                                "figure": sweep.figure,
                                "variant": variant,
                                "policy": sweep.policy_of(variant),
                                **labels,
                            },
                            sweep.tables,
                            sweep.config_dir,
                        )
                    )
    return points


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


# ------------------------------------------------------------------------------ files


def save_sweep(result: SweepResult, out: Path) -> None:
    """Write ``points.csv`` (+ ``jobs.csv`` and ``timeseries.csv`` when kept) atomically;
    per-job tables of an earlier sweep that this one did not keep are removed."""
    write_csv(result.points, out / "points.csv")
    for table, name in ((result.jobs, "jobs.csv"), (result.series, "timeseries.csv")):
        if table is not None:
            write_csv(table, out / name)
        else:
            (out / name).unlink(missing_ok=True)


def write_yaml(obj: Any, path: Path) -> None:
    """``obj`` (plain data) as YAML, atomically."""

    def _write(p: Path) -> None:
        p.write_text(yaml.safe_dump(obj, sort_keys=False))

    atomic_write(path, _write)


def read_table(out: Path, name: str) -> pd.DataFrame:
    """A saved table of a figure's output folder; a clear error if it is missing."""
    path = out / name
    if not path.is_file():
        raise SweepError(f"{path} not found: run the figure script without --plot-only first")
    return pd.read_csv(path)


# ------------------------------------------------------------------------------ command line


@dataclass
class FigureArgs:
    """A figure script's command line."""

    figure: str
    quick: bool = False
    plot_only: bool = False
    jobs: int | None = None
    out: Path = Path("results")
    seeds: int | None = None
    policies: list[str] | None = None
    overrides: list[str] = field(default_factory=list)
    config_dir: str | None = None
    progress: bool = True
    backend: str = "local"
    ray_address: str | None = None


def parse_args(figure: str, doc: str | None, argv: Sequence[str] | None = None) -> FigureArgs:
    """The shared command line of a figure script."""
    ap = argparse.ArgumentParser(
        prog=f"{figure}.py",
        description=(doc or "").strip().splitlines()[0] if doc else None,
        epilog="Extra arguments are hydra overrides applied to every point, e.g. "
        "workload.duration_s=600 profile=elasticflow_gpt2.",
    )
    ap.add_argument("--quick", action="store_true", help="the smoke-test size (sweep.quick)")
    ap.add_argument("--plot-only", action="store_true", help="redraw from the saved tables")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (results/{figure})")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per point (sweep.seeds)")
    ap.add_argument("--policies", default=None, help="comma-separated policies to run instead")
    ap.add_argument("--config-dir", default=None, help="extra hydra config folder to search")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="run points here or on Ray"
    )
    ap.add_argument("--ray-address", default=None, help="Ray cluster (auto, ray://host:10001)")
    ap.add_argument("overrides", nargs="*", help="hydra overrides for every point")
    ns = ap.parse_args(argv)
    if ns.jobs is not None and ns.jobs < 1:
        ap.error("--jobs must be >= 1")
    return FigureArgs(
        figure=figure,
        quick=ns.quick,
        plot_only=ns.plot_only,
        jobs=ns.jobs,
        out=ns.out if ns.out is not None else Path("results") / figure,
        seeds=ns.seeds,
        policies=None if ns.policies is None else [p for p in ns.policies.split(",") if p],
        overrides=list(ns.overrides),
        config_dir=None if ns.config_dir is None else str(Path(ns.config_dir).resolve()),
        progress=not ns.no_progress,
        backend=ns.backend,
        ray_address=ns.ray_address,
    )


PointsFn = Callable[[Sweep], list[Point]]
ExtraFn = Callable[[Sweep, FigureArgs], dict[str, Any]]
PlotFn = Callable[[Path], list[Path]]


def figure_main(
    figure: str,
    doc: str | None,
    plot: PlotFn,
    argv: Sequence[str] | None = None,
    *,
    points: PointsFn = grid_points,
    extra: ExtraFn | None = None,
) -> int:
    """Run a figure script: build its points from the sweep, run them, save the tables, run
    ``extra`` (figure-specific work that writes its own tables, returns notes for
    ``sweep.yaml``), then ``plot`` from the saved tables. ``--plot-only`` skips to ``plot``."""
    args = parse_args(figure, doc, argv)
    try:
        if not args.plot_only:
            run_figure(args, points=points, extra=extra)
        written = plot(args.out)
    except SweepError as exc:
        print(f"{figure}: {exc}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    return 0


def run_figure(
    args: FigureArgs, *, points: PointsFn = grid_points, extra: ExtraFn | None = None
) -> SweepResult:
    """The run half of :func:`figure_main`: sweep, tables, ``sweep.yaml``."""
    sweep = load_sweep(
        args.figure,
        quick=args.quick,
        seeds=args.seeds,
        policies=args.policies,
        overrides=args.overrides,
        config_dir=args.config_dir,
    )
    pts = points(sweep)
    t0 = time.perf_counter()
    result = run_points(
        pts,
        jobs=args.jobs,
        desc=args.figure,
        progress=args.progress,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    sweep_s = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    save_sweep(result, args.out)
    t1 = time.perf_counter()
    notes = {} if extra is None else extra(sweep, args)
    extra_s = time.perf_counter() - t1
    meta = {
        "figure": args.figure,
        "quick": args.quick,
        "points": len(pts),
        "runs": len(result.points),
        "jobs": args.jobs or os.cpu_count(),
        "backend": args.backend,
        "seeds": sweep.seeds,
        "variants": sweep.variants,
        "grid": sweep.grid,
        "overrides": sweep.overrides + sweep.cli,
        "sweep_wall_s": round(sweep_s, 2),
        "extra_wall_s": round(extra_s, 2),
        "spec": sweep.spec,
        **notes,
    }
    write_yaml(meta, args.out / "sweep.yaml")
    return result
