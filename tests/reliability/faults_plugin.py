"""A `--plugin` file for the reliability tests (test code only, never imported by fer-bench
itself): a tiny, fast dataset, backbones that fail in chosen ways, and a switch that freezes the
process at a chosen moment of a chosen cell so that a test can SIGKILL it exactly there.

Environment (read when a cell starts):
    FER_REL_LOG     file; each line is "<pid> <event>": "start" when a cell's backbone is built,
                    "frozen <phase>" when a freeze is reached
    FER_REL_FREEZE  "<phase>:<n>": freeze in the n-th cell this process builds (1-based), at
                    phase train (a training step), eval (a no-grad forward), predictions or
                    result (halfway through writing predictions.npz / result.json)
    FER_REL_GATE    file; when set, a freeze lasts only while this file exists (then "thawed")
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import fer_bench.atomic as atomic
from fer_bench.backbones import register_backbone
from fer_bench.classes import CANONICAL
from fer_bench.data import DATASETS, FERDataset, Split

SIZE = 12
_cells = 0  # cells built in this process


def log(event: str) -> None:
    path = os.environ.get("FER_REL_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {event}\n".encode())  # one write: lines never interleave
        finally:
            os.close(fd)


def maybe_freeze(phase: str) -> None:
    want = os.environ.get("FER_REL_FREEZE", "")
    if want and want == f"{phase}:{_cells}":
        log(f"frozen {phase}")
        gate = os.environ.get("FER_REL_GATE")
        while not gate or Path(gate).exists():  # until the test kills us or opens the gate
            time.sleep(0.05)
        log("thawed")


def relfer(arg: str | None = None, spec: str = "relfer") -> FERDataset:
    """7 classes x 6 images per split, 12x12 grayscale: class c is brighter in row block c.
    `relfer:wrong-shape` is a dataset whose images lack their channel axis."""
    if arg == "wrong-shape":
        Split(torch.zeros(4, SIZE, SIZE, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    rng = np.random.default_rng(0)
    splits = {}
    for s, per in (("train", 6), ("val", 4), ("test", 4)):
        labels = np.repeat(np.arange(len(CANONICAL)), per)
        images = rng.integers(0, 60, size=(len(labels), 1, SIZE, SIZE), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 0, c:c + 2] += 150
        splits[s] = Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    return FERDataset("relfer", CANONICAL, splits, {"source": "test plugin"})


DATASETS.register("relfer", relfer, overwrite=True, classes=CANONICAL)


class Tiny(nn.Module):
    def __init__(self, fail: str = "") -> None:
        super().__init__()
        self.fail = fail
        self.trained = False  # "eval" means evaluation after training, not a build-time probe
        self.fc = nn.Linear(SIZE * SIZE, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training = torch.is_grad_enabled() and self.training
        self.trained |= training
        if training or self.trained:
            maybe_freeze("train" if training else "eval")
        if not training:  # fer-bench probes the output size with a no-grad forward when built
            return self.fc(x.flatten(1))
        if self.fail == "raise":
            raise RuntimeError("boom: the backbone raised")
        if self.fail == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        feats = self.fc(x.flatten(1))
        if self.fail == "nan":
            feats = feats * float("nan")
        if self.fail == "inf":
            feats = feats * float("inf")
        return feats


def _factory(fail: str):
    def make() -> nn.Module:
        global _cells
        _cells += 1
        log("start")
        return Tiny(fail)

    make.__doc__ = f"reliability test backbone ({fail or 'healthy'})"
    return make


_KW = dict(input_size=SIZE, in_chans=1, mean=(0.5,), std=(0.5,), feature_dim=8)
for _name, _fail in (("rel_tiny", ""), ("rel_raise", "raise"), ("rel_oom", "oom"),
                     ("rel_nan", "nan"), ("rel_inf", "inf")):
    register_backbone(_name, **_KW)(_factory(_fail))

# Freeze halfway through a file write: the temp file holds half the bytes, the target is not
# replaced yet -- the state a SIGKILL during the write leaves.
_real_atomic_write = atomic.atomic_write


def _freezable_write(path, write):
    phase = {"result.json": "result", "predictions.npz": "predictions"}.get(Path(path).name)
    want = os.environ.get("FER_REL_FREEZE", "")
    if phase is None or want != f"{phase}:{_cells}":
        return _real_atomic_write(path, write)

    def half(f):
        import io

        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        maybe_freeze(phase)

    return _real_atomic_write(path, half)


if os.environ.get("FER_REL_FREEZE"):  # only in the subprocesses a test means to kill
    atomic.atomic_write = _freezable_write
