"""The matrix loop: every cell not already complete runs once, under its lock; cells another
live process holds are done last (waited for and adopted, or left to it)."""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import remove_stale_temps
from ..errors import FerBenchError
from ..locks import LOCK_DIR, Lock, describe_owner, read_owner, try_lock
from ..plan import Cell
from ..results.store import RESULT_FILE, NewerSchemaError, cell_dir, check_results_dir, read_result
from ..train import engine  # engine.run_cell looked up per call: tests patch it
from .cell_files import base_result, is_complete, result_ok, result_signature, save_cell
from .cell_log import CellLog
from .validate import validate_cells

WAIT_POLL_S = 0.5


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)      # complete before, or done elsewhere
    failed: dict[str, str] = field(default_factory=dict)  # cell id -> reason
    elsewhere: list[str] = field(default_factory=list)    # finished by another process
    busy: dict[str, str] = field(default_factory=dict)    # left to a live process (wait=False)


def failure_reason(e: BaseException) -> str:
    if isinstance(e, FerBenchError):
        return str(e)
    reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    if any(isinstance(x, torch.OutOfMemoryError | MemoryError) for x in (e, e.__cause__)):
        reason += " (out of memory: try a smaller batch_size, amp, or a smaller image_size)"
    return reason


def _free_memory() -> None:
    """After a failed (often out-of-memory) cell, give its memory back before the next one."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def lock_path(out: Path, cell: Cell) -> Path:
    cell_dir(out, cell.cell_id)  # validates the id: never a path outside <out>
    return out / LOCK_DIR / f"{cell.cell_id}.lock"


@dataclass
class Hooks:
    """What a caller (the CLI's progress bars, an executor) hears while the matrix runs."""

    on_cell_start: Callable[[Cell, int], None] | None = None
    on_progress: Callable[[dict], None] | None = None
    on_cell_end: Callable[[Cell, dict], None] | None = None
    on_wait: Callable[[Cell, dict], None] | None = None


def run_plan(cells: list[Cell], out: Path, *, rerun: bool = False, wait: bool = True,
             on_cell_start: Callable[[Cell, int], None] | None = None,
             on_progress: Callable[[dict], None] | None = None,
             on_cell_end: Callable[[Cell, dict], None] | None = None,
             on_wait: Callable[[Cell, dict], None] | None = None,
             keep_checkpoints: bool = False) -> RunSummary:
    """Run every cell not already complete. Cells another live process is running are done
    last: with `wait`, this process waits for them and adopts their results (or runs them if
    that process died); without, they are left to it (listed in `busy` with their owner)."""
    validate_cells(cells, load_data=True)
    check_results_dir(out)
    run = _Matrix(out, cells, rerun, keep_checkpoints,
                  Hooks(on_cell_start, on_progress, on_cell_end, on_wait))
    deferred: list[tuple[int, Cell]] = []
    for i, cell in enumerate(cells):
        if not rerun and is_complete(out, cell):
            run.summary.skipped.append(cell.cell_id)
            continue
        lock = try_lock(lock_path(out, cell), cell.label)
        if lock is None:  # running in another live process: come back to it at the end
            deferred.append((i, cell))
            continue
        with lock:
            run.cell_locked(cell, i)
    for i, cell in deferred:
        if not wait:
            run.summary.busy[cell.cell_id] = describe_owner(read_owner(lock_path(out, cell)))
            continue
        with _wait_for_lock(out, cell, on_wait):
            run.cell_locked(cell, i)
    return run.summary


class _Matrix:
    """One `run_plan` call's state: where results go, what was seen at the start, the summary."""

    def __init__(self, out: Path, cells: list[Cell], rerun: bool, keep_checkpoints: bool,
                 hooks: Hooks) -> None:
        self.out, self.rerun, self.keep, self.hooks = out, rerun, keep_checkpoints, hooks
        self.summary = RunSummary()
        # A result that changes after this moment was written by another process: it is
        # adopted, never redone, which is what makes a cell run once even with --rerun in two
        # processes.
        self.start_sig = {c.cell_id: result_signature(out, c) for c in cells}

    def cell_locked(self, cell: Cell, i: int) -> None:
        """Run one cell whose lock this process holds (or adopt what another process wrote)."""
        cdir = cell_dir(self.out, cell.cell_id)
        path = cdir / RESULT_FILE
        if result_signature(self.out, cell) != self.start_sig[cell.cell_id]:
            _adopt(cell, path, self.summary)
            return
        if not self.rerun and is_complete(self.out, cell):
            self.summary.skipped.append(cell.cell_id)
            return
        remove_stale_temps(cdir)  # left by a writer that was killed: we hold the cell's lock
        if self.hooks.on_cell_start:
            self.hooks.on_cell_start(cell, i)
        result, output = self._train(cell, cdir)
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save_cell(self.out, cell, result, output)
        if output is not None:
            self.summary.ran.append(cell.cell_id)
        if self.hooks.on_cell_end:
            self.hooks.on_cell_end(cell, result)

    def _train(self, cell: Cell, cdir: Path) -> tuple[dict, object | None]:
        """(the cell's result, the engine's output or None when it failed)."""
        result = base_result(cell)
        try:
            with CellLog(cdir, cell) as log:
                output = engine.run_cell(cell, log.progress(self.hooks.on_progress),
                                         keep_checkpoint=self.keep)
                log.done(output)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # any failure is recorded; the matrix goes on
            result.update(status="failed", error=failure_reason(e),
                          traceback=traceback.format_exc(limit=8))
            self.summary.failed[cell.cell_id] = result["error"]
            output = None
        else:
            _record_output(result, cell, output)
        if output is None:
            _free_memory()  # here, not in `except`: the traceback there still holds the tensors
        return result, output


def _record_output(result: dict, cell: Cell, output) -> None:
    resolved = output.resolved
    result["text_encoder"] = resolved.get("text_encoder", {}).get("name")
    result["config"] = {**cell.config(), "resolved": resolved}
    result["metrics"] = output.metrics
    result["timing"] = output.timing
    result["history"] = output.history
    if output.cross:
        result["cross"] = output.cross


def _wait_for_lock(out: Path, cell: Cell, on_wait: Callable[[Cell, dict], None] | None) -> Lock:
    path = lock_path(out, cell)
    told = False
    while (lock := try_lock(path, cell.label)) is None:
        if not told and on_wait:
            on_wait(cell, read_owner(path))
            told = True
        time.sleep(WAIT_POLL_S)
    return lock


def _adopt(cell: Cell, path: Path, summary: RunSummary) -> None:
    """Take the outcome another process wrote for this cell while we were busy."""
    try:
        data = read_result(path)
    except NewerSchemaError:
        raise
    except FerBenchError:
        data = {}
    if result_ok(path.parent, data):
        summary.skipped.append(cell.cell_id)
        summary.elsewhere.append(cell.cell_id)
    else:
        summary.failed[cell.cell_id] = (f"{data.get('error') or 'unreadable result'} "
                                        "(in another process)")
