"""Target 2, loop overhead: fer-bench's training step for resnet18 at 48 px reaches >= 90% of a
bare torch loop's samples/s -- same model, optimizer, batch, precision and memory format, the
bare loop's data already preprocessed in memory -- for the `linear` head and for `lasted` with
a frozen text tower.

fer-bench's side is `engine.train_sgd` itself: index the uint8 faces, augment on the device
(random affine + flip), autocast, loss, backward, gradient clipping, AdamW, LR schedule, running
loss; each step is timed between two calls of its progress callback. The bare loop is timed the
same way. The two loops alternate 4 times and each is summarised by its 10th-percentile step time
(after 4 warm-up steps): on a shared machine, noise only ever adds time -- steps here range from
220 to 750 ms within seconds -- so a low quantile measures the loop, a median the neighbours.

    .venv/bin/python benchmarks/perf/loop_overhead.py [--steps 14] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _report import report

from fer_bench.bench import _dataset
from fer_bench.engine import make_optimizer, prepare, train_sgd
from fer_bench.plan import Cell, TrainConfig

BATCH = 64
CPU = torch.device("cpu")
WARMUP = 4


def low(times: list[float]) -> float:
    return statistics.quantiles(times, n=10)[0]


def step_times(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps[WARMUP:], stamps[WARMUP + 1:], strict=False)]


def make_cell(head: str) -> Cell:
    cfg = TrainConfig(epochs=1, batch_size=BATCH, image_size=48, regime="image", device="cpu",
                      pretrained=False, feature_cache=False)
    lasted = head == "lasted"
    return Cell("timm:resnet18@none", head, "bench", 0, "classnames" if lasted else None,
                "minilm" if lasted else None, cfg)


def fer_bench_loop(cell: Cell, data) -> list[float]:
    p = prepare(cell, data, CPU)
    stamps = [time.perf_counter()]
    train_sgd(p.model, p.inputs, data, cell, CPU, p.amp,
              progress=lambda _: stamps.append(time.perf_counter()))
    return step_times(stamps)


def bare_loop(cell: Cell, data) -> list[float]:
    p = prepare(cell, data, CPU)   # the same model, precision and memory format
    model, autocast = p.model, p.inputs.autocast
    train = data.split("train")
    x_all, y_all = p.inputs.pre(train.images), train.labels   # preprocessed once, in memory
    if p.resolved["compute"]["channels_last"]:
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    opt = make_optimizer([w for w in model.parameters() if w.requires_grad], cell.train)
    model.train()
    stamps = [time.perf_counter()]
    for i in range(0, len(x_all), BATCH):
        with autocast():
            logits = model(x_all[i:i + BATCH])
        loss = model.head.loss(logits.float(), y_all[i:i + BATCH])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
    return step_times(stamps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    data = _dataset(BATCH * args.steps, BATCH, 48)
    ok = True
    for head in ("linear", "lasted"):
        cell = make_cell(head)
        ours, bare = [], []
        for _ in range(args.rounds):
            ours += fer_bench_loop(cell, data)
            bare += bare_loop(cell, data)
        ours_s, bare_s = low(ours), low(bare)
        print(f"{head}: fer-bench {BATCH / ours_s:.0f} samples/s, bare torch loop "
              f"{BATCH / bare_s:.0f} samples/s (10th-percentile step {1000 * ours_s:.0f} vs "
              f"{1000 * bare_s:.0f} ms; medians {1000 * statistics.median(ours):.0f} vs "
              f"{1000 * statistics.median(bare):.0f} ms)")
        ok &= report(f"loop_overhead_{head}", bare_s / ours_s, 0.9,
                     fer_bench_per_s=round(BATCH / ours_s, 1), bare_per_s=round(BATCH / bare_s, 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
