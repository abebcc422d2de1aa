"""The canonical trace loader and writer: parsing, every kind of error, exact round trips."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ptsim.core.types import JobSpec
from ptsim.outcome import Table
from ptsim.trace import TraceError, load_trace, write_trace
from ptsim.trace.loader import sort_jobs

HEADER = "job_id,arrival_s,model,task,deadline_s,batch_size,iterations,num_gpus,min_gpus,max_gpus"
ROWS = (
    "j2,12.0,gpt2-base,sst2,40.5,16,300,1,1,8",
    "j1,0.5,gpt2-large,imdb,100.0,32,1200,2,1,8",
    "j3,12.0,vicuna-7b,rte,60.0,128,200,8,1,8",
)
COLS = HEADER.split(",")


def write_csv(tmp_path: Path, header: str = HEADER, rows: tuple[str, ...] = ROWS) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def with_cell(row: int, column: str, value: str) -> tuple[str, ...]:
    """ROWS with one cell replaced (row counted from 1)."""
    out = [r.split(",") for r in ROWS]
    out[row - 1][COLS.index(column)] = value
    return tuple(",".join(r) for r in out)


def test_loads_and_sorts_by_arrival_then_id(tmp_path: Path) -> None:
    jobs = load_trace(write_csv(tmp_path))
    assert [j.job_id for j in jobs] == ["j1", "j2", "j3"]
    assert jobs[0] == JobSpec("j1", 0.5, "gpt2-large", "imdb", 100.0, 32, 1200, 2, 1, 8)
    assert jobs[2] == JobSpec("j3", 12.0, "vicuna-7b", "rte", 60.0, 128, 200, 8, 1, 8)


def test_slo_column_gives_relative_deadline(tmp_path: Path) -> None:
    header = HEADER.replace("deadline_s", "slo_s")
    jobs = load_trace(write_csv(tmp_path, header=header))
    by_id = {j.job_id: j for j in jobs}
    assert by_id["j2"].deadline == 12.0 + 40.5
    assert by_id["j1"].deadline == 100.5


def test_integral_float_accepted_for_int_column(tmp_path: Path) -> None:
    jobs = load_trace(write_csv(tmp_path, rows=with_cell(1, "batch_size", "16.0")))
    assert {j.job_id: j.batch_size for j in jobs}["j2"] == 16


@pytest.mark.parametrize(
    ("row", "column", "value", "what"),
    [
        (2, "deadline_s", "-3.0", "-3.0 is before arrival_s 0.5"),
        (1, "arrival_s", "", "empty value"),
        (3, "job_id", " ", "empty value"),
        (1, "iterations", "abc", "'abc' is not a number"),
        (2, "arrival_s", "nan", "'nan' is not a finite number"),
        (2, "batch_size", "3.5", "'3.5' is not an integer"),
        (1, "arrival_s", "-1.0", "-1.0 is negative"),
        (3, "iterations", "0", "0 is below 1"),
        (2, "num_gpus", "-2", "-2 is below 1"),
        (3, "num_gpus", "16", "16 is outside [min_gpus, max_gpus] = [1, 8]"),
    ],
)
def test_cell_errors_name_file_row_column(
    tmp_path: Path, row: int, column: str, value: str, what: str
) -> None:
    p = write_csv(tmp_path, rows=with_cell(row, column, value))
    with pytest.raises(TraceError) as e:
        load_trace(p)
    assert str(e.value) == f"{p} row {row}, column {column}: {what}"
    assert (e.value.row, e.value.column) == (row, column)


def test_min_above_max(tmp_path: Path) -> None:
    rows = with_cell(1, "max_gpus", "2")
    p = write_csv(tmp_path, rows=(rows[0].replace(",1,1,2", ",1,4,2"), *rows[1:]))
    with pytest.raises(TraceError) as e:
        load_trace(p)
    assert str(e.value) == f"{p} row 1, column min_gpus: 4 is above max_gpus 2"


def test_duplicate_job_id_names_both_rows(tmp_path: Path) -> None:
    p = write_csv(tmp_path, rows=with_cell(3, "job_id", "j2"))
    with pytest.raises(TraceError, match=r"rows 1 and 3, column job_id: duplicate job id 'j2'$"):
        load_trace(p)


def test_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    p = write_csv(tmp_path)
    with pytest.raises(TraceError) as e:
        load_trace(p, known_models={"gpt2-base", "gpt2-large"})
    msg = f"{p} row 3, column model: unknown model 'vicuna-7b'; known: gpt2-base, gpt2-large"
    assert str(e.value) == msg
    assert len(load_trace(p, known_models=["gpt2-base", "gpt2-large", "vicuna-7b"])) == 3


@pytest.mark.parametrize(
    ("header", "rows", "what"),
    [
        (HEADER.replace(",task", ""), None, " column task: missing column"),
        (HEADER + ",user", None, " column 'user': unknown column; expected columns: job_id, "),
        (HEADER.replace("deadline_s", "ddl"), None, " column deadline_s: missing column"),
        (HEADER + ",slo_s", None, " column slo_s: give deadline_s or slo_s, not both"),
        (HEADER + ",job_id", None, " column 'job_id': appears twice in the header"),
        (HEADER, (), ": empty trace: no jobs"),
        (HEADER, (ROWS[0], ROWS[1] + ",7"), " row 2: 11 fields, header has 10"),
        (HEADER, (ROWS[0], "", ROWS[1]), " row 2: empty line"),
    ],
)
def test_structure_errors(
    tmp_path: Path, header: str, rows: tuple[str, ...] | None, what: str
) -> None:
    if rows is None:  # keep the rows well-formed for the header's width
        n = len(header.split(","))
        rows = tuple(",".join((r.split(",") + ["1"] * n)[:n]) for r in ROWS)
    p = write_csv(tmp_path, header=header, rows=rows)
    with pytest.raises(TraceError) as e:
        load_trace(p)
    assert str(e.value).startswith(f"{p}{what}")
    assert "\n" not in str(e.value)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: no such file$"):
        load_trace(tmp_path / "nope.csv")
    bad = tmp_path / "trace.txt"
    bad.write_text(HEADER + "\n")
    with pytest.raises(TraceError, match=r"trace\.txt: unknown extension '\.txt'; expected"):
        load_trace(bad)


def test_parquet_errors_name_row_and_column(tmp_path: Path) -> None:
    df = pd.DataFrame([r.split(",") for r in ROWS], columns=COLS)  # all text
    df.loc[1, "iterations"] = "lots"
    p = tmp_path / "t.parquet"
    df.to_parquet(p)
    with pytest.raises(TraceError) as e:
        load_trace(p)
    assert str(e.value) == f"{p} row 2, column iterations: 'lots' is not a number"
    df.loc[1, "iterations"] = None
    df.to_parquet(p)
    with pytest.raises(TraceError, match=r"row 2, column iterations: empty value$"):
        load_trace(p)


AWKWARD = [
    JobSpec("b,comma", 0.1 + 0.2, "gpt2-base", "sst2", 1 / 3 + 7, 16, 200, 1, 1, 8),
    JobSpec('a "quoted"', 0.1 + 0.2, "gpt2-large", "mnli", 123456789.123456789, 64, 1800, 4, 2, 8),
    JobSpec("c", 5e-324, "vicuna-7b", "trec", 2.0**29 + 0.5, 128, 999, 8, 1, 16),
    JobSpec("d", 1e-7, "vicuna-7b", "copa", 0.30000000000000004, 16, 1, 1, 1, 1),
]


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_round_trip_is_exact(tmp_path: Path, ext: str) -> None:
    p = write_trace(AWKWARD, tmp_path / f"sub/t{ext}")
    back = load_trace(p)
    assert back == sorted(AWKWARD, key=lambda j: (j.arrival, j.job_id))
    assert write_trace(back, tmp_path / f"again{ext}").read_bytes() == p.read_bytes()


def test_written_csv_has_canonical_header(tmp_path: Path) -> None:
    p = write_trace(AWKWARD, tmp_path / "t.csv")
    assert p.read_text().splitlines()[0] == HEADER


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old contents\n")

    def broken(self: Table, path: Path, **kw: object) -> None:
        Path(path).write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(Table, "write_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_trace(AWKWARD, target)
    assert target.read_text() == "old contents\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["t.csv"]


def test_write_csv_is_what_pandas_writes(tmp_path: Path) -> None:
    """The CSV writer (no pandas) writes the bytes the typed DataFrame's ``to_csv`` did."""
    from ptsim.trace.loader import _DTYPE
    from ptsim.trace.schema import COLUMN_NAMES, COLUMNS, job_to_row

    p = write_trace(AWKWARD, tmp_path / "t.csv")
    df = pd.DataFrame([job_to_row(j) for j in sort_jobs(AWKWARD)], columns=list(COLUMN_NAMES))
    df = df.astype({c.name: _DTYPE[c.kind] for c in COLUMNS})
    assert p.read_bytes() == df.to_csv(index=False, lineterminator="\n").encode()


