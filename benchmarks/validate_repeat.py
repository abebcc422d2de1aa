"""How well does the executor repeat itself? Two saved ``validate_bench.py`` runs of the same
trace (``benchmarks/validate-runs/<name>/``) compared job by job: the executor's JCTs against
each other, ptsim's predictions from the two runs' profiles against each other, and the two
profiles' step throughputs. No simulator fed one profile can be expected to predict the
executor more closely than the executor repeats itself.

    python benchmarks/validate_repeat.py benchmarks/validate-runs/quiet-long \
        benchmarks/validate-runs/quiet-long-repeat
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def _rel(a: pd.Series, b: pd.Series) -> pd.Series:
    return ((b - a) / a).abs()


def compare(a: Path, b: Path) -> list[str]:
    """Lines describing how run ``b`` differs from run ``a`` per policy both ran."""
    lines = []
    pols = sorted(
        p.name.removesuffix("-validate.csv")
        for p in a.glob("*-validate.csv")
        if (b / p.name).exists()
    )
    for pol in pols:
        va = pd.read_csv(a / f"{pol}-validate.csv").set_index("job_id")
        vb = pd.read_csv(b / f"{pol}-validate.csv").set_index("job_id").loc[va.index]
        ex, sim = _rel(va.exec_jct_s, vb.exec_jct_s), _rel(va.sim_jct_s, vb.sim_jct_s)
        lines.append(
            f"{pol}: {len(va)} jobs, same step counts {100 * (va.steps == vb.steps).mean():.0f}%; "
            f"executor vs executor |JCT difference| median {100 * ex.median():.1f}%, "
            f"max {100 * ex.max():.1f}% ({ex.idxmax()}), {(ex > 0.15).sum()} jobs > 15%; "
            f"ptsim vs ptsim (the two profiles) median {100 * sim.median():.1f}%, "
            f"max {100 * sim.max():.1f}%"
        )
    for f in sorted(a.glob("*.csv")):
        if f.name.startswith(("profile-", "executor-")) or f.stem.endswith(
            ("-validate", "-executor-jobs")
        ):
            continue  # only the profile's throughput tables: <model>[_contended].csv
        ta = pd.read_csv(f, index_col=0)
        tb = pd.read_csv(b / f.name, index_col=0)
        cells = ", ".join(
            f"batch {bs} x {w}: {ta.loc[bs, w]:.1f} vs {tb.loc[bs, w]:.1f} it/s"
            for bs in ta.index
            for w in ta.columns
            if w in tb.columns
        )
        lines.append(f"profile {f.stem}: {cells}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="a saved run folder")
    ap.add_argument("b", type=Path, help="another run of the same trace")
    args = ap.parse_args()
    for line in compare(args.a, args.b):
        print(line)


if __name__ == "__main__":
    main()
