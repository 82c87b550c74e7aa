"""One error type for user mistakes: the CLI prints its message (never a traceback) and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FerBenchError(Exception):
    """A problem the user can fix: bad name, bad file, bad flag. The message says what and where."""


class ConfigError(FerBenchError):
    """A benchmark, card or prompt file (or a CLI flag) that does not say what fer-bench expects."""


class DataError(FerBenchError):
    """A dataset file or folder that is missing or malformed."""


class UnknownNameError(FerBenchError):
    """A name that no registry knows; the message lists the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(set(known))
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; closest: {', '.join(close)}"
        elif known:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            msg += f"; known: {shown}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.kind, self.name, self.closest = kind, name, close