def test_write_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="empty trace"):
        write_trace([], tmp_path / "t.csv")
    dup = [AWKWARD[0], AWKWARD[0]]
    with pytest.raises(TraceError, match="duplicate job id"):
        write_trace(dup, tmp_path / "t.csv")
    with pytest.raises(TraceError, match="unknown extension"):
        write_trace(AWKWARD, tmp_path / "t.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("row", "column", "value", "what"),
    [
        (2, "deadline_s", "0.5", "0.5 equals arrival_s (no job can meet it)"),
        (1, "iterations", "9223372036854775808", "out of range (integers must be below 2^63)"),
        (1, "batch_size", "-9223372036854775809", "out of range (integers must be below 2^63)"),
        (1, "iterations", "1000000000001", "1000000000001 is above the limit 1000000000000"),
        (1, "arrival_s", "1e10", "10000000000.0 is above the limit 1e+09 s"),
        (2, "deadline_s", "1e10", "deadline 10000000000.0 is above the limit 1e+09 s"),
    ],
)
def test_out_of_range_and_unmeetable_rows(
    tmp_path: Path, row: int, column: str, value: str, what: str
) -> None:
    p = write_csv(tmp_path, rows=with_cell(row, column, value))
    with pytest.raises(TraceError) as e:
        load_trace(p)
    assert str(e.value).startswith(f"{p} row {row}, column {column}: ")
    assert what in str(e.value)


