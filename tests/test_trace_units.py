"""Converters' time units (``time_unit``/``--time-unit`` for submission times,
``duration_unit``/``--duration-unit`` for run times) and the warning on an implausible trace
(a misread unit), on small hand-written logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptsim.trace import TraceError, WorkloadSpec, cli
from ptsim.trace.converters import convert_elasticflow, convert_generic
from tests.test_trace_cli import toy_profiles

DATA = Path(__file__).resolve().parent / "data"
SCALE = {"s": 1.0, "min": 60.0, "ms": 0.001}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CLI load the toy profiles."""
    monkeypatch.setattr(cli, "_load_profiles", lambda name: toy_profiles())


def generic_log(path: Path, n: int, gap: float, duration: float) -> Path:
    """``n`` one-GPU jobs, one every ``gap`` and each ``duration`` long (in the log's units)."""
    rows = [f"g{i},{i * gap},1,{duration}" for i in range(n)]
    path.write_text("job_id,submit_time,num_gpus,duration\n" + "\n".join(rows) + "\n")
    return path


def convert(log: Path, **units: str) -> object:
    cfg = WorkloadSpec(deadline_ratios=(1.0,))
    rng = np.random.default_rng(0)
    return convert_generic(log, cfg, toy_profiles(), rng, model="gpt2-base", **units)  # type: ignore[arg-type]


def test_generic_time_units_scale_arrivals_and_run_times(tmp_path: Path) -> None:
    log = generic_log(tmp_path / "log.csv", 3, 2.0, 10.0)
    for u, k in SCALE.items():
        res = convert(log, time_unit=u)
        assert [j.arrival for j in res.jobs] == pytest.approx([0.0, 2 * k, 4 * k])  # type: ignore[attr-defined]
        # gpt2-base on 1 GPU: 8 iterations/s; iterations = run time / step time (>= 1)
        assert [j.iterations for j in res.jobs] == [80] * 3  # type: ignore[attr-defined]
        res = convert(log, duration_unit=u)
        assert [j.arrival for j in res.jobs] == [0.0, 2.0, 4.0]  # type: ignore[attr-defined]
        assert [j.iterations for j in res.jobs] == [max(1, round(80 * k))] * 3  # type: ignore[attr-defined]
        assert res.demand_gpu_s == pytest.approx(30 * k)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="time unit 'h'"):
        convert(log, time_unit="h")


def test_clock_times_ignore_the_time_unit(tmp_path: Path) -> None:
    src = DATA / "trace_helios.csv"  # clock submissions
    s, m = convert(src), convert(src, time_unit="min")
    assert s == m


def test_elasticflow_time_unit_scales_submission_and_deadline() -> None:
    src = DATA / "trace_elasticflow.csv"
    s = convert_elasticflow(src, WorkloadSpec(), np.random.default_rng(0))
    m = convert_elasticflow(
        src, WorkloadSpec(), np.random.default_rng(0), time_unit="min", duration_unit="min"
    )
    assert [j.job_id for j in s.jobs] == [j.job_id for j in m.jobs]
    assert [60 * j.arrival for j in s.jobs] == pytest.approx([j.arrival for j in m.jobs])
    assert [60 * j.deadline for j in s.jobs] == pytest.approx([j.deadline for j in m.jobs])
    assert [j.iterations for j in s.jobs] == [j.iterations for j in m.jobs]
    assert s.demand_gpu_s is not None and m.demand_gpu_s == pytest.approx(60 * s.demand_gpu_s)


def test_submission_minutes_read_as_seconds_draw_one_warning_line(
    tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # the case of issue 16: 6 hours of submissions in minutes, run times in seconds (600 s)
    log = generic_log(tmp_path / "minutes.csv", 360, 1.0, 600.0)
    out = tmp_path / "t.csv"
    assert cli.main(["convert", "--from", "generic", str(log), str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ptsim-trace: warning: {log}: implausible")
    assert "360 jobs over 359 s" in err and "offered load 18.8 on 32 GPUs" in err
    assert "--time-unit" in err and out.exists()  # a warning: the trace is still written
    assert cli.main(["convert", "--from", "generic", str(log), str(out), "--time-unit", "min"]) == 0
    assert capsys.readouterr().err == ""  # 600 x 360 / (21540 x 32) = 0.31: plausible
    argv = ["convert", "--from", "generic", str(log), str(out), "--duration-unit", "ms"]
    assert cli.main([*argv, "--time-unit", "min"]) == 0
    assert "offered load 0.000313 on 32 GPUs" in capsys.readouterr().err
    assert cli.main(["convert", "--from", "generic", str(log), str(out), "--gpus", "4096"]) == 0
    assert "offered load 0.147 on 4096 GPUs" in capsys.readouterr().err  # (60 jobs/min)


def test_span_beyond_a_year_is_implausible(tmp_path: Path) -> None:
    log = generic_log(tmp_path / "ms.csv", 3, 2e8, 600.0)  # milliseconds read as seconds
    res = convert(log)
    assert "implausible trace (3 jobs over 4e+08 s" in (res.implausible(log, 32) or "")  # type: ignore[attr-defined]


def test_arrivals_beyond_the_loaders_limit_are_refused(tmp_path: Path) -> None:
    log = generic_log(tmp_path / "ms.csv", 3, 2e10, 600.0)  # 31+ years: the loader refuses it
    with pytest.raises(TraceError) as e:
        convert(log)
    assert str(e.value) == (
        f"{log} row 2: the converted job 'g1' would not load (column arrival_s: 20000000000.0 "
        "is above the limit 1e+09 s; are the source's times in another unit? --time-unit: "
        "s|min|ms)"
    )


def test_time_units_are_refused_for_philly(
    tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["convert", "--from", "philly", str(DATA / "trace_philly.json"), str(tmp_path / "o.csv")]
    assert cli.main([*argv, "--time-unit", "min"]) == 2
    assert "do not apply to philly" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
