"""Result tables without pandas: ``Table.csv_text`` writes what ``DataFrame.to_csv`` writes,
and ``summarize`` gives the same numbers from rows as from the DataFrame."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.metrics import job_rows, series_rows, summarize
from ptsim.outcome import Table
from ptsim.profiles_io import load_profiles
from ptsim.simulator import Simulation
from ptsim.trace import WorkloadSpec, generate_workload


def _same_csv(columns: list[str], rows: list[tuple[object, ...]]) -> None:
    got = Table(columns, rows).csv_text()
    assert got == pd.DataFrame(rows, columns=columns).to_csv(index=False)


def test_csv_like_pandas_floats() -> None:
    r = random.Random(0)
    values = [r.uniform(-1e6, 1e6) for _ in range(2000)]
    values += [10 ** r.uniform(-30, 30) * r.choice((1, -1)) for _ in range(2000)]
    values += [float(r.randrange(10**18)) for _ in range(500)]
    values += [0.0, -0.0, math.nan, math.inf, -math.inf, 1e16, 1e15, 1e-4, 1e-5, 0.1 + 0.2]
    _same_csv(["x"], [(v,) for v in values])


def test_csv_like_pandas_mixed_columns() -> None:
    rows = [
        (
            i,
            i % 2 == 1,
            None if i % 3 else 'a,"b"',
            math.nan if i % 5 == 0 else i * 0.1,
            i if i % 2 else i + 0.5,
            np.int64(i),
            "",
            None,
        )
        for i in range(200)
    ]
    _same_csv(list("abcdefgh"), rows)
    _same_csv(list("ab"), [])
    _same_csv(list("ab"), [(None, math.nan), (None, None)])


def test_run_tables_and_summary_without_pandas() -> None:
    profiles = load_profiles("a100")
    jobs = generate_workload(
        WorkloadSpec(duration_s=1800.0, load=1.2), profiles, 32, np.random.default_rng(3)
    )
    for policy in ("edf", "elasticflow"):
        pol = POLICIES.build(policy, PolicyContext(profiles, None), {})
        out = Simulation(jobs, pol, profiles, num_nodes=4, gpus_per_node=8).run()
        table = job_rows(out)
        frame = table.to_frame()
        assert table.csv_text() == frame.to_csv(index=False)
        series = series_rows(out)
        assert series.csv_text() == series.to_frame().to_csv(index=False)
        for rule in ("censor_at_end", "censor_at_deadline", "exclude"):
            a = summarize(out, table, rejected_jct=rule)
            b = summarize(out, frame, rejected_jct=rule)
            assert a == b
            assert a["jobs"] == len(jobs)
