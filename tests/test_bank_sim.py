"""The Prompt Bank inside the simulator: lookups through the shared index, their cost charged
to the job, realised iterations from the convergence model, online growth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptsim.core.bank import BankConfig, PromptBankIndex
from ptsim.core.bank_sim import SimPromptBank
from ptsim.core.convergence import ConvergenceModel, SavingCurve, TaskSpace
from ptsim.core.policies.simple import Edf, SimpleConfig
from ptsim.core.policy import PolicyContext
from ptsim.core.types import Decision, JobSpec, Snapshot
from ptsim.metrics import jobs_table, summarize
from ptsim.simulator import Simulation
from ptsim.specs import BankSpec, bank_from
from tests._util import job, linear_profiles

TASKS = ["sst2", "imdb", "mnli", "rte", "agnews", "trec"]


class EdfWithBank(Edf):
    """edf that asks the bank for every new job's initial prompt."""

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx, SimpleConfig())
        assert ctx.bank is not None
        self.bank = ctx.bank

    def decide(self, snap: Snapshot) -> Decision:
        d = super().decide(snap)
        init = {j.job_id: self.bank.choose(j.spec) for j in snap.queued if j.init is None}
        return Decision(d.allocations, d.reject, init, d.prewarm, d.release, d.wake_at)


def _run(spec: BankSpec, seed: int = 0):  # type: ignore[no-untyped-def]
    profiles = linear_profiles()
    jobs = [job(f"j{i:02d}", 30.0 * i, 300, 30.0 * i + 900, task=TASKS[i % 6]) for i in range(24)]
    bank = spec.build(profiles, ["m"], seed)
    sim = Simulation(
        jobs,
        EdfWithBank(PolicyContext(profiles, bank)),
        profiles,
        num_nodes=1,
        gpus_per_node=4,
        iterations=bank.iterations,
        on_job_done=bank.add_finished,
    )
    out = sim.run()
    table = jobs_table(out)
    return out, table, summarize(out, table), bank


def test_lookup_cost_is_charged_and_the_bank_saves_iterations() -> None:
    _, table, s, _ = _run(
        BankSpec(BankConfig(layout="two_layer"), entries=60, convergence="assumed")
    )
    assert (table.bank_layout == "two_layer").all()
    assert (table.bank_assessments > 0).all()
    assert table.bank_lookup_s.tolist() == pytest.approx((table.bank_assessments * 0.25).tolist())
    # the first start waits for the cold start, the hand-over and the lookup
    first = table.iloc[0]
    assert first.first_start_s == pytest.approx(10.0 + 0.5 + first.bank_lookup_s)
    assert s["bank_assessments_mean"] == pytest.approx(table.bank_assessments.mean())
    assert 0.1 < s["bank_saving_mean"] < 0.6
    assert (table.iterations_needed < table.iterations_base).mean() > 0.8


def test_layout_none_and_an_empty_bank_start_from_the_default_prompt() -> None:
    frozen_empty = BankSpec(BankConfig(online=False), seeding="empty", convergence="assumed")
    for spec in (
        BankSpec(BankConfig(layout="none"), entries=60, convergence="assumed"),
        frozen_empty,
    ):
        _, table, s, _ = _run(spec)
        assert (table.bank_assessments == 0).all()
        assert (table.iterations_needed == table.iterations_base).all()
        assert s["bank_saving_mean"] == 0.0


def test_an_empty_bank_fills_from_finished_jobs() -> None:
    _, table, _, bank = _run(BankSpec(seeding="empty"))
    assert table.bank_assessments.iloc[0] == 0 and table.bank_assessments.iloc[-1] > 0
    assert bank.index.size("m") == 24


def test_flat_scores_every_entry() -> None:
    spec = BankSpec(BankConfig(layout="flat", online=False), entries=60, convergence="assumed")
    _, table, _, _ = _run(spec)
    assert (table.bank_assessments == 60).all()
    # with the fitted model, the default prompt is assessed too
    _, table, _, _ = _run(BankSpec(BankConfig(layout="flat", online=False), entries=60))
    assert (table.bank_assessments == 61).all()


def test_online_growth_adds_each_finished_job_and_runs_are_deterministic() -> None:
    _, t1, s1, bank = _run(BankSpec(entries=30), seed=3)
    assert bank.index.size("m") == 30 + 24
    _, t2, s2, _ = _run(BankSpec(entries=30), seed=3)
    assert t1.equals(t2) and s1["cost_gpu_hours"] == s2["cost_gpu_hours"]
    _, t3, _, _ = _run(BankSpec(entries=30), seed=4)
    assert not t1.iterations_needed.equals(t3.iterations_needed)


def test_bank_config_keys_are_checked() -> None:
    assert bank_from({"layout": "flat", "entries": 5}).index.layout == "flat"
    with pytest.raises(KeyError, match=r"unknown bank config key 'layot'; known: .*layout"):
        bank_from({"layot": "flat"})
    with pytest.raises(KeyError, match=r"unknown bank layout .four_layer.; known: flat"):
        bank_from({"layout": "four_layer"})


def _store(root: Path, entries: list[tuple[str, str, str]]) -> Path:
    """A bank store as ptexec writes it (only the metadata the simulator reads)."""
    for entry_id, model, task in entries:
        (root / entry_id).mkdir(parents=True)
        meta = {"format": 1, "entry_id": entry_id, "model": model, "source_task": task}
        (root / entry_id / "ptexec.json").write_text(json.dumps(meta))
    return root


