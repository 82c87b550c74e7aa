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
  since every later cell would fail the same way."""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .adaptation import check_applicable, parse_regime
from .adaptation.artifacts import TRAINED_FILE
from .adaptation.artifacts import encode as encode_trained
from .atomic import (
    WriteError,
    atomic_save_npz,
    atomic_write_bytes,
    file_sha256,
    remove_stale_temps,
    write_json_atomic,
)
from .backbones import check_model, parse_spec
from .data import load_dataset
from .data.sources import dataset_entry, dataset_path
from .errors import ConfigError, DataError, FerBenchError
from .locks import LOCK_DIR, Lock, describe_owner, read_owner, try_lock
from .plan import Cell, ResolvedCell, resolve
from .results.store import (
    ARTIFACTS_FILE,
    CHECKPOINT_FILE,
    LOG_FILE,
    PREDICTIONS_FILE,
    RESULT_FILE,
    SCHEMA_VERSION,
    CellResult,
    NewerSchemaError,
    cell_dir,
    check_results_dir,
    cross_predictions_file,
    read_result,
)
from .text import check_text_encoder, load_prompt_set

WAIT_POLL_S = 0.5


class ResultNotSaved(FerBenchError):
    """A finished cell's files could not be written (disk full, ...): the matrix stops."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)      # complete before, or done elsewhere
    failed: dict[str, str] = field(default_factory=dict)  # cell id -> reason
    elsewhere: list[str] = field(default_factory=list)    # finished by another process
    busy: dict[str, str] = field(default_factory=dict)    # left to a live process (wait=False)


# ---------------------------------------------------------------------------------- validation

def check_backbone(name: str) -> None:
    """The name parses and its family knows the model (a typo is caught here, with the closest
    names, not when the cell is built)."""
    check_model(parse_spec(name))


def check_combination(cell: Cell | ResolvedCell) -> None:
    """Reject cells whose parts cannot work together, before anything is built or trained."""
    rc = cell if isinstance(cell, ResolvedCell) else resolve(cell)
    problem = rc.regime_problem() or rc.text_problem(rc.text_tower)
    if problem:
        raise ConfigError(f"cell {rc.cell.label}: {problem}")


def check_regime_applies(backbone: str, regime: str, label: str = "") -> None:
    """An adaptation regime that cannot apply to the image encoder (vpt on a CNN, LoRA targets
    it does not have) fails here, from an architecture-only build on the meta device."""
    problem = _regime_problem(backbone, regime)
    if problem:
        raise ConfigError(f"cell {label or backbone}: backbone {backbone!r}: {problem}")


@functools.cache
def _regime_problem(backbone: str, regime: str) -> str | None:
    spec = parse_regime(regime)
    if spec.kind not in ("vpt", "lora"):
        return None
    from .backbones import create_backbone

    encoder = create_backbone(backbone, device="meta", measure_cost=False).encoder
    try:
        check_applicable(encoder, spec, "image encoder")
    except ConfigError as e:
        return str(e)
    return None


def _dataset_classes(spec: str, load: bool, check_paths: bool = True
                     ) -> tuple[str, ...] | None:
    """The dataset's classes: from its registry entry when declared, else by loading it (the
    process keeps loaded datasets, so the cells reuse this load)."""
    entry = dataset_entry(spec)
    path = dataset_path(spec) if check_paths else None
    if path is not None and not path.exists():
        raise DataError(f"dataset {spec!r}: {path} does not exist")
    declared = entry.meta.get("classes")
    if declared and not load:
        return tuple(declared)
    if not load:
        return None
    try:
        return tuple(load_dataset(spec).classes)
    except FerBenchError:
        raise
    except Exception as e:  # a loader's ValueError on a malformed file is still bad input
        raise DataError(f"dataset {spec!r}: {type(e).__name__}: {e}") from e


def validate_cells(cells: list[Cell], *, load_data: bool = False,
                   check_paths: bool = True) -> None:
    """Reject unknown names, impossible combinations and prompt sets that miss a dataset class,
    before anything is trained. With `load_data`, each dataset is loaded (once) so that missing
    paths and malformed files fail here, and prompt sets are checked against its real classes.
    `check_paths=False` (dry runs planned on another machine) skips dataset path checks."""
    for bb in dict.fromkeys(c.backbone for c in cells):
        check_backbone(bb)
    classes = {ds: _dataset_classes(ds, load_data, check_paths)
               for ds in dict.fromkeys(c.dataset for c in cells)}
    for c in cells:
        rc = resolve(c)
        check_combination(rc)
        check_regime_applies(c.backbone, c.train.regime, c.label)
        if rc.head.uses_text:
            _check_text(rc, classes[c.dataset])


