"""The dry-run memory estimate (fer_bench/train/estimate.py) against the peak measured on CPU: whole
cells (one epoch on a small SynFER, then validation and test evaluation at batch 96) of two
encoders at two batch sizes each, plus LoRA and VPT on the ViT. Target: every estimate
within 25% of its measured peak.

Each cell runs in a fresh process that first imports everything and loads the dataset, then
resets the kernel's peak-RSS mark (/proc/self/clear_refs) and reads VmHWM - VmRSS around
`run_cell`: the memory the cell itself needed. glibc is told to mmap allocations above 128 kB
(MALLOC_MMAP_THRESHOLD_), so freed tensors leave the RSS instead of lingering in its heap.
fp32 (amp=off) on the CPU; Linux only (it reads /proc). A script, not a test: ~5 min on 2 cores.

    .venv/bin/python benchmarks/perf/memory_estimate.py [--only vit]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict

from _report import report

from fer_bench.plan import Cell, TrainConfig
from fer_bench.train.estimate import estimate

DATASET = "synfer:n=1200"  # val and test splits of 120: evaluation batches of EVAL_BATCH
EVAL_BATCH = 96
CHILD = r"""
import json, sys
import torch
from fer_bench.train.throughput import _rss_reset, _status_kb
from fer_bench.data import load_dataset
from fer_bench.train.engine import run_cell
from fer_bench.plan import Cell, TrainConfig
import open_clip, peft, timm  # noqa: F401  (imported before the baseline)
torch.set_num_threads(2)
spec = json.loads(sys.argv[1])
cell = Cell(**{**spec, "train": TrainConfig(**spec["train"])})
load_dataset(cell.dataset)
base = _rss_reset()
out = run_cell(cell)
peak = _status_kb("VmHWM")
print(json.dumps({"base_kb": base, "peak_kb": peak, "accuracy": out.metrics["accuracy"]}))
"""
# (name, backbone, regime, image_size, batch sizes)
CASES = [
    ("resnet18", "timm:resnet18@none", "full", 112, (32, 128)),
    ("vit", "open_clip:fer-ViT-Ti-8@none", "full", 0, (64, 256)),
    ("vit", "open_clip:fer-ViT-Ti-8@none", "lora:r=8", 0, (64, 256)),
    ("vit", "open_clip:fer-ViT-Ti-8@none", "vpt:8", 0, (256,)),
]


def cell_for(backbone: str, regime: str, image_size: int, batch: int) -> Cell:
    train = TrainConfig(epochs=1, batch_size=batch, regime=regime, image_size=image_size,
                        amp="off", device="cpu", pretrained=False, feature_cache=False,
                        eval_batch_size=EVAL_BATCH)
    return Cell(backbone, "linear", DATASET, 0, None, None, train)


def measure(cell: Cell) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "HF_HUB_OFFLINE": "1"}
    spec = json.dumps({**asdict(cell), "cross": list(cell.cross)})
    proc = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{cell.label}: child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="case names (resnet18, vit), comma-separated")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    print(f"{'encoder':32} {'regime':9} {'batch':>5} {'estimate MB':>11} {'measured MB':>11} "
          f"{'error':>7}")
    worst = 0.0
    for name, backbone, regime, size, batches in CASES:
        if only and name not in only:
            continue
        for batch in batches:
            cell = cell_for(backbone, regime, size, batch)
            est = estimate(cell).peak_gb * 1e3
            got = measure(cell)
            measured = (got["peak_kb"] - got["base_kb"]) * 1024 / 1e6
            err = est / measured - 1
            worst = max(worst, abs(err))
            print(f"{backbone:32} {regime:9} {batch:5d} {est:11.0f} {measured:11.0f} "
                  f"{100 * err:+6.1f}%", flush=True)
    return 0 if report("memory_estimate_worst_error", worst, 0.25,
                       higher_is_better=False) else 1


if __name__ == "__main__":
    sys.exit(main())
