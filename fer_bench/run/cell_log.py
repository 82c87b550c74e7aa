"""`cells/<id>/train.log`: a cell's progress in words, for `tail -f` and for failed cells."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from ..plan import Cell
from ..results.store import LOG_FILE


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
