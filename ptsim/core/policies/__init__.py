"""The shipped policies; importing this package registers them in ``POLICIES``."""

import ptsim.core.policies.elasticflow  # noqa: F401  (registers elasticflow)
from ptsim.core.policies import (
    infless,  # noqa: F401  (registers infless)
    prompttuner,  # noqa: F401  (registers prompttuner)
    simple,  # noqa: F401  (registers fifo and edf)
)