def test_zero_slo_is_refused(tmp_path: Path) -> None:
    header = HEADER.replace("deadline_s", "slo_s")
    p = write_csv(tmp_path, header=header, rows=with_cell(3, "deadline_s", "0"))
    with pytest.raises(TraceError, match=r"row 3, column slo_s: 0.0 is not positive"):
        load_trace(p)


def test_unknown_task_and_cluster_fit(tmp_path: Path) -> None:
    p = write_csv(tmp_path, rows=with_cell(2, "task", "sts-b"))
    with pytest.raises(TraceError) as e:
        load_trace(p, known_tasks=["imdb", "rte", "sst2"])
    assert str(e.value) == f"{p} row 2, column task: unknown task 'sts-b'; known: imdb, rte, sst2"
    p = write_csv(tmp_path)
    with pytest.raises(TraceError) as e:
        load_trace(p, num_gpus=4)
    assert str(e.value) == f"{p} row 3, column num_gpus: the job asks for 8 GPUs; the cluster has 4"
    warnings: list[object] = []
    assert len(load_trace(p, num_gpus=8, warn=warnings.append)) == 3
    assert warnings == []
    load_trace(
        write_csv(tmp_path, rows=with_cell(3, "max_gpus", "16")), num_gpus=8, warn=warnings.append
    )
    (w,) = warnings
    assert str(w) == (
        f"{p} row 3, column max_gpus: warning max-gpus-above-cluster: 16 is above the cluster's "
        "8 GPUs; the job gets at most 8"
    )


def test_writer_refuses_what_the_loader_would(tmp_path: Path) -> None:
    big = JobSpec("x", 0.0, "m", "t", 1.0, 16, 2**63, 1, 1, 8)
    with pytest.raises(TraceError, match=r"row 1, column iterations: .* out of range"):
        write_trace([big], tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    p = write_csv(tmp_path)
    excel = tmp_path / "excel.csv"  # what Excel writes: a BOM and CRLF line ends
    excel.write_bytes(b"\xef\xbb\xbf" + p.read_bytes().replace(b"\n", b"\r\n"))
    assert load_trace(excel) == load_trace(p)
    # a byte that is not UTF-8 is counted from the start of the file, BOM included
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"\nj\xe9,")
    with pytest.raises(TraceError) as e:
        load_trace(bad)
    at = len(HEADER) + 5
    assert str(e.value) == f"{bad}: not UTF-8 text (invalid continuation byte at byte {at})"


def test_a_folder_is_named_as_one(tmp_path: Path) -> None:
    for name in ("adir.csv", "adir.parquet"):
        (tmp_path / name).mkdir()
        with pytest.raises(TraceError) as e:
            load_trace(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: is a folder, not a file"


@pytest.mark.parametrize("job_id", ['"a\nb"', "a\x00b", '"a\tb"'])
def test_a_job_id_with_a_control_character_is_refused(tmp_path: Path, job_id: str) -> None:
    """A newline, tab or NUL inside a (quoted) id would break every table the id goes into."""
    row = ROWS[0].split(",", 1)[1]
    path = write_csv(tmp_path, rows=(f"{job_id},{row}",))
    with pytest.raises(TraceError, match=r"row 1, column job_id: job id .* control character"):
        load_trace(path)
