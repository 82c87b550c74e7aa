"""Results: metrics, the per-cell result files (the stable contract, read as CellResult) and
the leaderboard built from them."""

from .metrics import compute_metrics
from .store import (
    SCHEMA_VERSION,
    CellResult,
    read_cell,
    read_result,
    read_results,
    write_json_atomic,
)

__all__ = ["SCHEMA_VERSION", "CellResult", "compute_metrics", "read_cell", "read_result",
           "read_results", "write_json_atomic"]
