"""The ``ptsim-trace`` command line, run through ``main(argv)``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ptsim.core.profiles import ModelProfile, ProfileSet, ThroughputTable
from ptsim.trace import cli, load_trace
from ptsim.trace.arrival_shape import read_shape

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
HEADER = "job_id,arrival_s,model,task,deadline_s,batch_size,iterations,num_gpus,min_gpus,max_gpus"


def toy_profiles() -> ProfileSet:
    """Three models; iterations/s = base x 16/batch x speedup(GPUs)."""
    batches, gpus, speedup = (16, 32, 64, 128), (1, 2, 4, 8), (1.0, 1.8, 3.2, 5.6)
    models = {}
    for name, base in (("gpt2-base", 8.0), ("gpt2-large", 3.0), ("vicuna-7b", 1.0)):
        ips = np.array([[base * 16 / b * s for s in speedup] for b in batches])
        models[name] = ModelProfile(name, 1e8, ThroughputTable(batches, gpus, ips), 10, 5, 0.5)
    return ProfileSet(models)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the CLI load the toy profiles; records the names asked for."""
    asked: list[str] = []

    def load(name: str) -> ProfileSet:
        asked.append(name)
        return toy_profiles()

    monkeypatch.setattr(cli, "_load_profiles", load)
    return asked


def test_validate_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "t.csv"
    p.write_text(
        f"{HEADER}\nb,10,gpt2-base,sst2,70,16,200,1,1,8\na,0,vicuna-7b,rte,5.5,16,9,1,1,8\n"
    )
    assert cli.main(["validate", str(p)]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"{p}: 2 jobs, arrivals 0-10 s (span 10 s), last deadline 70 s; "
        "models: gpt2-base (1), vicuna-7b (1)\n"
    )
    assert cli.main(["validate", str(p), "--models", "gpt2-base"]) == 2
    err = capsys.readouterr().err
    what = "unknown model 'vicuna-7b'; known: gpt2-base"
    assert err == f"ptsim-trace: error: {p} row 2, column model: {what}\n"


def test_convert_elasticflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ef.parquet"
    args = ["convert", "--from", "elasticflow", str(DATA / "trace_elasticflow.csv"), str(out)]
    assert cli.main([*args, "--profile-model", "gpt2-large"]) == 0
    assert capsys.readouterr().out == f"wrote {out}: 4 jobs\n"
    jobs = load_trace(out)
    assert [j.job_id for j in jobs] == ["b3", "c1", "a7", "d9"]
    assert {j.model for j in jobs} == {"gpt2-large"}
    assert {j.max_gpus for j in jobs} == {8, 16}  # widened to hold the 16-GPU request
    assert cli.main([*args, "--profile-model", "gpt2-large", "--max-gpus", "64"]) == 0
    capsys.readouterr()
    assert {j.max_gpus for j in load_trace(out)} == {64}
    assert cli.main([*args, "--model-map", "bert=gpt2-base"]) == 2
    assert "no mapping for model 'gpt2'" in capsys.readouterr().err


def test_convert_generic_and_philly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    out = tmp_path / "h.csv"
    src = str(DATA / "trace_helios.csv")
    assert cli.main(["convert", "--from", "generic", src, str(out), "--ratios", "1.5"]) == 0
    assert capsys.readouterr().out == f"wrote {out}: 3 jobs; skipped no GPUs: 1, zero duration: 1\n"
    assert toy == ["a100"]
    assert [j.job_id for j in load_trace(out)] == ["h5", "h1", "h4"]
    src = str(DATA / "trace_philly.json")
    assert cli.main(["convert", "--from", "philly", src, str(out), "--profiles", "mine"]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out}: 2 jobs; skipped never started: 1, no submitted_time: 1, unfinished: 1\n"
    )
    assert toy == ["a100", "mine"]


def test_generate_is_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    common = ["--load", "0.7", "--duration", "600", "--seed", "4", "--gpus", "16"]
    assert cli.main(["generate", str(a), *common]) == 0
    assert cli.main(["generate", str(b), *common]) == 0
    assert a.read_bytes() == b.read_bytes()
    jobs = load_trace(a)
    assert len(jobs) > 5 and all(j.arrival < 600 for j in jobs)
    assert f"wrote {a}: {len(jobs)} jobs, offered load" in capsys.readouterr().out


def test_generate_without_profiles_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ptsim.profiles_io", None)
    assert cli.main(["generate", str(tmp_path / "g.csv")]) == 2
    assert "ptsim.profiles_io is missing" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


