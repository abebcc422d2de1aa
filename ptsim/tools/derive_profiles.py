"""Derive the A100 profile tables the project ships (``traces/profiles/a100`` and
``traces/profiles/elasticflow_gpt2``) from FLOP counts, a stated achieved FLOP rate, a
data-parallel step-time model and ElasticFlow's published GPT-2 speed-ups.

Run ``python -m ptsim.tools.derive_profiles`` to rewrite them, ``--check`` to verify that the
shipped files are what the derivation gives. Every constant is a field of ``Gpu``, ``Tuning`` or
``ColdStart`` below, and each profile's README.md (written by this tool) states them.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ptsim.core.profiles import ThroughputTable, cold_start_estimate
from ptsim.paths import profiles_root
from ptsim.profiles_io import (
    MODELS_FILE,
    ModelEntry,
    reload_estimate,
    write_models,
    write_throughput,
)


@dataclass(frozen=True)
class Gpu:
    """The accelerator and interconnect the tables are derived for."""

    name: str = "NVIDIA A100-80GB (SXM, 8 per node, NVLink/NVSwitch in a node, InfiniBand across)"
    peak_flops: float = 312e12  # dense bf16 tensor-core peak (NVIDIA A100 datasheet)
    mfu: float = 0.40  # achieved fraction of peak at a well-filled GPU: an assumption
    sms: int = 108  # streaming multiprocessors of an A100
    tile: int = 128  # edge of a GEMM output tile, for the "fills the GPU" estimate
    gpus_per_node: int = 8
    intra_latency_s: float = 15e-6  # per all-reduce tree level inside a node (assumption)
    inter_latency_s: float = 30e-6  # per all-reduce tree level across nodes (assumption)
    intra_bw_gb_s: float = 200.0  # achievable NVLink all-reduce bus bandwidth (assumption)
    inter_bw_gb_s: float = 20.0  # achievable 200 Gb/s InfiniBand per GPU (assumption)

    @property
    def achieved_flops(self) -> float:
        """FLOP/s actually delivered to the model's arithmetic."""
        return self.peak_flops * self.mfu


@dataclass(frozen=True)
class Tuning:
    """The prompt-tuning job shape and the per-step overheads (knobs)."""

    seq_len: int = 256  # tokens per sample, including the soft prompt
    n_virtual_tokens: int = 20  # soft-prompt length
    grad_bytes: float = 2.0  # bytes per prompt-gradient element (bf16)
    flops_per_param_token: float = 4.0  # forward 2 + backward to activations 2, no weight grads
    step_overhead_s: float = 5e-3  # per step: optimizer on the prompt, loss, data, Python
    layer_overhead_s: float = 0.5e-3  # per layer per step: kernel launches, fwd + bwd
    min_gain: float = 0.01  # a GPU-count column is filled while doubling gains >= this fraction
    eval_batches: int = 2  # one Prompt Bank score assessment: forward-only batches...
    eval_batch_size: int = 32  # ...of this many samples
    eval_overhead_s: float = 0.25  # per assessment: load the candidate prompt, start the data
    batches: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    gpu_counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class ColdStart:
    """Cold-start parts, DESIGN.md section 3: container + weights / bandwidth + runtime init."""

    container_s: float = 3.0  # container start with the image cached locally (2-5 s)
    bandwidth_gb_s: float = 3.0  # local NVMe to GPU memory (2-5 GB/s local, ~1 GB/s remote)
    init_s: float = 3.0  # CUDA context, model wrap (peft), allocator warm-up (2-5 s)
    bytes_per_param: float = 2.0  # bf16 weights


@dataclass(frozen=True)
class Arch:
    """A model's size and shape (facts from the Hugging Face model configs)."""

    name: str
    params: int
    layers: int
    hidden: int
    source: str


MODELS: tuple[Arch, ...] = (
    Arch("gpt2-base", 124_439_808, 12, 768, "Hugging Face `gpt2`"),
    Arch("gpt2-large", 774_030_080, 36, 1280, "Hugging Face `gpt2-large`"),
    Arch("vicuna-7b", 6_738_415_616, 32, 4096, "LLaMA-7B architecture (`lmsys/vicuna-7b-v1.5`)"),
)

