"""The reliability fuzz at a larger size than the tests: malformed traces, bad ptsim configs and
bad ptexec configs (ptsim/tools/fuzz.py), each of which must end in a clean run or one line of
error. Prints the counts by outcome, the contract breaches (there must be none) and the time
per case. Not a test: ``python benchmarks/fuzz_bench.py [--traces N --ptsim N --ptexec N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _run(name: str, cases: list[Callable[[], object]]) -> int:
    from ptsim.tools import fuzz

    t0 = time.perf_counter()
    verdicts = [c() for c in cases]
    wall = time.perf_counter() - t0
    counts = fuzz.summarize(verdicts)  # type: ignore[arg-type]
    per = 1000 * wall / max(1, len(verdicts))
    print(f"{name:8s} {counts}  {wall:.1f} s ({per:.0f} ms per case)")
    for v in verdicts:
        if v.bad:  # type: ignore[attr-defined]
            print(f"  BAD {v.case}: {v.bad}")  # type: ignore[attr-defined]
    return counts["bad"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--traces", type=int, default=3000)
    ap.add_argument("--ptsim", type=int, default=500)
    ap.add_argument("--ptexec", type=int, default=200, help="0 skips (needs torch)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from ptsim.tools import fuzz

    rng = np.random.default_rng(a.seed)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        traces = list(fuzz.malformed_traces(rng, a.traces, folder / "traces"))
        bad += _run("traces", [lambda c=c, p=p: fuzz.check_trace(c, p) for c, p in traces])
        ov = fuzz.bad_overrides(rng, fuzz.ptsim_keys(), a.ptsim)
        bad += _run("ptsim", [lambda c=c: fuzz.check_ptsim(c) for c in ov])
        if a.ptexec:
            ov = fuzz.bad_overrides(rng, fuzz.ptexec_keys(), a.ptexec, fuzz.EXEC_STRUCTURE)
            runs = folder / "runs"
            bad += _run(
                "ptexec",
                [lambda c=c, i=i: fuzz.check_ptexec(c, runs / str(i)) for i, c in enumerate(ov)],
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
