"""Typed config checks (ptsim/schema.py, ptexec/config.py): each bad value of the issue is one
line naming the key, the value and what is allowed; unknown keys and options list what exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ptsim.paths import conf_root
from ptsim.schema import (
    ConfigError,
    check_ptsim_config,
    fields_of,
    group_choice_error,
    override_syntax_error,
    resolved,
)


def check(*overrides: str) -> None:
    with initialize_config_dir(config_dir=str(conf_root()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    check_ptsim_config(resolved(cfg))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cluster.nodes=1.5"], "config cluster.nodes = 1.5: expected an integer in [1, 4096]"),
        (["seed=1.5"], "config seed = 1.5: expected an integer in [0, 4294967295]"),
        (["seed=true"], "config seed = True: expected an integer in [0, 4294967295]"),
        (
            ["cluster.price_per_gpu_hour=-1"],
            "config cluster.price_per_gpu_hour = -1: expected a finite number >= 0",
        ),
        (
            ["sim.series_interval_s=-1"],
            "config sim.series_interval_s = -1: expected a finite number in [0, 1e+09]",
        ),
        (
            ["scheduler=prompttuner", "scheduler.bank=maybe"],
            "config scheduler.bank = 'maybe': expected true or false",
        ),
        (
            ["scheduler=prompttuner", "scheduler.replan_s=1e-9"],
            "config scheduler.replan_s = 1e-09: expected a finite number in [0.1, 1e+09]",
        ),
        (
            ["+foo=1"],
            "unknown config key 'foo'; keys under the top level: bank, cluster, overwrite, "
            "profile, progress, scheduler, seed, sim, sweep, workload",
        ),
        (
            ["scheduler=prompttuner", "scheduler.counts=odd"],
            "config scheduler.counts = 'odd': counts must be one of any, pow2",
        ),
        (
            ["workload=short", "workload.iterations_min=5000"],
            "config workload.iterations_min = 5000: need 1 <= iterations_min <= iterations_max",
        ),
        (
            ["workload.tasks=[sst2,nope]"],
            "config workload.tasks: unknown task 'nope'; known: sst2, imdb",
        ),
        (
            ["cluster.nodes=1", "cluster.gpus_per_node=4"],
            "config workload.multi_gpu_counts: jobs would ask for 8 GPUs; the cluster has 4",
        ),
        (["~cluster.nodes"], "config cluster.nodes: missing; expected an integer in [1, 4096]"),
        (["seed=${oops}"], "config seed: Interpolation key 'oops' not found"),
        (
            ["profile=elasticflow_t4"],
            "config profile.dir: not set; profile elasticflow_t4 reads ElasticFlow's throughput "
            "files, which are not shipped: clone https://github.com/pkusys/ElasticFlow and give "
            "profile.dir=/abs/path/to/ElasticFlow/ElasticFlow/scheduler/throughputs_T4",
        ),
    ],
)
def test_each_bad_value_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        check(*overrides)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_shipped_configs_pass() -> None:
    check()
    for name in ("edf", "fifo", "infless", "prompttuner", "elasticflow"):
        check(f"scheduler={name}")
    for p in sorted((conf_root() / "experiment").glob("*.yaml")):
        if p.stem != "elasticflow_replay":  # needs ElasticFlow's files (profile.dir)
            check(f"experiment={p.stem}")
    check("profile=elasticflow_a100", "profile.dir=/anywhere")  # dir given: the check passes


def test_unknown_options_and_bad_syntax_are_one_line() -> None:
    assert group_choice_error(["scheduler=nope"]) == (
        "unknown scheduler 'nope'; options: edf, elasticflow, fifo, infless, prompttuner"
    )
    assert group_choice_error(["scheduler=edf,nope"]) is not None
    assert group_choice_error(["scheduler=edf", "cluster=a100_256", "scheduler=null"]) is None
    msg = override_syntax_error(["cluster.nodes=["])
    assert msg is not None and msg.startswith("cannot parse override 'cluster.nodes=['")
    assert override_syntax_error(["cluster.nodes=3", "job"]) is None


@pytest.mark.exec
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("horizon_s=-1", "config horizon_s = -1: expected a finite number in (0, 1e+09] or null"),
        ("threads=0", "config threads = 0: expected an integer in [1, 256]"),
        ("workers=1.5", "config workers = 1.5: expected an integer in [1, 256]"),
        ("tuning.init=nope", "config tuning.init = 'nope': expected one of text, sample_vocab"),
        ("scheduler=nope", "config: unknown scheduler 'nope'; options: edf, elasticflow"),
        ("+foo=1", "unknown config key 'foo'; keys under the top level: bank, checkpoint_every"),
    ],
)
def test_ptexec_bad_values_are_one_line(override: str, message: str) -> None:
    pytest.importorskip("torch")
    from ptexec.config import ConfigError as ExecConfigError
    from ptexec.config import compose_config

    assert ExecConfigError is ConfigError
    with pytest.raises(ConfigError) as e:
        compose_config([override])
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_ctrl_c_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ptsim.app

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ptsim.app, "run_config", interrupted)
    rc = ptsim.app.run_cli(["scheduler=edf", "progress=false", f"hydra.run.dir={tmp_path}/r"])
    assert rc == 130
    assert capsys.readouterr().err.strip() == "ptsim: interrupted"


def test_a_config_class_whose_field_types_were_lost_is_named() -> None:
    """What a dataclass compiled by mypyc looks like to ``typing`` (a union becomes ``type``):
    the config checks refuse it with the class and field named, instead of rejecting values."""
    import dataclasses

    @dataclasses.dataclass
    class Knobs:
        k: int = 0
        cap: type = type  # as ``int | None`` reads once compiled

    with pytest.raises(TypeError, match=r"Knobs: field types lost \(cap\)"):
        fields_of(Knobs)
