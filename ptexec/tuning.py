"""How one prompt-tuning job is tuned (:class:`TuningConfig`): a light module (no torch), so
job files and configs are read and checked before torch is imported. ``ptexec.train``
re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

InitMode = Literal["text", "sample_vocab", "random"]


@dataclass(frozen=True)
class TuningConfig:
    """How one job is tuned.

    - ``num_virtual_tokens``: soft prompt length.
    - ``init``: initial prompt when no stored prompt is given: ``text`` (``init_text``, or the
      task's description), ``sample_vocab``, or ``random``.
    - ``lr``, ``optimizer`` (``adam``, ``adamw``, ``sgd``), ``weight_decay``.
    - ``batch_size``: the global batch of one step, whatever the number of workers.
    - ``max_steps``: step budget; ``target_accuracy`` / ``target_loss``: the job is done when
      an evaluation on the held-out split reaches either (``None`` = not a target).
    - ``eval_every``: evaluate every this many steps (and at step 0) in :meth:`TuningJob.run`;
      ``eval_examples``: held-out examples per evaluation (``None`` = all).
    - ``eval_screen``: before a full held-out evaluation, evaluate the first this many
      held-out examples; when that is clearly short of the target (accuracy below
      ``target_accuracy - eval_screen_margin``, or loss above ``target_loss +
      eval_screen_margin``) the screen is the evaluation and the full one is skipped
      (``None`` = always the full one). A target is only ever met by a full evaluation.
    - ``max_length``: tokens per example (the text is cut to fit the template).
    - ``template``: input template with ``{text}``; ``None`` = the model's default.
    - ``checkpoint_every``: checkpoint every this many steps (``None`` = never).
    - ``seed``: seeds the initial prompt, the head and the batch order.
    """

    num_virtual_tokens: int = 8
    init: InitMode = "text"
    init_text: str | None = None
    lr: float = 0.01
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    batch_size: int = 32
    max_steps: int = 1000
    target_accuracy: float | None = 0.9
    target_loss: float | None = None
    eval_every: int = 10
    eval_examples: int | None = 512
    eval_batch_size: int = 64
    eval_screen: int | None = 128
    eval_screen_margin: float = 0.1
    max_length: int = 128
    template: str | None = None
    checkpoint_every: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_virtual_tokens < 1:
            raise ValueError("num_virtual_tokens must be >= 1")
        if self.init not in ("text", "sample_vocab", "random"):
            raise ValueError(f"init {self.init!r}: expected text, sample_vocab or random")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer {self.optimizer!r}: expected adam, adamw or sgd")
        for name, value, low, strict in (
            ("lr", self.lr, 0, True),
            ("batch_size", self.batch_size, 1, False),
            ("max_steps", self.max_steps, 0, False),
            ("eval_every", self.eval_every, 1, False),
            ("max_length", self.max_length, 2, False),
            ("eval_batch_size", self.eval_batch_size, 1, False),
        ):
            if not (value > low if strict else value >= low):
                raise ValueError(f"{name} {value!r}: must be {'>' if strict else '>='} {low}")
        if self.template is not None and "{text}" not in self.template:
            raise ValueError("template must contain {text}")
        if self.eval_screen is not None and self.eval_screen < 1:
            raise ValueError("eval_screen must be >= 1 when given")
        if self.eval_screen_margin < 0:
            raise ValueError("eval_screen_margin must be >= 0")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1 when given")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def near_target(self, accuracy: float, loss: float) -> bool:
        """Whether a screening evaluation is within ``eval_screen_margin`` of the target (then
        the full evaluation runs)."""
        m = self.eval_screen_margin
        return (self.target_accuracy is not None and accuracy >= self.target_accuracy - m) or (
            self.target_loss is not None and loss <= self.target_loss + m
        )

    def target_met(self, accuracy: float, loss: float) -> bool:
        """Whether a held-out accuracy and loss meet this job's target."""
        return (self.target_accuracy is not None and accuracy >= self.target_accuracy) or (
            self.target_loss is not None and loss <= self.target_loss
        )


__all__ = ["InitMode", "TuningConfig"]
