"""ClusterState: a decision is checked against the invariants and applied, with the right
mechanical actions."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ptsim.core.profiles import Mechanics, UnknownName
from ptsim.core.state import ClusterState
from ptsim.core.types import (
    Decision,
    GpuState,
    InitChoice,
    InvalidRequest,
    JobState,
    JobView,
    LoadModel,
    Reconfigure,
    RejectJob,
    ReleaseGpu,
)
from tests._util import job, linear_profiles


def state(nodes: int = 1, per_node: int = 4, **kw: object) -> ClusterState:
    return ClusterState(nodes, per_node, linear_profiles(("m", "n")), **kw)  # type: ignore[arg-type]


def kinds(actions: list[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_free_gpu_is_a_cold_start_and_the_job_starts_when_it_is_ready() -> None:
    s = state()
    s.add_job(job("a", 0, 100, 500), 0.0)
    acts = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    assert kinds(acts) == ["LoadModel"]
    load = acts[0]
    assert isinstance(load, LoadModel) and load.gid == 0 and not load.reload
    assert s.gpu(0).state is GpuState.LOADING and s.job("a").state is JobState.STARTING
    (rc,) = s.gpu_ready(0, load.token, 10.0)
    assert isinstance(rc, Reconfigure) and rc.gpus == (0,) and rc.first
    assert rc.pause_s == pytest.approx(0.5)  # hand-over only
    left = s.job_resumed("a", rc.epoch, 10.5)
    assert left == pytest.approx(100.0)
    assert s.job_finished("a", rc.epoch, 110.5)
    assert s.gpu(0).state is GpuState.WARM and s.gpu(0).model == "m"
    s.check_invariants()


def test_warm_gpu_of_the_model_is_a_hand_over_without_load() -> None:
    s = state()
    s.apply(Decision(prewarm={1: "m"}), 0.0)
    s.gpu_ready(1, 1, 10.0)
    assert s.snapshot(10.0).warm_idle_of("m") == (1,)
    s.add_job(job("a", 10, 10, 500), 10.0)
    acts = s.apply(Decision(allocations={"a": (1,)}), 10.0)
    assert kinds(acts) == ["Reconfigure"] and s.totals.warm_hits == 1
    assert s.totals.cold_starts == 1  # the pre-warm itself


def test_warm_gpu_of_another_model_is_a_reload() -> None:
    s = state()
    s.apply(Decision(prewarm={0: "n"}), 0.0)
    s.gpu_ready(0, 1, 10.0)
    s.add_job(job("a", 10, 10, 500), 10.0)
    (load,) = s.apply(Decision(allocations={"a": (0,)}), 10.0)
    assert isinstance(load, LoadModel) and load.reload and load.model == "m"
    assert s.totals.reloads == 1


def test_gpu_given_to_two_jobs_is_refused() -> None:
    s = state()
    s.add_job(job("a", 0, 10, 500), 0.0)
    s.add_job(job("b", 0, 10, 500), 0.0)
    acts = s.apply(Decision(allocations={"a": (0,), "b": (0, 1)}), 0.0)
    assert "InvalidRequest" in kinds(acts) and s.totals.invalid == 1
    assert s.job("a").gpus == [0] and s.job("b").gpus == []
    s.check_invariants()


def test_gpu_held_by_a_job_cannot_be_taken_unless_it_gives_it_up() -> None:
    s = state()
    s.add_job(job("a", 0, 10, 500), 0.0)
    s.add_job(job("b", 0, 10, 500), 0.0)
    s.apply(Decision(allocations={"a": (0,)}), 0.0)
    acts = s.apply(Decision(allocations={"b": (0,)}), 1.0)
    assert kinds(acts) == ["InvalidRequest"]
    acts = s.apply(Decision(allocations={"a": (1,), "b": (0,)}), 2.0)  # a moves, b takes 0
    assert "InvalidRequest" not in kinds(acts)
    assert s.job("a").gpus == [1] and s.job("b").gpus == [0]
    s.check_invariants()


@pytest.mark.parametrize(
    "decision",
    [
        Decision(allocations={"a": (9,)}),  # no such GPU
        Decision(allocations={"a": (0, 0)}),  # duplicate
        Decision(allocations={"zz": (0,)}),  # no such job
        Decision(allocations={"a": (0, 1, 2)}),  # above max_gpus=2
        Decision(release=(0,)),  # free GPU: nothing to release
        Decision(prewarm={7: "m"}),
    ],
)
def test_invalid_parts_are_refused_and_change_nothing(decision: Decision) -> None:
    s = state()
    s.add_job(job("a", 0, 10, 500, max_gpus=2), 0.0)
    acts = s.apply(decision, 0.0)
    assert kinds(acts) == ["InvalidRequest"]
    assert s.counts[GpuState.FREE] == 4 and s.job("a").gpus == []


def test_unknown_model_prewarm_names_the_known_models() -> None:
    s = state()
    with pytest.raises(UnknownName, match="known: m, n"):
        s.apply(Decision(prewarm={0: "zz"}), 0.0)


def test_release_cancels_a_load_in_flight() -> None:
    s = state()
    (load,) = s.apply(Decision(prewarm={0: "m"}), 0.0)
    assert isinstance(load, LoadModel)
    (rel,) = s.apply(Decision(release=(0,)), 3.0)
    assert isinstance(rel, ReleaseGpu)
    assert s.gpu_ready(0, load.token, 10.0) == []  # the stale completion is ignored
    assert s.gpu(0).state is GpuState.FREE
    assert s.totals.gpu_seconds[GpuState.LOADING] == pytest.approx(3.0)


def test_reject_only_a_job_that_never_ran() -> None:
    s = state()
    s.add_job(job("a", 0, 10, 500), 0.0)
    s.add_job(job("b", 0, 10, 500), 0.0)
    s.apply(Decision(allocations={"b": (0,)}), 0.0)
    acts = s.apply(Decision(reject=("a", "b")), 0.0)
    assert kinds(acts) == ["RejectJob", "InvalidRequest"]
    assert isinstance(acts[0], RejectJob) and s.job("a").state is JobState.REJECTED


def test_resize_keeps_remaining_work_and_charges_the_reconfiguration_pause() -> None:
    s = state()
    s.add_job(job("a", 0, 100, 500, max_gpus=4), 0.0)
    (load,) = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    assert isinstance(load, LoadModel)
    (rc,) = s.gpu_ready(0, load.token, 10.0)
    assert isinstance(rc, Reconfigure)
    s.job_resumed("a", rc.epoch, 10.5)
    # at t=50.5, 40 iterations are done; grow onto GPU 1 (cold) then GPU 1 comes ready
    (load1,) = s.apply(Decision(allocations={"a": (0, 1)}), 50.5)
    assert isinstance(load1, LoadModel)
    (rc2,) = s.gpu_ready(1, load1.token, 60.5)
    assert isinstance(rc2, Reconfigure) and rc2.pause_s == pytest.approx(2.0)
    assert s.job("a").iters_done == pytest.approx(50.0)  # trained on GPU 0 until 60.5
    left = s.job_resumed("a", rc2.epoch, 62.5)
    assert left == pytest.approx(25.0)  # 50 left at 2 it/s
    assert s.job("a").rescales == 1


def test_start_partial_off_waits_for_every_gpu() -> None:
    s = ClusterState(1, 4, linear_profiles(mechanics=Mechanics(start_partial=False)))
    s.add_job(job("a", 0, 100, 500, gpus=2), 0.0)
    loads = s.apply(Decision(allocations={"a": (0, 1)}), 0.0)
    assert s.gpu_ready(0, loads[0].token, 10.0) == []  # type: ignore[union-attr]
    (rc,) = s.gpu_ready(1, loads[1].token, 12.0)  # type: ignore[union-attr]
    assert isinstance(rc, Reconfigure) and rc.gpus == (0, 1)


def test_init_choice_sets_iterations_through_the_driver_model() -> None:
    s = ClusterState(1, 2, linear_profiles(), iterations=lambda spec, init: 40.0)
    s.add_job(job("a", 0, 100, 500), 0.0)
    s.apply(Decision(init={"a": InitChoice("e1", "imdb", "flat", 3, 0.75, 0.5)}), 0.0)
    rec = s.job("a")
    assert rec.iters_needed == 40.0 and rec.iters_estimate == pytest.approx(50.0)
    (load,) = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    (rc,) = s.gpu_ready(0, load.token, 10.0)  # type: ignore[union-attr]
    assert isinstance(rc, Reconfigure) and rc.pause_s == pytest.approx(0.5 + 0.75)


# ------------------------------------------------------------------ property test

ops = st.lists(
    st.tuples(
        st.sampled_from(["alloc", "release", "prewarm", "ready", "reject", "tick"]),
        st.integers(0, 5),  # job index
        st.lists(st.integers(-1, 8), max_size=4),  # GPU ids, some invalid
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ops)
def test_any_sequence_of_decisions_keeps_the_invariants(
    seq: list[tuple[str, int, list[int]]],
) -> None:
    s = state(nodes=2, per_node=4)
    now = 0.0
    loads: list[LoadModel] = []
    for i in range(6):
        s.add_job(job(f"j{i}", 0, 50, 500, model="mn"[i % 2], max_gpus=4), 0.0)
    for op, ji, gids in seq:
        now += 1.0
        jid = f"j{ji}"
        if op == "alloc":
            acts = s.apply(Decision(allocations={jid: tuple(gids)}), now)
        elif op == "release":
            acts = s.apply(Decision(release=tuple(gids)), now)
        elif op == "prewarm":
            acts = s.apply(Decision(prewarm={g: "m" for g in gids}), now)
        elif op == "reject":
            acts = s.apply(Decision(reject=(jid,)), now)
        elif op == "ready" and loads:
            ld = loads.pop(ji % len(loads))
            acts = s.gpu_ready(ld.gid, ld.token, now)
        else:
            acts = []
        loads += [a for a in acts if isinstance(a, LoadModel)]
        for a in acts:
            if isinstance(a, Reconfigure) and a.gpus:
                s.job_resumed(a.job, a.epoch, now)
        for a in acts:  # known actions, on GPUs and jobs that exist
            assert isinstance(a, LoadModel | ReleaseGpu | Reconfigure | RejectJob | InvalidRequest)
            if isinstance(a, LoadModel | ReleaseGpu):
                assert 0 <= a.gid < s.num_gpus
            if isinstance(a, Reconfigure):
                assert a.job in s.jobs and all(0 <= g < s.num_gpus for g in a.gpus)
        s.check_invariants()
        held = [g for r in s.jobs.values() for g in r.gpus]
        assert len(held) == len(set(held)) <= s.num_gpus
    s.close(now + 1.0)
    provisioned = sum(s.totals.gpu_seconds.values())
    per_job = sum(r.gpu_seconds for r in s.jobs.values())
    assert (
        per_job
        <= s.totals.gpu_seconds[GpuState.BUSY] + s.totals.gpu_seconds[GpuState.LOADING] + 1e-9
    )
    assert provisioned <= s.num_gpus * (now + 1.0) + 1e-9


def test_gpus_ready_during_a_pause_extend_it_and_the_lookup_is_paid_once() -> None:
    s = ClusterState(1, 4, linear_profiles())
    s.add_job(job("a", 0, 100, 500, gpus=3, max_gpus=4), 0.0)
    s.apply(Decision(init={"a": InitChoice("e", "imdb", "flat", 4, 3.0, 0.2)}), 0.0)
    loads = [a for a in s.apply(Decision(allocations={"a": (0, 1, 2)}), 0.0)]
    tokens = [ld.token for ld in loads if isinstance(ld, LoadModel)]
    (r0,) = s.gpu_ready(0, tokens[0], 10.0)
    assert isinstance(r0, Reconfigure) and r0.pause_s == pytest.approx(0.5 + 3.0)
    (r1,) = s.gpu_ready(1, tokens[1], 11.0)  # inside the first pause: it ends as planned
    assert isinstance(r1, Reconfigure) and r1.pause_s == pytest.approx(2.5)
    assert s.job_resumed("a", r0.epoch, 13.5) is None  # stale epoch
    assert s.job_resumed("a", r1.epoch, 13.5) == pytest.approx(50.0)  # 100 it at 2 it/s
    (r2,) = s.gpu_ready(2, tokens[2], 20.0)  # while running: one reconfiguration pause
    assert isinstance(r2, Reconfigure) and r2.pause_s == pytest.approx(2.0)
    assert s.job("a").pause_s == pytest.approx(3.5 + 2.0)


def test_pause_stops_a_running_job_on_its_gpus_and_adds_to_a_pause_in_progress() -> None:
    s = state()
    s.add_job(job("a", 0, 100, 500), 0.0)
    (load,) = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    (rc,) = s.gpu_ready(0, load.token, 10.0)  # type: ignore[union-attr]
    s.job_resumed("a", rc.epoch, 10.5)  # type: ignore[union-attr]
    # at t=30.5, 20 iterations done: a 3 s pause on the same GPU, progress kept
    (p,) = s.apply(Decision(pause={"a": 3.0}), 30.5)
    assert isinstance(p, Reconfigure) and p.gpus == (0,) and not p.first
    assert p.pause_s == pytest.approx(3.0) and s.job("a").iters_done == pytest.approx(20.0)
    assert s.job("a").state is JobState.STARTING and s.gpu(0).state is GpuState.BUSY
    # a second pause during the first one is added after it (ends 3 + 2 s after 30.5)
    (p2,) = s.apply(Decision(pause={"a": 2.0}), 31.5)
    assert isinstance(p2, Reconfigure) and p2.pause_s == pytest.approx(4.0)
    assert s.job_resumed("a", p.epoch, 33.5) is None  # the first pause's end is stale
    assert s.job_resumed("a", p2.epoch, 35.5) == pytest.approx(80.0)
    assert s.job("a").rescales == 0 and s.job("a").pause_s == pytest.approx(0.5 + 5.0)
    s.check_invariants()


def test_pause_is_refused_for_a_job_not_training_and_for_a_bad_time() -> None:
    s = state()
    s.add_job(job("a", 0, 100, 500), 0.0)
    s.add_job(job("b", 0, 100, 500), 0.0)
    (load,) = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    acts = s.apply(Decision(pause={"a": 1.0, "b": 1.0}), 1.0)  # a loads, b is queued
    assert kinds(acts) == ["InvalidRequest", "InvalidRequest"]
    (rc,) = s.gpu_ready(0, load.token, 10.0)  # type: ignore[union-attr]
    s.job_resumed("a", rc.epoch, 10.5)  # type: ignore[union-attr]
    for bad in (-1.0, float("inf"), float("nan")):
        (inv,) = s.apply(Decision(pause={"a": bad}), 11.0)
        assert isinstance(inv, InvalidRequest) and "pause a" in inv.what
    assert s.apply(Decision(pause={"a": 0.0}), 11.0) == []
    assert s.job("a").state is JobState.RUNNING


def test_snapshots_say_which_jobs_changed_and_left_since_the_previous_one() -> None:
    """``Snapshot.seq`` counts the state's snapshots; ``changed`` holds the current views of
    the jobs touched since the previous snapshot (arrivals included), ``left`` the jobs gone."""
    s = state()
    s.add_job(job("a", 0, 100, 500), 0.0)
    s.add_job(job("b", 0, 100, 500), 0.0)
    first = s.snapshot(0.0)
    assert first.seq == 0 and [v.job_id for v in first.changed] == ["a", "b"] and not first.left
    quiet = s.snapshot(0.0)
    assert quiet.seq == 1 and not quiet.changed and not quiet.left
    s.apply(Decision(reject=("b",)), 0.0)
    acts = s.apply(Decision(allocations={"a": (0,)}), 0.0)
    snap = s.snapshot(0.0)
    assert [v.job_id for v in snap.changed] == ["a"] and snap.left == ("b",)
    assert snap.changed[0] is snap.jobs_by_id["a"]
    (load,) = acts
    assert isinstance(load, LoadModel)
    (rc,) = s.gpu_ready(0, load.token, 10.0)
    assert isinstance(rc, Reconfigure)
    s.job_resumed("a", rc.epoch, 10.5)
    s.job_finished("a", rc.epoch, 110.5)
    last = s.snapshot(110.5)
    assert last.seq == 3 and not last.changed and last.left == ("a",)


def test_views_show_the_last_of_several_changes_and_unchanged_ones_are_reused() -> None:
    s = state()
    s.add_job(job("a", 0, 100, 500), 0.0)
    s.add_job(job("b", 0, 100, 500), 0.0)
    first = s.snapshot(0.0)
    acts = s.apply(Decision(allocations={"a": (0, 1)}), 0.0)
    token = {a.gid: a.token for a in acts if isinstance(a, LoadModel)}
    s.gpu_ready(0, token[0], 5.0)  # GPU 0 and job a change twice before the next snapshot
    snap = s.snapshot(5.0)
    g0 = snap.gpus[0]
    assert (g0.state, g0.job, g0.since) == (GpuState.BUSY, "a", 5.0)
    assert snap.gpus[1].state is GpuState.LOADING and snap.gpus[1].since == 0.0
    assert snap.gpus[2] is first.gpus[2]  # an unchanged GPU keeps its view
    a = snap.jobs_by_id["a"]
    assert a.gpus == (0, 1) and a.ready_gpus == 1 and a.state is JobState.STARTING
    assert snap.jobs_by_id["b"] is first.jobs_by_id["b"]  # so does an unchanged job
    assert [j.spec.job_id for j in snap.queued] == ["b"] and snap.free == (2, 3)
    assert [j.spec.job_id for j in snap.changed] == ["a"]
    again = s.snapshot(5.0)  # nothing changed in between: the same tuples
    assert again.gpus is snap.gpus and again.jobs is snap.jobs and again.queued is snap.queued
    assert s.gpu(0) is g0
    s.check_invariants()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 6), st.lists(st.tuples(st.booleans(), st.integers(0, 120)), max_size=600))
@example(
    4,
    [(True, i) for i in range(100)]
    + [(False, i) for i in range(100) if i % 4]
    + [(True, 1), (True, 200 % 121)],
)
def test_chunked_views_follow_a_dict(size: int, ops: list[tuple[bool, int]]) -> None:
    """The state's chunked job views (``_Views``, chunks of ``size``) set in place or at the
    end and pop as an insertion-ordered dict does, through chunk compactions; each ``freeze``
    is the dict's values in order (iterated forwards, backwards, indexed, compared) and
    shares the tuples of the chunks that did not change."""
    from ptsim.core.state import JobViews, _Views

    views = [
        JobView(
            job(f"j{i}", 0.0, 10, 100.0), JobState.QUEUED, (), 0, 0.0, 0.0, 0.0, 1.0, None, None, 0
        )
        for i in range(121)
    ]
    chunked, plain = _Views(size), dict[str, JobView]()
    before = chunked.freeze()
    for k, (add, i) in enumerate(ops):
        jid = f"j{i}"
        if add:
            chunked.set(jid, views[i])
            plain[jid] = views[i]
        else:
            chunked.pop(jid)
            plain.pop(jid, None)
        if k % 97 == 0 or k == len(ops) - 1:
            got, want = chunked.freeze(), tuple(plain.values())
            assert isinstance(got, JobViews) and len(got) == len(want) and got == want
            assert list(got) == list(want) and list(reversed(got)) == list(reversed(want))
            assert all(got[n] is want[n] for n in range(0, len(want), 37))
            assert len(chunked._chunks) <= 2 * len(want) // size + 9
            again = chunked.freeze()
            assert all(a is b for a, b in zip(got._parts, again._parts, strict=True))
            before = got
    assert before == tuple(plain.values())
    if plain:  # a view set in place: only its chunk's tuple is new
        jid = next(reversed(plain))
        first = chunked.freeze()
        chunked.set(jid, views[int(jid[1:])])
        after = chunked.freeze()
        new = [
            k for k, (a, b) in enumerate(zip(first._parts, after._parts, strict=True)) if a is not b
        ]
        assert new == [len(first._parts) - 1] and after == first
