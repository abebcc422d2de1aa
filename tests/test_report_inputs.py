"""Bad input to ``ptsim report`` and ``ptsim plot`` (docs/reliability.md, "Reports and plots"):
each damaged run folder, summary, overrides file or table, and each output path that is not a
folder, gives exit status 2 and one line naming the file, and nothing is written; runs that did
not complete are left out with a one-line warning."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from ptsim import app, report
from ptsim.paths import conf_root
from ptsim.run import run_config
from ptsim.runfolder import write_overrides

OVERRIDES = ["scheduler=edf", "workload=short", "workload.duration_s=120", "progress=false"]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete one-policy run folder as `ptsim` leaves it (COMPLETE, overrides.yaml)."""
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = compose("config", overrides=OVERRIDES)
    run = tmp_path_factory.mktemp("good") / "run"
    run_config(cfg, run)
    write_overrides(run, OVERRIDES)
    return run


def copy_run(good: Path, dst: Path) -> Path:
    shutil.copytree(good, dst)
    return dst


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    rc = app.run_cli([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def refused(rc: int, err: str, prog: str, names: Path, says: str) -> str:
    """Exit status 2 and exactly one line on stderr, from ``prog``, naming ``names`` and
    saying ``says``; returns the line."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"ptsim {prog}: "), line
    assert str(names) in line and says in line, line
    assert "Traceback" not in err
    return line


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


# ------------------------------------------------------------------------------ ptsim plot


def _swap_column_value(column: str, new: str) -> Callable[[bytes], bytes]:
    """Damage: replace ``column``'s value in the first data row of a CSV."""

    def damage(data: bytes) -> bytes:
        lines = data.decode().split("\n")
        header = lines[0].split(",")
        cells = lines[1].split(",")
        cells[header.index(column)] = new
        lines[1] = ",".join(cells)
        return "\n".join(lines).encode()

    return damage


def _drop_columns(*names: str) -> Callable[[bytes], bytes]:
    """Damage: remove columns from a CSV (every row)."""

    def damage(data: bytes) -> bytes:
        rows = [line.split(",") for line in data.decode().split("\n")]
        keep = [i for i, c in enumerate(rows[0]) if c not in names]
        return "\n".join(",".join(r[i] for i in keep) if r != [""] else "" for r in rows).encode()

    return damage


PLOT_DAMAGE: dict[str, tuple[str, Callable[[bytes], bytes], str]] = {
    "wrong columns": (
        "jobs.csv",
        lambda _: b"a,b\n1,2\n",
        "missing columns job_id, model, status",
    ),
    "not UTF-8": ("jobs.csv", lambda d: d.replace(b"job_id", b"job_id\xff", 1), "not UTF-8"),
    "empty": ("jobs.csv", lambda _: b"", "empty file"),
    "truncated mid-row": (
        "timeseries.csv",
        lambda d: d[: d.index(b"\n", 200) + 12],
        "fields, header has 7 (truncated?)",
    ),
    "truncated inside the last cell": (
        "timeseries.csv",
        lambda d: d[:-2],
        "ends mid-row, without a newline (truncated?)",
    ),
    "rows cut off": (
        "jobs.csv",
        lambda d: b"\n".join(d.split(b"\n")[:4]) + b"\n",
        "3 rows, but summary.json counts",
    ),
    "text for a number": (
        "jobs.csv",
        _swap_column_value("arrival_s", "abc"),
        "row 1, column arrival_s: 'abc'",
    ),
    "unknown status": (
        "jobs.csv",
        _swap_column_value("status", "finished"),
        "row 1, column status",
    ),
    "no met_deadline value": (
        "jobs.csv",
        _swap_column_value("met_deadline", ""),
        "row 1, column met_deadline: no value",
    ),
    "first_gpu_s missing": (
        "jobs.csv",
        _drop_columns("first_gpu_s"),
        "missing column first_gpu_s (first_ready_s needs it)",
    ),
    "empty series": ("timeseries.csv", lambda d: d.split(b"\n")[0] + b"\n", "no rows"),
    "series text": ("timeseries.csv", _swap_column_value("busy", "x"), "row 1, column busy"),
    "summary without metrics": ("summary.json", lambda _: b'{"policy": "edf"}', "missing keys"),
}


@pytest.mark.parametrize("case", list(PLOT_DAMAGE))
def test_plot_refuses_a_damaged_table_in_one_line_and_writes_nothing(
    case: str, good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, damage, says = PLOT_DAMAGE[case]
    run = copy_run(good_run, tmp_path / "run")
    path = run / name
    path.write_bytes(damage(path.read_bytes()))
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "plot", run, "--out", out)
    refused(rc, err, "plot", path, says)
    assert nothing_written(out)
    # the default output folder (the run itself) gets no figure either
    rc, _, err = cli(capsys, "plot", run)
    refused(rc, err, "plot", path, says)
    assert pngs(run) == []


def test_plot_still_draws_a_jobs_table_from_before_first_gpu_s(
    good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(good_run, tmp_path / "run")
    jobs = run / "jobs.csv"
    jobs.write_bytes(_drop_columns("first_gpu_s", "first_ready_s")(jobs.read_bytes()))
    rc, _, err = cli(capsys, "plot", run, "--out", tmp_path / "out")
    assert rc == 0, err
    assert pngs(tmp_path / "out") == ["gantt.png", "jct_cdf.png", "timeline.png"]


def test_plot_checks_every_policy_before_drawing_any(
    good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comparison = tmp_path / "cmp"
    comparison.mkdir()
    (comparison / "COMPLETE").write_text("{}")
    for name in ("edf", "fifo"):
        copy_run(good_run, comparison / name)
    bad = comparison / "fifo" / "jobs.csv"
    bad.write_text("job_id,model\nj0,m\n")
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "plot", comparison, "--out", out)
    refused(rc, err, "plot", bad, "missing columns status")
    assert nothing_written(out)


def test_plot_of_a_missing_folder_says_there_is_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(capsys, "plot", tmp_path / "nope")
    refused(rc, err, "plot", tmp_path / "nope", "no such folder")
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "plot", tmp_path / "empty")
    refused(rc, err, "plot", tmp_path / "empty", "no run (summary.json)")


@pytest.mark.parametrize("prog", ["report", "plot"])
def test_an_output_path_that_is_a_file_is_refused(
    prog: str, good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    rc, _, err = cli(capsys, prog, good_run, "--out", afile)
    refused(rc, err, prog, afile, "exists and is not a folder")
    rc, _, err = cli(capsys, prog, good_run, "--out", afile / "sub")
    refused(rc, err, prog, afile / "sub", f"{afile} is a file")
    assert afile.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_plot_leaves_out_a_policy_that_did_not_complete(
    good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comparison = tmp_path / "cmp"
    comparison.mkdir()
    (comparison / "INTERRUPTED").write_text("{}")
    for name in ("edf", "fifo"):  # a comparison's policy folders hold no lock of their own
        (copy_run(good_run, comparison / name) / ".lock").unlink()
    (comparison / "fifo" / "COMPLETE").unlink()  # interrupted while saving; edf had finished
    rc, _, err = cli(capsys, "plot", comparison, "--out", tmp_path / "out")
    assert rc == 0
    (line,) = err.strip().splitlines()
    assert line.startswith("ptsim plot: warning: skipped 1 incomplete run:")
    assert f"{comparison / 'fifo'} (part of {comparison}, which ended INTERRUPTED)" in line
    assert pngs(tmp_path / "out") == ["gantt.png", "jct_cdf.png", "timeline.png"]


# ------------------------------------------------------------------------------ ptsim report


def _summary_with(**changes: object) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        summary = json.loads(data)
        for key, value in changes.items():
            if value is KeyError:
                del summary[key]
            else:
                summary[key] = value
        return json.dumps(summary).encode()

    return damage


REPORT_DAMAGE: dict[str, tuple[str, Callable[[bytes], bytes], str]] = {
    "summary not UTF-8": (
        "summary.json",
        lambda d: d.replace(b'"edf"', b'"ed\xff"', 1),
        "not UTF-8 text",
    ),
    "summary not JSON": ("summary.json", lambda d: d[: len(d) // 2], "not valid JSON"),
    "summary a list": ("summary.json", lambda _: b"[1, 2]", "not a JSON object"),
    "headline metric missing": (
        "summary.json",
        _summary_with(slo_violation_rate=KeyError),
        "missing key slo_violation_rate",
    ),
    "metric is text": (
        "summary.json",
        _summary_with(cost_gpu_hours="abc"),
        'cost_gpu_hours = "abc": expected a number',
    ),
    "other metric is text": (
        "summary.json",
        _summary_with(utilisation="high"),
        'utilisation = "high": expected a number or null',
    ),
    "headline metric null": (
        "summary.json",
        _summary_with(warm_hit_rate=None),
        "warm_hit_rate is null",
    ),
    "label not text": ("summary.json", _summary_with(label=5), "label = 5: expected text"),
    "overrides not YAML": (
        "overrides.yaml",
        lambda _: b"- scheduler=edf\nb: [\n",
        "not valid YAML at line 2",
    ),
    "overrides not UTF-8": ("overrides.yaml", lambda _: b"- seed=\xff\n", "not UTF-8 text"),
    "overrides a mapping": (
        "overrides.yaml",
        lambda _: b"a: 1\n",
        "expected a list of overrides (key=value strings), got a mapping",
    ),
    "override not text": (
        "overrides.yaml",
        lambda _: b"- scheduler=edf\n- 5\n",
        "item 2 is a number (5)",
    ),
}


@pytest.mark.parametrize("case", list(REPORT_DAMAGE))
def test_report_refuses_a_damaged_run_in_one_line_and_writes_nothing(
    case: str, good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, damage, says = REPORT_DAMAGE[case]
    good = copy_run(good_run, tmp_path / "runs" / "0")
    run = copy_run(good_run, tmp_path / "runs" / "1")
    path = run / name
    path.write_bytes(damage(path.read_bytes()))
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "report", tmp_path / "runs", "--out", out)
    line = refused(rc, err, "report", path, says)
    assert line.startswith(f"ptsim report: {path}: ")
    assert nothing_written(out)
    # one bad run stops the report even when the good one comes first; nothing in it either
    assert not any((good / f).exists() for f in ("report.csv", "report_agg.csv", "report.png"))


def test_report_leaves_out_runs_that_did_not_complete_with_a_warning(
    good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    copy_run(good_run, runs / "0")
    interrupted = copy_run(good_run, runs / "1")
    (interrupted / "COMPLETE").rename(interrupted / "INTERRUPTED")
    killed = copy_run(good_run, runs / "2")  # a lock and no marker: killed, or still running
    (killed / "COMPLETE").unlink()
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "report", runs, "--out", out)
    assert rc == 0
    (line,) = err.strip().splitlines()
    assert line.startswith("ptsim report: warning: skipped 2 incomplete runs: ")
    assert f"{interrupted} (ended INTERRUPTED)" in line
    assert f"{killed} (no COMPLETE marker" in line
    table = (out / "report.csv").read_text().splitlines()
    assert len(table) == 2 and str(runs / "0") in table[1]
    assert "edf" in stdout

    # nothing complete: refused, nothing written
    shutil.rmtree(runs / "0")
    shutil.rmtree(out)
    rc, _, err = cli(capsys, "report", runs, "--out", out)
    refused(rc, err, "report", interrupted, "no complete run: ")
    assert nothing_written(out)


def test_a_run_from_before_markers_still_counts(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    summary = {
        "policy": "edf",
        "jobs": 4,
        "slo_violations": 1,
        "slo_violation_rate": 0.25,
        "cost_gpu_hours": 1.0,
        "mean_jct_s": None,
        "warm_hit_rate": 0.0,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "overrides.yaml").write_text(yaml.safe_dump(["scheduler=edf"]))
    assert report.incomplete(run) is None
    assert len(report.collect([tmp_path])) == 1


def test_report_files_are_written_all_or_none(
    good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "report.png").mkdir(parents=True)  # the last file cannot be written
    rc, _, err = cli(capsys, "report", good_run, "--out", out)
    refused(rc, err, "report", out / "report.png", "cannot write")
    assert sorted(p.name for p in out.iterdir()) == ["report.png"]  # no csv, no temporary file
