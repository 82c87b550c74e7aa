"""Results: metrics, the per-cell result files (the stable contract) and the leaderboard."""

from .metrics import compute_metrics
from .store import SCHEMA_VERSION, read_result, read_results, write_json_atomic

__all__ = ["SCHEMA_VERSION", "compute_metrics", "read_result", "read_results",
           "write_json_atomic"]
