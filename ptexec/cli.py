"""Command line of the executor (placeholder: the ``run`` and ``profile`` commands come with the
scheduling driver)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Print the executor's help."""
    parser = argparse.ArgumentParser(
        prog="ptexec",
        description=(
            "Real prompt tuning (torch + peft) scheduled by ptsim's policies. The building "
            "blocks (models, tasks, training, workers, prompt store) are in the ptexec "
            "package; see docs/ptexec.md."
        ),
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
