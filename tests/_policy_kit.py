"""Helpers for the policy tests: hand-built profiles with a chosen throughput curve, a wrapper
that records every snapshot and decision (and checks the state's invariants before each), and
the checks every run must pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

from ptsim.core.policy import POLICIES, InitChooser, Policy, PolicyContext
from ptsim.core.profiles import Mechanics, ModelProfile, ProfileSet, ThroughputTable
from ptsim.core.types import Decision, GpuState, InitChoice, JobSpec, JobState, Snapshot
from ptsim.outcome import RunOutcome
from ptsim.simulator import Simulation


def curve_profiles(
    rates: Mapping[str, Sequence[float]],
    *,
    cold_start_s: float = 4.0,
    reload_s: float = 2.0,
    handover_s: float = 0.5,
    reconfig_s: float = 2.0,
    start_partial: bool = True,
) -> ProfileSet:
    """Models whose iterations per second at batch 16 on 1, 2, ..., k GPUs are ``rates[m]``."""
    models = {}
    for m, r in rates.items():
        table = ThroughputTable((16,), tuple(range(1, len(r) + 1)), np.array([list(r)]))
        models[m] = ModelProfile(m, 1e8, table, cold_start_s, reload_s, 0.25)
    mech = Mechanics(handover_s=handover_s, reconfig_s=reconfig_s, start_partial=start_partial)
    return ProfileSet(models, mech)


def spec(
    job_id: str,
    arrival: float,
    iters: int,
    within: float,
    *,
    model: str = "a",
    min_gpus: int = 1,
    max_gpus: int = 4,
) -> JobSpec:
    """A job due ``within`` seconds after it arrives."""
    return JobSpec(
        job_id, arrival, model, "t", arrival + within, 16, iters, min_gpus, min_gpus, max_gpus
    )


class FakeBank:
    """An InitChooser that returns one fixed choice and counts its calls."""

    def __init__(self, choice: InitChoice) -> None:
        self.choice = choice
        self.calls: list[str] = []

    def choose(self, spec: JobSpec) -> InitChoice:
        self.calls.append(spec.job_id)
        return self.choice


class Recorder:
    """Wraps a policy; keeps every (snapshot, decision) and checks the invariants first."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.sim: Simulation | None = None
        self.log: list[tuple[Snapshot, Decision]] = []

    def decide(self, snap: Snapshot) -> Decision:
        if self.sim is not None:
            self.sim.state.check_invariants()
        d = self.inner.decide(snap)
        self.log.append((snap, d))
        return d

    def allocations(self, job_id: str) -> list[tuple[float, tuple[int, ...]]]:
        """(time, GPU set) of every decision that set ``job_id``'s GPUs."""
        return [(s.now, d.allocations[job_id]) for s, d in self.log if job_id in d.allocations]


def simulate(
    jobs: Sequence[JobSpec],
    policy: str,
    params: Mapping[str, Any],
    profiles: ProfileSet,
    *,
    nodes: int = 1,
    gpus_per_node: int = 4,
    bank: InitChooser | None = None,
) -> tuple[RunOutcome, Recorder]:
    """Run ``policy`` through the real driver, recording its decisions."""
    rec = Recorder(POLICIES.build(policy, PolicyContext(profiles, bank), params))
    sim = Simulation(jobs, rec, profiles, num_nodes=nodes, gpus_per_node=gpus_per_node)
    rec.sim = sim
    return sim.run(), rec


def check_run(out: RunOutcome, *, all_done: bool = True) -> None:
    """What every run must satisfy: consistent state, no refused request, capacity, no double
    booking, GPU-seconds conserved, and (by default) every job done, none rejected."""
    st_ = out.state
    st_.check_invariants()
    assert st_.totals.invalid == 0, out.stats.invalid[:3]
    assert not out.stats.horizon_hit
    secs = st_.totals.gpu_seconds
    assert secs[GpuState.FREE] == 0.0
    provisioned = secs[GpuState.LOADING] + secs[GpuState.BUSY] + secs[GpuState.WARM]
    # the same GPU-seconds as the integral of the time series (every change is a row)
    integral = 0.0
    for (t0, _, lo, wa, bu, _, _), (t1, *_rest) in zip(out.series, out.series[1:], strict=False):
        integral += (lo + wa + bu) * (t1 - t0)
    assert provisioned == pytest.approx(integral, rel=1e-9, abs=1e-6)
    assert provisioned <= st_.num_gpus * out.stats.end_s + 1e-6
    per_job = sum(r.gpu_seconds for r in st_.jobs.values())
    assert per_job <= secs[GpuState.BUSY] + secs[GpuState.LOADING] + 1e-6
    for _, free, loading, warm, busy, _, _ in out.series:
        assert free + loading + warm + busy == st_.num_gpus
    if all_done:
        assert all(r.state is JobState.DONE for r in st_.jobs.values())


RATES = st.lists(st.floats(1.0, 30.0), min_size=1, max_size=4).map(
    lambda xs: [sum(sorted(xs)[: i + 1]) for i in range(len(xs))]  # increasing in GPUs
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[JobSpec], ProfileSet, int, int]:
    """A random small trace on a random small cluster with random mechanics."""
    n_models = draw(st.integers(1, 2))
    models = ["a", "b"][:n_models]
    profiles = curve_profiles(
        {m: draw(RATES) for m in models},
        cold_start_s=draw(st.floats(0.0, 20.0)),
        reload_s=draw(st.floats(0.0, 10.0)),
        handover_s=draw(st.floats(0.0, 2.0)),
        reconfig_s=draw(st.floats(0.0, 5.0)),
        start_partial=draw(st.booleans()),
    )
    nodes = draw(st.integers(1, 2))
    per_node = draw(st.integers(1, 4))
    cap = nodes * per_node
    jobs = []
    t = 0.0
    for i in range(draw(st.integers(1, 10))):
        t += draw(st.floats(0.0, 60.0))
        lo = draw(st.integers(1, min(3, cap)))
        hi = draw(st.integers(lo, 6))
        jobs.append(
            spec(
                f"j{i}",
                t,
                draw(st.integers(1, 2000)),
                draw(st.floats(0.0, 400.0)),
                model=draw(st.sampled_from(models)),
                min_gpus=lo,
                max_gpus=hi,
            )
        )
    return jobs, profiles, nodes, per_node
