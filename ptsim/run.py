"""Running simulations from a config and saving their results.

``run_policy`` runs one policy on one trace and returns a ``RunResult`` (no files written;
the record and its writers live in ``ptsim.outcome``, the specs in ``ptsim.specs``);
``run_config`` does what the ``ptsim`` command does for one
composed config: build or load the trace, run one policy (or every registered one), save
everything in the run directory and return the results. Nothing here depends on the working
directory or on global state, so runs compose in one process and in tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

import ptsim.core.policies  # noqa: F401  (registers the shipped policies)
from ptsim.core.convergence import ConvergenceModel
from ptsim.core.policy import POLICIES, Policy, PolicyContext
from ptsim.core.profiles import ProfileSet
from ptsim.core.state import ClusterState
from ptsim.core.types import InitChoice, JobSpec
from ptsim.metrics import REJECTED_JCT, job_rows, run_summary, series_rows
from ptsim.outcome import RunOutcome, RunResult, atomic_write, save_result, write_csv
from ptsim.paths import conf_root
from ptsim.profiles_io import load_profiles
from ptsim.runfolder import claim, mark_complete
from ptsim.schema import check_ptsim_config, resolved
from ptsim.simulator import Simulation
from ptsim.specs import BankSpec, ClusterSpec, bank_from, cluster_from, workload_from
from ptsim.trace import generate_workload, load_trace, write_trace
from ptsim.trace.loader import TraceWarning
from ptsim.trace.replay import REPLAY_KEYS, ReplaySpec, replay_window

if TYPE_CHECKING:  # pandas only for the comparison table: a single run never imports it
    import pandas as pd

COMPARISON_COLUMNS = (
    "policy",
    "label",
    "jobs",
    "slo_violation_rate",
    "cost_gpu_hours",
    "cost_usd",
    "mean_jct_s",
    "p99_jct_s",
    "cold_starts",
    "warm_hits",
    "rejected",
    "unfinished",
)


def run_policy(
    jobs: Sequence[JobSpec],
    policy: str,
    params: Mapping[str, Any],
    profiles: ProfileSet,
    cluster: ClusterSpec,
    *,
    bank: BankSpec | None = None,
    seed: int = 0,
    horizon_s: float | None = None,
    series_interval_s: float = 0.0,
    on_progress: Callable[[int], Any] | None = None,
    rejected_jct: str = "censor_at_end",
) -> RunResult:
    """Simulate ``jobs`` under ``policy`` (built from the registry with ``params``), with a
    fresh Prompt Bank built from ``bank`` (none: every job starts from the default prompt)."""
    sim_bank = None if bank is None else bank.build(profiles, [j.model for j in jobs], seed)
    pol = POLICIES.build(policy, PolicyContext(profiles, sim_bank), params)
    sim = Simulation(
        jobs,
        pol,
        profiles,
        num_nodes=cluster.nodes,
        gpus_per_node=cluster.gpus_per_node,
        iterations=None if sim_bank is None else sim_bank.iterations,
        prior=None if sim_bank is None else sim_bank.prior,
        estimator=None if sim_bank is None else sim_bank.estimator,
        readings=None if sim_bank is None or not sim_bank.evals_per_job else sim_bank.readings,
        readings_until=None if sim_bank is None else sim_bank.readings_until,
        on_job_done=None if sim_bank is None else sim_bank.add_finished,
        horizon_s=horizon_s,
        series_interval_s=series_interval_s,
        on_progress=on_progress,
    )
    out = sim.run()
    table = job_rows(out)
    summary = run_summary(
        out, table, policy, cluster.num_gpus, cluster.price_per_gpu_hour, rejected_jct
    )
    return RunResult(policy, summary, table, series_rows(out))


def simulate_jobs(
    jobs: Sequence[JobSpec],
    policy: Policy,
    profiles: ProfileSet,
    gpus: int,
    iterations: Callable[[JobSpec, InitChoice], float],
    state: ClusterState | None = None,
) -> RunOutcome:
    """Simulate ``jobs`` under an already built ``policy`` on one node of ``gpus`` GPUs, each
    job taking ``iterations(spec, init)``; ``state`` (built for the same cluster) replaces the
    simulator's own, e.g. one that records what happened (``ptexec validate`` uses this, so
    the executor never imports the SimPy driver itself)."""
    sim = Simulation(jobs, policy, profiles, num_nodes=1, gpus_per_node=gpus, iterations=iterations)
    if state is not None:
        sim.state = state
    return sim.run()


# ------------------------------------------------------------------------------ config


def build_trace(
    cfg: DictConfig,
    profiles: ProfileSet,
    cluster: ClusterSpec,
    warn: Callable[[TraceWarning], Any] | None = None,
) -> list[JobSpec]:
    """The jobs a config asks for: a replayed trace file (``workload=replay``), else generated.
    A key that does not apply to the chosen kind is refused (docs/traces.md section 6). A trace
    is checked against the profiles, the task space and the cluster; ``warn`` gets its
    warnings."""
    wl = plain(cfg.workload)
    rng = np.random.default_rng(int(cfg.seed))
    trace = wl.get("trace")
    if wl.get("name") == "replay" or trace:
        extra = sorted(k for k in wl if k not in (*REPLAY_KEYS, "name"))
        if wl.get("name") != "replay":
            raise ValueError(
                f"workload.trace: replay a trace with `workload=replay workload.trace=PATH`; "
                f"the generator's keys ({', '.join(extra)}) do not apply to a trace"
            )
        if extra:
            raise ValueError(
                f"workload.{extra[0]} does not apply to a replayed trace; "
                f"keys that do: {', '.join(REPLAY_KEYS)}"
            )
        if not trace:
            raise ValueError("workload.trace: workload=replay needs workload.trace=PATH")
        spec = ReplaySpec(**{k: v for k, v in wl.items() if k not in ("trace", "name")})
        path = Path(str(trace)).expanduser()
        jobs = load_trace(
            path,
            known_models=list(profiles.models),
            known_tasks=ConvergenceModel.default().space.names,
            num_gpus=cluster.num_gpus,
            warn=warn,
        )
        return replay_window(jobs, spec, profiles, cluster.num_gpus, rng, str(path))
    spec = workload_from(wl)
    jobs = generate_workload(spec, profiles, cluster.num_gpus, rng)
    if not jobs:
        raise ValueError(
            f"workload: no job arrived in duration_s={spec.duration_s:g} s at load "
            f"{spec.load:g} on {cluster.num_gpus} GPUs (seed {cfg.seed}); raise "
            "workload.duration_s or workload.load"
        )
    return jobs


def label_scheduler(cfg: DictConfig, choice: str | None) -> None:
    """Give the chosen scheduler config its run label, if it has no ``label`` key: ``choice``,
    the name of its config file (hydra's choice for the ``scheduler`` group), so a copy of
    ``prompttuner.yaml`` saved under another name is labelled apart in every table. The
    label is written into ``cfg`` (and so into the run's ``config.yaml``)."""
    if cfg.get("scheduler") is None or cfg.scheduler.get("label") or not choice:
        return
    with open_dict(cfg):
        cfg.scheduler.label = str(choice)


def scheduler_configs(cfg: DictConfig) -> list[tuple[str, dict[str, Any]]]:
    """(policy name, knobs) to run: the chosen ``scheduler``, or every registered policy with
    its config file's defaults when none is chosen (the ``label`` key is not a knob)."""
    if cfg.get("scheduler") is not None:
        sc = OmegaConf.to_container(cfg.scheduler, resolve=True)
        assert isinstance(sc, dict)
        name = str(sc.pop("name"))
        sc.pop("label", None)
        return [(name, {str(k): v for k, v in sc.items()})]
    out = []
    for name in POLICIES.names():
        path = conf_root() / "scheduler" / f"{name}.yaml"
        sc = OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.is_file() else {}
        assert isinstance(sc, dict)
        sc.pop("name", None)
        sc.pop("label", None)
        out.append((name, {str(k): v for k, v in sc.items()}))
    return out


def plain(node: Any) -> dict[str, Any]:
    """A config node as a plain dict (interpolations resolved)."""
    out = OmegaConf.to_container(node, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


@dataclass
class RunPlan:
    """What a composed config asks for, built and checked before anything runs: the trace,
    profiles, cluster, bank and the (policy, knobs) pairs to simulate."""

    jobs: list[JobSpec]
    profiles: ProfileSet
    cluster: ClusterSpec
    bank: BankSpec | None
    policies: list[tuple[str, dict[str, Any]]]
    seed: int
    horizon_s: float | None
    series_interval_s: float
    label: str | None = None  # the chosen scheduler's label (None: each policy's name)
    rejected_jct: str = "censor_at_end"


def plan_config(cfg: DictConfig) -> RunPlan:
    """Build the run a config describes; bad input (trace, profile, bank, knobs) fails here,
    before anything is simulated or written."""
    check_ptsim_config(resolved(cfg))
    profiles = load_profiles(plain(cfg.profile))
    cluster = cluster_from(plain(cfg.cluster))
    jobs = build_trace(cfg, profiles, cluster, warn=_log_warning)
    bank_cfg = cfg.get("bank")
    bank = None if bank_cfg is None else bank_from(plain(bank_cfg))
    if bank is not None:
        bank.check(profiles)
    policies = scheduler_configs(cfg)
    for name, params in policies:
        POLICIES.make_config(name, params)  # fail on a bad knob before any run
    sim_cfg = cfg.get("sim") or {}
    rejected_jct = str(sim_cfg.get("rejected_jct", "censor_at_end"))
    if rejected_jct not in REJECTED_JCT:
        raise ValueError(
            f"sim.rejected_jct must be one of {', '.join(REJECTED_JCT)}, got {rejected_jct!r}"
        )
    return RunPlan(
        jobs,
        profiles,
        cluster,
        bank,
        policies,
        int(cfg.seed),
        sim_cfg.get("horizon_s"),
        float(sim_cfg.get("series_interval_s", 0.0)),
        _label(cfg),
        rejected_jct,
    )


def _label(cfg: DictConfig) -> str | None:
    """The chosen scheduler's ``label`` (else its policy name); None for the comparison."""
    if cfg.get("scheduler") is None:
        return None
    return str(cfg.scheduler.get("label") or cfg.scheduler.name)


def _log_warning(w: TraceWarning) -> None:
    print(f"ptsim: {w}", file=sys.stderr)


def run_plan(
    plan: RunPlan, name: str, params: Mapping[str, Any], progress: bool = False
) -> RunResult:
    """Simulate one policy of ``plan`` (in memory; nothing written)."""
    bar = _progress_bar(len(plan.jobs), name) if progress else None
    res = run_policy(
        plan.jobs,
        name,
        params,
        plan.profiles,
        plan.cluster,
        bank=plan.bank,
        seed=plan.seed,
        horizon_s=plan.horizon_s,
        series_interval_s=plan.series_interval_s,
        on_progress=None if bar is None else bar.update,
        rejected_jct=plan.rejected_jct,
    )
    if bar is not None:
        bar.close()
    res.summary["seed"] = plan.seed
    res.summary["label"] = plan.label if plan.label and len(plan.policies) == 1 else name
    return res


def simulate_config(cfg: DictConfig) -> list[RunResult]:
    """Run what ``cfg`` describes in memory: one result per policy, no files."""
    plan = plan_config(cfg)
    return [run_plan(plan, name, params) for name, params in plan.policies]


RUN_INPUTS = ("config.yaml", "trace.csv")
RUN_TABLES = ("jobs.csv", "timeseries.csv", "summary.json")
COMPARISON_FILES = ("comparison.csv", "comparison.png")
RUN_FILES = frozenset({*RUN_INPUTS, *RUN_TABLES, *COMPARISON_FILES})
"""The files ``run_config`` writes into a run folder (the tables also into a comparison's
policy folders)."""


def run_config(
    cfg: DictConfig, run_dir: Path, progress: bool = False, overwrite: bool | None = None
) -> list[RunResult]:
    """Run what ``cfg`` describes and save config, trace, tables and summaries in ``run_dir``.

    With one scheduler the tables go straight into ``run_dir``; with several (the comparison)
    each policy gets a subfolder and ``comparison.csv`` + ``comparison.png`` sum them up.
    The run holds ``run_dir`` exclusively (``ptsim.runfolder.claim``): a folder in use or
    holding a complete run is refused (``overwrite``, default ``cfg.overwrite``: reuse it); bad
    input fails before the folder is touched; a ``COMPLETE`` marker, written last, lists the
    outputs (each policy's subfolder gets its own); a run that fails midway is marked
    ``FAILED`` or ``INTERRUPTED``.
    """
    plan = plan_config(cfg)
    trace = (cfg.get("workload") or {}).get("trace")
    if trace:  # a run replaying a file it is about to write would replace its own input
        source = Path(str(trace)).expanduser().resolve()
        if source.name in RUN_FILES and run_dir.resolve() in source.parents:
            raise ValueError(
                f"workload.trace: {trace} is one of the files this run writes; copy it out of "
                "the run folder first"
            )
    if overwrite is None:
        overwrite = bool(cfg.get("overwrite", False))
    many = len(plan.policies) > 1
    kind = "ptsim comparison" if many else "ptsim run"
    with claim(run_dir, kind, overwrite=overwrite, hint="overwrite=true") as folder:
        folder.start()
        atomic_write(run_dir / "config.yaml", lambda p: OmegaConf.save(cfg, p, resolve=True))
        write_trace(plan.jobs, run_dir / "trace.csv")  # atomic itself
        outputs = list(RUN_INPUTS)
        results = []
        for name, params in plan.policies:
            res = run_plan(plan, name, params, progress)
            target = run_dir / name if many else run_dir
            results.append(save_result(res, target))
            tables = list(RUN_TABLES)
            if many:
                mark_complete(target, "ptsim run", tables)
                outputs.append(name)
            else:
                outputs += tables
        if many:
            table = comparison_table(results)
            write_csv(table, run_dir / "comparison.csv")
            from ptsim.plots import plot_comparison

            plot_comparison(run_dir / "comparison.csv", run_dir / "comparison.png")
            outputs += list(COMPARISON_FILES)
        folder.complete(outputs)
    return results


def comparison_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per policy with the headline metrics."""
    import pandas as pd

    rows = [{c: r.summary.get(c) for c in COMPARISON_COLUMNS} for r in results]
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _progress_bar(total: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{name:>12}", unit="job", leave=False)
