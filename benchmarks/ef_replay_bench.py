"""Replay speed against ElasticFlow's own simulator: one of ElasticFlow's published traces run by
its simulator (``ef-accessctrl``) and by ptsim's ``elasticflow`` policy in ElasticFlow mode
(``experiment=elasticflow_replay``), each as a whole process, one after the other.

Needs a local copy of the artifact (``pkusys/ElasticFlow``); give its root (the folder holding
``ElasticFlow/scheduler``) on the command line:

    python benchmarks/ef_replay_bench.py /path/to/ElasticFlow                  # Figure 8(a)
    python benchmarks/ef_replay_bench.py /path/to/ElasticFlow --repeats 2 --json out.json

The default case is Figure 8(a): ``elasticVpollux_e.csv`` (195 jobs) on 16 x 4 T4 GPUs, slot
60 s. ElasticFlow's ``scheduler.py`` imports cvxpy and grpc at the top (for other schedulers
and the testbed); this script runs it with empty stand-ins for those modules, which the
simulated ``ef-accessctrl`` never calls. Reported per system: wall and CPU time of the whole
process (``resource.getrusage(RUSAGE_CHILDREN)``, user + system: a busy shared machine
inflates wall time, much less CPU time), and the deadline-satisfactory ratio each reports; the
speed-up is ElasticFlow's time / ptsim's. Not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUB = """import runpy, sys, types
for name in ("cvxpy", "grpc", "runtime", "runtime.rpc", "runtime.rpc.scheduler_client",
             "runtime.rpc.scheduler_server"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["runtime"].rpc = sys.modules["runtime.rpc"]
sys.modules["runtime.rpc"].scheduler_client = sys.modules["runtime.rpc.scheduler_client"]
sys.modules["runtime.rpc"].scheduler_server = sys.modules["runtime.rpc.scheduler_server"]
sys.path.insert(0, ".")
sys.argv = ["scheduler.py", *sys.argv[1:]]
runpy.run_path("scheduler.py", run_name="__main__")
"""


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; its wall time, CPU time (user + system) and stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        sys.stderr.write(out.stdout[-2000:] + out.stderr[-4000:])
        raise SystemExit(f"ef_replay_bench: {cmd[:3]} failed (exit {out.returncode})")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a checkout of pkusys/ElasticFlow")
    ap.add_argument("--trace", default="elasticVpollux_e", help="traces_for_ElasticFlow/NAME.csv")
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--gpus-per-node", type=int, default=4)
    ap.add_argument("--gpu-type", default="T4", choices=["T4", "A100"])
    ap.add_argument("--slot", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args()
    sched = (args.root / "ElasticFlow" / "scheduler").resolve()
    trace = (args.root / "ElasticFlow" / "traces_for_ElasticFlow" / f"{args.trace}.csv").resolve()
    spec = sched / "cluster_specs" / f"n{args.nodes}g{args.gpus_per_node}.csv"
    for p in (sched / "scheduler.py", trace, spec):
        if not p.is_file():
            raise SystemExit(f"ef_replay_bench: {p} not found")
    py = sys.executable
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "ef_stub.py").write_text(STUB)
        converted = work / "trace.csv"
        timed([py, "-m", "ptsim.trace.cli", "convert", "--from", "elasticflow",
               "--max-gpus", "64", str(trace), str(converted)])  # fmt: skip
        profile = "elasticflow_t4" if args.gpu_type == "T4" else "elasticflow_a100"
        ptsim_cmd = [py, "-m", "ptsim.app", "experiment=elasticflow_replay",
                     f"profile={profile}", f"profile.dir={sched / f'throughputs_{args.gpu_type}'}",
                     f"workload.trace={converted}", f"cluster.nodes={args.nodes}",
                     f"cluster.gpus_per_node={args.gpus_per_node}",
                     f"scheduler.slot_s={args.slot:g}", "progress=false"]  # fmt: skip
        if args.gpu_type == "A100" and args.nodes * args.gpus_per_node >= 256:
            ptsim_cmd += ["profile.mechanics.cold_start_scale=3.5", "scheduler.event_pause_s=7"]
        for rep in range(args.repeats):
            log = work / f"eflog{rep}"
            log.mkdir()
            ef_cmd = [py, str(work / "ef_stub.py"), f"--cluster_spec={spec}", "--print",
                      "--scheme=elastic", f"--trace_file={trace}", "--schedule=ef-accessctrl",
                      f"--log_path={log}", "--simulation=True",
                      f"--scheduling_slot={args.slot:g}",
                      f"--gpu_type={args.gpu_type}"]  # fmt: skip
            ef_wall, ef_cpu, _ = timed(ef_cmd, cwd=sched)
            lines = (log / "final_result.csv").read_text().splitlines()
            ef_ratio = float(lines[-1].split(",")[1])
            run_dir = work / f"ptsim{rep}"
            pt_wall, pt_cpu, _ = timed([*ptsim_cmd, f"hydra.run.dir={run_dir}"])
            summary = json.loads((run_dir / "summary.json").read_text())
            rec = {
                "trace": args.trace,
                "jobs": summary["jobs"],
                "gpus": args.nodes * args.gpus_per_node,
                "elasticflow_wall_s": round(ef_wall, 2),
                "elasticflow_cpu_s": round(ef_cpu, 2),
                "ptsim_wall_s": round(pt_wall, 2),
                "ptsim_cpu_s": round(pt_cpu, 2),
                "speedup_wall": round(ef_wall / pt_wall, 2),
                "speedup_cpu": round(ef_cpu / pt_cpu, 2),
                "elasticflow_ratio": round(ef_ratio, 4),
                "ptsim_ratio": round(1.0 - summary["slo_violation_rate"], 4),
                "ptsim_decide_wall_s": round(summary["decide_wall_s"], 2),
            }
            records.append(rec)
            print(json.dumps(rec), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
