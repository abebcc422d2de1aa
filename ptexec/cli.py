"""The ``ptexec`` command: real prompt tuning scheduled by ptsim's policies.

    ptexec run                                   # the demo: 6 jobs on the tiny GPT-2
    ptexec run --jobs jobs.jsonl scheduler=edf   # a job file under one policy (ptsim's knobs)
    ptexec run --trace t.csv --task-map map.yaml time_scale=0.1
    ptexec profile --model tiny-gpt2 --out profiles/tiny    # a profile directory ptsim reads
    ptexec validate --profile profiles/tiny      # the same jobs on the executor and in ptsim
    ptexec models                                # which models can be loaded here

``run`` and ``validate`` take hydra-style overrides of ``conf/executor/run.yaml`` after the
flags (``scheduler=fifo``, ``scheduler.keep_alive_s=30``, ``bank.layout=flat``, ``workers=3``,
``tuning.lr=0.02``...). Bad input (a job file, a model, a data set, a config key) gets one line
on stderr and exit status 2; no partial result is written.

This module imports torch and the rest lazily, so worker processes (which re-import the main
module under ``spawn``) start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptexec",
        description="Real prompt tuning (torch + peft) on a pool of workers, scheduled by "
        "ptsim's policies. See docs/ptexec.md.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def run_like(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--jobs", help="job file (.csv or .jsonl); default: the embedded demo")
        s.add_argument("--trace", help="a canonical ptsim trace (.csv/.parquet)")
        s.add_argument("--task-map", dest="task_map", help="YAML/JSON map for --trace")
        s.add_argument("--out", help="run directory (default runs/ptexec/<date>_<time>)")
        s.add_argument("--profile", help="profile directory (default: measure a quick one)")
        s.add_argument("--workers", type=int, help="CPU slots (no GPU) [one per 2 cores]")
        s.add_argument(
            "--remeasure", action="store_true", help="measure the cached quick profile again"
        )
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument(
            "--overwrite",
            action="store_true",
            help="reuse a run folder that holds a complete or unfinished run (its outputs go)",
        )
        s.add_argument(
            "--check",
            action="store_true",
            help="check the config, jobs and tasks; start nothing, write nothing",
        )
        s.add_argument("overrides", nargs="*", help="config overrides, e.g. scheduler=edf")
        return s

    run = run_like("run", "run jobs under one policy and write ptsim's tables, prompts and curves")
    run.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run in --out: finished jobs are kept, the others "
        "restart from their last checkpoint (same config required)",
    )
    run_like("validate", "run jobs on the executor and in ptsim; report per-job differences")

    pr = sub.add_parser(
        "profile",
        help="measure step, load and evaluation times and convergence; write a profile",
        description="Measure a model on this machine's workers and write a profile directory "
        "in the layout ptsim reads (models.csv + throughput tables + README.md).",
    )
    pr.add_argument("--model", action="append", help="model (repeatable) [tiny-gpt2]")
    pr.add_argument("--kind", choices=("causal_lm", "seq_cls"), help="load the models as this")
    pr.add_argument(
        "--as",
        dest="names",
        action="append",
        default=[],
        metavar="MODEL=NAME",
        help="name a measured model differently in the profile (e.g. tiny-gpt2=gpt2-base)",
    )
    pr.add_argument("--out", required=True, help="profile directory to write")
    pr.add_argument("--workers", type=int, default=2, help="CPU slots (no GPU) [2]")
    pr.add_argument("--threads", type=int, default=1, help="torch threads per worker [1]")
    pr.add_argument("--batches", help="global batch sizes, e.g. 8,16,32,64")
    pr.add_argument("--gpu-counts", dest="gpu_counts", help="worker counts, e.g. 1,2 [1..N]")
    pr.add_argument("--steps", type=int, help="timed steps per cell")
    pr.add_argument("--similarities", help="bank convergence runs, e.g. 0.75,0.5,0")
    pr.add_argument("--seeds", help="data seeds of the convergence runs, e.g. 0,1")
    pr.add_argument("--max-steps", dest="max_steps", type=int, help="convergence step budget")
    pr.add_argument("--no-convergence", dest="convergence", action="store_false")
    pr.add_argument(
        "--loop-steps",
        dest="loop_steps",
        type=int,
        help="steps of each timing of the executor loop's per-step cost (0: not measured) [40]",
    )
    pr.add_argument(
        "--loop-rounds", dest="loop_rounds", type=int, help="rounds of that calibration [2]"
    )
    pr.add_argument(
        "--busy",
        action="store_true",
        help="time steps and evaluations while the other workers train (CPU slots sharing cores)",
    )
    pr.add_argument(
        "--contention",
        action="store_true",
        help="time steps and evaluations both with the other workers idle and while they train; "
        "ptsim then charges each by whether a job's neighbours train",
    )
    pr.add_argument("--quick", action="store_true", help="a few seconds: fewer points")
    pr.add_argument("--quiet", action="store_true")

    sub.add_parser("models", help="list the registry models and whether they load here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``ptexec``."""
    args = _parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.command is None:
        _parser().print_help()
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ptexec.errors import friendly

    try:
        if args.command == "models":
            return _models()
        if args.command == "profile":
            return _profile(args)
        return _run(args, validate=args.command == "validate")
    except KeyboardInterrupt:
        print("ptexec: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        msg = friendly(exc)
        if msg is None:
            raise
        print(f"ptexec: {msg}", file=sys.stderr)
        return 2


def _models() -> int:
    from ptexec.models import available_models

    for name, status in available_models().items():
        print(f"{name:10s} {status}")
    return 0


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _say(quiet: bool) -> Callable[[str], Any]:
    def say(msg: str) -> None:
        if not quiet:
            from tqdm import tqdm

            tqdm.write(f"ptexec: {msg}", file=sys.stderr)

    return say


class _Progress:
    """A tqdm bar of finished jobs with the running jobs' steps."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        self.total = total
        self.enabled = enabled
        self.steps: dict[str, int] = {}
        self._last = 0.0

    def _bar(self) -> Any:
        if self.bar is None and self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="job", desc="ptexec", file=sys.stderr)
        return self.bar

    def on_step(self, job_id: str, step: int, _ex: Any) -> None:
        self.steps[job_id] = step
        now = time.monotonic()
        if self._bar() is not None and now - self._last > 0.25:
            self._last = now
            shown = ", ".join(f"{j}:{s}" for j, s in sorted(self.steps.items())[:6])
            self.bar.set_postfix_str(f"steps {shown}", refresh=True)

    def on_done(self, job_id: str) -> None:
        self.steps.pop(job_id, None)
        if self._bar() is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(args: argparse.Namespace, *, validate: bool) -> int:
    for flag in ("jobs", "trace", "task_map", "profile"):  # before any import
        value = getattr(args, flag)
        if value is not None and not Path(value).expanduser().exists():
            raise FileNotFoundError(f"--{flag.replace('_', '-')} {value}: no such file")

    from ptexec import config as C
    from ptsim.runfolder import INTERRUPTED, check_claim, claim

    flags = {
        "jobs": args.jobs,
        "trace": args.trace,
        "task_map": args.task_map,
        "out": args.out,
        "profile_dir": args.profile,
        "workers": args.workers,
        "remeasure": True if args.remeasure else None,
    }
    resume = bool(getattr(args, "resume", False))
    if resume and args.overwrite:
        raise ValueError("--resume and --overwrite: pick one")
    if resume and not args.out:
        raise ValueError("--resume needs --out: the folder of the run to go on with")
    cfg = C.compose_config([*C.mapping_overrides(flags), *args.overrides])
    plan = C.plan_exec(cfg, "ptexec-validate" if validate else "ptexec")
    settings, name, jobs, run_dir = plan.settings, plan.policy, plan.jobs, plan.run_dir
    quiet = args.quiet or not bool(cfg.get("progress", True))
    say = _say(quiet)
    for note in plan.notes:
        say(note)
    allow = (INTERRUPTED,) if resume else ()  # see below
    hint = "--overwrite (or --resume, for an interrupted run)"
    if args.check:
        check_claim(run_dir, overwrite=args.overwrite, allow=allow, hint=hint)
        print(
            f"ptexec: config ok: {len(jobs)} jobs under {name} on "
            f"{len(settings.devices) if settings.devices else settings.workers} workers; "
            f"would write {run_dir}"
        )
        return 0
    kind = "ptexec validation" if validate else "ptexec run"
    # an unfinished run's folder is refused too (it keeps its checkpoints): --resume goes on
    # with an interrupted one, --overwrite starts over
    with claim(run_dir, kind, overwrite=args.overwrite, allow=allow, hint=hint) as folder:
        _check_unfinished(cfg, run_dir, resume, args.overwrite)  # ptexec/resume.py
        folder.start()
        _execute(cfg, plan, run_dir, validate, quiet, say, resume=resume)
        folder.complete(sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")))
    print(f"results: {run_dir}")
    return 0


def _check_unfinished(cfg: Any, run_dir: Path, resume: bool, overwrite: bool) -> None:
    """``--resume``: the folder must hold a journal and the same config; otherwise an
    unfinished run's journal (a driver killed without a marker) is refused, or cleared with
    ``--overwrite``."""
    from omegaconf import OmegaConf

    from ptexec.resume import JOURNAL, ResumeError, check_resumable, clear_unfinished

    if resume:
        check_resumable(run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    elif overwrite:
        clear_unfinished(run_dir)
    elif (run_dir / JOURNAL).is_file():
        raise ResumeError(
            f"run folder {run_dir} holds an unfinished run ({JOURNAL}); pick another folder, "
            "--resume it or --overwrite it"
        )


def _execute(
    cfg: Any,
    plan: Any,
    run_dir: Path,
    validate: bool,
    quiet: bool,
    say: Callable[[str], Any],
    *,
    resume: bool = False,
) -> None:
    """Run the planned jobs and write the run folder (the executor's files, and for
    ``validate`` the comparison with ptsim)."""
    from omegaconf import OmegaConf

    from ptexec import config as C

    settings, name, params, tasks, jobs = (
        plan.settings,
        plan.policy,
        plan.params,
        plan.tasks,
        plan.jobs,
    )
    _set_threads(settings.threads or 1)
    exec_dir = run_dir / "executor" if validate else run_dir
    exec_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # a resumed run checked that its config equals this one
        (exec_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    from ptexec.jobs import write_jobs
    from ptexec.profile import machine_facts
    from ptexec.run import run_jobs, save_exec_result

    write_jobs(jobs, exec_dir / "jobs.jsonl")
    bank = C.bank_from(cfg, exec_dir)
    journal = None
    if not validate:
        from ptexec.resume import RunJournal

        journal = RunJournal(exec_dir, resume=resume)
        if resume and settings.profile is None and (exec_dir / "profile/models.csv").is_file():
            from dataclasses import replace

            settings = replace(settings, profile=exec_dir / "profile")  # measured before
    prog = _Progress(len(jobs), not quiet)
    try:
        result, out = run_jobs(
            jobs,
            name,
            exec_dir,
            settings,
            params=params,
            bank=bank,
            tasks=tasks,
            on_step=prog.on_step,
            on_job_done=prog.on_done,
            progress=say,
            journal=journal,
        )
    finally:
        prog.close()
    facts = machine_facts()
    if journal is not None:
        facts.update(journal.facts())
    facts["policy"] = name
    facts["backend"] = settings.backend
    facts["threads_per_worker"] = settings.threads
    save_exec_result(result, out, exec_dir, facts)
    s = result.summary
    reached = int(result.jobs.reached_target.fillna(False).astype(bool).sum())
    mean_jct = s["mean_jct_s"] if s["mean_jct_s"] is not None else float("nan")
    print(
        f"{s['policy']}: {s['jobs']} jobs, {reached} reached their target, SLO violation rate "
        f"{s['slo_violation_rate']:.3f}, mean JCT {mean_jct:.2f} s, "
        f"{s['cold_starts']} cold starts, {s['warm_hits']} warm hits, "
        f"cost {s['cost_gpu_hours'] * 3600:.1f} GPU-s"
    )
    if validate:
        from ptexec.validate import (
            compare,
            format_summary,
            format_table,
            save_validation,
            simulate_like,
        )

        sim = simulate_like(out, name, params, len(out.boot_s), settings.price_per_gpu_hour)
        table = compare(result, out, sim)
        summary = save_validation(run_dir, result, sim, table)
        print(format_table(table))
        print(format_summary(summary))


def _ints(
    text: str | None, flag: str = "", lo: int = 0, hi: int | None = None
) -> tuple[int, ...] | None:
    """Comma-separated whole numbers in [lo, hi] (``flag`` names them in the error)."""
    if text is None:
        return None
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated whole numbers") from None
    bad = [v for v in out if v < lo or (hi is not None and v > hi)]
    if bad or not out:
        top = "" if hi is None else f", at most {hi}"
        raise ValueError(f"{flag} {text!r}: expected whole numbers >= {lo}{top}")
    return out


def _floats(text: str | None, flag: str = "") -> tuple[float, ...] | None:
    """Comma-separated numbers in [0, 1] (``flag`` names them in the error)."""
    if text is None:
        return None
    try:
        out = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated numbers") from None
    if not out or not all(0.0 <= v <= 1.0 for v in out):
        raise ValueError(f"{flag} {text!r}: expected numbers in [0, 1]")
    return out


def _at_least(flag: str, value: int | None, lo: int) -> int | None:
    if value is not None and value < lo:
        raise ValueError(f"{flag} {value}: expected a whole number >= {lo}")
    return value


def _profile(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ptexec.jobs import model_id
    from ptexec.profile import QUICK, ProfileSettings, profile_models
    from ptexec.workers import WorkerPool, default_devices

    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if not 1 <= value <= 256:
            raise ValueError(f"{flag} {value}: expected an integer in [1, 256]")
    models = args.model or ["tiny-gpt2"]
    for m in models:
        model_id(m, args.kind)  # a missing model fails before any worker starts
    names: dict[str, str] = {}
    for item in args.names:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise ValueError(f"--as {item!r}: expected MODEL=NAME")
        names[model_id(src, args.kind)] = dst
    st = QUICK if args.quick else ProfileSettings()
    # every flag is checked here, before a worker starts or anything is measured
    counts = _ints(args.gpu_counts, "--gpu-counts", 1, args.workers)
    if counts is not None and counts[0] != 1:
        raise ValueError(f"--gpu-counts {args.gpu_counts!r}: must start with 1")
    changes: dict[str, Any] = {
        "batches": _ints(args.batches, "--batches", 1),
        "gpu_counts": counts,
        "steps": _at_least("--steps", args.steps, 1),
        "similarities": _floats(args.similarities, "--similarities"),
        "seeds": _ints(args.seeds, "--seeds", 0),
        "max_steps": _at_least("--max-steps", args.max_steps, 1),
        "loop_steps": _at_least("--loop-steps", args.loop_steps, 0),
        "loop_rounds": _at_least("--loop-rounds", args.loop_rounds, 1),
    }
    st = replace(st, **{k: v for k, v in changes.items() if v is not None})
    if not args.convergence:
        st = replace(st, convergence=False)
    if args.busy:
        st = replace(st, busy=True)
    if args.contention:
        st = replace(st, contention=True)
    out = Path(args.out).expanduser().resolve()
    if (out / "models.csv").exists():
        raise ValueError(f"{out} already holds a profile (models.csv); pick another --out")
    say = _say(args.quiet)
    _set_threads(args.threads)
    devices = default_devices(args.workers)
    say(f"starting {len(devices)} worker(s) on {', '.join(sorted(set(devices)))}")
    with WorkerPool(len(devices), devices=devices, threads=args.threads) as pool:
        d = profile_models(
            pool,
            [(m, args.kind) for m in models],
            out,
            st,
            names=names,
            progress=say,
            command=" ".join(["ptexec", *args.argv]),
        )
    print(f"profile: {d} (use it with `ptsim profile.dir={d}` or `ptexec run --profile {d}`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
