"""ptsim: a discrete-event model of PromptTuner-style prompt-tuning clusters."""

from ptsim import native as _native

__version__ = "0.1.0"

_native.guard()  # a compiled build that no longer matches its sources is not imported
