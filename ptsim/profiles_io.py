"""Reading and writing profile directories: the step-time tables, cold-start and evaluation times
the simulator reads (``ptsim.core.profiles``).

A profile directory holds

- ``models.csv``: one row per model: ``model, params, throughput, eval_s`` and the cold start,
  either as parts (``container_s, bandwidth_gb_s, init_s``, optionally ``bytes_per_param``, from
  which ``cold_start_estimate`` computes it) or as measured totals (``cold_start_s, reload_s``);
  plus a free-text ``source`` (``derived``, ``measured``...);
- one throughput CSV per model in ElasticFlow's layout: header ``global_batch_size,1,2,4,...``
  (GPU counts, starting with 1), one row per global batch size, cells in iterations per second,
  empty where not measured;
- ``README.md``: how each number was obtained.

Every problem is reported as one line naming the file (or config key), row, column and what is
wrong. See ``docs/profiles.md``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptsim.core.profiles import (
    Mechanics,
    ModelProfile,
    ProfileSet,
    ThroughputTable,
    UnknownName,
    cold_start_estimate,
)
from ptsim.paths import profiles_root

__all__ = [
    "BATCH_HEADER",
    "MODELS_FILE",
    "MODEL_COLUMNS",
    "ModelEntry",
    "ProfileError",
    "available_profiles",
    "load_profiles",
    "read_models",
    "read_throughput",
    "reload_estimate",
    "resolve_profile_dir",
    "write_models",
    "write_throughput",
]

BATCH_HEADER = "global_batch_size"
"""First header cell of a throughput CSV (ElasticFlow's layout)."""

MODELS_FILE = "models.csv"
"""Per-model parameters of a profile directory."""

MODEL_COLUMNS: tuple[str, ...] = (
    "model",
    "params",
    "throughput",
    "eval_s",
    "container_s",
    "bandwidth_gb_s",
    "init_s",
    "bytes_per_param",
    "cold_start_s",
    "reload_s",
    "source",
    "heldout_eval_s",
    "checkpoint_s",
    "contended_throughput",
    "contended_heldout_eval_s",
    "full_eval_s",
    "contended_full_eval_s",
    "loop_overhead_s",
    "contended_loop_overhead_s",
)
"""Columns ``models.csv`` may have, in the order ``write_models`` writes them."""

_WRITTEN_WHEN_SET = MODEL_COLUMNS[MODEL_COLUMNS.index("heldout_eval_s") :]
"""Optional columns ``write_models`` leaves out when no entry has a value (files written before
they existed stay the same): every column from ``heldout_eval_s`` on (a new optional column
goes at the end of ``MODEL_COLUMNS``)."""

_REQUIRED_MODEL_COLUMNS = ("model", "params", "eval_s")
_PART_KEYS = ("container_s", "bandwidth_gb_s", "init_s", "bytes_per_param")
_SPEC_KEYS = ("name", "dir", "description", "needs", "models", "cold_start", "mechanics")


class ProfileError(ValueError):
    """A profile file or profile config that cannot be used; the message is one line that names
    the file (or config key), row and column, and the problem."""


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``models.csv``: a model's size, files and time parts, as written.

    Optional numbers are None when the cell is empty. ``throughput`` is a path relative to the
    profile directory (empty: ``<model>.csv``). ``contended_throughput`` (a path like it) and
    ``contended_heldout_eval_s``: step rates and the held-out evaluation measured while every
    other worker of the node trains (``ModelProfile.contended``); None: no contention.
    ``full_eval_s`` / ``contended_full_eval_s``: the full held-out evaluation after a screen
    near the target (``ModelProfile.full_eval_s``); None: not charged.
    ``loop_overhead_s`` / ``contended_loop_overhead_s``: what the driver's loop adds to every
    training step (``ModelProfile.loop_overhead_s``); None: not charged.
    """

    model: str
    params: float
    eval_s: float
    throughput: str = ""
    container_s: float | None = None
    bandwidth_gb_s: float | None = None
    init_s: float | None = None
    bytes_per_param: float | None = None
    cold_start_s: float | None = None
    reload_s: float | None = None
    source: str = ""
    heldout_eval_s: float | None = None
    checkpoint_s: float | None = None
    contended_throughput: str | None = None
    contended_heldout_eval_s: float | None = None
    full_eval_s: float | None = None
    contended_full_eval_s: float | None = None
    loop_overhead_s: float | None = None
    contended_loop_overhead_s: float | None = None

    def throughput_file(self) -> str:
        """The throughput file name, relative to the profile directory."""
        return self.throughput or f"{self.model}.csv"


def reload_estimate(
    params: float, *, bandwidth_gb_s: float, init_s: float, bytes_per_param: float = 2.0
) -> float:
    """Time to swap the model on a GPU whose tuning runtime is already up: load the weights
    (bytes_per_param x params / bandwidth) and re-initialise the runtime for the new model."""
    if bandwidth_gb_s <= 0:
        raise ValueError("bandwidth_gb_s must be > 0")
    return bytes_per_param * params / (bandwidth_gb_s * 1e9) + init_s


# --------------------------------------------------------------------------------------------
# locations and cell parsing


def _display(path: Path) -> str:
    """``path`` as shown in messages: as it was given (absolute stays absolute)."""
    return str(path)


def _at(path: Path, row: int | None = None, col: int | None = None, head: str = "") -> str:
    where = _display(path)
    if row is not None:
        where += f" row {row}"
        if col is not None:
            where += f", column {col}"
            if head:
                where += f" ({head!r})"
    return where


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _number(
    value: object,
    where: str,
    *,
    minimum: float | None = None,
    strict: bool = False,
    integer: bool = False,
) -> float:
    """Parse ``value`` as a finite number (>= or > ``minimum``); raise ProfileError at ``where``."""
    if isinstance(value, bool):
        raise ProfileError(f"{where}: {value!r} is not a number")
    text = value.strip() if isinstance(value, str) else value
    try:
        num = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: {_one_line(repr(value))} is not a number") from None
    if not math.isfinite(num):
        raise ProfileError(f"{where}: {_one_line(repr(value))} is not a finite number")
    if integer and num != int(num):
        raise ProfileError(f"{where}: {_one_line(repr(value))} is not a whole number")
    if minimum is not None:
        if strict and num <= minimum:
            raise ProfileError(f"{where}: {_one_line(repr(value))} must be > {minimum:g}")
        if not strict and num < minimum:
            raise ProfileError(f"{where}: {_one_line(repr(value))} must be >= {minimum:g}")
    return num


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows of a CSV file with their line numbers, cells stripped."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            rows: list[tuple[int, list[str]]] = []
            for cells in reader:
                stripped = [c.strip() for c in cells]
                if any(stripped):
                    rows.append((reader.line_num, stripped))
    except FileNotFoundError:
        raise ProfileError(f"{_display(path)}: no such file") from None
    except IsADirectoryError:
        raise ProfileError(f"{_display(path)}: is a directory, expected a CSV file") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{_display(path)}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise ProfileError(f"{_display(path)}: not valid CSV: {_one_line(str(exc))}") from None
    return rows


# --------------------------------------------------------------------------------------------
# throughput tables


def read_throughput(path: str | Path) -> ThroughputTable:
    """Read one ElasticFlow-layout throughput CSV (any model name) into a ThroughputTable."""
    path = Path(path)
    rows = _read_rows(path)
    expected = f"a header '{BATCH_HEADER},1,2,4,...'"
    if not rows:
        raise ProfileError(f"{_display(path)}: empty file; expected {expected}")
    hline, header = rows[0]
    if header[0] != BATCH_HEADER:
        raise ProfileError(
            f"{_at(path, hline, 1)}: expected {BATCH_HEADER!r}, got {header[0]!r} ({expected})"
        )
    if len(header) < 2:
        raise ProfileError(f"{_at(path, hline)}: no GPU-count columns ({expected})")
    gpu_counts: list[int] = []
    for j, cell in enumerate(header[1:], start=2):
        where = _at(path, hline, j)
        if not cell:
            raise ProfileError(f"{where}: empty GPU count")
        try:
            count = int(cell)
        except ValueError:
            raise ProfileError(f"{where}: {cell!r} is not a GPU count (a whole number)") from None
        if count < 1:
            raise ProfileError(f"{where}: GPU count {count} must be >= 1")
        if gpu_counts and count <= gpu_counts[-1]:
            raise ProfileError(
                f"{where}: GPU counts must be ascending; {count} follows {gpu_counts[-1]}"
            )
        if not gpu_counts and count != 1:
            raise ProfileError(f"{where}: the first GPU-count column must be 1, got {count}")
        gpu_counts.append(count)
    if len(rows) < 2:
        raise ProfileError(f"{_display(path)}: no data rows below the header")

    first_row: dict[int, int] = {}
    table: list[tuple[int, list[float]]] = []
    for line, cells in rows[1:]:
        if len(cells) != len(header):
            raise ProfileError(
                f"{_at(path, line)}: {len(cells)} columns, the header has {len(header)}"
            )
        where = _at(path, line, 1, BATCH_HEADER)
        if not cells[0]:
            raise ProfileError(f"{where}: empty batch size")
        try:
            batch = int(cells[0])
        except ValueError:
            raise ProfileError(
                f"{where}: {cells[0]!r} is not a batch size (a whole number)"
            ) from None
        if batch < 1:
            raise ProfileError(f"{where}: batch size {batch} must be >= 1")
        if batch in first_row:
            raise ProfileError(f"{where}: batch size {batch} repeats row {first_row[batch]}")
        first_row[batch] = line
        values: list[float] = []
        for j, cell in enumerate(cells[1:], start=2):
            head = header[j - 1]
            # empty, or "nan" as ElasticFlow's own files write it: not measured
            if not cell or cell.lower() == "nan":
                if j == 2:
                    raise ProfileError(
                        f"{_at(path, line, j, head)}: empty; every row needs a 1-GPU value"
                    )
                values.append(math.nan)
                continue
            value = _number(cell, _at(path, line, j, head), minimum=0.0)
            if value == 0.0:
                # ElasticFlow's files write 0 where a job gains nothing from more GPUs (its
                # scheduler stops scaling there): no faster than the column before
                if j == 2:
                    raise ProfileError(
                        f"{_at(path, line, j, head)}: 0; every row needs a 1-GPU value > 0"
                    )
                value = values[-1]
            values.append(value)
        table.append((batch, values))

    table.sort(key=lambda item: item[0])
    try:
        return ThroughputTable(
            batches=tuple(b for b, _ in table),
            gpu_counts=tuple(gpu_counts),
            iters_per_s=np.array([v for _, v in table], dtype=np.float64),
        )
    except ValueError as exc:  # the checks above should make this unreachable
        raise ProfileError(f"{_display(path)}: {_one_line(str(exc))}") from None


def _num_text(value: float) -> str:
    """Shortest text that reads back as exactly ``value`` (whole numbers without ``.0``)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _cell(value: float) -> str:
    return "" if math.isnan(value) else _num_text(value)


def write_throughput(path: str | Path, table: ThroughputTable) -> None:
    """Write ``table`` as an ElasticFlow-layout throughput CSV (empty cells for NaN)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([BATCH_HEADER, *(str(n) for n in table.gpu_counts)])
        for i, batch in enumerate(table.batches):
            writer.writerow([str(batch), *(_cell(v) for v in table.iters_per_s[i])])


# --------------------------------------------------------------------------------------------
# models.csv


@dataclass(frozen=True)
class _Located:
    """A ModelEntry and where it came from (for messages)."""

    entry: ModelEntry
    where: str


def _parse_field(key: str, value: object, where: str) -> float | str | None:
    """Parse one models.csv / config value; None for an empty optional value."""
    if key in ("model", "throughput", "source"):
        return "" if value is None else str(value).strip()
    if key == "contended_throughput":
        return None if value is None or not str(value).strip() else str(value).strip()
    if value is None or (isinstance(value, str) and not value.strip()):
        if key in _REQUIRED_MODEL_COLUMNS:
            raise ProfileError(f"{where}: empty; {key} is required")
        return None
    if key == "params" or key == "bandwidth_gb_s" or key == "bytes_per_param":
        return _number(value, where, minimum=0.0, strict=True)
    return _number(value, where, minimum=0.0)


def _entry_from(fields: Mapping[str, float | str | None]) -> ModelEntry:
    kwargs: dict[str, Any] = {k: v for k, v in fields.items() if k in MODEL_COLUMNS}
    return ModelEntry(**kwargs)


def _read_models_located(path: Path) -> list[_Located]:
    rows = _read_rows(path)
    if not rows:
        raise ProfileError(f"{_display(path)}: empty file; expected a header with {MODEL_COLUMNS}")
    hline, header = rows[0]
    seen: dict[str, int] = {}
    for j, name in enumerate(header, start=1):
        if name not in MODEL_COLUMNS:
            raise ProfileError(
                f"{_at(path, hline, j)}: unknown column {name!r}; known: {', '.join(MODEL_COLUMNS)}"
            )
        if name in seen:
            raise ProfileError(
                f"{_at(path, hline, j)}: column {name!r} repeats column {seen[name]}"
            )
        seen[name] = j
    for name in _REQUIRED_MODEL_COLUMNS:
        if name not in seen:
            raise ProfileError(f"{_at(path, hline)}: missing column {name!r}")

    out: list[_Located] = []
    first_row: dict[str, int] = {}
    for line, cells in rows[1:]:
        if len(cells) != len(header):
            raise ProfileError(
                f"{_at(path, line)}: {len(cells)} columns, the header has {len(header)}"
            )
        fields: dict[str, float | str | None] = {}
        for j, (key, cell) in enumerate(zip(header, cells, strict=True), start=1):
            fields[key] = _parse_field(key, cell, _at(path, line, j, key))
        model = fields["model"]
        col = seen["model"]
        if not model:
            raise ProfileError(f"{_at(path, line, col, 'model')}: empty model name")
        assert isinstance(model, str)
        if model in first_row:
            raise ProfileError(
                f"{_at(path, line, col, 'model')}: model {model!r} repeats row {first_row[model]}"
            )
        first_row[model] = line
        out.append(_Located(_entry_from(fields), f"{_at(path, line)} (model {model!r})"))
    return out


def read_models(path: str | Path) -> list[ModelEntry]:
    """Read a profile directory's ``models.csv``, in file order."""
    return [loc.entry for loc in _read_models_located(Path(path))]


def _fmt(value: float | None) -> str:
    return "" if value is None else _num_text(value)


def write_models(path: str | Path, entries: Iterable[ModelEntry]) -> None:
    """Write ``models.csv`` with the columns of MODEL_COLUMNS (empty cells for None); the
    overhead columns (``heldout_eval_s``, ``checkpoint_s``) only when some entry has one."""
    path = Path(path)
    entries = list(entries)
    columns = [
        k
        for k in MODEL_COLUMNS
        if k not in _WRITTEN_WHEN_SET or any(getattr(e, k) is not None for e in entries)
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for e in entries:
            row: list[str] = []
            for key in columns:
                value = getattr(e, key)
                if key in ("model", "source"):
                    row.append(value)
                elif key == "contended_throughput":
                    row.append(value or "")
                elif key == "throughput":
                    row.append(e.throughput_file())
                else:
                    row.append(_fmt(value))
            writer.writerow(row)


# --------------------------------------------------------------------------------------------
# profile directories


def available_profiles(root: str | Path | None = None) -> list[str]:
    """Names of the profile directories under ``root`` (default: the shipped ones), sorted."""
    base = Path(root) if root is not None else profiles_root()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MODELS_FILE).is_file())


