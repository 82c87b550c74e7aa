"""A cell's files in `<out>/cells/<id>/`: what a result holds before training (`base_result`),
how a finished cell is written (predictions and artifacts first, then result.json, the commit
point carrying their checksum) and when a cell counts as complete."""

from __future__ import annotations

import contextlib
import json
import math
import platform
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..adaptation.artifacts import TRAINED_FILE
from ..adaptation.artifacts import encode as encode_trained
from ..atomic import WriteError, atomic_save_npz, atomic_write_bytes, file_sha256, write_json_atomic
from ..errors import FerBenchError
from ..plan import Cell
from ..results.store import (
    ARTIFACTS_FILE,
    CHECKPOINT_FILE,
    PREDICTIONS_FILE,
    RESULT_FILE,
    SCHEMA_VERSION,
    CellResult,
    NewerSchemaError,
    cell_dir,
    cross_predictions_file,
    read_result,
)


class ResultNotSaved(FerBenchError):
    """A finished cell's files could not be written (disk full, ...): the matrix stops."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


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


def result_signature(out: Path, cell: Cell) -> list | None:
    """Identity of a cell's result file now (None when absent): a result whose signature changes
    after a process looked was written by someone else since (another process, or an attempt
    of this run on a cluster)."""
    try:
        st = (cell_dir(out, cell.cell_id) / RESULT_FILE).stat()
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def result_ok(cdir: Path, data: dict) -> bool:
    return CellResult.from_json(data, cdir / RESULT_FILE).complete()


def is_complete(out: Path, cell: Cell) -> bool:
    """A cell is complete when its result says ok and its predictions match the result. A
    result that cannot be read is redone, not trusted; one from a newer fer-bench is refused."""
    cdir = cell_dir(out, cell.cell_id)
    path = cdir / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return result_ok(cdir, read_result(path))
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


def unshared(state: dict[str, torch.Tensor]
             ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict safetensors can write: floats as fp32, and each tensor stored once. A CLIP
    tower reached by two paths (the backbone's paired text tower and the head's class text)
    shares its tensors, which safetensors refuses; the second name becomes an alias of the
    first (`aliases`: alias -> stored name, kept in the file's metadata)."""
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, t in state.items():
        where = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                 tuple(t.stride()), t.dtype)
        if t.numel() and where in first:
            aliases[name] = first[where]
            continue
        first[where] = name
        out[name] = (t.float() if t.is_floating_point() else t).contiguous()
    return out, aliases


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

                state, aliases = unshared(output.checkpoint)
                atomic_write_bytes(cdir / CHECKPOINT_FILE,
                                   save(state, metadata={"aliases": json.dumps(aliases)}))
        write_json_atomic(cdir / RESULT_FILE, json_safe(result))
    except WriteError as e:
        raise ResultNotSaved(e.path, f"{e}. Cell {cell.label} ({cell.cell_id}) finished "
                             f"({_short_metrics(result)}) but its result is not saved; the "
                             "matrix stops here (later cells would fail the same way). Free "
                             "space and run again: finished cells are kept, this one is redone."
                             ) from e
