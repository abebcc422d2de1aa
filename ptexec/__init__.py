"""ptexec: real prompt tuning (torch + peft) scheduled by ptsim's policies."""