ELASTICFLOW_SPEEDUPS: dict[int, dict[int, float]] = {
    128: {1: 1.0, 2: 1.63, 4: 2.28, 8: 2.56, 16: 2.72},
    256: {1: 1.0, 2: 1.70, 4: 2.79, 8: 3.82, 16: 4.36},
}
"""ElasticFlow's measured A100 speed-ups of GPT-2 by global batch and GPU count (its
``scheduler/throughputs_A100/gpt2.csv``, ratios to 1 GPU, rounded to two decimals)."""

A100_DIR = "a100"
ELASTICFLOW_DIR = "elasticflow_gpt2"


# --------------------------------------------------------------------------------------------
# the step-time model


def sample_time(arch: Arch, gpu: Gpu, tun: Tuning) -> float:
    """Seconds of arithmetic per training sample on one well-filled GPU."""
    return tun.flops_per_param_token * arch.params * tun.seq_len / gpu.achieved_flops


def fixed_time(arch: Arch, tun: Tuning) -> float:
    """Seconds per step that do not shrink with the batch."""
    return tun.step_overhead_s + arch.layers * tun.layer_overhead_s


def min_useful_batch(arch: Arch, gpu: Gpu, tun: Tuning) -> float:
    """Per-GPU batch below which a step takes no less time: one wave of 128x128 output tiles of
    the hidden x hidden projections over all SMs."""
    return gpu.sms * gpu.tile * gpu.tile / (arch.hidden * tun.seq_len)


def sync_time(gpus: int, arch: Arch, gpu: Gpu, tun: Tuning) -> float:
    """Seconds to all-reduce the prompt gradient across ``gpus`` GPUs (tree latency plus ring
    bandwidth; only the soft prompt has a gradient)."""
    if gpus <= 1:
        return 0.0
    levels = math.ceil(math.log2(gpus))
    intra = min(levels, math.ceil(math.log2(gpu.gpus_per_node)))
    latency = intra * gpu.intra_latency_s + (levels - intra) * gpu.inter_latency_s
    size = tun.n_virtual_tokens * arch.hidden * tun.grad_bytes
    bw = gpu.intra_bw_gb_s if gpus <= gpu.gpus_per_node else gpu.inter_bw_gb_s
    return latency + 2.0 * (gpus - 1) / gpus * size / (bw * 1e9)


def step_time(arch: Arch, gpus: int, batch: int, gpu: Gpu, tun: Tuning) -> float:
    """Seconds per data-parallel step at global ``batch`` on ``gpus`` GPUs."""
    per_gpu = math.ceil(batch / gpus)
    work = max(per_gpu, min_useful_batch(arch, gpu, tun)) * sample_time(arch, gpu, tun)
    return fixed_time(arch, tun) + work + sync_time(gpus, arch, gpu, tun)


def _sig(value: float) -> float:
    """``value`` rounded to 6 significant digits (what the CSV files hold)."""
    return float(f"{value:.6g}")


def derived_table(arch: Arch, gpu: Gpu, tun: Tuning) -> ThroughputTable:
    """Iterations per second by batch and GPU count; a row stops at the first GPU count that
    leaves fewer than one sample per GPU or gains less than ``min_gain`` over the last filled
    count (the table's flat extension then says: no more speed-up)."""
    rows: list[list[float]] = []
    for batch in tun.batches:
        row: list[float] = []
        last: float | None = None
        for n in tun.gpu_counts:
            t = step_time(arch, n, batch, gpu, tun)
            ok = n <= batch and (last is None or t <= (1.0 - tun.min_gain) * last)
            if not ok or (row and math.isnan(row[-1])):
                row.append(math.nan)
                continue
            row.append(_sig(1.0 / t))
            last = t
        rows.append(row)
    return ThroughputTable(
        batches=tun.batches, gpu_counts=tun.gpu_counts, iters_per_s=np.array(rows, np.float64)
    )


def elasticflow_speedups(batch: int) -> dict[int, float]:
    """The ElasticFlow speed-up curve used for ``batch``: the measured one at 128 and 256, the
    batch-128 curve for smaller batches (an assumption; ElasticFlow measured no smaller batch)."""
    measured = sorted(ELASTICFLOW_SPEEDUPS)
    if batch in ELASTICFLOW_SPEEDUPS:
        return ELASTICFLOW_SPEEDUPS[batch]
    if batch < measured[0]:
        return ELASTICFLOW_SPEEDUPS[measured[0]]
    raise ValueError(f"no ElasticFlow speed-up curve for global batch {batch}")