def resolve_profile_dir(ref: str | Path, root: str | Path | None = None) -> Path:
    """The directory a profile reference names: an absolute path as is, otherwise a name or
    relative path under ``root`` (default: the shipped ``traces/profiles``); never the working
    directory. An unknown name raises UnknownName listing the available profiles."""
    path = Path(ref).expanduser()
    if path.is_absolute():
        if not path.is_dir():
            raise ProfileError(f"profile directory {path}: does not exist")
        return path
    base = Path(root) if root is not None else profiles_root()
    cand = base / path
    if cand.is_dir():
        return cand
    raise UnknownName("profile", str(ref), available_profiles(base))


def _as_mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _mechanics(spec: Mapping[str, Any], where: str) -> Mechanics:
    known = {f.name: f for f in dataclasses.fields(Mechanics)}
    kwargs: dict[str, Any] = {}
    for key in spec:
        k = str(key)
        at = f"{where}.{k}"
        if k not in known:
            raise ProfileError(f"{at}: unknown mechanics setting; known: {', '.join(known)}")
        value = spec[key]
        if value is None:
            continue
        if k in ("eval_every", "checkpoint_every"):
            kwargs[k] = int(_number(value, at, minimum=0.0, integer=True))
            continue
        if k == "start_partial":
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                value = value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise ProfileError(f"{at}: {value!r} is not true or false")
            kwargs[k] = value
        else:
            kwargs[k] = _number(value, at, minimum=0.0)
            if k == "full_eval_margin" and kwargs[k] > 1.0:
                raise ProfileError(f"{at}: {_one_line(repr(value))} must be <= 1")
    return Mechanics(**kwargs)


