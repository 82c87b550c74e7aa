"""The `fer-bench` command line (Typer). `main` turns user mistakes into one clear line."""

from __future__ import annotations

import sys

from ..errors import FerBenchError
from . import (  # noqa: F401  (register commands)
    backbones,
    data,
    leaderboard,
    prompts,
    report,
    run,
    throughput,
    weights,
)
from .common import app, err_console


def main() -> None:
    """Entry point: user mistakes print one clear line and exit 2, never a traceback."""
    try:
        app()
    except FerBenchError as e:
        err_console.print(f"[bold red]error:[/bold red] {e}")
        sys.exit(2)


__all__ = ["app", "main"]
