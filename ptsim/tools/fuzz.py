"""Malformed inputs for the reliability checks: traces, ptsim overrides and ptexec overrides,
drawn from a seeded generator, and the verdict on each (a clean run, or one line of error).

Used by ``tests/test_fuzz.py`` (a few hundred cases) and ``benchmarks/fuzz_bench.py`` (more).
Every case runs in this process: a trace through ``ptsim-trace validate`` (``main``) and, when it
loads, a short simulation; a config through the checks and the plan the ``ptsim`` / ``ptexec``
commands build before running (and, for ptsim, the run itself when the config is accepted).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEADER = [
    "job_id",
    "arrival_s",
    "model",
    "task",
    "deadline_s",
    "batch_size",
    "iterations",
    "num_gpus",
    "min_gpus",
    "max_gpus",
]
BASE_ROWS = [
    ["j0", "0.0", "gpt2-base", "sst2", "400.0", "16", "300", "1", "1", "8"],
    ["j1", "5.5", "gpt2-large", "imdb", "900.0", "32", "600", "2", "1", "8"],
    ["j2", "12.0", "vicuna-7b", "rte", "2000.0", "16", "200", "1", "1", "4"],
    ["j3", "30.0", "gpt2-base", "boolq", "60.0", "16", "100", "4", "2", "8"],
]
"""A valid trace (a100 profiles, the task space, a 32-GPU cluster) the mutations start from."""

BAD_CELLS = [
    "",
    " ",
    "abc",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1.5",
    "-0.0",
    "1e400",
    "1e300",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1" * 30,
    "1" * 5000,
    "0x10",
    "１２",
    "None",
    "true",
    "1,5",
    '"',
    "\U0001f600",
    "a" * 300,
    "\x00",
    "4.0",
    "1e9",
    "1000000001",
    "gpt5",
    "unknown-task",
    "64",
    "65537",
]
"""Cell values that break a column (and a few that a column accepts)."""

GPU_CLUSTER = 32


@dataclass(frozen=True)
class Verdict:
    """How one case ended: ``ok`` (a clean run) or ``error`` (with its one line); ``bad`` holds
    what broke the contract (a traceback, several lines, a wrong exit status), else ''."""

    case: str
    outcome: str
    message: str = ""
    bad: str = ""


# ------------------------------------------------------------------------------ traces


def _csv(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    import csv

    w = csv.writer(out, lineterminator="\n")
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def _mutate_rows(rng: np.random.Generator, rows: list[list[str]]) -> str:
    """One mutation of header + rows; returns its name."""
    kind = str(
        rng.choice(
            [
                "cell",
                "cell",
                "cell",
                "cell",
                "drop_column",
                "dup_column",
                "extra_column",
                "rename_column",
                "short_row",
                "long_row",
                "dup_id",
                "deadline_before",
                "deadline_equal",
                "slo_header",
                "both_deadlines",
                "too_many_gpus",
                "min_above_max",
                "blank_row",
                "no_rows",
            ]
        )
    )
    header, body = rows[0], rows[1:]
    r = int(rng.integers(len(body))) if body else 0
    c = int(rng.integers(len(header)))
    if kind == "cell" and body:
        body[r][c % len(body[r])] = str(rng.choice(BAD_CELLS))
    elif kind == "drop_column":
        for row in rows:
            if c < len(row):
                del row[c]
    elif kind == "dup_column":
        for row in rows:
            if c < len(row):
                row.append(row[c])
    elif kind == "extra_column":
        header.append("user")
        for row in body:
            row.append("alice")
    elif kind == "rename_column":
        header[c] = str(rng.choice(["ddl", "JOB_ID", "arrival", " task ", "slo_s", ""]))
    elif kind == "short_row" and body:
        body[r] = body[r][:-1]
    elif kind == "long_row" and body:
        body[r] = [*body[r], "7"]
    elif kind == "dup_id" and len(body) > 1:
        body[-1][0] = body[0][0]
    elif (
        kind in ("deadline_before", "deadline_equal")
        and body
        and {
            "arrival_s",
            "deadline_s",
        }
        <= set(header)
    ):
        a, d = header.index("arrival_s"), header.index("deadline_s")
        if a < len(body[r]) and d < len(body[r]):
            body[r][d] = body[r][a] if kind == "deadline_equal" else "-5.0"
    elif kind == "slo_header" and "deadline_s" in header:
        header[header.index("deadline_s")] = "slo_s"
    elif kind == "both_deadlines":
        header.append("slo_s")
        for row in body:
            row.append("10")
    elif kind == "too_many_gpus" and body and len(body[r]) == 10:
        body[r][7:10] = ["64", "1", "64"]
    elif kind == "min_above_max" and body and len(body[r]) == 10:
        body[r][8:10] = ["4", "2"]
    elif kind == "blank_row":
        body.insert(r, [])
    elif kind == "no_rows":
        del body[:]
    rows[:] = [header, *body]
    return kind


def malformed_traces(rng: np.random.Generator, n: int, folder: Path) -> Iterator[tuple[str, Path]]:
    """``n`` trace files, each the valid base trace with one to three mutations (or a file
    broken below the CSV level: bytes, encoding, truncation), as (description, path)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rows = [list(HEADER), *[list(r) for r in BASE_ROWS]]
        level = rng.random()
        path = folder / f"t{i:05d}.csv"
        if level < 0.12:
            text = _csv(rows).encode()
            how = str(
                rng.choice(["garbage", "latin1", "truncate", "bom", "crlf", "quote", "empty"])
            )
            if how == "garbage":
                data = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
            elif how == "latin1":
                data = text.replace(b"sst2", "s\u00e9t".encode("latin-1"))
            elif how == "truncate":
                data = text[: int(rng.integers(1, len(text)))]
            elif how == "bom":
                data = b"\xef\xbb\xbf" + text
            elif how == "crlf":
                data = text.replace(b"\n", b"\r\n")
            elif how == "quote":
                data = text.replace(b"imdb", b'"imdb', 1)
            else:
                data = b""
            path.write_bytes(data)
            yield f"{path.name}: {how}", path
            continue
        kinds = []
        for _ in range(int(rng.integers(1, 4))):
            with contextlib.suppress(IndexError, ValueError, ZeroDivisionError):  # does not apply
                kinds.append(_mutate_rows(rng, rows))
        if level > 0.9:  # the same table as Parquet (every column text)
            import pandas as pd

            width = len(rows[0])
            body = [r for r in rows[1:] if len(r) == width]
            if len(set(rows[0])) == width:
                path = path.with_suffix(".parquet")
                pd.DataFrame(body, columns=rows[0], dtype=object).to_parquet(path)
                yield f"{path.name}: {'+'.join(kinds)}", path
                continue
        path.write_text(_csv(rows), encoding="utf-8", errors="surrogatepass")
        yield f"{path.name}: {'+'.join(kinds)}", path


