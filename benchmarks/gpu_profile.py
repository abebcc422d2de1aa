"""Measure GPU profiles for the models ptsim's traces use, in one run of a few minutes.

On a CUDA machine, for GPT-2 base, GPT-2 large and a 7B Llama-architecture model (Vicuna-7B's
shape; named ``vicuna-7b`` as in the derived profile), each built from its real config with
random weights in bf16 (speed depends on the architecture, not on the weights):

1. **load**: the model is written as real-size safetensors files (``save_pretrained``), the
   files are flushed and dropped from the page cache where the OS allows, then read back onto
   the GPU and timed (``cold_start_s``: the first load after the CUDA runtime is up;
   ``reload_s``: a second load); the CUDA runtime's own start (``init``) is reported apart;
2. **step time**: a prompt-tuning step (peft prompt tuning, 20 virtual tokens, sequences of
   ``--seq-len`` tokens including the prompt, Adam on the prompt) at each global batch, on one
   GPU, median of ``--steps`` steps after warm-up;
3. **evaluation**: one Prompt Bank score assessment (forward passes over 2 batches of 32,
   ``eval_s``) and one held-out evaluation (512 examples in batches of 64, ``heldout_eval_s``);
   a checkpoint write of the prompt and optimizer state (``checkpoint_s``).

It writes ``traces/profiles/<gpu>/`` (``--out`` to change) with the writer ``ptexec profile``
uses (``ptexec.profile.write_profile``): ``models.csv``, one throughput table per model,
``mechanics.json``, the raw samples and a README with the device, library versions, date and
command, plus a section comparing each cell with the derived ``a100`` profile (the ratio
measured / derived step time, stated per cell).

``--dry-run`` runs the same path on CPU with tiny versions of the three architectures (a
test runs it); its output is not a profile of anything.

    python benchmarks/gpu_profile.py                       # on a CUDA machine
    python benchmarks/gpu_profile.py --dry-run --out /tmp/gp
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VIRTUAL_TOKENS = 20

# Real configs (Hugging Face's gpt2 and gpt2-large; Llama-2-7B / Vicuna-7B's shape).
ARCHS: dict[str, dict[str, Any]] = {
    "gpt2-base": {"type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab": 50257},
    "gpt2-large": {"type": "gpt2", "n_layer": 36, "n_embd": 1280, "n_head": 20, "vocab": 50257},
    "vicuna-7b": {
        "type": "llama",
        "layers": 32,
        "hidden": 4096,
        "heads": 32,
        "intermediate": 11008,
        "vocab": 32000,
    },
}
TINY: dict[str, dict[str, Any]] = {
    "gpt2-base": {"type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab": 1000},
    "gpt2-large": {"type": "gpt2", "n_layer": 3, "n_embd": 80, "n_head": 4, "vocab": 1000},
    "vicuna-7b": {
        "type": "llama",
        "layers": 2,
        "hidden": 64,
        "heads": 4,
        "intermediate": 172,
        "vocab": 1000,
    },
}
BATCHES = {"gpt2-base": (8, 16, 32, 64), "gpt2-large": (8, 16, 32, 64), "vicuna-7b": (8, 16, 32)}


def build_config(spec: dict[str, Any], seq_len: int) -> Any:
    from transformers import GPT2Config, LlamaConfig

    if spec["type"] == "gpt2":
        return GPT2Config(
            n_layer=spec["n_layer"],
            n_embd=spec["n_embd"],
            n_head=spec["n_head"],
            vocab_size=spec["vocab"],
            n_positions=max(1024, seq_len),
        )
    return LlamaConfig(
        num_hidden_layers=spec["layers"],
        hidden_size=spec["hidden"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["heads"],
        intermediate_size=spec["intermediate"],
        vocab_size=spec["vocab"],
        max_position_embeddings=max(4096, seq_len),
    )


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _drop_cache(directory: Path) -> None:
    """Flush the weight files and ask the OS to drop them from the page cache, so a load reads
    the disk (best effort: without the permission it reads the cache)."""
    for f in sorted(directory.glob("*.safetensors")):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure(
    name: str,
    spec: dict[str, Any],
    batches: Sequence[int],
    *,
    device: str,
    seq_len: int,
    steps: int,
    warmup: int,
    workdir: Path,
    say: Callable[[str], Any],
) -> Any:
    """One model's ``ModelMeasurement`` (see the module doc)."""
    import torch
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from ptexec.profile import ModelMeasurement

    dtype = torch.bfloat16
    cfg = build_config(spec, seq_len)
    say(f"{name}: building from its config (random weights, bf16)")
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    hidden = int(cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd)
    d = workdir / name
    say(f"{name}: writing {params * 2 / 1e9:.2f} GB of weights")
    model.save_pretrained(d)  # safetensors files
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    loads = []
    for _ in range(2):
        _drop_cache(d)

        def load() -> Any:
            m = AutoModelForCausalLM.from_pretrained(d, dtype=dtype)
            return m.to(device)

        dt, model = _timed(load, device)
        loads.append(dt)
        say(f"{name}: load {dt:.2f} s")
        if len(loads) < 2:
            del model
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    for p in model.parameters():
        p.requires_grad_(False)
    pt = get_peft_model(
        model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL_TOKENS)
    )
    opt = torch.optim.Adam([p for p in pt.parameters() if p.requires_grad], lr=1e-3)
    tokens = seq_len - VIRTUAL_TOKENS
    gen = torch.Generator(device="cpu").manual_seed(0)

    def batch_of(b: int) -> Any:
        return torch.randint(0, cfg.vocab_size, (b, tokens), generator=gen).to(device)

    meas = ModelMeasurement(name, name, "causal_lm", int(params), hidden)
    meas.cold_loads, meas.reloads = [loads[0]], [loads[1]]
    for b in batches:
        ids = batch_of(b)

        def step(ids: Any = ids) -> None:
            opt.zero_grad(set_to_none=True)
            out = pt(input_ids=ids, labels=ids)
            out.loss.backward()
            opt.step()

        try:
            for _ in range(warmup):
                _timed(step, device)
            meas.step_s[(b, 1)] = [_timed(step, device)[0] for _ in range(steps)]
        except torch.OutOfMemoryError:
            say(f"{name}: batch {b} does not fit; left empty")
            break
        say(f"{name}: batch {b}: {1000 * statistics.median(meas.step_s[(b, 1)]):.1f} ms/step")
    pt.eval()

    def forward(n: int, bs: int) -> None:
        with torch.no_grad():
            for i in range(0, n, bs):
                pt(input_ids=batch_of(min(bs, n - i)))

    forward(32, 32)  # warm-up
    meas.eval_s = [_timed(lambda: forward(64, 32), device)[0] for _ in range(3)]
    meas.heldout_eval_s = [_timed(lambda: forward(512, 64), device)[0] for _ in range(2)]
    ck = workdir / f"{name}-ckpt.pt"
    state = {"prompt": pt.get_prompt_embedding_to_save("default"), "opt": opt.state_dict()}
    meas.checkpoint_s = [_timed(lambda: torch.save(state, ck), "cpu")[0] for _ in range(3)]
    return meas  # the model is freed when this frame goes (main collects between models)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def comparison(out: Path, derived: str = "a100") -> str:
    """A README section: each measured 1-GPU step time against the derived profile's."""
    from ptsim.profiles_io import load_profiles

    meas = load_profiles(str(out.resolve()))
    ref = load_profiles(derived)
    lines = [
        "",
        f"## Compared with the derived `{derived}` profile",
        "",
        "ratio = measured step time / derived step time, on one GPU at the same global batch "
        "(the derivation assumes MFU 0.4 on an A100 and 256 tokens per sample; "
        "traces/profiles/a100/README.md). A ratio of r means this device runs the step as if "
        "its effective rate were 1/r of the derived A100's.",
        "",
        "| model | batch | measured [ms] | derived [ms] | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, m in meas.models.items():
        if name not in ref.models:
            continue
        for b in m.throughput.batches:
            t = 1000.0 * meas.train_step_time(name, 1, b)
            r = 1000.0 * ref.train_step_time(name, 1, b)
            lines.append(f"| {name} | {b} | {t:.4g} | {r:.4g} | {t / r:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Measure GPU profiles (see the module doc).")
    ap.add_argument("--out", help="profile directory [traces/profiles/<gpu>]")
    ap.add_argument("--models", default=",".join(ARCHS), help="subset of " + ",".join(ARCHS))
    ap.add_argument("--seq-len", type=int, default=256, help="tokens per sample incl. prompt")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true", help="tiny models on CPU (a check)")
    args = ap.parse_args(argv)

    import torch

    from ptexec.profile import ProfileSettings, machine_facts, write_profile

    def say(msg: str) -> None:
        print(f"gpu_profile: {msg}", file=sys.stderr, flush=True)

    if args.dry_run:
        device, archs, seq = "cpu", TINY, min(args.seq_len, 48)
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("gpu_profile: no CUDA device here (use --dry-run for the CPU check)")
            return 2
        device, archs, seq = "cuda:0", ARCHS, args.seq_len
    init_s, _ = _timed(lambda: torch.zeros(1, device=device), device)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu-dry-run"
    root = Path(__file__).resolve().parents[1]
    out = Path(args.out) if args.out else root / "traces" / "profiles" / _slug(gpu)
    names = [n for n in args.models.split(",") if n]
    batches = {n: (BATCHES[n][:2] if args.dry_run else BATCHES[n]) for n in names}
    ms = []
    with tempfile.TemporaryDirectory(prefix="gpu-profile-") as tmp:
        for n in names:
            ms.append(
                measure(
                    n,
                    archs[n],
                    batches[n],
                    device=device,
                    seq_len=seq,
                    steps=2 if args.dry_run else args.steps,
                    warmup=1 if args.dry_run else args.warmup,
                    workdir=Path(tmp),
                    say=say,
                )
            )
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    facts = machine_facts()
    facts["devices"] = [device]
    facts["gpu"] = gpu if device.startswith("cuda") else None
    facts["command"] = " ".join(["python", *sys.argv]) if argv is None else " ".join(argv)
    settings = ProfileSettings(
        batches=tuple(sorted({b for n in names for b in batches[n]})),
        gpu_counts=(1,),
        steps=2 if args.dry_run else args.steps,
        warmup=1 if args.dry_run else args.warmup,
        convergence=False,
    )
    d = write_profile(out, ms, settings, facts=facts)
    readme = d / "README.md"
    text = readme.read_text()
    text += (
        "\n## How this profile was made\n\n"
        f"`benchmarks/gpu_profile.py`: models built from their real configs with random bf16 "
        f"weights; {seq} tokens per sample including {VIRTUAL_TOKENS} virtual tokens; one GPU "
        f"(no multi-GPU columns); CUDA runtime start {init_s:.2f} s (not in `cold_start_s`). "
        "Loads read real-size safetensors files written just before (dropped from the page "
        "cache where the OS allowed). Hand-over and resize were not measured here (no worker "
        "pool): `mechanics.json` holds no pauses, so ptsim keeps its defaults for them.\n"
    )
    if args.dry_run:
        text = "**DRY RUN on CPU with tiny models: not a profile of any GPU.**\n\n" + text
    else:
        text += comparison(d)
    readme.write_text(text)
    print(f"profile: {d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
