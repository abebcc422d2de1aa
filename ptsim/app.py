"""The ``ptsim`` command: a hydra app that runs one configuration (or compares every policy)
and writes config, trace, tables and summary into its run directory.

    ptsim                                   # every registered policy on the default workload
    ptsim scheduler=edf seed=1              # one policy
    ptsim -m scheduler=fifo,edf seed=0,1    # a sweep, one run directory per point
    ptsim workload.trace=PATH               # replay a canonical trace file
    ptsim report RUN_DIR...                 # one table + aggregate + figure over run folders
    ptsim plot RUN_DIR                      # timeline, Gantt and JCT CDF of a saved run

Every multirun ends with the report of its sweep folder (``ptsim.app.ReportCallback``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ptsim.paths import conf_root
from ptsim.run import label_scheduler, run_config
from ptsim.runfolder import default_name, not_a_folder, unique_suffix, write_overrides
from ptsim.schema import group_choice_error, hydra_one_line, override_syntax_error


class ReportCallback(Callback):
    """Hydra callback (``hydra.callbacks.report`` in ``conf/config.yaml``): at the end of every
    multirun, write the report of the sweep folder into it and print its headline table.
    (Here, not in ``ptsim.report``: hydra builds it for every run, and a single run need not
    import the report's pandas.)"""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from ptsim.report import ReportError, print_report, write_report

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            files = write_report([sweep_dir], sweep_dir)
        except ReportError as exc:
            print(f"ptsim report: {exc}")
            return
        print()
        print_report(files)


def _main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    label_scheduler(cfg, hc.runtime.choices.get("scheduler"))
    try:
        # parallel sweep jobs would interleave their progress bars: only single runs show them
        progress = bool(cfg.get("progress", True)) and hc.mode != RunMode.MULTIRUN
        results = run_config(cfg, run_dir, progress=progress)
        # the run's own overrides, for `ptsim report` (hydra writes no .hydra/ folder here)
        write_overrides(run_dir, list(hc.overrides.task))
    except (ValueError, KeyError, FileNotFoundError) as exc:  # bad input: one line, no result
        _remove_if_empty(run_dir)
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ptsim: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        _remove_if_empty(run_dir)
        raise
    if len(results) > 1:
        import pandas as pd

        from ptsim.report import queue_note
        from ptsim.run import comparison_table

        table = comparison_table(results)
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        note = queue_note(
            pd.DataFrame(
                {
                    "label": [r.summary.get("label") or r.policy for r in results],
                    "max_queued_jobs": [r.summary.get("max_queued_jobs") for r in results],
                }
            )
        )
        if note:
            print(note)
        print(f"\ncomparison table and figure: {run_dir}/comparison.csv, comparison.png")
    else:
        s = results[0].summary
        print(
            f"{s.get('label') or s['policy']}: {s['jobs']} jobs, "
            f"SLO violation rate {s['slo_violation_rate']:.3f}, "
            f"cost {s['cost_gpu_hours']:.2f} GPU-h (${s['cost_usd']:.2f}), "
            f"mean JCT {s['mean_jct_s'] or float('nan'):.0f} s"
        )
    for r in results:
        line = horizon_line(r.summary)
        if line:
            print(line)
    print(f"results: {run_dir}")


def _remove_if_empty(folder: Path) -> None:
    """Remove the (empty) folder hydra made for a run that wrote nothing."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def horizon_line(summary: Mapping[str, Any]) -> str | None:
    """A line saying that a run stopped at its horizon and how many jobs were left, or None."""
    if not summary.get("horizon_hit"):
        return None
    return (
        f"{summary['policy']}: stopped at the horizon ({summary['horizon_s']:g} s, "
        f"sim.horizon_s) with {summary['unfinished']} of {summary['jobs']} jobs unfinished"
    )


def _config_groups() -> set[str]:
    """The names of the config groups (``scheduler``, ``workload``...): ``conf/``'s folders."""
    return {p.name for p in conf_root().iterdir() if p.is_dir()}


def check_overrides(overrides: list[str]) -> str | None:
    """A one-line error for the first override that names a config key which does not exist
    (listing the keys that do at that level), or None. Group choices, ``+``/``~`` overrides
    and ``hydra.*`` keys are left to hydra."""
    from hydra import compose, initialize_config_dir

    groups = _config_groups()
    plain = [o for o in overrides if "=" in o and not o.startswith(("+", "~", "-"))]
    keys = [o.split("=", 1)[0] for o in plain]
    # a swept group (scheduler=edf,fifo) is checked with its first option
    choices = [o.split(",")[0] for o, k in zip(plain, keys, strict=True) if k in groups]
    # every composition error (a list merged into a mapping...) as one line
    single = [
        o
        for o in overrides
        if "=" in o
        and not o.lstrip("+~").startswith("hydra")
        and ("," not in o or o.split("=", 1)[1].lstrip()[:1] in ("[", "{"))
    ]
    checked = [
        o
        for o, k in zip(plain, keys, strict=True)
        if not (k in groups or k.startswith("hydra.") or k.startswith("hydra/"))
    ]
    if set(checked) <= set(single):
        # the common case first, one composition (start-up time): when the overrides compose,
        # every key they name exists
        with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
            try:
                compose("config", overrides=single)
                return None
            except Exception:
                pass  # find out which override is wrong, below
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        try:
            cfg = compose("config", overrides=choices)
        except Exception:
            return None  # hydra reports a bad group choice itself, listing the options
    for key in keys:
        if key in groups or key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        node = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not OmegaConf.is_dict(node):
                break
            if part not in list(node.keys()):  # (`in` is False for a ??? value)
                where = ".".join(parts[:i]) or "the top level"
                known = ", ".join(sorted(str(k) for k in node))
                return f"ptsim: unknown config key {key!r}; keys under {where}: {known}"
            node = node[part]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        try:
            compose("config", overrides=single)
        except Exception as exc:  # hydra raises several types, all with multi-line text
            cause = exc.__cause__
            extra = f": {str(cause).splitlines()[0]}" if cause is not None and str(cause) else ""
            return f"ptsim: {hydra_one_line(str(exc))}{extra}"
    return None


SUBCOMMANDS = ("report", "plot")
OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def output_dir_error(args: Sequence[str]) -> str | None:
    """A one-line error for a run or sweep folder given on the command line that cannot be one:
    empty (the run would write into the working directory), an existing file, or under one;
    None when every such folder can be made. Interpolated values are left to hydra."""
    for arg in args:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in OUTPUT_KEYS:
            continue
        value = value.strip().strip("'\"")
        if not value:
            return f"ptsim: {key} is empty; give the folder to write into"
        if "${" in value:
            continue
        problem = not_a_folder(Path(value).expanduser())
        if problem:
            return f"ptsim: {key} = {value}: {problem}"
    return None


def _fixed_sweep_dir(args: list[str]) -> list[str]:
    """A multirun's folder named once, here: the default ``hydra.sweep.dir`` interpolates the
    clock and this process's suffix, and the parallel launcher's worker processes would each
    resolve it again (their own pid, maybe another second), scattering one sweep over several
    folders. A sweep dir given on the command line is kept."""
    if not any(a in ("-m", "--multirun") for a in args):
        return args
    if any(a.lstrip("+").startswith("hydra.sweep.dir=") for a in args):
        return args
    return [*args, f"hydra.sweep.dir=runs/multirun/{default_name()}"]


def config_flag_error(args: Sequence[str]) -> str | None:
    """A one-line error for ``--config-dir`` / ``-cd`` naming no folder, or ``--config-name`` /
    ``-cn`` naming no config file there or among the shipped ones; None otherwise."""
    given: dict[str, str] = {}
    for i, arg in enumerate(args):
        for flag, short in (("--config-dir", "-cd"), ("--config-name", "-cn")):
            if arg in (flag, short) and i + 1 < len(args):
                given[flag] = args[i + 1]
            elif arg.startswith(f"{flag}="):
                given[flag] = arg.split("=", 1)[1]
    folder = given.get("--config-dir")
    if folder is not None and not Path(folder).expanduser().is_dir():
        return f"ptsim: --config-dir {folder}: no such folder"
    name = given.get("--config-name")
    if name is not None:
        places = [conf_root(), *([Path(folder).expanduser()] if folder else [])]
        stem = name[:-5] if name.endswith(".yaml") else name
        if not any((p / f"{stem}.yaml").is_file() for p in places):
            where = " or ".join(str(p) for p in places)
            return f"ptsim: --config-name {name}: no {stem}.yaml in {where}"
    return None


def sweep_error(words: Sequence[str]) -> str | None:
    """A multirun's bad value, found before any point runs: each value of each swept key is
    composed (with every other swept key at its first value) and checked as a run checks its
    config (``ptsim.schema.check_ptsim_config``); the first error as one line, or None. Group
    choices and ``hydra.*`` keys are left to hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ptsim.schema import ConfigError, check_ptsim_config, resolved

    try:
        parsed = OverridesParser.create().parse_overrides(list(words))
    except Exception:
        return None  # hydra reports a syntax error itself
    groups = _config_groups()
    fixed: list[str] = []
    swept: list[tuple[str, list[str]]] = []
    for word, o in zip(words, parsed, strict=True):
        key = o.get_key_element()
        if key.startswith("hydra"):
            continue
        if not o.is_sweep_override():
            fixed.append(word)
            continue
        values = [f"{key}={v}" for v in o.sweep_string_iterator()]
        if key in groups:  # a group's options: the first stands for them all
            fixed.extend(values[:1])
        elif values:
            swept.append((key, values))
    if not swept:
        return None
    first = [vals[0] for _, vals in swept]
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        for k, (key, vals) in enumerate(swept):
            for val in vals[1:] if k else vals:  # (the first point was checked with k = 0)
                point = [*fixed, *first[:k], val, *first[k + 1 :]]
                try:
                    check_ptsim_config(resolved(compose("config", overrides=point)))
                except (ConfigError, ValueError, KeyError) as exc:  # (UnknownName: a KeyError)
                    text = str(exc)
                    return f"ptsim: {text}" if key in text else f"ptsim: {val}: {text}"
                except Exception:
                    return None  # a composition problem: hydra reports it
    return None


def run_cli(argv: Sequence[str]) -> int:
    """Run ``ptsim`` with command-line arguments ``argv``; returns the exit status (0 ok,
    2 bad input, 130 interrupted). ``report ...`` and ``plot ...`` are subcommands (plain
    argparse: ``ptsim.report.main``, ``ptsim.plots.main``); anything else goes to hydra."""
    args = list(argv)
    if args and args[0] in SUBCOMMANDS:
        if args[0] == "report":
            from ptsim.report import main as report_main

            return report_main(args[1:])
        from ptsim.plots import main as plot_main

        return plot_main(args[1:])
    words = [a for a in args if not a.startswith("-")]
    where = output_dir_error(words) or config_flag_error(args)
    if any(w.lstrip("+").startswith("scheduler.name=") for w in words):
        where = "ptsim: scheduler.name comes with a scheduler's config; choose it: scheduler=NAME"
    if where:
        print(where, file=sys.stderr)
        return 2
    choice = override_syntax_error(words) or group_choice_error(words)
    plain_run = words == args and not any(a.lstrip("+~").startswith("hydra.mode") for a in args)
    # a plain run checks its overrides only if hydra cannot compose them (``_run_once``)
    problem = f"ptsim: {choice}" if choice else None if plain_run else check_overrides(words)
    if problem is None and any(a in ("-m", "--multirun") for a in args):
        problem = sweep_error(words)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    OmegaConf.register_new_resolver("run_suffix", unique_suffix, replace=True)
    saved = sys.argv
    try:
        if plain_run:
            code = _run_once(args)
            if code is not None:
                return code
        sys.argv = [saved[0] if saved else "ptsim", *_fixed_sweep_dir(args)]
        hydra.main(version_base="1.3", config_path=str(conf_root()), config_name="config")(_main)()
    except KeyboardInterrupt:
        print("ptsim: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def _run_once(overrides: list[str]) -> int | None:
    """One run (no flags, no sweep) the way ``hydra.main`` runs it, composing the config once
    (``hydra.main`` composes it twice, to learn the run mode and to run, and the override check
    a third time; each composition costs about 0.1 s of start-up). An override that does not
    compose gets ``check_overrides``'s one-line error (exit 2); None when that finds nothing
    wrong, for the caller to run ``hydra.main`` and report as hydra does. A failure inside
    the run is reported as ``hydra.main`` reports it."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import (
        create_automatic_config_search_path,
        detect_calling_file_or_module_from_task_function,
        detect_task_name,
        run_and_report,
    )
    from hydra.core.global_hydra import GlobalHydra

    version.setbase("1.3")
    calling_file, calling_module = detect_calling_file_or_module_from_task_function(_main)
    search_path = create_automatic_config_search_path(
        calling_file, calling_module, str(conf_root())
    )
    started = False
    failed: list[Exception] = []

    def task(cfg: DictConfig) -> None:
        nonlocal started
        started = True
        _main(cfg)

    def attempt() -> None:
        app = Hydra.create_main_hydra2(
            task_name=detect_task_name(calling_file, calling_module),
            config_search_path=search_path,
        )
        try:
            app.run(
                config_name="config", task_function=task, overrides=[*overrides, "hydra.mode=RUN"]
            )
        except Exception as exc:
            if started:
                raise
            failed.append(exc)  # the config did not compose

    try:
        run_and_report(attempt)
    finally:
        GlobalHydra.instance().clear()
    if not failed:
        return 0
    problem = check_overrides(overrides)
    if problem is None:
        return None
    print(problem, file=sys.stderr)
    return 2


def main() -> None:
    """Console entry point for ``ptsim``."""
    code = run_cli(sys.argv[1:])
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(main())