def _override(
    base: _Located | None,
    name: str,
    parts: Mapping[str, Any],
    own: Mapping[str, Any],
    where: str,
) -> _Located:
    """Apply the config's cold-start parts (all models) and per-model values to one entry;
    None (YAML ``null``) leaves a value as it is."""
    parts = {str(k): v for k, v in parts.items() if v is not None}
    own = {str(k): v for k, v in own.items() if v is not None}
    fields: dict[str, float | str | None]
    if base is not None:
        fields = {k: getattr(base.entry, k) for k in MODEL_COLUMNS}
        located_at = base.where
    else:
        fields = {k: None for k in MODEL_COLUMNS}
        fields.update(model=name, throughput="", source="config")
        located_at = f"{where}.models.{name}"
    own_keys = set(own)
    if base is not None and (parts or own_keys & set(_PART_KEYS)):
        for total in ("cold_start_s", "reload_s"):
            if fields[total] is not None and total not in own_keys:
                changed = sorted(set(parts) | (own_keys & set(_PART_KEYS)))
                raise ProfileError(
                    f"{base.where}: {total} is given as a total, so the override of "
                    f"{', '.join(changed)} cannot apply; override models.{name}.{total} "
                    "or use mechanics.cold_start_scale"
                )
    for k, value in parts.items():
        fields[k] = _parse_field(k, value, f"{where}.cold_start.{k}")
    for k, value in own.items():
        at = f"{where}.models.{name}.{k}"
        if k == "model" or k not in MODEL_COLUMNS:
            known = ", ".join(c for c in MODEL_COLUMNS if c != "model")
            raise ProfileError(f"{at}: unknown model setting; known: {known}")
        fields[k] = _parse_field(k, value, at)
    if fields["params"] is None or fields["eval_s"] is None:
        missing = [k for k in ("params", "eval_s") if fields[k] is None]
        raise ProfileError(f"{located_at}: missing {', '.join(missing)}")
    return _Located(_entry_from(fields), located_at)


