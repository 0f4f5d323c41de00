"""The ``fedslim`` command: one Typer app, its commands in this package's modules."""

from __future__ import annotations

import os
import sys

from . import deploy, memory, run, split, split_service, split_train, sweep  # noqa: F401
from .common import cli

__all__ = ["cli", "main"]


def main() -> None:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
