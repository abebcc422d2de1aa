"""Invariants every policy keeps on generated scenarios (hypothesis): no GPU double-booked,
capacity never exceeded, provisioned GPU-seconds equal to the integral of the time series, and
every job ends exactly once (done or rejected)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.policy import POLICIES, PolicyContext
from ptsim.core.profiles import ProfileSet
from ptsim.core.types import GpuState, InitChoice, JobSpec, JobState, Snapshot
from ptsim.metrics import jobs_table
from ptsim.simulator import Simulation
from tests._policy_kit import FakeBank, Recorder, scenarios

# A bank lookup (two assessments, 0.5 s) for the policies that use one.
BANK = InitChoice("e1", "sst2", "flat", 2, 0.5, 0.3)


def check_snapshot(snap: Snapshot) -> None:
    """No GPU held by two jobs, each GPU's owner agrees with the job's GPU set, capacity."""
    owner: dict[int, str] = {}
    for job in snap.jobs:
        for gid in job.gpus:
            assert gid not in owner, f"GPU {gid} held by {owner[gid]} and {job.job_id}"
            owner[gid] = job.job_id
    assert len(owner) <= snap.num_gpus
    for gpu in snap.gpus:
        if gpu.job is not None:
            assert owner.get(gpu.gid) == gpu.job, f"GPU {gpu.gid}: {gpu.job} vs {owner}"
        if gpu.state is GpuState.BUSY:
            assert gpu.gid in owner, f"busy GPU {gpu.gid} has no job"
    assert len({g.gid for g in snap.gpus}) == len(snap.gpus) == snap.num_gpus


class Checked(Recorder):
    """A recorder that also checks every snapshot it passes on."""

    def decide(self, snap: Snapshot) -> object:  # type: ignore[override]
        check_snapshot(snap)
        return super().decide(snap)


def run_checked(
    jobs: Sequence[JobSpec], policy: str, profiles: ProfileSet, nodes: int, per_node: int
) -> None:
    bank = FakeBank(BANK)
    rec = Checked(POLICIES.build(policy, PolicyContext(profiles, bank), {}))
    ended: Counter[str] = Counter()
    sim = Simulation(
        jobs,
        rec,
        profiles,
        num_nodes=nodes,
        gpus_per_node=per_node,
        on_job_done=lambda spec: ended.update([spec.job_id]),
    )
    rec.sim = sim
    out = sim.run()
    state = out.state
    state.check_invariants()
    cap = nodes * per_node
    # every job ends exactly once: done (one completion) or rejected (none)
    assert not out.stats.horizon_hit
    for job_id, rec_ in state.jobs.items():
        assert rec_.state in (JobState.DONE, JobState.REJECTED), (job_id, rec_.state)
        assert ended[job_id] == (1 if rec_.state is JobState.DONE else 0), job_id
    table = jobs_table(out)
    assert sorted(table.job_id) == sorted(j.job_id for j in jobs)
    # capacity, every row of the series
    times = [row[0] for row in out.series]
    assert times == sorted(times)
    for _, free, loading, warm, busy, _, _ in out.series:
        assert min(free, loading, warm, busy) >= 0
        assert free + loading + warm + busy == cap
    # provisioned GPU-seconds == the integral of the series' provisioned GPUs
    integral = 0.0
    for (t0, _, lo, wa, bu, _, _), (t1, *_rest) in zip(out.series, out.series[1:], strict=False):
        integral += (lo + wa + bu) * (t1 - t0)
    secs = state.totals.gpu_seconds
    provisioned = secs[GpuState.LOADING] + secs[GpuState.WARM] + secs[GpuState.BUSY]
    assert provisioned == pytest.approx(integral, rel=1e-9, abs=1e-6)
    assert provisioned <= cap * out.stats.end_s + 1e-6


@pytest.mark.parametrize("policy", POLICIES.names())
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_every_policy_keeps_the_invariants(
    policy: str, scenario: tuple[list[JobSpec], ProfileSet, int, int]
) -> None:
    jobs, profiles, nodes, per_node = scenario
    run_checked(jobs, policy, profiles, nodes, per_node)
