"""Converters from ElasticFlow, generic cluster logs and Philly JSON, on hand-written fixtures
(tests/data/trace_*) with hand-checked expected values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptsim.core.profiles import ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.types import JobSpec
from ptsim.trace import TraceError, WorkloadSpec
from ptsim.trace.converters import convert_elasticflow, convert_generic, convert_philly

DATA = Path(__file__).resolve().parent / "data"
SPEEDUP = (1.0, 1.8, 3.2, 5.6)


def toy_profiles() -> ProfileSet:
    """Three models; iterations/s = base x 16/batch x speedup(GPUs)."""
    batches, gpus = (16, 32, 64, 128), (1, 2, 4, 8)
    models = {}
    for name, base in (("gpt2-base", 8.0), ("gpt2-large", 3.0), ("vicuna-7b", 1.0)):
        ips = np.array([[base * 16 / b * s for s in SPEEDUP] for b in batches])
        models[name] = ModelProfile(name, 1e8, ThroughputTable(batches, gpus, ips), 10, 5, 0.5)
    return ProfileSet(models)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def fields(jobs: list[JobSpec]) -> list[tuple[object, ...]]:
    """The fields a converter fixes (all but the drawn task)."""
    names = ("job_id", "arrival", "model", "deadline", "batch_size", "iterations", "num_gpus")
    return [tuple(getattr(j, n) for n in (*names, "min_gpus", "max_gpus")) for j in jobs]


# --- ElasticFlow ------------------------------------------------------------------------------


def test_elasticflow_absolute_deadlines_rebased() -> None:
    res = convert_elasticflow(DATA / "trace_elasticflow.csv", WorkloadSpec(), rng())
    # first submission 16566 becomes 0; deadlines are absolute on the same clock
    assert fields(res.jobs) == [
        ("b3", 0.0, "bert", 4781.0, 64, 40285, 4, 1, 8),
        ("c1", 0.0, "bert", 34.0, 32, 500, 1, 1, 8),
        ("a7", 34.0, "gpt2", 1234.0, 64, 1200, 2, 1, 8),
        ("d9", 434.0, "gpt2", 2434.0, 256, 800, 16, 1, 16),
    ]
    assert res.skipped == {}
    assert all(j.task in WorkloadSpec().tasks for j in res.jobs)


def test_elasticflow_relative_deadlines_and_model_map() -> None:
    res = convert_elasticflow(
        DATA / "trace_elasticflow.csv",
        WorkloadSpec(),
        rng(),
        model={"bert": "gpt2-base", "gpt2": "gpt2-large"},
        deadline="relative",
        rebase=False,
    )
    by_id = {j.job_id: j for j in res.jobs}
    assert (by_id["b3"].arrival, by_id["b3"].deadline) == (16566.0, 16566.0 + 21347.0)
    assert by_id["b3"].model == "gpt2-base" and by_id["a7"].model == "gpt2-large"
    one = convert_elasticflow(DATA / "trace_elasticflow.csv", WorkloadSpec(), rng(), model="x")
    assert {j.model for j in one.jobs} == {"x"}


def test_elasticflow_generator_spelling_and_best_effort() -> None:
    res = convert_elasticflow(DATA / "trace_elasticflow_gen.csv", WorkloadSpec(), rng())
    assert res.skipped == {"best effort": 1}
    assert [(j.job_id, j.arrival, j.deadline, j.iterations) for j in res.jobs] == [
        ("0", 0.0, 300.0, 2011),
        ("2", 30.0, 830.0, 14577),
    ]
    assert res.summary() == "2 jobs; skipped best effort: 1"


def test_elasticflow_errors(tmp_path: Path) -> None:
    src = DATA / "trace_elasticflow.csv"
    with pytest.raises(TraceError) as e:
        convert_elasticflow(src, WorkloadSpec(), rng(), model={"bert": "gpt2-base"})
    assert (
        str(e.value) == f"{src} row 1, column model_name: no mapping for model 'gpt2'; mapped: bert"
    )
    bad = tmp_path / "ef.csv"
    lines = src.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1], lines[2].replace(",21347,", ",100,")]) + "\n")
    with pytest.raises(TraceError) as e:
        convert_elasticflow(bad, WorkloadSpec(), rng())
    msg = (
        f"{bad} row 2, column deadline: 100.0 is before submission_time 16566.0 (read as absolute)"
    )
    assert str(e.value) == msg
    bad.write_text(lines[0].replace("num_iteration", "iters") + "\n" + lines[1] + "\n")
    with pytest.raises(TraceError, match=r"column num_iteration or iteration: missing column$"):
        convert_elasticflow(bad, WorkloadSpec(), rng())


# --- generic cluster logs ---------------------------------------------------------------------


def test_generic_helios_clock_times() -> None:
    cfg = WorkloadSpec(deadline_ratios=(2.0,))
    res = convert_generic(DATA / "trace_helios.csv", cfg, toy_profiles(), rng(), model="gpt2-base")
    assert res.skipped == {"no GPUs": 1, "zero duration": 1}
    # first kept submission 2020-03-31 23:59:55 UTC is time 0
    # iterations = duration x it/s (gpt2-base: 8 x 16/batch x speedup; batch = 16 x GPUs)
    got = fields(res.jobs)
    assert [g[:3] for g in got] == [
        ("h5", 0.0, "gpt2-base"),
        ("h1", 15.0, "gpt2-base"),
        ("h4", 125.0, "gpt2-base"),
    ]
    assert [(g[4], g[5], g[6]) for g in got] == [(32, 2160, 2), (16, 4800, 1), (64, 23040, 4)]
    deadlines = [g[3] for g in got]  # arrival + 2 x ideal run time (= the logged duration)
    assert deadlines == pytest.approx([600.0, 15.0 + 1200.0, 125.0 + 7200.0])


def test_generic_numeric_times_and_model_mix() -> None:
    src = DATA / "trace_itp_raw.csv"
    res = convert_generic(src, WorkloadSpec(), toy_profiles(), rng())
    assert [(j.job_id, j.arrival, j.num_gpus) for j in res.jobs] == [
        ("7c3e", 0.0, 1),
        ("6b2d", 66.0, 4),
        ("8d4f", 500.0, 2),
    ]
    prof = toy_profiles()
    for j, dur in zip(res.jobs, (120, 3890, 240), strict=True):
        ips = prof.iters_per_second(j.model, j.num_gpus, j.batch_size)
        assert j.iterations == round(dur * ips)
        ratio = (j.deadline - j.arrival) / (j.iterations / ips)
        assert min(abs(ratio - r) for r in WorkloadSpec().deadline_ratios) < 1e-9
    again = convert_generic(src, WorkloadSpec(), toy_profiles(), rng())
    assert again == res


def test_generic_time_offsets_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text(
        "submit_time,gpu_num,duration\n2020-04-01T08:00:00+08:00,1,60\n2020-04-01 00:00:30,1,60\n"
    )
    jobs = convert_generic(p, WorkloadSpec(), toy_profiles(), rng(), model="gpt2-base").jobs
    assert [(j.job_id, j.arrival) for j in jobs] == [("r000001", 0.0), ("r000002", 30.0)]
    p.write_text("submit_time,gpu_num,duration\n2020-04-01 00:00:00,1,60\n17,1,60\n")
    with pytest.raises(TraceError) as e:
        convert_generic(p, WorkloadSpec(), toy_profiles(), rng())
    what = "'17' is not like earlier rows (clock times)"
    assert str(e.value) == f"{p} row 2, column submit_time: {what}"
    p.write_text("submit_time,gpu_num,duration\n20200401,1,60\nsoon,1,60\n")
    with pytest.raises(TraceError, match=r"row 2, .*'soon' is not a number, nor a clock time$"):
        convert_generic(p, WorkloadSpec(), toy_profiles(), rng())
    p.write_text("submission_time,num_gpus,duration\n0,1,60\n5,1,-60\n")
    with pytest.raises(TraceError, match=r"row 2, column duration: -60\.0 is negative$"):
        convert_generic(p, WorkloadSpec(), toy_profiles(), rng())
    p.write_text("submission_time,num_gpus\n0,1\n")
    with pytest.raises(TraceError, match=r"column duration: missing column$"):
        convert_generic(p, WorkloadSpec(), toy_profiles(), rng())


# --- Philly -----------------------------------------------------------------------------------


def test_philly_fixture() -> None:
    cfg = WorkloadSpec(deadline_ratios=(2.0,))
    src = DATA / "trace_philly.json"
    res = convert_philly(src, cfg, toy_profiles(), rng(), model="gpt2-base")
    assert res.skipped == {"never started": 1, "unfinished": 1, "no submitted_time": 1}
    # application_4: submitted 02:52:00 (time 0), ran 02:52:10-02:57:10 on 1 GPU (300 s)
    # application_1: submitted 02:52:33, first start 02:53:00, last end 03:53:00 (3600 s),
    # the most GPUs an attempt held: 4 (two machines x 2)
    got = fields(res.jobs)
    assert [g[:3] + g[4:7] for g in got] == [
        ("application_4", 0.0, "gpt2-base", 16, 2400, 1),
        ("application_1", 33.0, "gpt2-base", 64, 23040, 4),
    ]
    assert [g[3] for g in got] == pytest.approx([600.0, 33.0 + 7200.0])


def test_philly_errors(tmp_path: Path) -> None:
    p = tmp_path / "log.json"
    p.write_text('[{"jobid": "a", "submitted_time": "yesterday", "attempts": []}]')
    with pytest.raises(TraceError) as e:
        convert_philly(p, WorkloadSpec(), toy_profiles(), rng())
    assert str(e.value) == (
        f"{p} job 1, field submitted_time: 'yesterday' is not a time like '2017-10-03 02:52:33'"
    )
    p.write_text('[{"jobid": "a", "submitted_time": null}]')
    with pytest.raises(TraceError, match=r"job 1, field attempts: missing$"):
        convert_philly(p, WorkloadSpec(), toy_profiles(), rng())
    p.write_text("{not json")
    with pytest.raises(TraceError, match="not valid JSON"):
        convert_philly(p, WorkloadSpec(), toy_profiles(), rng())
    p.write_text('[{"jobid": "a", "submitted_time": null, "attempts": []}]')
    with pytest.raises(TraceError, match=r"log\.json: no usable jobs$"):
        convert_philly(p, WorkloadSpec(), toy_profiles(), rng())


# --- every converter: what it makes loads; byte-order marks -----------------------------------


def test_a_converted_job_the_loader_would_refuse_is_an_error(tmp_path: Path) -> None:
    ef = tmp_path / "ef.csv"
    ef.write_text(
        "job_id,submission_time,num_iteration,model_name,deadline,batch_size,num_gpu\n"
        "a,0,100,gpt2,50,16,1\nb,5,100,gpt2,5,16,1\n"
    )
    with pytest.raises(TraceError) as e:
        convert_elasticflow(ef, WorkloadSpec(), rng())
    assert str(e.value) == (
        f"{ef} row 2: the converted job 'b' would not load (column deadline_s: 5.0 equals "
        "arrival_s (no job can meet it))"
    )
    log = tmp_path / "log.csv"
    log.write_text("job_id,submit_time,num_gpus,duration\na,0,1,60\nb,10,70000,60\n")
    with pytest.raises(TraceError) as e:
        convert_generic(log, WorkloadSpec(), toy_profiles(), rng(), model="gpt2-base")
    assert str(e.value) == (
        f"{log} row 2: the converted job 'b' would not load (column num_gpus: 70000 is above the "
        "limit 65536)"
    )
    job = {
        "jobid": "big",
        "submitted_time": "2017-10-03 02:52:00",
        "attempts": [
            {
                "start_time": "2017-10-03 02:52:10",
                "end_time": "2017-10-03 02:57:10",
                "detail": [{"ip": "m1", "gpus": [f"gpu{i}" for i in range(70000)]}],
            }
        ],
    }
    ph = tmp_path / "log.json"
    ph.write_text(json.dumps([job]))
    with pytest.raises(TraceError) as e:
        convert_philly(ph, WorkloadSpec(), toy_profiles(), rng(), model="gpt2-base")
    assert str(e.value) == (
        f"{ph} job 1: the converted job 'big' would not load (column num_gpus: 70000 is above "
        "the limit 65536)"
    )


def test_sources_with_a_byte_order_mark_convert_alike(tmp_path: Path) -> None:
    def bom(src: Path) -> Path:
        out = tmp_path / src.name
        out.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
        return out

    cfg, profiles = WorkloadSpec(), toy_profiles()
    ef = DATA / "trace_elasticflow.csv"
    assert convert_elasticflow(bom(ef), cfg, rng()) == convert_elasticflow(ef, cfg, rng())
    he = DATA / "trace_helios.csv"
    assert convert_generic(bom(he), cfg, profiles, rng()) == convert_generic(
        he, cfg, profiles, rng()
    )
    ph = DATA / "trace_philly.json"
    assert convert_philly(bom(ph), cfg, profiles, rng()) == convert_philly(ph, cfg, profiles, rng())