def _capture(fn: Callable[[], int]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = fn()
    return rc, out.getvalue(), err.getvalue()


def check_trace(case: str, path: Path) -> Verdict:
    """``ptsim-trace validate PATH --gpus 32``; a trace it accepts is simulated (fifo, no bank)
    on 32 GPUs and must end with every job done or rejected."""
    from ptsim.trace import cli

    try:
        rc, _out, err = _capture(lambda: cli.main(["validate", str(path), "--gpus", "32"]))
    except BaseException as exc:  # the contract: never a traceback
        return Verdict(case, "crash", bad=f"{type(exc).__name__}: {exc}"[:300])
    lines = [ln for ln in err.splitlines() if "warning" not in ln]
    if rc == 2:
        if len(lines) != 1 or not lines[0].startswith("ptsim-trace: error: "):
            return Verdict(case, "error", err, bad=f"error not one line: {err[:300]!r}")
        return Verdict(case, "error", lines[0])
    if rc != 0 or lines:
        return Verdict(case, "odd", err, bad=f"exit {rc}, stderr {err[:300]!r}")
    return _simulate_trace(case, path)


def _simulate_trace(case: str, path: Path) -> Verdict:
    from ptsim.core.convergence import ConvergenceModel
    from ptsim.profiles_io import load_profiles
    from ptsim.run import run_policy
    from ptsim.specs import ClusterSpec
    from ptsim.trace import load_trace

    profiles = load_profiles("a100")
    try:
        jobs = load_trace(
            path,
            known_models=list(profiles.models),
            known_tasks=ConvergenceModel.default().space.names,
            num_gpus=GPU_CLUSTER,
        )
        res = run_policy(jobs, "fifo", {}, profiles, ClusterSpec(nodes=4, gpus_per_node=8))
    except BaseException as exc:
        return Verdict(case, "crash", bad=f"validated, then {type(exc).__name__}: {exc}"[:300])
    # a job too big to finish runs into the horizon, which the summary reports
    if res.summary["unfinished"] and not res.summary["horizon_hit"]:
        return Verdict(case, "ok", bad=f"{res.summary['unfinished']} jobs never finished")
    return Verdict(case, "ok")


# ------------------------------------------------------------------------------ configs

BAD_VALUES = [
    "-1",
    "0",
    "1.5",
    "-0.5",
    "1e-9",
    "1e400",
    "maybe",
    "''",
    "[]",
    "[1,a]",
    "{}",
    "{a: 1}",
    "null",
    "true",
    "9223372036854775808",
    "abc",
    "-1e9",
    "nan",
    "inf",
    "[gpt5]",
    "/no/such/file.csv",
    # values many keys accept: some cases must run cleanly
    "1",
    "2",
    "0.5",
    "false",
    "8",
]
STRUCTURE = [
    "+foo=1",
    "+cluster.bogus=2",
    "cluster.nodez=2",
    "~cluster.nodes",
    "~seed",
    "a.b.c.d=1",
    "cluster.nodes=[",
    "seed=${oops}",
    "scheduler=nope",
    "profile=nope",
    "cluster=nope",
    "workload=nope",
    "bank=nope",
    "experiment=nope",
    "profile=elasticflow_t4",
    "profile=elasticflow_a100",
    "profile.dir=/no/such/dir",
]
"""Overrides that break the structure (unknown keys and options, syntax, missing files)."""


def _leaves(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import OmegaConf

    out: list[str] = []
    if OmegaConf.is_dict(node):
        for k in node:
            out += _leaves(node[k], f"{prefix}{k}.")
    else:
        out.append(prefix[:-1])
    return out


def bad_overrides(
    rng: np.random.Generator, keys: Sequence[str], n: int, structure: Sequence[str] = STRUCTURE
) -> list[list[str]]:
    """``n`` override lists: every structure case once, then one or two keys set to bad values."""
    out = [[s] for s in structure][:n]
    while len(out) < n:
        picks = rng.choice(len(keys), size=int(rng.integers(1, 3)), replace=False)
        out.append([f"{keys[int(i)]}={rng.choice(BAD_VALUES)}" for i in picks])
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text


def ptsim_keys() -> list[str]:
    """Every settable key of the default ptsim config and of each policy's knobs."""
    from ptsim.core.policy import POLICIES

    base = _compose_ptsim([])
    keys = [k for k in _leaves(base) if not k.startswith("sweep")]
    for name in POLICIES.names():
        keys += [f"scheduler.{k}" for k in _leaves(_compose_ptsim([f"scheduler={name}"]).scheduler)]
    return sorted(set(keys) - {"scheduler.name"})


SMALL = ["workload=short", "workload.duration_s=300", "progress=false"]


_BASES: dict[tuple[str, tuple[str, ...]], Any] = {}


def _compose_ptsim(overrides: Sequence[str]) -> Any:
    from hydra import compose, initialize_config_dir

    from ptsim.paths import conf_root

    def full(ov: Sequence[str]) -> Any:
        with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
            return compose("config", overrides=[*SMALL, *ov])

    return _compose_cached("ptsim", full, overrides)


def _compose_cached(
    kind: str, full: Callable[[Sequence[str]], Any], overrides: Sequence[str]
) -> Any:
    """``full(overrides)`` (hydra's composition), faster: value changes of existing keys are
    applied to a cached composition of the rest, as hydra applies them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ptsim.paths import conf_root

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = {p.name for p in conf_root().iterdir() if p.is_dir()}
    simple = [
        o
        for o in parsed
        if o.type is OverrideType.CHANGE and o.key_or_group not in groups and o.package is None
    ]
    rest = tuple(str(o.input_line) for o in parsed if o not in simple)
    if (kind, rest) not in _BASES:
        _BASES[kind, rest] = full(rest)
    cfg = _BASES[kind, rest].copy()
    for o in simple:
        if OmegaConf.select(cfg, o.key_or_group, default="<missing>") == "<missing>":
            raise HydraException(f"unknown config key {o.key_or_group!r}")
        try:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        except OmegaConfBaseException as exc:  # hydra: "Error merging override ..."
            raise HydraException(f"Error merging override {o.input_line}: {exc}") from None
    return cfg


def check_ptsim(overrides: Sequence[str]) -> Verdict:
    """The checks ``ptsim`` makes, in process: override syntax and group options, composing,
    the typed checks and the plan; a config that passes is simulated (every policy it names,
    on its tiny workload) and must finish."""
    from hydra.errors import HydraException

    from ptsim.run import plan_config, run_plan
    from ptsim.schema import group_choice_error, hydra_one_line, override_syntax_error

    case = " ".join(overrides)
    scheduler = [] if any(o.startswith("scheduler") for o in overrides) else ["scheduler=edf"]
    if any(o.split("=")[0].startswith("scheduler.") for o in overrides):
        scheduler = ["scheduler=prompttuner"]
        for name in ("infless", "elasticflow"):
            if any(k in o for o in overrides for k in _POLICY_ONLY[name]):
                scheduler = [f"scheduler={name}"]
    ov = [*scheduler, *overrides]
    try:
        early = override_syntax_error(ov) or group_choice_error(ov)
        if early:
            return _one_line_verdict(case, early)
        try:
            cfg = _compose_ptsim(ov)
        except HydraException as exc:  # a key that does not exist (the CLI's check_overrides)
            return _one_line_verdict(case, hydra_one_line(str(exc)))
        try:
            plan = plan_config(cfg)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            return _one_line_verdict(case, _one_line(exc))
        for name, params in plan.policies:
            res = run_plan(plan, name, params)
            if res.summary["unfinished"] and not res.summary["horizon_hit"]:
                return Verdict(case, "ok", bad="unfinished jobs without reaching the horizon")
    except BaseException as exc:
        return Verdict(case, "crash", bad=f"{type(exc).__name__}: {exc}"[:300])
    return Verdict(case, "ok")


_POLICY_ONLY = {
    "infless": ("gamma", "bin_s", "range_s", "short_window_s", "head_q", "tail_q", "window_m"),
    "elasticflow": ("slot_s", "handout_order", "admission", "replan=", "cap_by_profile"),
}


def _one_line_verdict(case: str, msg: str) -> Verdict:
    if "\n" in msg.strip() or not msg.strip():
        return Verdict(case, "error", msg, bad=f"error not one line: {msg[:300]!r}")
    return Verdict(case, "error", msg.strip())


def ptexec_keys() -> list[str]:
    """Every settable key of the default ptexec config."""
    from ptexec.config import compose_config

    return sorted(set(_leaves(compose_config([]))) - {"scheduler.name"})


def check_ptexec(overrides: Sequence[str], out: Path) -> Verdict:
    """What ``ptexec run --check`` does, in process: compose, check, build the plan (jobs,
    tasks, policy, bank config); no worker starts. ``out`` is the run folder it names."""
    from hydra.errors import HydraException

    from ptexec.config import bank_from, compose_config, plan_exec
    from ptsim.schema import group_choice_error, hydra_one_line, override_syntax_error

    case = " ".join(overrides)
    ov = [f"out={out}", *overrides]
    try:
        early = override_syntax_error(ov) or group_choice_error(ov)
        if early:
            return _one_line_verdict(case, early)
        try:
            cfg = _compose_cached("ptexec", compose_config, ov)
            plan = plan_exec(cfg)
            bank_from(cfg, plan.run_dir)
        except HydraException as exc:
            return _one_line_verdict(case, hydra_one_line(str(exc)))
        except (ValueError, KeyError, FileNotFoundError) as exc:
            return _one_line_verdict(case, _one_line(exc))
    except BaseException as exc:
        return Verdict(case, "crash", bad=f"{type(exc).__name__}: {exc}"[:300])
    return Verdict(case, "ok")


EXEC_STRUCTURE = [
    "+foo=1",
    "tuning.bogus=1",
    "~workers",
    "scheduler=nope",
    "bank=nope",
    "workers=[",
    "jobs=/no/such/jobs.jsonl",
    "trace=/no/such/trace.csv",
    "profile_dir=/no/such/dir",
]


def summarize(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Counts by outcome, and of contract breaches."""
    out: dict[str, int] = {"cases": len(verdicts), "bad": sum(1 for v in verdicts if v.bad)}
    for v in verdicts:
        out[v.outcome] = out.get(v.outcome, 0) + 1
    return out
