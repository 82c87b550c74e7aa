"""Target 4, MFU: resnet18 training at 112 px reaches >= 40% of this CPU's fp32 matmul peak,
both measured in the same run (`fer-bench bench`'s measurement: fer-bench's training loop,
FLOPs counted by torch's FlopCounterMode on a real step; the peak is the faster of a BLAS
matmul and oneDNN's GEMM, since MKL's sgemm alone underrates AMD CPUs). Also prints, for
information, the stricter figure against oneDNN's 3x3 convolution where it outruns both GEMMs,
and the bf16 figure where autocast picks bf16.

    .venv/bin/python benchmarks/perf/mfu.py
"""

from __future__ import annotations

import sys

import torch
from _report import report

from fer_bench.bench import BenchOptions, bench_backbone, gemm_peak, peak_kernels
from fer_bench.compute import amp_dtype


def main() -> int:
    cpu = torch.device("cpu")
    kernels = peak_kernels(cpu, None, conv3x3=True)
    peaks = {"fp32": gemm_peak(kernels)}
    opts = BenchOptions(batch=64, steps=6, image_size=112, amp="off", device="cpu")
    row = bench_backbone("timm:resnet18@none", ("train",), opts, peaks)[0]
    achieved = row.flops_per_sample * row.samples_per_s
    strict = achieved / max(kernels.values())
    print(f"resnet18 @112 px fp32: {row.samples_per_s:.1f} samples/s, {achieved / 1e9:.0f} "
          f"GFLOP/s of a measured {peaks['fp32'] / 1e9:.0f} GFLOP/s fp32 matmul peak (BLAS "
          f"{kernels['matmul'] / 1e9:.0f}, oneDNN {kernels['gemm_onednn'] / 1e9:.0f})")
    print(f"  stricter: {strict:.1%} of the fastest dense kernel "
          f"measured (oneDNN 3x3 convolution: {kernels['conv3x3'] / 1e9:.0f} GFLOP/s)")
    if amp_dtype(cpu, "auto") is not None:
        bf = bench_backbone("timm:resnet18@none", ("train",),
                            BenchOptions(batch=64, steps=6, image_size=112, device="cpu"),
                            peaks)[0]
        print(f"  with amp=auto ({bf.amp}): {bf.samples_per_s:.1f} samples/s "
              f"({bf.samples_per_s / row.samples_per_s:.2f}x fp32), MFU {bf.mfu:.1%} of the "
              f"{bf.peak_tflops * 1000:.0f} GFLOP/s {bf.amp} peak")
    ok = report("mfu_resnet18_112px_fp32", row.mfu, 0.40, samples_per_s=row.samples_per_s,
                peak_gflops=round(row.peak_tflops * 1000, 1),
                conv3x3_gflops=round(kernels["conv3x3"] / 1e9, 1),
                mfu_vs_fastest_kernel=round(strict, 4))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
