"""Two versions of ptsim side by side: the same ``sim_bench.py --target`` case run by both at
once, one process per core, for a few rounds; the ratio of their CPU times per round and
whether they gave the same results.

Run:  python benchmarks/ab_bench.py BEFORE_DIR AFTER_DIR --policy prompttuner
      python benchmarks/ab_bench.py /tmp/before /tmp/after --policy prompttuner --hours 6 \\
          -o workload.load=1.03 --rounds 3 --json out.jsonl

Each DIR is a source tree of ptsim (a ``git archive`` or worktree of some commit, compiled in
place with ``python -m ptsim.tools.native build`` or not), run with this interpreter and
``PYTHONPATH=DIR``; its own ``benchmarks/sim_bench.py`` runs the case (``--target-one``: one
policy on the target cluster for ``--hours`` of the day). Why side by side: on a shared host
the machine's speed drifts by up to 2x within minutes (benchmarks/README.md, eleventh and
twelfth passes), so two runs one after the other cannot resolve a 10% change; two runs in the
same minutes see the same host. Two processes share the caches and memory bandwidth, so each
takes longer than it does alone: compare the ratio, not the times, with runs made alone.

The side that finishes first runs its case again until the other ends (those runs are
discarded and stopped), so both measured runs share the machine throughout; without that, the
longer run would have the machine to itself at its end and read as cheaper (a bank-on run
against a bank-off one, say). Each record's ``kept_busy_runs`` counts them.

``--before-override`` / ``--after-override`` add overrides to one side only (the same tree on
both sides then compares two settings, e.g. ``scheduler.bank=false`` against the default).

Reported per round: each side's CPU time (user + system of the simulation, as ``sim_bench``
measures it) and the ratio AFTER / BEFORE; then the median ratio and its range over the
rounds. "same results" compares each run's events, decisions, SLO violation rate and GPU-hours
(and the bank's mean saving where there is one) with the first BEFORE run's, or with its own
side's first run when the sides' overrides differ; the script exits with status 1 when any
differs. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

RESULT_KEYS = ("events", "decisions", "slo_violation_rate", "cost_gpu_hours", "bank_saving_mean")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "HYDRA_FULL_ERROR": "1"}


def check_tree(tree: Path) -> str:
    """The ptsim package ``tree`` runs (its path), or exit with a one-line error."""
    if not (tree / "benchmarks" / "sim_bench.py").is_file() or not (tree / "ptsim").is_dir():
        sys.exit(
            f"ab_bench: {tree}: not a ptsim source tree (no ptsim/ or benchmarks/sim_bench.py)"
        )
    got = subprocess.run(
        [sys.executable, "-c", "import ptsim; print(ptsim.__file__)"],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    if got.returncode != 0:
        last = (got.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"ab_bench: {tree}: importing ptsim failed: {last}")
    where = Path(got.stdout.strip()).resolve().parent
    if where != (tree / "ptsim").resolve():
        sys.exit(f"ab_bench: {tree}: ptsim was imported from {where}, not from this tree")
    return str(where)


def _start(tree: Path, case: list[str], out: Path | None) -> subprocess.Popen[bytes]:
    """``tree``'s sim_bench run of ``case``; its stdout in ``out`` and its stderr in ``out``
    with the suffix ``.err`` (None: both discarded)."""
    cmd = [sys.executable, str(tree / "benchmarks" / "sim_bench.py"), "--target-one", *case]
    if out is None:
        sink = subprocess.DEVNULL
        return subprocess.Popen(cmd, cwd=tree, env=_env(tree), stdout=sink, stderr=sink)
    with out.open("wb") as so, out.with_suffix(".err").open("wb") as se:
        return subprocess.Popen(cmd, cwd=tree, env=_env(tree), stdout=so, stderr=se)


def _record(tree: Path, proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """The record of a finished run, or exit with its last line of error output."""
    if proc.returncode != 0:
        err = out.with_suffix(".err").read_text(errors="replace")
        last = (err.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"ab_bench: {tree}: sim_bench failed (exit {proc.returncode}): {last}")
    return cast(dict[str, Any], json.loads(out.read_text().strip().splitlines()[-1]))


def one_round(
    trees: list[Path], cases: list[list[str]], poll_s: float = 0.2
) -> list[dict[str, Any]]:
    """Each tree's run of its case, started together; their records in ``trees``' order. A
    side that finishes first runs its case again (the run discarded, stopped when the other
    side ends), so both measured runs share the machine to the end; each record's
    ``kept_busy_runs`` counts those runs."""
    with tempfile.TemporaryDirectory(prefix="ab_bench-") as tmp:
        outs = [Path(tmp) / f"side{i}.out" for i in range(len(trees))]
        procs = [_start(t, c, o) for t, c, o in zip(trees, cases, outs, strict=True)]
        records: list[dict[str, Any] | None] = [None] * len(trees)
        fillers: list[subprocess.Popen[bytes] | None] = [None] * len(trees)
        extra = [0] * len(trees)
        try:
            while None in records:
                for i, proc in enumerate(procs):
                    if records[i] is None and proc.poll() is not None:
                        records[i] = _record(trees[i], proc, outs[i])
                for i, filler in enumerate(fillers):
                    busy = filler is not None and filler.poll() is None
                    if records[i] is not None and None in records and not busy:
                        fillers[i] = _start(trees[i], cases[i], None)
                        extra[i] += 1
                if None in records:
                    time.sleep(poll_s)
        finally:
            for p in (*procs, *fillers):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
    done = [r for r in records if r is not None]
    for rec, n in zip(done, extra, strict=True):
        rec["kept_busy_runs"] = n
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="source tree of the first version")
    ap.add_argument("after", type=Path, help="source tree of the second version")
    ap.add_argument("--policy", required=True)
    ap.add_argument("--hours", type=float, default=24.0, help="window of the day (default 24)")
    ap.add_argument("-o", "--override", action="append", default=[], help="a ptsim override")
    ap.add_argument(
        "--before-override", action="append", default=[], help="an override of BEFORE's run only"
    )
    ap.add_argument(
        "--after-override", action="append", default=[], help="an override of AFTER's run only"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every run's record (one per line) here")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if not args.hours > 0:
        ap.error("--hours must be positive")
    trees = [args.before.resolve(), args.after.resolve()]
    where = [check_tree(t) for t in trees]
    sides = [args.override + args.before_override, args.override + args.after_override]
    cases = [[args.policy, f"{args.hours:g}", *(f"-o={o}" for o in ov)] for ov in sides]
    apart = sides[0] != sides[1]  # then each side is compared with its own first run
    print(f"# {args.policy}, {args.hours:g} h, overrides {args.override or 'none'}")
    if apart:
        print(f"# before only: {args.before_override}; after only: {args.after_override}")
    print(f"# before: {where[0]}\n# after:  {where[1]}")
    print(f"{'round':>5} {'before cpu s':>12} {'after cpu s':>12} {'after/before':>12}  native")
    rows: list[dict[str, Any]] = []
    ratios = []
    for r in range(1, args.rounds + 1):
        before, after = one_round(trees, cases)
        ratio = after["cpu_s"] / before["cpu_s"]
        ratios.append(ratio)
        print(
            f"{r:>5} {before['cpu_s']:>12.2f} {after['cpu_s']:>12.2f} {ratio:>12.3f}  "
            f"{before.get('native', 0)} / {after.get('native', 0)}",
            flush=True,
        )
        for side, rec, tree in (("before", before, trees[0]), ("after", after, trees[1])):
            rows.append({"round": r, "side": side, "tree": str(tree), **rec})
    refs = {
        side: {k: rows[i].get(k) for k in RESULT_KEYS}
        for side, i in (("before", 0), ("after", 1 if apart else 0))
    }
    differ = [row for row in rows if {k: row.get(k) for k in RESULT_KEYS} != refs[row["side"]]]
    print(
        f"median after/before {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} rounds); "
        + ("same results" if not differ else f"RESULTS DIFFER in {len(differ)} of {len(rows)} runs")
    )
    if args.json is not None:
        args.json.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if differ:
        for row in differ:
            got = {k: row.get(k) for k in RESULT_KEYS}
            want = refs[row["side"]]
            print(f"  round {row['round']} {row['side']}: {got} (its reference run: {want})")
        sys.exit(1)


if __name__ == "__main__":
    main()
