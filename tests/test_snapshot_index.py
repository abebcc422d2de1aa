"""``Snapshot.jobs_by_id``: built once per snapshot and kept, read-only, outside equality and
``dataclasses.replace``; also run against the compiled build (tests/test_native.py), whose
classes have no ``__dict__`` for ``functools.cached_property`` to keep the mapping in."""

from __future__ import annotations

import dataclasses

import pytest

from ptsim.core.state import ClusterState
from ptsim.core.types import Snapshot
from tests._util import job, linear_profiles


def _snapshot() -> Snapshot:
    s = ClusterState(1, 4, linear_profiles(("m",)))
    for job_id in ("a", "b", "c"):
        s.add_job(job(job_id, 0, 100, 500), 0.0)
    return s.snapshot(0.0)


def test_the_mapping_is_built_once_and_kept() -> None:
    snap = _snapshot()
    first = snap.jobs_by_id
    assert snap.jobs_by_id is first  # not rebuilt at the second access
    assert list(first) == ["a", "b", "c"]
    assert all(first[j.job_id] is j for j in snap.jobs)


def test_the_mapping_is_read_only() -> None:
    by_id = _snapshot().jobs_by_id
    with pytest.raises(TypeError):
        by_id["d"] = by_id["a"]  # type: ignore[index]


def test_a_kept_mapping_changes_neither_equality_nor_a_replaced_copy() -> None:
    snap = _snapshot()
    fresh = dataclasses.replace(snap)
    _ = snap.jobs_by_id  # built on one of two equal snapshots only
    assert snap == fresh
    fewer = dataclasses.replace(snap, jobs=snap.jobs[:1])
    assert list(fewer.jobs_by_id) == ["a"]  # the copy's own jobs, not the kept mapping
    assert list(snap.jobs_by_id) == ["a", "b", "c"]
