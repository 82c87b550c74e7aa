"""Target 2, loop overhead: fer-bench's training step for resnet18 at 48 px reaches >= 90% of a
bare torch loop's samples/s -- same model, optimizer, batch, precision and memory format, the
bare loop's data already preprocessed in memory -- for the `linear` head and for `lasted` with
a frozen text tower.

fer-bench's side is `engine.train_sgd` itself: index the uint8 faces, augment on the device
(random affine + flip), autocast, loss, backward, gradient clipping, AdamW, LR schedule, running
loss. The bare loop computes the same update (forward, loss, backward, the configured gradient
clipping, AdamW) on preprocessed tensors: what differs is the loop, not the arithmetic.
The two loops run in lockstep: train_sgd's progress callback runs one bare step after each of
fer-bench's steps, and each side's step is timed on its own. On a shared machine the speed
drifts by 2x over seconds (steps here range from 220 to 750 ms); in lockstep the drift hits both
sides alike, so the ratio of median step times measures the loops, not the neighbours.

    .venv/bin/python benchmarks/perf/loop_overhead.py [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _report import report

from fer_bench.plan import Cell, TrainConfig
from fer_bench.train.engine import make_optimizer, prepare, train_sgd
from fer_bench.train.throughput import _dataset

BATCH = 64
CPU = torch.device("cpu")
WARMUP = 4


def make_cell(head: str) -> Cell:
    cfg = TrainConfig(epochs=1, batch_size=BATCH, image_size=48, regime="image", device="cpu",
                      pretrained=False, feature_cache=False)
    lasted = head == "lasted"
    return Cell("timm:resnet18@none", head, "bench", 0, "classnames" if lasted else None,
                "minilm" if lasted else None, cfg)


class BareLoop:
    """The same model (a second copy, same seed), update rule (AdamW after clipping the gradient
    norm at train.grad_clip, as configured), batch, precision and memory format; the data
    preprocessed once; nothing but forward, loss, backward, clipping and the optimizer step."""

    def __init__(self, cell: Cell, data) -> None:
        p = prepare(cell, data, CPU)
        self.model, self.autocast = p.model, p.inputs.autocast
        train = data.split("train")
        self.x, self.y = p.inputs.pre(train.images), train.labels  # preprocessed, in memory
        if p.resolved["compute"]["channels_last"]:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.params = [w for w in self.model.parameters() if w.requires_grad]
        self.opt = make_optimizer(self.params, cell.train)
        self.clip = cell.train.grad_clip
        self.model.train()
        self.i = 0

    def step(self) -> float:
        t = time.perf_counter()
        rows = slice(self.i, self.i + BATCH)
        self.i = (self.i + BATCH) % len(self.x)
        with self.autocast():
            logits = self.model(self.x[rows])
        loss = self.model.head.loss(logits.float(), self.y[rows])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return time.perf_counter() - t


def lockstep(cell: Cell, data) -> tuple[list[float], list[float]]:
    """(fer-bench step times, bare step times), alternating step by step."""
    bare = BareLoop(cell, data)
    p = prepare(cell, data, CPU)
    ours: list[float] = []
    theirs: list[float] = []
    resumed = [time.perf_counter()]

    def progress(_: dict) -> None:
        ours.append(time.perf_counter() - resumed[0])  # fer-bench's step, callback excluded
        theirs.append(bare.step())
        resumed[0] = time.perf_counter()

    train_sgd(p.model, p.inputs, data, cell, CPU, p.amp, progress=progress)
    return ours[WARMUP:], theirs[WARMUP:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    data = _dataset(BATCH * args.steps, BATCH, 48)
    ok = True
    for head in ("linear", "lasted"):
        ours, bare = lockstep(make_cell(head), data)
        ours_s, bare_s = statistics.median(ours), statistics.median(bare)
        print(f"{head}: fer-bench {BATCH / ours_s:.0f} samples/s, bare torch loop "
              f"{BATCH / bare_s:.0f} samples/s (median step {1000 * ours_s:.0f} vs "
              f"{1000 * bare_s:.0f} ms over {len(ours)} lockstep pairs)")
        ok &= report(f"loop_overhead_{head}", bare_s / ours_s, 0.9,
                     fer_bench_per_s=round(BATCH / ours_s, 1), bare_per_s=round(BATCH / bare_s, 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
