"""ptsim: a discrete-event model of PromptTuner-style prompt-tuning clusters."""

__version__ = "0.1.0"
