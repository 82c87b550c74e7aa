"""Target 3, data path: one epoch of a small FER CNN (fer_cnn, 48x48 grey) on a FER2013-sized
dataset (SynFER, 28,709 training faces) runs >= 2x faster end to end with fer-bench's loop than
with the same model fed by a per-sample torchvision/PIL `Dataset` + `DataLoader` (2 workers) with
the same augmentations (random affine: 10 deg, 8% shift, 0.9-1.1 scale; horizontal flip).

Both loops use the same model, optimizer, batch and precision (fer-bench's amp=auto choice), so
the ratio is the data path's alone. Timed: the training pass over the epoch (not validation).

    .venv/bin/python benchmarks/perf/data_path.py [--n 35887]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _report import report
from PIL import Image

from fer_bench.compute import autocast_for
from fer_bench.data import load_dataset
from fer_bench.data.transforms import Augment, Preprocess
from fer_bench.engine import build_model, make_optimizer, train_sgd
from fer_bench.inputs import ImageInputs
from fer_bench.plan import Cell, TrainConfig

BATCH, WORKERS = 64, 2


class PILFaces(torch.utils.data.Dataset):
    """The per-sample baseline: one PIL image through torchvision transforms at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i, 0])), int(self.labels[i])


def per_sample_epoch(cell: Cell, data) -> float:
    from torchvision import transforms as T

    model, _, _ = build_model(cell, data)
    cfg = model.backbone.config
    a = Augment()
    tf = T.Compose([T.RandomAffine(a.max_rotation_deg, translate=(a.max_shift, a.max_shift),
                                   scale=a.scale),
                    T.RandomHorizontalFlip(),
                    T.Resize(cfg.input_size),
                    T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    train = data.split("train")
    loader = torch.utils.data.DataLoader(PILFaces(train.images.numpy(), train.labels.numpy(),
                                                  tf), batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS)
    autocast, _ = autocast_for(torch.device("cpu"), cell.train.amp)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cell.train)
    model.train()
    t = time.perf_counter()
    for x, y in loader:
        with autocast():
            logits = model(x)
        loss = model.head.loss(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def fer_bench_epoch(cell: Cell, data) -> float:
    model, _, _ = build_model(cell, data)
    pre = Preprocess(model.backbone.config)
    autocast, amp = autocast_for(torch.device("cpu"), cell.train.amp)
    inputs = ImageInputs(model, pre, torch.device("cpu"), autocast, cell.train)
    _, history = train_sgd(model, inputs, data, cell, torch.device("cpu"), amp)
    return history[-1]["train_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=35887)
    args = ap.parse_args()
    data = load_dataset(f"synfer:n={args.n}")
    cell = Cell("fer_cnn@none", "linear", "bench", 0, None, None,
                TrainConfig(epochs=1, batch_size=BATCH, device="cpu", pretrained=False,
                            feature_cache=False, grad_clip=0.0))
    n = len(data.split("train"))
    ours = fer_bench_epoch(cell, data)
    theirs = per_sample_epoch(cell, data)
    print(f"{n} faces, fer_cnn, batch {BATCH}: fer-bench {ours:.1f} s ({n / ours:.0f}/s), "
          f"PIL Dataset + DataLoader({WORKERS} workers) {theirs:.1f} s ({n / theirs:.0f}/s)")
    ok = report("data_path_epoch_speedup", theirs / ours, 2.0, fer_bench_s=round(ours, 1),
                per_sample_s=round(theirs, 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
