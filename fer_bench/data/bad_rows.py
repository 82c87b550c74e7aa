"""Bad rows: stop at the first one with a message naming the file, line and what was expected, or
(with `skip_bad=N`) skip at most N of them and report each."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError


class BadRows:
    """Collects malformed rows/images of one load. `limit` = how many may be skipped (0: none)."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.skipped: list[str] = []

    @staticmethod
    def where(file: str | Path, line: int | None = None) -> str:
        return f"{file}" + (f" line {line}" if line is not None else "")

    def add(self, file: str | Path, line: int | None, problem: str) -> None:
        """Record one bad row; raise when it may not be skipped."""
        msg = f"{self.where(file, line)}: {problem}"
        if len(self.skipped) >= self.limit:
            if self.limit:
                raise DataError(f"more than skip_bad={self.limit} bad rows; the next one is "
                                f"{msg}")
            raise DataError(msg + " (add #skip_bad=N to the dataset spec to skip up to N bad "
                            "rows)")
        self.skipped.append(msg)
