"""Run a plan: validate every cell before any work, skip cells whose result is complete, run the
rest one after another, write each result atomically, and never let one failed cell stop the
matrix.

Guarantees (docs/guarantees.md):
- A result is visible whole or not at all (`fer_bench.atomic`): a run killed at any moment
  leaves finished cells byte-for-byte untouched, and the next run redoes only the rest.
- Each cell holds an OS lock while it runs (`fer_bench.locks`), so two runs on one output
  directory share the matrix: the second takes the free cells, then waits for the cells that
  are running elsewhere and adopts their results; it never runs them a second time. A killed
  process's lock vanishes with it.
- A cell that raises, diverges or runs out of memory is recorded as failed with the reason; the
  matrix goes on. A result that cannot be written (disk full) stops the matrix with the path,
  since every later cell would fail the same way.

    validate.py    checks before any work
    cell_files.py  a cell's result, predictions and artifacts; when it is complete
    cell_log.py    its train.log
    matrix.py      the loop: locks, skip, run, adopt, wait"""

from __future__ import annotations

from .cell_files import ResultNotSaved, base_result, is_complete, result_signature, save_cell
from .matrix import RunSummary, lock_path, run_plan
from .validate import check_combination, validate_cells

__all__ = ["ResultNotSaved", "RunSummary", "base_result", "check_combination", "is_complete",
           "lock_path", "result_signature", "run_plan", "save_cell", "validate_cells"]
