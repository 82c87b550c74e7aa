"""Target 3, data path: one epoch of a small FER CNN (fer_cnn, 48x48 grey) on a FER2013-sized
dataset (SynFER, 28,709 training faces) runs >= 2x faster end to end with fer-bench's loop than
with the same model fed by a per-sample torchvision/PIL `Dataset` + `DataLoader` (2 workers) with
the same augmentations (random affine: 10 deg, 8% shift, 0.9-1.1 scale; horizontal flip).

The baseline is the straightforward loop: PyTorch's defaults (fp32, default AdamW), the same
model, optimizer hyperparameters, batch and augmentations. fer-bench runs with its faster levers
turned on EXPLICITLY (amp=bf16 and channels_last where the CPU has native bf16 -- AMX or
AVX512-BF16 -- else fp32; fused AdamW). The default, amp=auto, is fp32 on every CPU. The
same baseline with fer-bench's precision, memory format and optimizer is also measured and
printed, so the data path's own share of the speed-up is visible. Timed: the training pass over
one epoch (not validation); fer-bench and the baseline alternate twice and each keeps its
faster epoch (noise on a shared machine only ever adds time).

    .venv/bin/python benchmarks/perf/data_path.py [--n 35887]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from _report import report
from PIL import Image

from fer_bench.data import load_dataset
from fer_bench.data.transforms import Augment
from fer_bench.levers import cpu_has_fast_bf16
from fer_bench.plan import Cell, TrainConfig
from fer_bench.train.engine import make_optimizer, prepare, train_sgd

BATCH, WORKERS = 64, 2
CPU = torch.device("cpu")


class PILFaces(torch.utils.data.Dataset):
    """The per-sample baseline: one PIL image through torchvision transforms at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i, 0])), int(self.labels[i])


def per_sample_epoch(cell: Cell, data, levers: bool) -> float:
    """levers=False: PyTorch's defaults (fp32, contiguous, default AdamW); True: fer-bench's
    precision, memory format and fused optimizer, so only the data path differs."""
    from torchvision import transforms as T

    p = prepare(cell if levers else replace(cell, train=replace(
        cell.train, amp="off", channels_last="off")), data, CPU)
    model, autocast = p.model, p.inputs.autocast
    channels_last = p.resolved["compute"]["channels_last"]
    cfg = model.backbone.config
    a = Augment()
    tf = T.Compose([T.RandomAffine(a.max_rotation_deg, translate=(a.max_shift, a.max_shift),
                                   scale=a.scale, interpolation=T.InterpolationMode.BILINEAR),
                    T.RandomHorizontalFlip(),
                    T.Resize(cfg.input_size),
                    T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    train = data.split("train")
    loader = torch.utils.data.DataLoader(PILFaces(train.images.numpy(), train.labels.numpy(),
                                                  tf), batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS)
    params = [w for w in model.parameters() if w.requires_grad]
    opt = (make_optimizer(params, cell.train) if levers else  # fused AdamW, as fer-bench
           torch.optim.AdamW(params, lr=cell.train.lr, weight_decay=cell.train.weight_decay))
    model.train()
    t = time.perf_counter()
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x)
        loss = model.head.loss(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def fer_bench_epoch(cell: Cell, data) -> tuple[float, str]:
    p = prepare(cell, data, CPU)
    _, history = train_sgd(p.model, p.inputs, data, cell, CPU, p.amp)
    c = p.resolved["compute"]
    return history[-1]["train_s"], c["amp"] + (" + channels_last" if c["channels_last"] else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=35887)
    args = ap.parse_args()
    data = load_dataset(f"synfer:n={args.n}")
    cell = Cell("fer_cnn@none", "linear", "bench", 0, None, None,
                TrainConfig(epochs=1, batch_size=BATCH, device="cpu", pretrained=False,
                            feature_cache=False, grad_clip=0.0,
                            # the faster lever, asked for: default amp=auto is fp32 on the CPU
                            amp="bf16" if cpu_has_fast_bf16() else "off"))
    n = len(data.split("train"))
    ours, levers = fer_bench_epoch(cell, data)
    theirs = per_sample_epoch(cell, data, levers=False)
    ours = min(ours, fer_bench_epoch(cell, data)[0])
    theirs = min(theirs, per_sample_epoch(cell, data, levers=False))
    same = per_sample_epoch(cell, data, levers=True) if levers != "off" else theirs
    print(f"{n} faces, fer_cnn, batch {BATCH}: fer-bench ({levers}) {ours:.1f} s "
          f"({n / ours:.0f}/s); PIL Dataset + DataLoader({WORKERS} workers): fp32 {theirs:.1f} s "
          f"({n / theirs:.0f}/s), with fer-bench's levers {same:.1f} s ({n / same:.0f}/s)")
    print(f"  data path alone (same precision): {same / ours:.2f}x")
    ok = report("data_path_epoch_speedup", theirs / ours, 2.0, fer_bench_s=round(ours, 1),
                per_sample_fp32_s=round(theirs, 1), per_sample_same_precision_s=round(same, 1),
                data_path_alone=round(same / ours, 3))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
