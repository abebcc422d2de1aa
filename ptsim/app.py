"""The ``ptsim`` command: a hydra app that runs one configuration (or compares every policy)
and writes config, trace, tables and summary into its run directory.

    ptsim                                   # every registered policy on the default workload
    ptsim scheduler=edf seed=1              # one policy
    ptsim -m scheduler=fifo,edf seed=0,1    # a sweep, one run directory per point
    ptsim workload.trace=PATH               # replay a canonical trace file
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ptsim.paths import conf_root
from ptsim.run import run_config

log = logging.getLogger("ptsim")


def _main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    results = run_config(cfg, run_dir, progress=bool(cfg.get("progress", True)))
    if len(results) > 1:
        from ptsim.run import comparison_table

        table = comparison_table(results)
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"\ncomparison table and figure: {run_dir}/comparison.csv, comparison.png")
    else:
        s = results[0].summary
        print(
            f"{s['policy']}: {s['jobs']} jobs, SLO violation rate {s['slo_violation_rate']:.3f}, "
            f"cost {s['cost_gpu_hours']:.2f} GPU-h (${s['cost_usd']:.2f}), "
            f"mean JCT {s['mean_jct_s'] or float('nan'):.0f} s"
        )
    print(f"results: {run_dir}")


def main() -> None:
    """Console entry point for ``ptsim``."""
    hydra.main(version_base="1.3", config_path=str(conf_root()), config_name="config")(_main)()


if __name__ == "__main__":
    sys.exit(main())
