"""The shipped policies; importing this package registers them in ``POLICIES``."""

from ptsim.core.policies import simple  # noqa: F401  (registers fifo and edf)
