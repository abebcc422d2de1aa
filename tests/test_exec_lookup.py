"""The executor's bank lookup without workers: planned in ``choose`` (no assessment there),
run later as an exchange of assessment rounds on a worker, seeing the bank as it was when
planned, and taking a stored prompt only when it beats the default prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from ptexec.jobs import ExecJob, TaskCatalog
from ptexec.prompt_bank import ExecBankConfig, ExecPromptBank
from ptexec.replicas import run_exchange
from ptexec.tuning import TuningConfig
from ptexec.workers import AssessReply, AssessRequest
from ptsim.core.bank import BankEntry
from ptsim.core.bank_types import BankConfig
from ptsim.core.types import JobSpec

pytestmark = pytest.mark.exec


@dataclass
class _Done:
    value: Any

    def ready(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        return self.value


class _FakeWorker:
    """Answers ``assess`` from a table of scores and records every request."""

    wid = 3
    device = "cpu"

    def __init__(self, scores: dict[str, float], default: float) -> None:
        self.scores = scores
        self.default = default
        self.requests: list[AssessRequest] = []

    def request(self, cmd: str, *args: Any) -> _Done:
        assert cmd == "assess"
        (req,) = args
        self.requests.append(req)
        vals = tuple(self.scores[e] for e in req.entry_ids)
        return _Done(AssessReply(self.wid, vals, self.default if req.default else None, 0.01, None))

    def alive(self) -> bool:
        return True


@dataclass
class _Stored:
    entry: BankEntry

    @property
    def entry_id(self) -> str:
        return self.entry.entry_id

    def to_bank_entry(self, model: str | None = None) -> BankEntry:
        return self.entry


def _entry(eid: str, x: float, n_virtual: int = 8) -> BankEntry:
    return BankEntry(eid, "tiny-gpt2", f"synthetic:{eid}", np.array([x, 0.0]), (n_virtual, 64))


def _job(jid: str) -> ExecJob:
    spec = JobSpec(jid, 0.0, "tiny-gpt2", "synthetic:T", 60.0, 32, 100, 1, 1, 1)
    return ExecJob(spec, "tiny-gpt2", None, "synthetic:T", TuningConfig(max_steps=100))


def _bank(tmp_path: Path, layout: str, jobs: list[ExecJob]) -> ExecPromptBank:
    cfg = ExecBankConfig(store=tmp_path / "store", index=BankConfig(layout=layout))
    bank = ExecPromptBank(cfg, {j.job_id: j for j in jobs}, TaskCatalog(examples=64))
    bank.plan_with({"tiny-gpt2": 0.5})
    return bank


def test_choose_plans_and_the_lookup_runs_later_on_the_worker(tmp_path: Path) -> None:
    jobs = [_job("j"), _job("k")]
    bank = _bank(tmp_path, "flat", jobs)
    for eid, x in (("a", 0.0), ("b", 1.0)):
        bank.add(_Stored(_entry(eid, x)), jobs[0])
    bank.add(_Stored(_entry("wide", 2.0, n_virtual=20)), jobs[0])  # cannot load: never scored
    plan = bank.choose(jobs[0].spec)
    assert plan.source is None and plan.assessments == 3  # 2 fitting entries + the default
    assert plan.lookup_s == pytest.approx(1.5)  # x the profile's eval_s
    assert bank.pending("j")
    w = _FakeWorker({"a": -0.5, "b": -0.2}, default=-0.9)
    got = run_exchange(bank.lookup("j", w, lambda: 0.0))
    assert got.source == "b" and got.source_task == "synthetic:b" and got.assessments == 3
    assert [r.entry_ids for r in w.requests] == [("a", "b")]  # one round for flat
    assert w.requests[0].default and not w.requests[0].transfer_head
    rec = bank.lookups[-1]
    assert rec.chosen == "b" and rec.default_score == -0.9 and rec.worker == 3
    assert not bank.pending("j")


def test_a_stored_prompt_worse_than_the_default_is_not_used(tmp_path: Path) -> None:
    jobs = [_job("j")]
    bank = _bank(tmp_path, "flat", jobs)
    bank.add(_Stored(_entry("a", 0.0)), jobs[0])
    bank.choose(jobs[0].spec)
    w = _FakeWorker({"a": -0.5}, default=-0.4)  # the default prompt scores better
    got = run_exchange(bank.lookup("j", w, lambda: 0.0))
    assert got.source is None and got.assessments == 2
    assert bank.lookups[-1].best_score == -0.5 and bank.lookups[-1].chosen is None


def test_lookup_sees_the_bank_as_it_was_when_planned(tmp_path: Path) -> None:
    """Entries added after ``choose`` (a job that finished meanwhile) are not seen, so the
    choice does not depend on how fast anything ran."""
    jobs = [_job("j"), _job("k")]
    bank = _bank(tmp_path, "two_layer", jobs)
    for i in range(4):
        bank.add(_Stored(_entry(f"e{i}", float(i))), jobs[0])
    bank.choose(jobs[0].spec)
    bank.add(_Stored(_entry("late", 9.0)), jobs[0])  # after the plan
    bank.choose(jobs[1].spec)
    scores = {f"e{i}": -1.0 + 0.1 * i for i in range(4)} | {"late": 0.0}
    wj, wk = _FakeWorker(scores, -2.0), _FakeWorker(scores, -2.0)
    got_j = run_exchange(bank.lookup("j", wj, lambda: 0.0))
    got_k = run_exchange(bank.lookup("k", wk, lambda: 0.0))
    seen_j = {e for r in wj.requests for e in r.entry_ids}
    assert "late" not in seen_j and got_j.source != "late"
    assert got_k.source == "late"  # planned after it was added
    assert len(wj.requests) == 2  # two-layer: the medoids (and the default), then members
    assert bank.lookups[-2].entries == 4 and bank.lookups[-1].entries == 5