def elasticflow_table(arch: Arch, gpu: Gpu, tun: Tuning) -> ThroughputTable:
    """Our derived 1-GPU rate times ElasticFlow's GPT-2 speed-ups, never faster than the derived
    table; a row stops beyond 16 GPUs, where a GPU would get less than one sample, or where the
    step would shorten by less than ``min_gain``."""
    derived = derived_table(arch, gpu, tun)
    rows: list[list[float]] = []
    for batch in tun.batches:
        base = _sig(1.0 / step_time(arch, 1, batch, gpu, tun))
        speed = elasticflow_speedups(batch)
        row: list[float] = []
        last: float | None = None
        for n in tun.gpu_counts:
            value = math.nan
            if n in speed and n <= batch and not (row and math.isnan(row[-1])):
                cand = min(float(f"{base * speed[n]:.12g}"), derived.iters_per_second(n, batch))
                if last is None or cand * (1.0 - tun.min_gain) >= last:
                    value = last = cand
            row.append(value)
        rows.append(row)
    return ThroughputTable(
        batches=tun.batches, gpu_counts=tun.gpu_counts, iters_per_s=np.array(rows, np.float64)
    )


def eval_time(arch: Arch, gpu: Gpu, tun: Tuning) -> float:
    """Seconds of one Prompt Bank score assessment: forward-only batches plus a fixed overhead."""
    per_sample = 2.0 * arch.params * tun.seq_len / gpu.achieved_flops
    batch = max(tun.eval_batch_size, min_useful_batch(arch, gpu, tun))
    return tun.eval_overhead_s + tun.eval_batches * batch * per_sample


def model_entry(arch: Arch, gpu: Gpu, tun: Tuning, cold: ColdStart, source: str) -> ModelEntry:
    """The models.csv row of ``arch``: cold start as parts, evaluation time derived."""
    return ModelEntry(
        model=arch.name,
        params=float(arch.params),
        eval_s=_sig(eval_time(arch, gpu, tun)),
        throughput=f"{arch.name}.csv",
        container_s=cold.container_s,
        bandwidth_gb_s=cold.bandwidth_gb_s,
        init_s=cold.init_s,
        bytes_per_param=cold.bytes_per_param,
        source=source,
    )


def cold_start_s(arch: Arch, cold: ColdStart) -> float:
    """Cold start of ``arch`` from the parts (what the loader computes)."""
    return cold_start_estimate(
        arch.params,
        container_s=cold.container_s,
        bandwidth_gb_s=cold.bandwidth_gb_s,
        init_s=cold.init_s,
        bytes_per_param=cold.bytes_per_param,
    )


def reload_s(arch: Arch, cold: ColdStart) -> float:
    """Reload (model swap on a running runtime) of ``arch`` from the parts."""
    return reload_estimate(
        arch.params,
        bandwidth_gb_s=cold.bandwidth_gb_s,
        init_s=cold.init_s,
        bytes_per_param=cold.bytes_per_param,
    )


# --------------------------------------------------------------------------------------------
# README text