def _model_profile(
    loc: _Located, directory: Path, tables: dict[Path, ThroughputTable]
) -> ModelProfile:
    e = loc.entry
    bpp = 2.0 if e.bytes_per_param is None else e.bytes_per_param
    if e.cold_start_s is not None:
        cold = e.cold_start_s
    elif e.container_s is not None and e.bandwidth_gb_s is not None and e.init_s is not None:
        cold = cold_start_estimate(
            e.params,
            container_s=e.container_s,
            bandwidth_gb_s=e.bandwidth_gb_s,
            init_s=e.init_s,
            bytes_per_param=bpp,
        )
    else:
        parts = {
            "container_s": e.container_s,
            "bandwidth_gb_s": e.bandwidth_gb_s,
            "init_s": e.init_s,
        }
        missing = ", ".join(k for k, v in parts.items() if v is None)
        raise ProfileError(
            f"{loc.where}: no cold start: give cold_start_s, or container_s, bandwidth_gb_s "
            f"and init_s (missing {missing})"
        )
    if e.reload_s is not None:
        reload = e.reload_s
    else:
        if e.bandwidth_gb_s is None or e.init_s is None:
            raise ProfileError(
                f"{loc.where}: no reload time: give reload_s, or bandwidth_gb_s and init_s"
            )
        reload = reload_estimate(
            e.params, bandwidth_gb_s=e.bandwidth_gb_s, init_s=e.init_s, bytes_per_param=bpp
        )
    table = _table(loc, directory, tables, e.throughput_file())
    contended = (
        None
        if e.contended_throughput is None
        else _table(loc, directory, tables, e.contended_throughput)
    )
    return ModelProfile(
        name=e.model,
        params=e.params,
        throughput=table,
        cold_start_s=cold,
        reload_s=reload,
        eval_s=e.eval_s,
        heldout_eval_s=e.heldout_eval_s or 0.0,
        checkpoint_s=e.checkpoint_s or 0.0,
        contended=contended,
        contended_heldout_eval_s=e.contended_heldout_eval_s,
        full_eval_s=e.full_eval_s or 0.0,
        contended_full_eval_s=e.contended_full_eval_s,
        loop_overhead_s=e.loop_overhead_s or 0.0,
        contended_loop_overhead_s=e.contended_loop_overhead_s,
    )