def test_bank_seeded_from_a_ptexec_store_with_name_maps(tmp_path: Path) -> None:
    store = _store(tmp_path, [("e1", "tiny", "A"), ("e2", "tiny", "B"), ("e3", "m", "sst2")])
    spec = bank_from(
        {
            "seeding": "store",
            "store": str(store),
            "model_map": {"tiny": "m"},
            "task_map": {"A": "imdb", "B": "mnli"},
            "online": False,
            "layout": "flat",
            "convergence": "assumed",
        }
    )
    _, table, _, bank = _run(spec)
    assert sorted(e.entry_id for e in bank.index.entries("m")) == ["e1", "e2", "e3"]
    assert set(table.init_source.dropna()) <= {"e1", "e2", "e3"}
    assert (table.bank_assessments == 3).all()  # flat scores the three stored entries
    sentiment = table[table.task.isin(["sst2", "imdb"])]
    assert set(sentiment.init_source_task) <= {"sst2", "imdb"}


def test_store_seeding_errors_name_the_file_and_what_to_map(tmp_path: Path) -> None:
    store = _store(tmp_path / "s", [("e1", "tiny", "A")])
    with pytest.raises(ValueError, match=r"e1/ptexec.json: model 'tiny' is not simulated"):
        _run(bank_from({"seeding": "store", "store": str(store)}))
    with pytest.raises(ValueError, match=r"task 'A' is not in the task space; map it"):
        _run(bank_from({"seeding": "store", "store": str(store), "model_map": {"tiny": "m"}}))
    with pytest.raises(ValueError, match="no such bank store"):
        _run(bank_from({"seeding": "store", "store": str(tmp_path / "nope")}))
    with pytest.raises(ValueError, match=r"needs bank\.store"):
        bank_from({"seeding": "store"})


def test_one_store_reader_checks_the_format_for_both_drivers(tmp_path: Path) -> None:
    """ptsim's store seeding and ptexec's store read ``ptexec.json`` with the same reader, so a
    store from another format version (or a broken entry) fails the same one-line way."""
    from ptsim.store_format import StoreError, read_meta

    store = _store(tmp_path / "s", [("e1", "tiny", "sst2"), ("e2", "tiny", "imdb")])
    meta_file = store / "e2" / "ptexec.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "format": 99}))
    spec = bank_from({"seeding": "store", "store": str(store), "model_map": {"tiny": "m"}})
    with pytest.raises(StoreError, match=r"e2/ptexec.json: unknown format 99 \(this version"):
        _run(spec)
    with pytest.raises(StoreError, match=r"e2/ptexec.json: unknown format 99"):
        read_meta(meta_file)
    meta_file.write_text('{"format": 1, "entry_id": "e2", "model": ""}')
    with pytest.raises(StoreError, match=r"e2/ptexec.json: field 'model' missing or not a str"):
        _run(spec)
    meta_file.write_text("[1, 2]")
    with pytest.raises(StoreError, match=r"e2/ptexec.json: expected a JSON object"):
        _run(spec)
    meta_file.write_text("{not json")
    with pytest.raises(StoreError, match=r"e2/ptexec.json: unreadable"):
        read_meta(meta_file)


def test_a_prompt_worse_than_the_default_is_not_used() -> None:
    """Only prompts of another family are stored and they cost iterations (negative transfer):
    comparing each lookup's best with an assessment of the default prompt keeps the default."""
    model = ConvergenceModel(TaskSpace.default(), SavingCurve(s_neg=-0.3, noise_sigma=0.0))
    others = [(f"e{i}", "m", t) for i, t in enumerate(("mnli", "qnli", "boolq", "agnews"))]
    chosen = {}
    for compare in (False, True):
        bank = SimPromptBank(
            PromptBankIndex(BankConfig(layout="flat", online=False)),
            model,
            {"m": 0.25},
            seed=0,
            score_sigma=0.05,
            against_default=compare,
        )
        bank.seed_history(others)
        specs = [JobSpec(f"j{i}", 0.0, "m", "sst2", 100.0, 8, 100) for i in range(40)]
        chosen[compare] = [bank.choose(s) for s in specs]
    assert all(c.source is not None for c in chosen[False])
    assert all(c.source is None and c.assessments == 5 for c in chosen[True])


def test_a_jobs_default_prompt_iterations_are_the_same_asked_after_a_stored_prompts() -> None:
    """The cluster state asks for a job's iterations from its stored prompt, then from the
    default prompt (the saving's accounting): the second answer, kept from the first's draw, is
    what a bank asked only for the default prompt gives, and the stored prompt's differs."""
    from ptsim.core.types import DEFAULT_INIT, InitChoice

    model = ConvergenceModel(TaskSpace.default(), SavingCurve())

    def fresh() -> SimPromptBank:
        return SimPromptBank(PromptBankIndex(), model, {"m": 0.25}, seed=3)

    asked, alone = fresh(), fresh()
    differ = 0
    for i in range(200):
        spec = JobSpec(f"j{i}", 0.0, "m", TASKS[i % 6], 100.0, 8, 1000 + i)
        stored = InitChoice(f"e{i}", TASKS[(i + 1) % 6], "flat", 3, 0.5, 0.2)
        with_stored = asked.iterations(spec, stored)
        assert asked.iterations(spec, DEFAULT_INIT) == alone.iterations(spec, DEFAULT_INIT)
        assert asked.iterations(spec, stored) == with_stored  # asked again: the same draw
        differ += with_stored != alone.iterations(spec, DEFAULT_INIT)
    assert differ > 150
