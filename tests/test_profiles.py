"""Profile tables: loading the shipped profiles, the throughput-table queries, the derived A100
tables' shape, the ElasticFlow speed-ups, cold-start formulas, and every kind of bad input."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from ptsim.core.profiles import Mechanics, ThroughputTable, UnknownName
from ptsim.paths import conf_root, data_root, profiles_root
from ptsim.profiles_io import (
    MODEL_COLUMNS,
    ModelEntry,
    ProfileError,
    available_profiles,
    load_profiles,
    read_models,
    read_throughput,
    resolve_profile_dir,
    write_models,
    write_throughput,
)
from ptsim.tools import derive_profiles as dp

MODELS = ("gpt2-base", "gpt2-large", "vicuna-7b")
SHIPPED = ("a100", "elasticflow_gpt2")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MODELS_CSV = (
    "model,params,throughput,eval_s,container_s,bandwidth_gb_s,init_s\nm,1e9,m.csv,1.5,3,2,4\n"
)
GOOD_TABLE = "global_batch_size,1,2,4\n16,10,18,\n32,6,11,20\n"


def _profile_dir(tmp_path: Path, models: str = MODELS_CSV, table: str = GOOD_TABLE) -> Path:
    d = tmp_path / "prof"
    d.mkdir()
    _write(d / "models.csv", models)
    _write(d / "m.csv", table)
    return d


# ---------------------------------------------------------------------------------------------
# shipped profiles and locations


def test_data_locations_are_independent_of_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (data_root() / "profiles").is_dir()
    assert profiles_root() == data_root() / "profiles"
    assert conf_root().name == "conf"
    assert set(SHIPPED) <= set(available_profiles())
    for name in SHIPPED:
        assert set(load_profiles(name).models) == set(MODELS)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_every_way(name: str) -> None:
    by_name = load_profiles(name)
    by_path = load_profiles(profiles_root() / name)
    by_map = load_profiles({"name": "x", "dir": name, "mechanics": {"handover_s": 0.25}})
    assert by_name.name == name and by_map.name == "x"
    assert by_name.mechanics == Mechanics()
    assert by_map.mechanics == Mechanics(handover_s=0.25)
    for m in MODELS:
        a, b, c = by_name.model(m), by_path.model(m), by_map.model(m)
        assert a.cold_start_s == b.cold_start_s == c.cold_start_s
        assert np.array_equal(a.throughput.iters_per_s, b.throughput.iters_per_s, equal_nan=True)
        assert by_name.step_time(m, 1, 16) > 0


@pytest.mark.parametrize("name", SHIPPED)
def test_hydra_profile_configs_load(name: str) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.load(conf_root() / "profile" / f"{name}.yaml")
    ps = load_profiles(cfg)
    assert ps.name == name
    assert ps.mechanics == Mechanics()
    assert set(ps.models) == set(MODELS)
    cfg.cold_start.bandwidth_gb_s = 1.0  # a sweep over weight-load bandwidth
    slow = load_profiles(cfg)
    for m in MODELS:
        extra = 2.0 * ps.model(m).params / 1e9 * (1.0 / 1.0 - 1.0 / 3.0)
        assert slow.cold_start(m) == pytest.approx(ps.cold_start(m) + extra)
        assert slow.reload(m) == pytest.approx(ps.reload(m) + extra)


def test_shipped_files_match_the_derivation() -> None:
    assert dp.main(["--check"]) == 0


def test_derivation_writes_loadable_profiles(tmp_path: Path) -> None:
    assert dp.main(["--out", str(tmp_path), "--mfu", "0.3"]) == 0
    assert available_profiles(tmp_path) == sorted(SHIPPED)
    slow = load_profiles("a100", root=tmp_path)
    ref = load_profiles("a100")
    for m in MODELS:
        assert slow.step_time(m, 1, 64) > ref.step_time(m, 1, 64)
    assert dp.main(["--out", str(tmp_path), "--check"]) == 1  # written with another MFU


# ---------------------------------------------------------------------------------------------
# ThroughputTable queries


def _table() -> ThroughputTable:
    # samples/s: batch 16 -> 160, 288, -; batch 32 -> 192, 352, 640
    return ThroughputTable(
        batches=(16, 32),
        gpu_counts=(1, 2, 4),
        iters_per_s=np.array([[10.0, 18.0, math.nan], [6.0, 11.0, 20.0]]),
    )


def test_interpolates_between_gpu_columns() -> None:
    t = _table()
    assert t.iters_per_second(3, 32) == pytest.approx((352 + 640) / 2 / 32)


def test_flat_beyond_last_measured_column() -> None:
    t = _table()
    assert t.iters_per_second(4, 16) == pytest.approx(18.0)  # empty cell: flat after 2 GPUs
    assert t.iters_per_second(64, 32) == pytest.approx(20.0)
    assert t.iters_per_second(64, 16) == pytest.approx(18.0)


def test_interpolates_between_batch_rows_in_samples_per_second() -> None:
    t = _table()
    assert t.iters_per_second(1, 24) == pytest.approx((160 + 192) / 2 / 24)
    assert t.iters_per_second(2, 24) == pytest.approx((288 + 352) / 2 / 24)
    # outside the rows: the nearest row's samples per second
    assert t.iters_per_second(1, 8) == pytest.approx(160 / 8)
    assert t.iters_per_second(1, 64) == pytest.approx(192 / 64)


def test_csv_round_trip(tmp_path: Path) -> None:
    t = _table()
    path = tmp_path / "t.csv"
    write_throughput(path, t)
    back = read_throughput(path)
    assert back.batches == t.batches and back.gpu_counts == t.gpu_counts
    assert np.array_equal(back.iters_per_s, t.iters_per_s, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# derived A100 tables


@pytest.mark.parametrize("model", MODELS)
def test_derived_tables_never_slower_with_more_gpus(model: str) -> None:
    table = load_profiles("a100").model(model).throughput
    assert table.batches == (8, 16, 32, 64, 128, 256)
    assert table.gpu_counts == (1, 2, 4, 8, 16, 32, 64)
    for batch in (*table.batches, 12, 48, 200):
        rates = [table.iters_per_second(n, batch) for n in range(1, 65)]
        assert all(b >= a * (1 - 1e-12) for a, b in itertools.pairwise(rates))


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("model", MODELS)
def test_per_gpu_efficiency_decreases(name: str, model: str) -> None:
    table = load_profiles(name).model(model).throughput
    for i, _batch in enumerate(table.batches):
        row = table.iters_per_s[i]
        filled = [(n, v) for n, v in zip(table.gpu_counts, row, strict=True) if not math.isnan(v)]
        # filled cells are a prefix of the row (a row stops, it never resumes)
        assert [n for n, _ in filled] == list(table.gpu_counts[: len(filled)])
        eff = [v / (row[0] * n) for n, v in filled]
        assert eff[0] == 1.0
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(eff))
        assert all(b > a for a, b in itertools.pairwise(row[: len(filled)]))


def test_derived_step_time_follows_the_stated_formula() -> None:
    gpu, tun = dp.Gpu(), dp.Tuning()
    arch = dp.MODELS[0]  # gpt2-base
    t_sample = 4 * arch.params * 256 / (312e12 * 0.40)
    t_fixed = 5e-3 + 12 * 0.5e-3
    assert dp.step_time(arch, 1, 16, gpu, tun) == pytest.approx(t_fixed + 16 * t_sample)
    b_min = 108 * 128 * 128 / (768 * 256)
    assert dp.min_useful_batch(arch, gpu, tun) == pytest.approx(b_min)
    assert dp.step_time(arch, 8, 16, gpu, tun) == pytest.approx(
        t_fixed + b_min * t_sample + dp.sync_time(8, arch, gpu, tun)
    )
    assert dp.sync_time(1, arch, gpu, tun) == 0.0
    assert 0 < dp.sync_time(64, arch, gpu, tun) < 1e-3  # only the prompt's gradient
    table = load_profiles("a100").model("gpt2-base").throughput
    assert table.iters_per_second(1, 16) == pytest.approx(1 / (t_fixed + 16 * t_sample), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# ElasticFlow speed-ups


PUBLISHED = {
    128: {2: 1.63, 4: 2.28, 8: 2.56, 16: 2.72},
    256: {2: 1.70, 4: 2.79, 8: 3.82, 16: 4.36},
}


@pytest.mark.parametrize("model", MODELS)
def test_elasticflow_profile_reproduces_published_speedups(model: str) -> None:
    ef = load_profiles("elasticflow_gpt2").model(model).throughput
    derived = load_profiles("a100").model(model).throughput
    for batch, speedups in PUBLISHED.items():
        base = ef.iters_per_second(1, batch)
        assert base == derived.iters_per_second(1, batch)  # the 1-GPU rate is our derivation
        for n, s in speedups.items():
            assert ef.iters_per_second(n, batch) / base == pytest.approx(s, rel=1e-12)
        row = ef.iters_per_s[ef.batches.index(batch)]
        assert math.isnan(row[ef.gpu_counts.index(32)]) and math.isnan(row[-1])
        assert ef.iters_per_second(64, batch) == ef.iters_per_second(16, batch)


@pytest.mark.parametrize("model", MODELS)
def test_elasticflow_profile_never_faster_than_derived(model: str) -> None:
    ef = load_profiles("elasticflow_gpt2").model(model).throughput
    derived = load_profiles("a100").model(model).throughput
    for batch in ef.batches:
        for n in ef.gpu_counts:
            assert ef.iters_per_second(n, batch) <= derived.iters_per_second(n, batch) * (1 + 1e-12)


# ---------------------------------------------------------------------------------------------
# cold start, reload, evaluation


@pytest.mark.parametrize("name", SHIPPED)
def test_cold_start_matches_documented_formula(name: str) -> None:
    ps = load_profiles(name)
    cold = dp.ColdStart()
    assert (cold.container_s, cold.bandwidth_gb_s, cold.init_s, cold.bytes_per_param) == (
        3.0,
        3.0,
        3.0,
        2.0,
    )
    for arch in dp.MODELS:
        m = ps.model(arch.name)
        assert m.params == arch.params
        weights = 2.0 * arch.params / 3e9
        assert m.cold_start_s == pytest.approx(3.0 + weights + 3.0)
        assert m.reload_s == pytest.approx(weights + 3.0)
        fwd = 2.0 * arch.params * 256 / (312e12 * 0.40)
        assert m.eval_s == pytest.approx(0.25 + 2 * 32 * fwd, rel=1e-5)  # 2 batches of 32
    assert ps.cold_start("gpt2-base") == pytest.approx(6.0 + 2 * 124_439_808 / 3e9)


def test_cold_start_scale_and_overrides(tmp_path: Path) -> None:
    d = _profile_dir(tmp_path)
    base = load_profiles(d)
    assert base.cold_start("m") == pytest.approx(3 + 2e9 / 2e9 + 4)
    assert base.reload("m") == pytest.approx(1 + 4)
    scaled = load_profiles({"dir": str(d), "mechanics": {"cold_start_scale": 2.0}})
    assert scaled.cold_start("m") == pytest.approx(2 * base.cold_start("m"))
    over = load_profiles({"dir": str(d), "models": {"m": {"init_s": 0, "bytes_per_param": 4}}})
    assert over.cold_start("m") == pytest.approx(3 + 2)
    total = load_profiles({"dir": str(d), "models": {"m": {"cold_start_s": 9, "reload_s": 1}}})
    assert (total.cold_start("m"), total.reload("m")) == (9, 1)
    nulls = load_profiles({"dir": str(d), "cold_start": {"init_s": None}, "models": {"m": None}})
    assert nulls.cold_start("m") == base.cold_start("m")


def test_measured_totals_refuse_part_overrides(tmp_path: Path) -> None:
    models = "model,params,eval_s,cold_start_s,reload_s,source\nm,1e9,1,7.5,4,measured\n"
    d = _profile_dir(tmp_path, models=models)
    ps = load_profiles(d)
    assert (ps.cold_start("m"), ps.reload("m")) == (7.5, 4)
    with pytest.raises(ProfileError, match=r"models\.csv row 2 .*cold_start_s is given"):
        load_profiles({"dir": str(d), "cold_start": {"bandwidth_gb_s": 1}})


# ---------------------------------------------------------------------------------------------
# ElasticFlow files and unknown names


def test_elasticflow_file_with_any_model_name_loads(tmp_path: Path) -> None:
    # ElasticFlow's layout as-is (its scheduler/throughputs_*/<model>.csv); made-up numbers
    ef = tmp_path / "throughputs_A100"
    ef.mkdir()
    _write(
        ef / "some_model.csv",
        "global_batch_size,1,2,4,8,16,32,64\n"
        "128,7.3,11.9,16.6,18.7,19.8,18.6,16.6\n"
        "256,4.09,6.95,11.4,15.6,17.8,18.8,15.6\n",
    )
    table = read_throughput(ef / "some_model.csv")
    assert table.iters_per_second(2, 128) == pytest.approx(11.9)
    ps = load_profiles(
        {
            "dir": str(ef),
            "models": {
                "some_model": {
                    "params": 124e6,
                    "eval_s": 0.5,
                    "container_s": 3,
                    "bandwidth_gb_s": 3,
                    "init_s": 3,
                }
            },
        }
    )
    assert ps.name == "throughputs_A100"
    assert ps.step_time("some_model", 4, 128) == pytest.approx(1 / 16.6)


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(UnknownName) as info:
        load_profiles("no-such-profile")
    msg = str(info.value)
    assert "no-such-profile" in msg
    for name in SHIPPED:
        assert name in msg


def test_unknown_profile_under_custom_root(tmp_path: Path) -> None:
    _profile_dir(tmp_path)
    assert resolve_profile_dir("prof", tmp_path) == tmp_path / "prof"
    with pytest.raises(UnknownName, match="known: prof"):
        load_profiles("nope", root=tmp_path)
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "absent")


def test_unknown_model_lists_known() -> None:
    with pytest.raises(UnknownName, match="gpt2-base, gpt2-large, vicuna-7b"):
        load_profiles("a100").model("llama-70b")


def test_models_csv_round_trip(tmp_path: Path) -> None:
    entries = [
        ModelEntry("a", 1e9, 1.0, "a.csv", 3.0, 2.0, 4.0, 2.0, None, None, "derived"),
        ModelEntry("b", 2e8, 0.5, cold_start_s=5.0, reload_s=2.0, source="measured"),
    ]
    path = tmp_path / "models.csv"
    write_models(path, entries)
    # the overhead, contention, full-evaluation and loop columns (heldout_eval_s,
    # checkpoint_s, contended_*, full_eval_s, loop_overhead_s) are written only when set
    assert path.read_text().splitlines()[0] == ",".join(MODEL_COLUMNS[:-8])
    back = read_models(path)
    assert back[0] == entries[0]
    assert back[1] == ModelEntry(
        "b", 2e8, 0.5, "b.csv", cold_start_s=5.0, reload_s=2.0, source="measured"
    )
    busy = ModelEntry(
        "c", 1e6, 0.1, "c.csv", cold_start_s=1.0, reload_s=1.0, heldout_eval_s=0.2,
        contended_throughput="c_contended.csv", contended_heldout_eval_s=0.3,
    )  # fmt: skip
    write_models(path, [busy])
    assert (
        path.read_text().splitlines()[0].endswith("contended_throughput,contended_heldout_eval_s")
    )
    assert read_models(path) == [busy]
    screened = ModelEntry(
        "d", 1e6, 0.1, "d.csv", cold_start_s=1.0, reload_s=1.0, heldout_eval_s=0.2,
        contended_throughput="d_contended.csv", contended_heldout_eval_s=0.3,
        full_eval_s=0.25, contended_full_eval_s=0.4,
    )  # fmt: skip
    write_models(path, [screened, busy])
    assert path.read_text().splitlines()[0].endswith("full_eval_s,contended_full_eval_s")
    assert read_models(path) == [screened, busy]  # empty cells read back as None


# ---------------------------------------------------------------------------------------------
# bad input: one line naming file, row, column, problem

BAD_TABLES = [
    ("global_batch_size,1,2\n16,10,abc\n", 2, 3, "'abc' is not a number"),
    ("global_batch_size,1,2\n16,10,-1\n", 2, 3, "must be >= 0"),
    ("global_batch_size,1,2\n16,0,5\n", 2, 2, "every row needs a 1-GPU value > 0"),
    ("global_batch_size,1,2\n16,10,inf\n", 2, 3, "not a finite number"),
    ("global_batch_size,1,2\n16,,5\n", 2, 2, "every row needs a 1-GPU value"),
    ("global_batch_size,1,2\nx,1,2\n", 2, 1, "'x' is not a batch size"),
    ("global_batch_size,1,2\n0,1,2\n", 2, 1, "must be >= 1"),
    ("global_batch_size,1,2\n16,1,2\n16,1,2\n", 3, 1, "repeats row 2"),
    ("batch,1,2\n16,1,2\n", 1, 1, "expected 'global_batch_size'"),
    ("global_batch_size,1,two\n16,1,2\n", 1, 3, "'two' is not a GPU count"),
    ("global_batch_size,2,4\n16,1,2\n", 1, 2, "first GPU-count column must be 1"),
    ("global_batch_size,1,4,2\n16,1,2,3\n", 1, 4, "must be ascending"),
    ("global_batch_size,1,0\n16,1,2\n", 1, 3, "must be >= 1"),
    ("global_batch_size,1,2\n\n16,1,2\n32,1,x\n", 4, 3, "'x' is not a number"),
]


@pytest.mark.parametrize(("text", "row", "col", "problem"), BAD_TABLES)
def test_bad_throughput_csv_names_file_row_column(
    tmp_path: Path, text: str, row: int, col: int, problem: str
) -> None:
    path = _write(tmp_path / "gpt2-base.csv", text)
    with pytest.raises(ProfileError) as info:
        read_throughput(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "gpt2-base.csv" in msg
    assert f"row {row}, column {col}" in msg
    assert problem in msg


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file"),
        ("global_batch_size,1,2\n", "no data rows"),
        ("global_batch_size\n16\n", "no GPU-count columns"),
        ("global_batch_size,1,2\n16,1\n", "row 2: 2 columns, the header has 3"),
    ],
)
def test_bad_throughput_csv_without_cell(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path / "t.csv", text)
    with pytest.raises(ProfileError, match=problem) as info:
        read_throughput(path)
    assert "t.csv" in str(info.value)


def test_zero_cell_reads_as_no_speed_up(tmp_path: Path) -> None:
    # ElasticFlow's A100 resnet50_cifar10.csv writes 0 in its 16-64 GPU columns: its scheduler
    # reads that as "no further speed-up"; so does the loader (the column before, repeated)
    path = _write(tmp_path / "r.csv", "global_batch_size,1,2,4,8\n64,28.6,27.6,28.7,0\n")
    table = read_throughput(path)
    assert table.iters_per_second(8, 64) == pytest.approx(28.7)
    assert table.iters_per_second(64, 64) == pytest.approx(28.7)


def test_error_shows_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "t.csv", "global_batch_size,1,2\n16,10,abc\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProfileError) as info:
        read_throughput(path.resolve())
    assert str(info.value).startswith(f"{path.resolve()} row 2")


def test_missing_throughput_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"absent\.csv: no such file"):
        read_throughput(tmp_path / "absent.csv")
    d = _profile_dir(tmp_path)
    (d / "m.csv").unlink()
    with pytest.raises(ProfileError, match=r"models\.csv row 2 \(model 'm'\): throughput file"):
        load_profiles(d)


def test_bad_table_reported_through_load_profiles(tmp_path: Path) -> None:
    d = _profile_dir(tmp_path, table="global_batch_size,1,2\n16,10,abc\n")
    with pytest.raises(ProfileError, match=r"m\.csv row 2, column 3 \('2'\): 'abc' is not"):
        load_profiles(d)


BAD_MODELS = [
    ("model,params,eval_s,colour\nm,1,1\n", 1, 4, "unknown column 'colour'"),
    ("model,params,eval_s,params\nm,1,1,1\n", 1, 4, "repeats column 2"),
    ("model,params,eval_s\nm,abc,1\n", 2, 2, "'abc' is not a number"),
    ("model,params,eval_s\nm,0,1\n", 2, 2, "must be > 0"),
    ("model,params,eval_s\nm,1,-2\n", 2, 3, "must be >= 0"),
    ("model,params,eval_s\nm,1,\n", 2, 3, "eval_s is required"),
    ("model,params,eval_s\n,1,1\n", 2, 1, "empty model name"),
    ("model,params,eval_s\nm,1,1\nm,2,2\n", 3, 1, "repeats row 2"),
    ("model,params,eval_s,bandwidth_gb_s\nm,1,1,0\n", 2, 4, "must be > 0"),
]


@pytest.mark.parametrize(("text", "row", "col", "problem"), BAD_MODELS)
def test_bad_models_csv_names_file_row_column(
    tmp_path: Path, text: str, row: int, col: int, problem: str
) -> None:
    d = _profile_dir(tmp_path, models=text)
    with pytest.raises(ProfileError) as info:
        load_profiles(d)
    msg = str(info.value)
    assert "\n" not in msg
    assert "models.csv" in msg
    assert f"row {row}, column {col}" in msg
    assert problem in msg


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model,params\nm,1\n", "row 1: missing column 'eval_s'"),
        ("model,params,eval_s\nm,1,1\n", "row 2 (model 'm'): no cold start"),
        (
            "model,params,eval_s,cold_start_s\nm,1,1,5\n",
            "row 2 (model 'm'): no reload time",
        ),
        ("model,params,eval_s\n", "no models"),
    ],
)
def test_bad_models_csv_row_problems(tmp_path: Path, text: str, problem: str) -> None:
    d = _profile_dir(tmp_path, models=text)
    with pytest.raises(ProfileError) as info:
        load_profiles(d)
    assert "models.csv" in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"colour": 1}, "unknown key 'colour'"),
        ({"mechanics": {"speed": 1}}, "config.mechanics.speed: unknown mechanics setting"),
        ({"mechanics": {"handover_s": "x"}}, "config.mechanics.handover_s: 'x' is not a number"),
        ({"mechanics": {"start_partial": 3}}, "start_partial: 3 is not true or false"),
        ({"cold_start": {"speed": 1}}, "config.cold_start.speed: unknown cold-start part"),
        ({"cold_start": {"init_s": -1}}, "config.cold_start.init_s: -1 must be >= 0"),
        ({"models": {"m": {"colour": 1}}}, "config.models.m.colour: unknown model setting"),
        ({"models": {"m": {"params": "big"}}}, "config.models.m.params: 'big' is not a number"),
        ({"models": {"n": {"params": 1}}}, "config.models.n: missing eval_s"),
        ({"models": [1]}, "config.models: expected a mapping"),
    ],
)
def test_bad_profile_config_names_the_key(
    tmp_path: Path, spec: dict[str, object], problem: str
) -> None:
    d = _profile_dir(tmp_path)
    with pytest.raises(ProfileError) as info:
        load_profiles({"dir": str(d), **spec})
    assert "\n" not in str(info.value)
    assert problem in str(info.value)


def test_start_partial_accepts_yaml_strings(tmp_path: Path) -> None:
    d = _profile_dir(tmp_path)
    ps = load_profiles({"dir": str(d), "mechanics": {"start_partial": "false"}})
    assert ps.mechanics.start_partial is False


def test_nan_cells_read_as_not_measured(tmp_path: Path) -> None:
    """ElasticFlow's own throughput files write ``nan`` where a count was not measured."""
    path = tmp_path / "ncf.csv"
    path.write_text("global_batch_size,1,2,4\n64,10.0,nan,NaN\n")
    table = read_throughput(path)
    assert table.iters_per_second(4, 64) == pytest.approx(10.0)
    path.write_text("global_batch_size,1,2\n64,nan,3\n")
    with pytest.raises(ProfileError, match="every row needs a 1-GPU value"):
        read_throughput(path)