def _check_text(rc: ResolvedCell, classes: tuple[str, ...] | None) -> None:
    """The text encoder(s) the cell may load are known, and its prompt set covers the
    dataset's classes (when they are known)."""
    c = rc.cell
    where = "train.text_encoder" if (c.text_encoder or "default") == "default" else (
        f"cell {c.label}")
    for te in filter(None, (rc.text_encoder, rc.text_fallback)):
        check_text_encoder(te, where)
    prompt_set = load_prompt_set(c.prompts or "")
    if classes is not None:
        try:
            prompt_set.for_classes(classes)
        except ConfigError as e:
            raise ConfigError(f"{e} (needed by dataset {c.dataset!r})") from None


# ------------------------------------------------------------------------------------ results

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


def _result_ok(cdir: Path, data: dict) -> bool:
    return CellResult.from_json(data, cdir / RESULT_FILE).complete()


def is_complete(out: Path, cell: Cell) -> bool:
    """A cell is complete when its result says ok and its predictions match the result. A
    result that cannot be read is redone, not trusted; one from a newer fer-bench is refused."""
    cdir = cell_dir(out, cell.cell_id)
    path = cdir / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return _result_ok(cdir, read_result(path))
    except NewerSchemaError:
        raise
    except FerBenchError:
        return False


def base_result(cell: Cell) -> dict:
    return {"schema": SCHEMA_VERSION, "cell_id": cell.cell_id, "status": "ok", "error": None,
            "backbone": cell.backbone, "prompts": cell.prompts, "head": cell.head,
            "text_encoder": None, "dataset": cell.dataset, "split": "test", "seed": cell.seed,
            "config": cell.config(), "metrics": None, "timing": None, "env": environment()}