def _table(
    loc: _Located, directory: Path, tables: dict[Path, ThroughputTable], name: str
) -> ThroughputTable:
    """The throughput file ``name`` (relative to ``directory``), read once per load."""
    tpath = Path(name).expanduser()
    if not tpath.is_absolute():
        tpath = directory / tpath
    if tpath not in tables:
        if not tpath.is_file():
            raise ProfileError(f"{loc.where}: throughput file {_display(tpath)} does not exist")
        tables[tpath] = read_throughput(tpath)
    return tables[tpath]


def load_profiles(
    spec: str | Path | Mapping[str, Any], *, root: str | Path | None = None
) -> ProfileSet:
    """Load a profile set from a profile name, a directory, or a config mapping.

    A string or path names a directory: absolute, or relative to ``root`` (default: the shipped
    ``traces/profiles``). A mapping (for example hydra's ``profile`` group) may hold:

    - ``name``: the set's name (default: the directory's name);
    - ``dir``: the directory (default: ``name``), resolved as above;
    - ``models``: per-model values that replace or add to ``models.csv`` (any of its columns);
      a model missing from ``models.csv`` is added (its throughput file defaults to
      ``<model>.csv``), so a directory of ElasticFlow throughput files needs no ``models.csv``;
    - ``cold_start``: cold-start parts (``container_s``, ``bandwidth_gb_s``, ``init_s``,
      ``bytes_per_param``) applied to every model;
    - ``mechanics``: the ``Mechanics`` settings (defaults for those not given).

    In ``models`` and ``cold_start`` a null value leaves the directory's value unchanged.
    """
    if isinstance(spec, str | Path):
        spec = {"dir": str(spec)}
    if not isinstance(spec, Mapping):
        raise ProfileError(f"profile spec: expected a name, path or mapping, got {type(spec)}")
    for key in spec:
        if str(key) not in _SPEC_KEYS:
            raise ProfileError(
                f"profile config: unknown key {str(key)!r}; known: {', '.join(_SPEC_KEYS)}"
            )
    raw_name = spec.get("name")
    raw_dir = spec.get("dir", raw_name)
    if raw_dir is None or str(raw_dir).strip() == "":
        if spec.get("needs"):  # a config whose files are not shipped says how to get them
            raise ProfileError(f"profile.dir is not set: profile {raw_name} {spec['needs']}")
        raise ProfileError("profile config: give dir (a profile name or directory) or name")
    directory = resolve_profile_dir(str(raw_dir), root)
    name = str(raw_name) if raw_name else directory.name
    where = f"profile {name!r} config"

    parts = _as_mapping(spec.get("cold_start"), f"{where}.cold_start")
    for key in parts:
        if str(key) not in _PART_KEYS:
            raise ProfileError(
                f"{where}.cold_start.{key}: unknown cold-start part; known: {', '.join(_PART_KEYS)}"
            )
    overrides = _as_mapping(spec.get("models"), f"{where}.models")
    mechanics = _mechanics(
        _as_mapping(spec.get("mechanics"), f"{where}.mechanics"), f"{where}.mechanics"
    )

    models_path = directory / MODELS_FILE
    if models_path.is_file():
        located = _read_models_located(models_path)
    elif overrides:
        located = []
    else:
        raise ProfileError(
            f"profile directory {_display(directory)}: no {MODELS_FILE}, and the config names no "
            "models"
        )
    by_name = {loc.entry.model: loc for loc in located}
    order = [loc.entry.model for loc in located]
    order += sorted(str(k) for k in overrides if str(k) not in by_name)

    tables: dict[Path, ThroughputTable] = {}
    models: dict[str, ModelProfile] = {}
    for model in order:
        own = _as_mapping(overrides.get(model), f"{where}.models.{model}")
        loc = _override(by_name.get(model), model, parts, own, where)
        models[model] = _model_profile(loc, directory, tables)
    if not models:
        raise ProfileError(f"{_display(models_path)}: no models")
    return ProfileSet(models=models, mechanics=mechanics, name=name)
