"""Fuzzing the inputs (ptsim/tools/fuzz.py): 300 malformed traces, 75 bad ptsim configs and 30
bad ptexec configs, all in this process. Each must end in a clean run or a one-line error,
never a traceback; a watchdog turns a hang into a failure. A larger run:
``python benchmarks/fuzz_bench.py``."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ptsim.tools import fuzz

WATCHDOG_S = 120  # far above any case's time: only a hang trips it


class Hang(BaseException):
    pass


@contextmanager
def watchdog(seconds: int = WATCHDOG_S) -> Iterator[None]:
    def trip(_sig: int, _frame: object) -> None:
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, trip)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_all(cases: list[Callable[[], fuzz.Verdict]]) -> list[fuzz.Verdict]:
    out = []
    for case in cases:
        with watchdog():
            out.append(case())
    return out


def assert_clean(verdicts: list[fuzz.Verdict], n: int) -> dict[str, int]:
    assert len(verdicts) >= n
    bad = [f"{v.case}: {v.bad}" for v in verdicts if v.bad]
    assert not bad, f"{len(bad)} of {len(verdicts)} broke the contract:\n" + "\n".join(bad[:10])
    for v in verdicts:
        if v.outcome == "error":
            assert v.message and "\n" not in v.message.strip() and "Traceback" not in v.message
    return fuzz.summarize(verdicts)


def test_300_malformed_traces_end_in_a_run_or_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    traces = list(fuzz.malformed_traces(rng, 300, tmp_path))
    verdicts = run_all([lambda c=c, p=p: fuzz.check_trace(c, p) for c, p in traces])
    counts = assert_clean(verdicts, 300)
    assert counts["error"] > 200 and counts.get("ok", 0) > 5  # both ends are exercised


def test_every_error_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    errors = 0
    for case, path in fuzz.malformed_traces(rng, 60, tmp_path):
        v = fuzz.check_trace(case, path)
        if v.outcome == "error":
            errors += 1
            assert str(path) in v.message, v.message
    assert errors > 40  # most malformed traces are refused (53 of these 60)


def test_75_bad_ptsim_configs_end_in_a_run_or_one_line() -> None:
    rng = np.random.default_rng(12)
    cases = fuzz.bad_overrides(rng, fuzz.ptsim_keys(), 75)
    verdicts = run_all([lambda c=c: fuzz.check_ptsim(c) for c in cases])
    counts = assert_clean(verdicts, 75)
    assert counts["error"] > 50 and counts.get("ok", 0) >= 1


@pytest.mark.exec
def test_30_bad_ptexec_configs_end_in_a_plan_or_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    cases = fuzz.bad_overrides(rng, fuzz.ptexec_keys(), 30, fuzz.EXEC_STRUCTURE)
    verdicts = run_all(
        [lambda c=c, i=i: fuzz.check_ptexec(c, tmp_path / f"r{i}") for i, c in enumerate(cases)]
    )
    counts = assert_clean(verdicts, 30)
    assert counts["error"] > 20
    assert not any(tmp_path.iterdir())  # nothing written by a check


def test_the_cli_gives_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real entry point on a few of the issue's cases (in process)."""
    from ptsim.app import run_cli

    for i, bad in enumerate(
        [
            "cluster.nodes=1.5",
            "scheduler.bank=maybe",
            "+foo=1",
            "scheduler=nope",
            "workload.models={a: 1}",
            "seed=${oops}",
        ]
    ):
        rc = run_cli(["scheduler=prompttuner", *fuzz.SMALL, f"hydra.run.dir={tmp_path}/{i}", bad])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (bad, err)
        assert err.startswith("ptsim: ") and "\n" not in err, (bad, err)
