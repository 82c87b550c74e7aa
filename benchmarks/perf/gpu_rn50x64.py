"""Target 6 (GPU only): a full `lasted` fine-tuning step of CLIP RN50x64 at 448 px in bf16 --
image and text towers training, fer-bench's own loop -- with samples/s and MFU against the
card's bf16 matmul peak measured in the same run; target >= 35% MFU. Also checks that bf16
autocast is what ran. Skipped (reported as such) without CUDA. One call on a lent GPU:

    .venv/bin/python benchmarks/perf/gpu_rn50x64.py [--batch 32] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys

import torch
from _report import report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        report("gpu_rn50x64_lasted_bf16_mfu", None, 0.35, skipped="no CUDA device")
        return 0
    from fer_bench.train.throughput import BenchOptions, bench_backbone

    opts = BenchOptions(head="lasted", batch=args.batch, steps=args.steps, image_size=448,
                        amp="bf16", device="cuda", regime="full", text_encoder="paired")
    rows = bench_backbone("open_clip:RN50x64@none", ("train", "infer"), opts)
    for r in rows:
        print(f"RN50x64 {r.mode} @448 bf16, batch {r.batch}: {r.samples_per_s:.1f} samples/s, "
              f"step {r.step_ms:.0f} ms, peak {r.peak_mem_mb:.0f} MB, MFU {r.mfu:.1%} of "
              f"{r.peak_tflops:.0f} TFLOP/s ({torch.cuda.get_device_name()})")
    train = rows[0]
    ok = report("gpu_rn50x64_lasted_bf16_mfu", train.mfu, 0.35,
                samples_per_s=train.samples_per_s, peak_tflops=train.peak_tflops,
                device=torch.cuda.get_device_name())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
