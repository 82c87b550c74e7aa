"""Target 4, MFU: resnet18 training at 112 px reaches >= 40% of this CPU's measured fp32 peak,
both measured in the same run (`fer-bench bench`'s measurement: fer-bench's training loop,
FLOPs counted by torch's FlopCounterMode on a real step; the peak is the fastest of a square fp32
matmul and oneDNN's GEMM-lowered 1x1 and 3x3 convolutions, since MKL's sgemm alone underrates
AMD CPUs).
Also prints the bf16 figure where autocast picks bf16 (informational).

    .venv/bin/python benchmarks/perf/mfu.py
"""

from __future__ import annotations

import sys

import torch
from _report import report

from fer_bench.bench import BenchOptions, bench_backbone
from fer_bench.compute import amp_dtype


def main() -> int:
    peaks: dict[str, float] = {}
    opts = BenchOptions(batch=64, steps=6, image_size=112, amp="off", device="cpu")
    row = bench_backbone("timm:resnet18@none", ("train",), opts, peaks)[0]
    print(f"resnet18 @112 px fp32: {row.samples_per_s:.1f} samples/s, "
          f"{row.flops_per_sample * row.samples_per_s / 1e9:.0f} GFLOP/s of a measured "
          f"{row.peak_tflops * 1000:.0f} GFLOP/s fp32 peak (fastest of matmul and oneDNN convs)")
    if amp_dtype(torch.device("cpu"), "auto") is not None:
        bf = bench_backbone("timm:resnet18@none", ("train",),
                            BenchOptions(batch=64, steps=6, image_size=112, device="cpu"),
                            peaks)[0]
        print(f"  with amp=auto ({bf.amp}): {bf.samples_per_s:.1f} samples/s "
              f"({bf.samples_per_s / row.samples_per_s:.2f}x fp32), MFU {bf.mfu:.1%} of the "
              f"{bf.peak_tflops * 1000:.0f} GFLOP/s {bf.amp} peak")
    ok = report("mfu_resnet18_112px_fp32", row.mfu, 0.40, samples_per_s=row.samples_per_s,
                peak_gflops=round(row.peak_tflops * 1000, 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
