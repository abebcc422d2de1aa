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