def test_shape_regenerates_the_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "shape.csv"
    assert cli.main(["shape", str(out)]) == 0
    shipped = (REPO / "traces" / "arrival_shape.csv").read_text().splitlines()
    mine = out.read_text().splitlines()
    differ = [(x, y) for x, y in zip(shipped, mine, strict=True) if x != y]
    assert [x for x, _ in differ] == ["# Regenerate: ptsim-trace shape traces/arrival_shape.csv"]


def test_shape_from_trace(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    rows = [f"j{i},{t},gpt2-base,sst2,{t + 9},16,200,1,1,8" for i, t in enumerate((0, 5, 61, 200))]
    p.write_text("\n".join([HEADER, *rows]) + "\n")
    out = tmp_path / "s.csv"
    assert cli.main(["shape", str(out), "--from-trace", str(p)]) == 0
    np.testing.assert_allclose(read_shape(out), np.array([2, 1, 0, 1]) / 1.0)


def test_validate_checks_models_tasks_and_cluster_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = (
        "job_id,arrival_s,model,task,deadline_s,batch_size,iterations,num_gpus,min_gpus,max_gpus"
    )
    p = tmp_path / "t.csv"
    p.write_text(f"{header}\nj1,0,gpt2-base,sst2,100,16,10,4,1,8\n")
    assert cli.main(["validate", str(p)]) == 0
    assert cli.main(["validate", str(p), "--gpus", "2"]) == 2
    assert (
        "row 1, column num_gpus: the job asks for 4 GPUs; the cluster has 2"
        in capsys.readouterr().err
    )
    assert cli.main(["validate", str(p), "--gpus", "4"]) == 0
    assert "warning max-gpus-above-cluster" in capsys.readouterr().err
    p.write_text(f"{header}\nj1,0,gpt2-base,nope,100,16,10,1,1,8\n")
    assert cli.main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 1, column task: unknown task 'nope'; known: agnews" in err
    p.write_text(f"{header}\nj1,0,gpt5,sst2,100,16,10,1,1,8\n")
    assert cli.main(["validate", str(p)]) == 2
    assert "row 1, column model: unknown model 'gpt5'" in capsys.readouterr().err


# --- bad input: one line naming the thing, exit status 2, nothing written ---------------------


def error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one error line of a refused command (its exit status 2), without the prefix."""
    assert cli.main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.count("\n") == 1, cap.err
    assert cap.err.startswith("ptsim-trace: error: ")
    return cap.err.removeprefix("ptsim-trace: error: ").rstrip("\n")


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def small_trace(path: Path) -> Path:
    rows = [f"j{i},{t},gpt2-base,sst2,{t + 90},16,200,1,1,8" for i, t in enumerate((0, 5, 61))]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_an_output_that_is_an_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    src = tmp_path / "ef.csv"
    src.write_bytes((DATA / "trace_elasticflow.csv").read_bytes())
    trace = small_trace(tmp_path / "t.csv")
    shape = tmp_path / "shape.csv"
    assert cli.main(["shape", str(shape), "--minutes", "30"]) == 0
    (tmp_path / "link.csv").symlink_to(src)
    capsys.readouterr()
    before = snapshot(tmp_path)
    ef = ["convert", "--from", "elasticflow", str(src)]
    for out in (str(src), f"{tmp_path}/../{tmp_path.name}/ef.csv", str(tmp_path / "link.csv")):
        what = error_line(capsys, [*ef, out, "--profile-model", "gpt2-base"])
        assert what == f"OUT {out} is the input file; choose another output"
    what = error_line(capsys, ["shape", str(trace), "--from-trace", str(trace)])
    assert what == f"OUT {trace} is the --from-trace file; choose another output"
    argv = ["generate", str(shape), "--workload", "short", "--shape", str(shape)]
    assert error_line(capsys, argv) == f"OUT {shape} is the --shape file; choose another output"
    assert snapshot(tmp_path) == before
    assert toy == []  # no profile set was even loaded


def test_an_output_under_a_file_or_that_is_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    (tmp_path / "adir.csv").mkdir()
    src = str(DATA / "trace_elasticflow.csv")
    before = snapshot(tmp_path)
    for out, why in (
        (afile / "x.csv", f"{afile} exists and is not a folder"),
        (afile / "sub" / "x.csv", f"{afile} is a file"),
    ):
        for argv in (
            ["convert", "--from", "elasticflow", src, str(out), "--profile-model", "gpt2-base"],
            ["generate", str(out), "--duration", "600"],
            ["shape", str(out)],
        ):
            assert error_line(capsys, argv) == f"OUT {out}: {why}"
    out = tmp_path / "adir.csv"
    for argv in (["generate", str(out), "--duration", "600"], ["shape", str(out)]):
        assert error_line(capsys, argv) == f"OUT {out}: is a folder; give a file name"
    # the output is checked before the input is read
    argv = ["convert", "--from", "generic", str(tmp_path / "absent.csv"), str(afile / "x.csv")]
    assert error_line(capsys, argv) == f"OUT {afile / 'x.csv'}: {afile} exists and is not a folder"
    assert snapshot(tmp_path) == before and toy == []


def test_unknown_output_extensions_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    out = tmp_path / "o.txt"
    assert error_line(capsys, ["shape", str(out)]) == (
        f"OUT {out}: unknown extension '.txt'; expected .csv"
    )
    assert error_line(capsys, ["generate", str(out)]) == (
        f"OUT {out}: unknown extension '.txt'; expected .csv or .parquet"
    )
    argv = ["convert", "--from", "generic", str(DATA / "trace_helios.csv"), str(out)]
    assert error_line(capsys, argv) == (
        f"OUT {out}: unknown extension '.txt'; expected .csv or .parquet"
    )
    assert snapshot(tmp_path) == {} and toy == []


def test_convert_checks_the_models_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    out = tmp_path / "o.csv"
    known = "known: gpt2-base, gpt2-large, vicuna-7b (profile set a100, --profiles)"
    ef = ["convert", "--from", "elasticflow", str(DATA / "trace_elasticflow.csv"), str(out)]
    assert error_line(capsys, [*ef, "--profile-model", "nope"]) == (
        f"--profile-model nope: unknown model 'nope'; {known}"
    )
    assert error_line(capsys, [*ef, "--model-map", "gpt2=gpt2-base,bert=nope"]) == (
        f"--model-map bert=nope: unknown model 'nope'; {known}"
    )
    generic = ["convert", "--from", "generic", str(DATA / "trace_helios.csv"), str(out)]
    assert error_line(capsys, [*generic, "--profile-model", "nope"]) == (
        f"--profile-model nope: unknown model 'nope'; {known}"
    )
    assert not out.exists()
    assert cli.main([*ef, "--model-map", "gpt2=gpt2-base,bert=vicuna-7b"]) == 0
    assert {j.model for j in load_trace(out)} == {"gpt2-base", "vicuna-7b"}
    capsys.readouterr()
    assert cli.main([*ef[:-1], str(tmp_path / "raw.csv")]) == 0  # ElasticFlow's names, unchecked
    assert {j.model for j in load_trace(tmp_path / "raw.csv")} == {"bert", "gpt2"}


FLAG_ERRORS = [
    (
        ["convert", "--ratios", "0"],
        "--ratios 0: expected a non-empty list, each item a finite number in (0, 1e+06]",
    ),
    (
        ["convert", "--ratios", "0.5,-1"],
        "--ratios 0.5,-1: expected a non-empty list, each item a finite number in (0, 1e+06]",
    ),
    (
        ["convert", "--ratios", "1e308"],
        "--ratios 1e+308: expected a non-empty list, each item a finite number in (0, 1e+06]",
    ),
    (["convert", "--max-gpus", "0"], "--max-gpus 0: expected an integer in [1, 4096]"),
    (["convert", "--seed", "-1"], "--seed -1: expected an integer in [0, 4294967295]"),
    (["convert", "--gpus", "0"], "--gpus 0: expected an integer in [1, 262144]"),
    (["generate", "--load", "nan"], "--load nan: expected a finite number in (0, 100]"),
    (["generate", "--load", "inf"], "--load inf: expected a finite number in (0, 100]"),
    (["generate", "--load", "0"], "--load 0: expected a finite number in (0, 100]"),
    (
        ["generate", "--duration", "1e12"],
        "--duration 1e+12: expected a finite number in (0, 1e+07]",
    ),
    (["generate", "--duration", "-5"], "--duration -5: expected a finite number in (0, 1e+07]"),
    (["generate", "--seed", "-1"], "--seed -1: expected an integer in [0, 4294967295]"),
    (["generate", "--gpus", "0"], "--gpus 0: expected an integer in [1, 262144]"),
    (
        ["generate", "--workload", "short", "--offset", "-1"],
        "--offset -1: expected an integer >= 0",
    ),
    (
        ["shape", "--minutes", "100000000"],
        "--minutes 100000000: expected an integer in [1, 1000000]",
    ),
    (["shape", "--minutes", "0"], "--minutes 0: expected an integer in [1, 1000000]"),
    (["shape", "--seed", "-1"], "--seed -1: expected an integer in [0, 4294967295]"),
    (["validate", "--gpus", "0"], "--gpus 0: expected an integer in [1, 262144]"),
    # flags that do not apply are refused rather than ignored
    (
        ["generate", "--offset", "3"],
        "--offset applies to --workload short only: the default has no fixed shape",
    ),
    (
        ["convert", "--from", "elasticflow", "--ratios", "1"],
        "--ratios does not apply to elasticflow: its trace has deadlines",
    ),
    (
        ["convert", "--model-map", "a=gpt2-base"],
        "--model-map applies to elasticflow only: a generic log names no models",
    ),
    (
        ["convert", "--deadline", "relative"],
        "--deadline applies to elasticflow only: a generic log has no deadlines",
    ),
]


@pytest.mark.parametrize(("args", "what"), FLAG_ERRORS)
def test_flags_out_of_range_are_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    toy: list[str],
    args: list[str],
    what: str,
) -> None:
    cmd, rest = args[0], args[1:]
    out = str(tmp_path / "o.csv")
    if cmd == "convert":
        fmt = [] if "--from" in rest else ["--from", "generic"]
        argv = [cmd, *fmt, *rest, str(DATA / "trace_helios.csv"), out]
    elif cmd == "validate":
        argv = [cmd, str(small_trace(tmp_path / "t.csv")), *rest]
    else:
        argv = [cmd, out, *rest]
    before = snapshot(tmp_path)
    assert error_line(capsys, argv) == what
    assert snapshot(tmp_path) == before and toy == []


def test_max_gpus_one_is_a_range_without_elasticity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    out = tmp_path / "o.csv"
    argv = ["convert", "--from", "generic", str(DATA / "trace_helios.csv"), str(out)]
    assert cli.main([*argv, "--max-gpus", "1"]) == 0
    assert [(j.num_gpus, j.max_gpus) for j in load_trace(out)] == [(2, 2), (1, 1), (4, 4)]


def test_convert_refuses_a_job_that_validate_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    generic = tmp_path / "log.csv"
    generic.write_text("job_id,submit_time,num_gpus,duration\na,0,1,60\nb,10,100000,60\n")
    ef = tmp_path / "ef.csv"
    ef.write_text(
        "job_id,submission_time,num_iteration,model_name,deadline,batch_size,num_gpu\n"
        "a,5,100,gpt2,5,16,1\n"
    )
    long = tmp_path / "long.csv"
    long.write_text("job_id,submit_time,num_gpus,duration\na,0,1,1800\n")
    out = tmp_path / "o.csv"
    before = snapshot(tmp_path)
    assert error_line(capsys, ["convert", "--from", "generic", str(generic), str(out)]) == (
        f"{generic} row 2: the converted job 'b' would not load (column num_gpus: 100000 is "
        "above the limit 65536)"
    )
    assert error_line(capsys, ["convert", "--from", "elasticflow", str(ef), str(out)]) == (
        f"{ef} row 1: the converted job 'a' would not load (column deadline_s: 0.0 equals "
        "arrival_s (no job can meet it))"
    )
    argv = ["convert", "--from", "generic", str(long), str(out), "--ratios", "1e6"]
    what = error_line(capsys, argv)
    assert what.startswith(f"{long} row 1: the converted job 'a' would not load (column deadline_s")
    assert "above the limit 1e+09 s; arrival 0 s + deadline ratio 1e+06 (--ratios) x ideal" in what
    assert snapshot(tmp_path) == before


def test_generate_refuses_more_jobs_than_it_can_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toy: list[str]
) -> None:
    out = tmp_path / "g.csv"
    argv = ["generate", str(out), "--load", "100", "--gpus", "262144", "--duration", "1e7"]
    what = error_line(capsys, argv)
    assert what.startswith("about ") and what.endswith(
        "jobs would arrive (load 100 on 262144 GPUs over 1e+07 s); at most 10,000,000 are generated"
    )
    assert not out.exists()


def test_validate_names_a_folder_and_reads_a_bom(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "adir.csv"
    folder.mkdir()
    assert error_line(capsys, ["validate", str(folder)]) == f"{folder}: is a folder, not a file"
    p = small_trace(tmp_path / "t.csv")
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + p.read_bytes().replace(b"\n", b"\r\n"))
    assert cli.main(["validate", str(bom), "--models", "gpt2-base"]) == 0
    assert load_trace(bom) == load_trace(p)


def test_a_file_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s.csv"

    def refuse(*_args: object) -> None:
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(cli, "write_shape", refuse)
    assert error_line(capsys, ["shape", str(out)]) == f"{out}: Permission denied"
    assert not out.exists()
