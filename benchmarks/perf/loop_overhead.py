"""Target 2, loop overhead: fer-bench's training step for resnet18 at 48 px reaches >= 90% of a
bare torch loop's samples/s -- same model, optimizer, batch and precision, the bare loop's data
already preprocessed in memory -- for the `linear` head and for `lasted` with a frozen text tower.

fer-bench's side is `engine.train_sgd` itself: index the uint8 faces, augment on the device
(random affine + flip), autocast, loss, backward, gradient clipping, AdamW, LR schedule, running
loss. One epoch warms up, the next is timed; the two loops alternate, best of 2 each.

    .venv/bin/python benchmarks/perf/loop_overhead.py [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _report import report

from fer_bench.bench import _dataset
from fer_bench.compute import autocast_for
from fer_bench.data.transforms import Preprocess
from fer_bench.engine import build_model, make_optimizer, train_sgd
from fer_bench.inputs import ImageInputs
from fer_bench.plan import Cell, TrainConfig

BATCH = 64


def make_cell(head: str) -> Cell:
    cfg = TrainConfig(epochs=2, batch_size=BATCH, image_size=48, regime="image", device="cpu",
                      pretrained=False, feature_cache=False)
    lasted = head == "lasted"
    return Cell("timm:resnet18@none", head, "bench", 0, "classnames" if lasted else None,
                "minilm" if lasted else None, cfg)


def fer_bench_loop(cell: Cell, data) -> float:
    model, _, _ = build_model(cell, data)
    pre = Preprocess(model.backbone.config, 48)
    autocast, amp = autocast_for(torch.device("cpu"), cell.train.amp)
    inputs = ImageInputs(model, pre, torch.device("cpu"), autocast, cell.train)
    _, history = train_sgd(model, inputs, data, cell, torch.device("cpu"), amp)
    return history[-1]["train_images_per_s"]


def bare_loop(cell: Cell, data) -> float:
    model, _, _ = build_model(cell, data)
    pre = Preprocess(model.backbone.config, 48)
    autocast, _ = autocast_for(torch.device("cpu"), cell.train.amp)
    train = data.split("train")
    x_all, y_all = pre(train.images), train.labels   # preprocessed once, in memory
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cell.train)
    model.train()
    rate = 0.0
    for _ in range(2):                                  # warm-up epoch, timed epoch
        t = time.perf_counter()
        for i in range(0, len(x_all), BATCH):
            with autocast():
                logits = model(x_all[i:i + BATCH])
            loss = model.head.loss(logits.float(), y_all[i:i + BATCH])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rate = len(x_all) / (time.perf_counter() - t)
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    data = _dataset(BATCH * args.steps, BATCH, 48)
    ok = True
    for head in ("linear", "lasted"):
        cell = make_cell(head)
        ours, bare = [], []
        for _ in range(2):
            ours.append(fer_bench_loop(cell, data))
            bare.append(bare_loop(cell, data))
        ratio = max(ours) / max(bare)
        print(f"{head}: fer-bench {max(ours):.0f} samples/s, bare torch loop {max(bare):.0f} "
              f"samples/s")
        ok &= report(f"loop_overhead_{head}", ratio, 0.9, fer_bench_per_s=round(max(ours), 1),
                     bare_per_s=round(max(bare), 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
