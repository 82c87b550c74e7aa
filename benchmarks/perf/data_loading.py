"""Data loading and augmentation speed, measured side by side (ratios, not absolute targets).

1. FER2013-sized CSV (SynFER written with `write_fer2013_csv`): first load (parse + cache
   write) vs cached load (one .npz read), and the parser's peak extra memory.
2. Training augmentation (random affine/crop, flip, rotation, resize to 224, normalise) on the
   same uint8 images: fer-bench's batched tensor `Preprocess` vs a per-sample torchvision/PIL
   `Dataset` + `DataLoader` pipeline; plus ten-crop test-time batches.

    python benchmarks/perf/data_loading.py [--n 35887] [--csv existing.csv] [--aug-images 4096]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch
from data_path import PILFaces  # the per-sample baseline, shared with the data-path target


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def load_times(csv: Path, cache: Path) -> None:
    from fer_bench.data import load_dataset

    os.environ["FER_BENCH_CACHE"] = str(cache)
    first, ds = timed(lambda: load_dataset(f"fer2013:{csv}", reuse=False))
    cached, ds2 = timed(lambda: load_dataset(f"fer2013:{csv}", reuse=False), repeat=3)
    tracemalloc.start()   # numpy reports its buffers to tracemalloc (slow: not timed)
    load_dataset(f"fer2013:{csv}#cache=0", reuse=False)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    n = sum(len(s) for s in ds.splits.values())
    mb = sum(s.images.numel() for s in ds.splits.values()) / 1e6
    print(f"CSV {csv.stat().st_size / 1e6:.0f} MB, {n} images -> {mb:.0f} MB uint8")
    print(f"  first load (parse + cache write): {first:6.2f} s  ({ds.meta['cache']})")
    print(f"  cached load:                      {cached:6.3f} s  ({ds2.meta['cache']})")
    print(f"  first / cached: {first / cached:.0f}x   peak memory allocated by a parse: "
          f"{peak:.0f} MB")


def augmentation(images: torch.Tensor, labels: torch.Tensor, batch: int, workers: int) -> None:
    from torchvision import transforms as T

    from fer_bench.backbones.base import BackboneConfig
    from fer_bench.data.transforms import Augment, Preprocess, merge_crops

    cfg = BackboneConfig("bench", "timm", "bench", "none", (224, 224), (0.5, 0.5, 0.5),
                         (0.5, 0.5, 0.5), in_chans=3)
    a = Augment()
    pre = Preprocess(cfg, augment=a)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(0)
    x = images.to(dev)

    def batched() -> None:
        for i in range(0, len(x), batch):
            pre(x[i:i + batch], train=True, generator=gen)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    tf = T.Compose([
        T.Grayscale(3),
        T.RandomAffine(a.max_rotation_deg, translate=(a.max_shift, a.max_shift), scale=a.scale),
        T.RandomHorizontalFlip(),
        T.Resize((224, 224)),
        T.ToTensor(),
        T.Normalize((0.5,) * 3, (0.5,) * 3),
    ])
    loader = torch.utils.data.DataLoader(PILFaces(images.numpy(), labels.numpy(), tf),
                                         batch_size=batch, num_workers=workers)

    def per_sample() -> None:
        for xb, _ in loader:
            xb.to(dev)

    n = len(images)
    t_b, _ = timed(batched, repeat=2)
    t_p, _ = timed(per_sample)
    print(f"augmentation to 224x224x3, {n} images, batch {batch}, device {dev}:")
    print(f"  batched tensors (fer-bench):          {n / t_b:8.0f} img/s")
    print(f"  per-sample PIL + DataLoader ({workers} workers): {n / t_p:8.0f} img/s")
    print(f"  batched / per-sample: {t_p / t_b:.1f}x")

    def tencrop() -> None:
        for i in range(0, len(x), batch):
            out = pre.ten_crop(x[i:i + batch])
            merge_crops(out.flatten(1)[:, :7])
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t_t, _ = timed(tencrop)
    print(f"  ten-crop test batches: {n / t_t:8.0f} img/s ({10 * n / t_t:.0f} crops/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=35887, help="images in the synthetic CSV")
    ap.add_argument("--csv", type=Path, help="use this fer2013.csv instead of generating one")
    ap.add_argument("--aug-images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = args.csv
        if csv is None:
            from fer_bench.data.synfer import generate, write_fer2013_csv

            t = time.perf_counter()
            csv = write_fer2013_csv(generate(n=args.n), Path(tmp) / "fer2013.csv")
            print(f"generated {args.n} SynFER images as {csv.name} in "
                  f"{time.perf_counter() - t:.0f} s")
        load_times(csv, Path(tmp) / "cache")
        from fer_bench.data import load_dataset

        train = load_dataset(f"fer2013:{csv}").splits["train"]
        k = min(args.aug_images, len(train))
        augmentation(train.images[:k], train.labels[:k], args.batch, args.workers)


if __name__ == "__main__":
    main()
