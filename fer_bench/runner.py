"""Run a plan: validate every cell before any work, skip cells whose result is complete, run the
rest one after another, write each result atomically, and never let one failed cell stop the
matrix."""

from __future__ import annotations

import contextlib
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .backbones import parse_spec
from .data import DATASETS
from .errors import ConfigError, FerBenchError
from .plan import Cell, head_uses_text
from .results.store import RESULT_FILE, SCHEMA_VERSION, cell_dir, read_result, write_json_atomic
from .text import load_prompt_set


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def validate_cells(cells: list[Cell]) -> None:
    """Reject unknown names and impossible combinations before anything is loaded or trained."""
    for c in cells:
        parse_spec(c.backbone)
        DATASETS.get(c.dataset.partition(":")[0], hint="Datasets: `fer-bench data list`")
        if head_uses_text(c.head):
            load_prompt_set(c.prompts or "")
        elif c.train.regime == "text":
            raise ConfigError(f"cell {c.label}: regime 'text' trains only the text tower, but "
                              f"head {c.head!r} has none")


def environment() -> dict:
    env = {"torch": torch.__version__, "fer_bench": __version__,
           "python": platform.python_version(), "platform": platform.platform(),
           "cuda": torch.version.cuda if torch.cuda.is_available() else None,
           "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else
           platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    for mod in ("timm", "open_clip", "transformers", "numpy"):
        with contextlib.suppress(Exception):  # optional libraries: record what is there
            env[mod] = __import__(mod).__version__
    return env


def is_complete(out: Path, cell: Cell) -> bool:
    path = cell_dir(out, cell.cell_id) / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return read_result(path).get("status") == "ok"
    except FerBenchError:
        return False  # an unreadable result is redone, not trusted


def base_result(cell: Cell) -> dict:
    return {"schema": SCHEMA_VERSION, "cell_id": cell.cell_id, "status": "ok", "error": None,
            "backbone": cell.backbone, "prompts": cell.prompts, "head": cell.head,
            "text_encoder": None, "dataset": cell.dataset, "split": "test", "seed": cell.seed,
            "config": cell.config(), "metrics": None, "timing": None, "env": environment()}


def run_plan(cells: list[Cell], out: Path, *, rerun: bool = False,
             on_cell_start: Callable[[Cell, int], None] | None = None,
             on_progress: Callable[[dict], None] | None = None,
             on_cell_end: Callable[[Cell, dict], None] | None = None) -> RunSummary:
    from .engine import run_cell

    validate_cells(cells)
    out.mkdir(parents=True, exist_ok=True)
    summary = RunSummary()
    for i, cell in enumerate(cells):
        if not rerun and is_complete(out, cell):
            summary.skipped.append(cell.cell_id)
            continue
        if on_cell_start:
            on_cell_start(cell, i)
        result = base_result(cell)
        cdir = cell_dir(out, cell.cell_id)
        try:
            output = run_cell(cell, on_progress)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # any failure is recorded; the matrix goes on
            result["status"] = "failed"
            result["error"] = f"{type(e).__name__}: {e}" if not isinstance(
                e, FerBenchError) else str(e)
            result["traceback"] = traceback.format_exc(limit=8)
            summary.failed[cell.cell_id] = result["error"]
        else:
            resolved = output.resolved
            result["text_encoder"] = resolved.get("text_encoder", {}).get("name")
            result["config"] = {**cell.config(), "resolved": resolved}
            result["metrics"] = output.metrics
            result["timing"] = output.timing
            result["history"] = output.history
            cdir.mkdir(parents=True, exist_ok=True)
            tmp = cdir / ".predictions.tmp.npz"
            np.savez_compressed(tmp, **output.predictions)
            tmp.replace(cdir / "predictions.npz")
            summary.ran.append(cell.cell_id)
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(cdir / RESULT_FILE, result)
        if on_cell_end:
            on_cell_end(cell, result)
    return summary