def _g(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, never in exponent notation."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _constants_md(gpu: Gpu, tun: Tuning, cold: ColdStart) -> str:
    rows = [
        ("GPU", gpu.name, "the paper's testbed GPU"),
        (
            "peak FLOP rate `F_peak`",
            f"{gpu.peak_flops / 1e12:g} TFLOP/s dense bf16",
            "fact (NVIDIA A100 datasheet)",
        ),
        ("achieved fraction `MFU`", f"{gpu.mfu:g}", "**assumption**, see Step time"),
        (
            "FLOPs per parameter per token",
            f"{tun.flops_per_param_token:g} (forward 2, backward to activations 2)",
            "standard count; no weight gradients in prompt tuning",
        ),
        (
            "tokens per sample `L`",
            f"{tun.seq_len}, including the {tun.n_virtual_tokens}-token soft prompt",
            "knob",
        ),
        (
            "per-step overhead `t_fixed`",
            f"{tun.step_overhead_s * 1e3:g} ms + {tun.layer_overhead_s * 1e3:g} ms x layers",
            "**assumption** (eager PyTorch launch and optimizer cost)",
        ),
        (
            "SMs x tile",
            f"{gpu.sms} SMs, {gpu.tile}x{gpu.tile} output tiles",
            "A100 fact; one-wave heuristic",
        ),
        (
            "all-reduce latency",
            f"{gpu.intra_latency_s * 1e6:g} us per tree level in a node, "
            f"{gpu.inter_latency_s * 1e6:g} us across nodes",
            "**assumption**",
        ),
        (
            "all-reduce bandwidth",
            f"{gpu.intra_bw_gb_s:g} GB/s in a node ({gpu.gpus_per_node} GPUs), "
            f"{gpu.inter_bw_gb_s:g} GB/s across",
            "**assumption**",
        ),
        (
            "prompt gradient",
            f"{tun.n_virtual_tokens} x hidden x {tun.grad_bytes:g} bytes",
            "from the prompt's shape",
        ),
        ("cold start: container", f"{cold.container_s:g} s", "DESIGN.md range 2-5 s; default"),
        (
            "cold start: weight bandwidth",
            f"{cold.bandwidth_gb_s:g} GB/s, {cold.bytes_per_param:g} bytes/param",
            "DESIGN.md range 2-5 GB/s local; default",
        ),
        ("cold start: runtime init", f"{cold.init_s:g} s", "DESIGN.md range 2-5 s; default"),
        (
            "score assessment",
            f"{tun.eval_batches} forward-only batches of {tun.eval_batch_size} samples "
            f"+ {tun.eval_overhead_s:g} s",
            "**assumption**",
        ),
    ]
    lines = ["| constant | value | status |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def _per_model_md(gpu: Gpu, tun: Tuning, cold: ColdStart) -> str:
    lines = [
        "| model | params | layers | hidden | t_sample [ms] | t_fixed [ms] | b_min | "
        "prompt grad [KB] | step B=16, 1 GPU [ms] | cold_start_s | reload_s | eval_s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in MODELS:
        grad_kb = tun.n_virtual_tokens * a.hidden * tun.grad_bytes / 1e3
        lines.append(
            f"| {a.name} | {a.params:,} | {a.layers} | {a.hidden} | "
            f"{_g(sample_time(a, gpu, tun) * 1e3)} | {_g(fixed_time(a, tun) * 1e3)} | "
            f"{_g(min_useful_batch(a, gpu, tun), 3)} | {_g(grad_kb)} | "
            f"{_g(step_time(a, 1, 16, gpu, tun) * 1e3)} | {_g(cold_start_s(a, cold))} | "
            f"{_g(reload_s(a, cold))} | {_g(_sig(eval_time(a, gpu, tun)))} |"
        )
    return "\n".join(lines) + "\n"


def _step_table_md(arch: Arch, table: ThroughputTable) -> str:
    head = "| batch \\ GPUs | " + " | ".join(str(n) for n in table.gpu_counts) + " |"
    rule = "|---" * (len(table.gpu_counts) + 1) + "|"
    lines = [f"**{arch.name}**: step time [ms] (empty: no further speed-up)", "", head, rule]
    for i, b in enumerate(table.batches):
        cells = ["" if math.isnan(v) else _g(1e3 / v) for v in table.iters_per_s[i]]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_MEASURED_MD = """\
## Measured tables

None yet: no GPU was available in the session that prepared the measurement. On a CUDA
machine, `python benchmarks/gpu_profile.py` measures GPT-2 base, GPT-2 large and a 7B
Llama-architecture model (step, load, evaluation and checkpoint times; a few minutes) and
writes `traces/profiles/<gpu>/` in this layout (`source` = `measured`), with a README stating
the device, software versions, date and command, and a table of the ratio measured / derived
step time per model and batch (docs/profiles.md, "Measured GPU profiles and the derived A100
profile"). This derived profile stays as it is; the ratio is stated there, never applied here.
"""


def a100_readme(gpu: Gpu, tun: Tuning, cold: ColdStart) -> str:
    """README.md of the derived A100 profile."""
    tables = "\n".join(_step_table_md(a, derived_table(a, gpu, tun)) for a in MODELS)
    grads = [tun.n_virtual_tokens * a.hidden * tun.grad_bytes / 1e3 for a in MODELS]
    grad_range = f"{_g(min(grads), 2)} KB to {_g(max(grads), 3)} KB"
    eval_formula = (
        f"{tun.eval_overhead_s:g} s + {tun.eval_batches} x max({tun.eval_batch_size}, b_min)"
        " x 2 x P x L / (MFU x F_peak)"
    )
    return f"""\
# Profile `a100`: derived A100 step, cold-start and evaluation times

Every number in this directory is **derived**, not measured: written by
`python -m ptsim.tools.derive_profiles` (check with `--check`) from the formulas and constants
below. Files: `models.csv` (per-model size, cold-start parts, evaluation time) and one
throughput table per model (`<model>.csv`, ElasticFlow's layout: rows = global batch size,
columns = GPU count, cells = iterations per second, empty = no further speed-up).

## Step time

Prompt tuning trains only the soft prompt, but the backward pass still runs through every
layer down to the input embeddings: about **4 x params FLOPs per token** (forward 2, backward
to the activations 2, no weight gradients). A sample has `L` tokens. On one GPU that is
`t_sample = 4 x P x L / (MFU x F_peak)`.

Data-parallel step time on `n` GPUs at global batch `B`:

    t(n, B) = t_fixed + max(ceil(B / n), b_min) x t_sample + t_sync(n)
    t_fixed = {tun.step_overhead_s * 1e3:g} ms + {tun.layer_overhead_s * 1e3:g} ms x layers
    b_min   = SMs x 128 x 128 / (hidden x L)      (one wave of GEMM output tiles)
    t_sync(n) = (tree levels in a node) x {gpu.intra_latency_s * 1e6:g} us
              + (tree levels across nodes) x {gpu.inter_latency_s * 1e6:g} us
              + 2 (n-1)/n x (n_virtual x hidden x {tun.grad_bytes:g} bytes) / bandwidth

and the cell is `1 / t(n, B)` iterations per second, rounded to 6 significant digits.
`t_sync` is tiny because only the prompt's gradient is all-reduced ({grad_range}), so
scaling is close to linear until the per-GPU batch reaches `b_min`; below `b_min` a GPU is
partly idle and the step takes as long as at `b_min`. A row stops (empty cells) at the first
GPU count that would leave less than one sample per GPU or that shortens the step by less than
{tun.min_gain:.0%} over the last filled count; the simulator keeps the last filled value beyond
it. Per-GPU batches larger than fit in memory are assumed to run as gradient accumulation at the
same per-sample time.

**MFU = {gpu.mfu:g} is an assumption.** Large-model training on A100 reaches about half of peak
with a tuned stack (Megatron-LM); fine-tuning smaller models in eager PyTorch at modest batch
gets less, typically 0.3-0.45. The losses specific to small batches are modelled separately
(`t_fixed`, `b_min`), so `MFU` is the rate at a well-filled GPU. Replace it with measurements
(`ptexec profile`) when they exist.

## Cold start, reload, evaluation

    cold_start_s = container_s + bytes_per_param x params / (bandwidth_gb_s x 1e9) + init_s
    reload_s     =               bytes_per_param x params / (bandwidth_gb_s x 1e9) + init_s
    eval_s       = {eval_formula}

`models.csv` stores the cold-start parts (not the totals), so a config can change them
(`cold_start:` in `conf/profile/a100.yaml`) and the loader recomputes both totals;
`reload_s` is a model swap on a GPU whose tuning runtime already runs (no container start).
`eval_s` is one Prompt Bank score assessment: forward passes only (2 x params FLOPs per token).

## Constants

{_constants_md(gpu, tun, cold)}
## Per model

{_per_model_md(gpu, tun, cold)}
## Step times

{tables}
{_MEASURED_MD}"""


def elasticflow_readme(gpu: Gpu, tun: Tuning, cold: ColdStart) -> str:
    """README.md of the ElasticFlow-speed-up profile."""
    ef_rows = "\n".join(
        f"| {b} | " + " | ".join(f"{s:.2f}" for n, s in sorted(sp.items()) if n > 1) + " |"
        for b, sp in sorted(ELASTICFLOW_SPEEDUPS.items())
    )
    base_rows = "\n".join(
        f"| {a.name} | "
        + " | ".join(
            _g(_sig(1.0 / step_time(a, 1, b, gpu, tun)), 6) for b in sorted(ELASTICFLOW_SPEEDUPS)
        )
        + " |"
        for a in MODELS
    )
    return f"""\
# Profile `elasticflow_gpt2`: ElasticFlow's measured GPT-2 scaling on A100

Written by `python -m ptsim.tools.derive_profiles` (check with `--check`). The same models,
cold-start parts and evaluation times as `../a100` (see its README); only the throughput tables
differ. This is a **pessimistic-scaling** profile: it applies scaling measured for full
fine-tuning (every weight's gradient is all-reduced) to prompt tuning (only the prompt's).

## Throughput tables

Rows: global batch 8-256, columns 1-64 GPUs, cells in iterations per second.

- **Facts**: ElasticFlow's measured A100 speed-ups of GPT-2 over 1 GPU (ElasticFlow,
  ASPLOS'23, repository `pkusys/ElasticFlow`, file `scheduler/throughputs_A100/gpt2.csv`,
  ratios rounded to two decimals):

| global batch | 2 GPUs | 4 GPUs | 8 GPUs | 16 GPUs |
|---|---|---|---|---|
{ef_rows}

- **Derived**: the 1-GPU rate of each model at each batch is our derivation (`../a100`,
  `1 / t(1, B)`, the same value as the `a100` table); cell(n) = cell(1) x speed-up(n), exactly,
  so rows 128 and 256 reproduce ElasticFlow's speed-ups.
- **Assumption**: batches below 128 use the batch-128 speed-ups (ElasticFlow measured none;
  its data scale worse at the smaller batch, so the real curve would be lower still), and
  the same GPT-2 speed-ups are used for all three models (ElasticFlow measured GPT-2 only).
- **Capped**: no cell is faster than the `a100` table at the same point, so the per-GPU batch
  floor `b_min` of the derivation still holds (this caps only rows below 128).
- **Empty** beyond 16 GPUs (ElasticFlow's table has 32 and 64 GPUs, but its GPT-2 throughput
  drops there), where a GPU would get less than one sample, and where the step would shorten by
  less than {tun.min_gain:.0%}; the simulator keeps the last filled value for larger counts.

1-GPU iterations per second (derived):

| model | B=128 | B=256 |
|---|---|---|
{base_rows}

{_MEASURED_MD}"""


# --------------------------------------------------------------------------------------------
# writing


def write_profiles(out: Path, gpu: Gpu, tun: Tuning, cold: ColdStart) -> list[Path]:
    """Write both profile directories under ``out``; returns the files written."""
    written: list[Path] = []
    for dirname, table_of, source, readme in (
        (A100_DIR, derived_table, "derived", a100_readme),
        (ELASTICFLOW_DIR, elasticflow_table, "elasticflow-speedups+derived", elasticflow_readme),
    ):
        d = out / dirname
        d.mkdir(parents=True, exist_ok=True)
        entries = []
        for arch in MODELS:
            path = d / f"{arch.name}.csv"
            write_throughput(path, table_of(arch, gpu, tun))
            written.append(path)
            entries.append(model_entry(arch, gpu, tun, cold, source))
        write_models(d / MODELS_FILE, entries)
        (d / "README.md").write_text(readme(gpu, tun, cold), encoding="utf-8")
        written += [d / MODELS_FILE, d / "README.md"]
    return written


def _differences(out: Path, gpu: Gpu, tun: Tuning, cold: ColdStart) -> list[str]:
    """Files under ``out`` that differ from a fresh derivation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_profiles(Path(tmp), gpu, tun, cold)
        bad = []
        for f in fresh:
            rel = f.relative_to(tmp)
            target = out / rel
            if not target.is_file() or not filecmp.cmp(f, target, shallow=False):
                bad.append(str(rel))
        return bad


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or check) the derived profile directories; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ptsim.tools.derive_profiles", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="profiles folder (default: traces/profiles)"
    )
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    parser.add_argument("--mfu", type=float, default=Gpu.mfu, help="achieved fraction of peak")
    parser.add_argument(
        "--seq-len", type=int, default=Tuning.seq_len, help="tokens per sample incl. the prompt"
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.mfu <= 1.0:
        parser.error(f"--mfu {args.mfu}: must be in (0, 1]")
    if args.seq_len < 1:
        parser.error(f"--seq-len {args.seq_len}: must be >= 1")
    gpu = replace(Gpu(), mfu=args.mfu)
    tun = replace(Tuning(), seq_len=args.seq_len)
    cold = ColdStart()
    out = args.out if args.out is not None else profiles_root()
    if args.check:
        bad = _differences(out, gpu, tun, cold)
        if bad:
            print(f"profiles under {out} differ from the derivation: {', '.join(bad)}")
            return 1
        print(f"profiles under {out} match the derivation")
        return 0
    for path in write_profiles(out, gpu, tun, cold):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