def json_safe(obj):
    """NaN and infinities (a diverged validation loss) become null: JSON has no such numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


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


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def lock_path(out: Path, cell: Cell) -> Path:
    cell_dir(out, cell.cell_id)  # validates the id: never a path outside <out>
    return out / LOCK_DIR / f"{cell.cell_id}.lock"


def _short_metrics(result: dict) -> str:
    m = result.get("metrics") or {}
    fd, acc = m.get("fear_disgust"), m.get("accuracy")
    if acc is None:
        return f"status {result['status']}"
    return f"fear/disgust {fd if fd is None else round(100 * fd, 1)}, accuracy " \
           f"{round(100 * acc, 1)}"


def save_cell(out: Path, cell: Cell, result: dict, output=None) -> None:
    """Write a cell's files: predictions (and artifacts) first, then result.json -- the commit
    point, carrying the predictions' checksum. A write that fails stops the matrix with a clear
    error and leaves no partial file."""
    cdir = cell_dir(out, cell.cell_id)
    try:
        if output is not None:
            pred = cdir / PREDICTIONS_FILE
            atomic_save_npz(pred, compress=True, checksum=False, **output.predictions)
            result["predictions_sha256"] = file_sha256(pred)
            artifacts = getattr(output, "artifacts", None) or {}
            if artifacts:
                arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor)
                          else np.asarray(v) for k, v in artifacts.items()}
                atomic_save_npz(cdir / ARTIFACTS_FILE, **arrays)
            for spec, preds in (getattr(output, "cross_predictions", None) or {}).items():
                name = cross_predictions_file(spec)
                atomic_save_npz(cdir / name, compress=True, checksum=False, **preds)
                result["cross"][spec]["predictions"] = name
            if getattr(output, "trained", None) is not None:  # adaptation: trained params only
                atomic_write_bytes(cdir / TRAINED_FILE, encode_trained(output.trained,
                                                                       output.trained_meta))
                result["trained_params_file"] = {
                    "file": TRAINED_FILE, "sha256": file_sha256(cdir / TRAINED_FILE),
                    "tensors": len(output.trained),
                    "params": sum(t.numel() for t in output.trained.values())}
            if getattr(output, "checkpoint", None) is not None:
                from safetensors.torch import save  # tensors only: loads without unpickling

                state = {k: v.float() if v.is_floating_point() else v
                         for k, v in output.checkpoint.items()}
                atomic_write_bytes(cdir / CHECKPOINT_FILE, save(state))
        write_json_atomic(cdir / RESULT_FILE, json_safe(result))
    except WriteError as e:
        raise ResultNotSaved(e.path, f"{e}. Cell {cell.label} ({cell.cell_id}) finished "
                             f"({_short_metrics(result)}) but its result is not saved; the "
                             "matrix stops here (later cells would fail the same way). Free "
                             "space and run again: finished cells are kept, this one is redone."
                             ) from e


# ---------------------------------------------------------------------------------------- run

class CellLog:
    """`cells/<id>/train.log`: one line per epoch and the outcome, readable while a cell runs
    (`tail -f`), kept for failed cells too. Logging never fails a cell."""

    def __init__(self, cdir: Path, cell: Cell) -> None:
        self.cdir, self.cell, self.file = cdir, cell, None

    def __enter__(self) -> CellLog:
        with contextlib.suppress(OSError):
            self.cdir.mkdir(parents=True, exist_ok=True)
            self.file = open(self.cdir / LOG_FILE, "a")  # noqa: SIM115 (closed in __exit__)
            self.write(f"start {self.cell.label} ({self.cell.cell_id})")
        return self

    def write(self, line: str) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
                self.file.flush()

    def progress(self, inner: Callable[[dict], None] | None) -> Callable[[dict], None]:
        def report(info: dict) -> None:
            if info["step"] == info["steps"]:
                self.write(f"epoch {info['epoch']}/{info['epochs']} train loss "
                           f"{info['loss']:.4f}")
            if inner:
                inner(info)
        return report

    def done(self, output) -> None:
        for h in output.history:
            if "epoch" in h:  # SGD epochs (a probe's history lists weight decays instead)
                self.write(f"epoch {h['epoch']} val accuracy {h['val_accuracy']:.4f} "
                           f"val fear/disgust {h['val_fear_disgust']}")
        m = output.metrics
        self.write(f"done: test accuracy {m['accuracy']:.4f}, fear/disgust "
                   f"{m['fear_disgust']}, checkpoint epoch {m.get('checkpoint_epoch')}")

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            self.write(f"failed: {type(exc).__name__}: {exc}")
        if self.file is not None:
            self.file.close()


def run_plan(cells: list[Cell], out: Path, *, rerun: bool = False, wait: bool = True,
             on_cell_start: Callable[[Cell, int], None] | None = None,
             on_progress: Callable[[dict], None] | None = None,
             on_cell_end: Callable[[Cell, dict], None] | None = None,
             on_wait: Callable[[Cell, dict], None] | None = None,
             keep_checkpoints: bool = False) -> RunSummary:
    """Run every cell not already complete. Cells another live process is running are done
    last: with `wait`, this process waits for them and adopts their results (or runs them if
    that process died); without, they are left to it (listed in `busy` with their owner)."""
    from .engine import run_cell

    validate_cells(cells, load_data=True)
    check_results_dir(out)
    summary = RunSummary()
    # A result that changes after this moment was written by another process: it is adopted,
    # never redone, which is what makes a cell run once even with --rerun in two processes.
    start_sig = {c.cell_id: _signature(cell_dir(out, c.cell_id) / RESULT_FILE) for c in cells}

    def run_locked(cell: Cell, i: int) -> None:
        cdir = cell_dir(out, cell.cell_id)
        path = cdir / RESULT_FILE
        if _signature(path) != start_sig[cell.cell_id]:
            _adopt(cell, path, summary)
            return
        if not rerun and is_complete(out, cell):
            summary.skipped.append(cell.cell_id)
            return
        remove_stale_temps(cdir)  # left by a writer that was killed: we hold the cell's lock
        if on_cell_start:
            on_cell_start(cell, i)
        result = base_result(cell)
        try:
            with CellLog(cdir, cell) as log:
                output = run_cell(cell, log.progress(on_progress),
                                  keep_checkpoint=keep_checkpoints)
                log.done(output)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # any failure is recorded; the matrix goes on
            output = None
            result["status"] = "failed"
            result["error"] = failure_reason(e)
            result["traceback"] = traceback.format_exc(limit=8)
            summary.failed[cell.cell_id] = result["error"]
        else:
            resolved = output.resolved
            result["text_encoder"] = resolved.get("text_encoder", {}).get("name")
            result["config"] = {**cell.config(), "resolved": resolved}
            result["metrics"] = output.metrics
            result["timing"] = output.timing
            result["history"] = output.history
            if output.cross:
                result["cross"] = output.cross
        if output is None:
            _free_memory()  # here, not in `except`: the traceback there still holds the tensors
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save_cell(out, cell, result, output)
        if output is not None:
            summary.ran.append(cell.cell_id)
        if on_cell_end:
            on_cell_end(cell, result)

    deferred: list[tuple[int, Cell]] = []
    for i, cell in enumerate(cells):
        if not rerun and is_complete(out, cell):
            summary.skipped.append(cell.cell_id)
            continue
        lock = try_lock(lock_path(out, cell), cell.label)
        if lock is None:  # running in another live process: come back to it at the end
            deferred.append((i, cell))
            continue
        with lock:
            run_locked(cell, i)
    for i, cell in deferred:
        if not wait:
            summary.busy[cell.cell_id] = describe_owner(read_owner(lock_path(out, cell)))
            continue
        with _wait_for_lock(out, cell, on_wait):
            run_locked(cell, i)
    return summary


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
    if _result_ok(path.parent, data):
        summary.skipped.append(cell.cell_id)
        summary.elsewhere.append(cell.cell_id)
    else:
        summary.failed[cell.cell_id] = (f"{data.get('error') or 'unreadable result'} "
                                        "(in another process)")


__all__ = ["ResultNotSaved", "RunSummary", "check_combination",
           "is_complete", "run_plan", "validate_cells"]
