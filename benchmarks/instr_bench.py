"""Instructions, not seconds: one benchmark script run under valgrind's callgrind in one or more
ptsim source trees, and the instructions each executed (in all, or only inside one compiled
function), with the ratio of each tree's count to the first's.

Run:  python benchmarks/instr_bench.py BEFORE_DIR AFTER_DIR \\
          --function CPyDef_elasticflow___ElasticFlow____boundary \\
          -- benchmarks/ef_boundary_bench.py --sizes 1000 --no-carry

Why: on a shared host a run's time moves by up to 2x within minutes (benchmarks/README.md),
so a change of a few percent needs many side-by-side rounds to show (``ab_bench.py``). The
number of instructions a deterministic program executes does not depend on the host's load:
the same tree gives the same count to the instruction (``PYTHONHASHSEED=0`` fixes the order
of sets and dicts of strings, which would otherwise move it slightly; two copies of a tree at
paths of other lengths differ by a few thousand instructions, the paths' own handling).
Instructions are not time (a cache miss costs many, a vectorised loop few), so this answers
"does the change do less work", and ``ab_bench.py`` or a run alone answers "is it faster".

Each TREE is a source tree of ptsim (a ``git archive`` of some commit, compiled in place or
not), run with this interpreter, ``PYTHONPATH=TREE`` and TREE as the working directory; the
script after ``--`` is a path in the tree with its arguments. ``--function SYMBOL`` counts only
the instructions executed while a function of that symbol is on the stack (callgrind's
``--toggle-collect``): compiled functions have C symbols (mypyc names them
``CPyDef_<module>___<Class>___<method>``; ``_boundary`` gives ``____boundary``), pure Python
functions have none. Under callgrind a program runs 30-60x slower. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def collected(log: str) -> int:
    """The instruction count callgrind reports in ``log`` (its ``Collected :`` line)."""
    found = _COLLECTED.findall(log)
    if not found:
        raise ValueError("no 'Collected :' line in callgrind's output")
    return int(found[-1])


def command(script: list[str], out: Path, function: str | None) -> list[str]:
    """The valgrind command that runs ``script`` (a path in the tree it runs in, and its
    arguments), writing callgrind's profile to ``out``."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if function:
        cmd.append(f"--toggle-collect={function}")
    return [*cmd, sys.executable, *script]


def count(tree: Path, script: list[str], function: str | None) -> tuple[int, str]:
    """Instructions ``script`` executes in ``tree`` (within ``function`` when given) and the
    script's own output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "PYTHONHASHSEED": "0",
            "HYDRA_FULL_ERROR": "1",
        }
        run = subprocess.run(
            command(script, out, function), cwd=tree, env=env, capture_output=True, text=True
        )
    if run.returncode != 0:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"instr_bench: {tree}: {script[0]} failed (exit {run.returncode}): {tail}")
    n = collected(run.stderr)
    if function and n == 0:
        sys.exit(
            f"instr_bench: {tree}: no instruction ran inside {function} (a pure Python build "
            "has no C symbol for it: build the tree, python -m ptsim.tools.native build)"
        )
    return n, run.stdout


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s TREE [TREE ...] [options] -- SCRIPT [ARGS ...]",
    )
    ap.add_argument("trees", nargs="+", type=Path, help="ptsim source trees, the first the base")
    ap.add_argument("--function", help="count only inside this C symbol (compiled builds)")
    ap.add_argument("--json", help="append one record per tree to this file (JSON lines)")
    ap.add_argument("--show-output", action="store_true", help="print each script's output")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    script = argv[cut + 1 :]
    if not script:
        sys.exit(
            "instr_bench: give the script to run after --, e.g. -- benchmarks/ef_boundary_bench.py"
        )
    if shutil.which("valgrind") is None:
        sys.exit("instr_bench: valgrind not found on PATH (it counts the instructions)")
    for tree in args.trees:
        if not (tree / "ptsim").is_dir() or not (tree / script[0]).is_file():
            sys.exit(f"instr_bench: {tree}: not a ptsim source tree with {script[0]}")
    records: list[dict[str, Any]] = []
    for tree in args.trees:
        n, out = count(tree.resolve(), script, args.function)
        base = records[0]["instructions"] if records else n
        rec = {
            "tree": str(tree),
            "script": " ".join(script),
            "function": args.function,
            "instructions": n,
            "ratio": round(n / base, 4) if base else None,
        }
        records.append(rec)
        print(
            f"{tree}: {n:,} instructions"
            + (f", {rec['ratio']:.4f} x the first" if records[1:] else "")
        )
        if args.show_output:
            print(out.rstrip())
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
