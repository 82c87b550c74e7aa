"""`fer-bench bench`: how fast each backbone (+ head) trains and infers here, in timm's spirit.

Training is measured through fer-bench's own loop (`engine.train_sgd`: preprocessing and
augmentation on the device, autocast, loss, backward, clipping, optimizer step) on in-memory
FER-like uint8 images; the first epoch warms up, the second's median step time is reported.
FLOPs are counted by torch's FlopCounterMode on one real step, and MFU compares achieved FLOP/s
with the matmul peak this machine reaches in the same run and precision: the faster of BLAS and,
on the CPU, oneDNN, so it is honest on any CPU or GPU."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .classes import CANONICAL
from .data import FERDataset, Split
from .plan import Cell, TrainConfig, head_uses_text

MODES = ("train", "infer")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn, flops: float, device: torch.device, seconds: float) -> float:
    """FLOP/s of `fn` (which does `flops` of work): best of repeated timings after a warm-up."""
    fn()
    sync(device)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == float("inf"):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return flops / best


def peak_kernels(device: torch.device, dtype: torch.dtype | None, seconds: float = 1.0,
                 conv3x3: bool = False) -> dict[str, float]:
    """FLOP/s of this machine's fastest matmuls in `dtype` (None: fp32), each the best of
    repeated timings: a square matmul through BLAS (cuBLAS; MKL/OpenBLAS on the CPU) and, on the
    CPU, the same GEMM through oneDNN (a 1x1 convolution in channels_last is a matmul). The CPU
    needs both: MKL's sgemm on AMD EPYC ran at a third to a half of oneDNN's rate (113-117 vs
    300-370 GFLOP/s here), so a BLAS-only peak let a conv net's MFU pass 100%. `conv3x3` adds
    oneDNN's 3x3 convolution, which outran both GEMMs on that CPU (~430 GFLOP/s), for a
    stricter comparison."""
    dt = dtype or torch.float32
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device).to(dt) for _ in range(2))
    kernels = {"matmul": (lambda: a @ b, 2 * n ** 3)}
    if device.type == "cpu":
        batch, c, hw = 32, 256, 28
        for name, k in ({"gemm_onednn": 1} | ({"conv3x3": 3} if conv3x3 else {})).items():
            x = torch.randn(batch, c, hw, hw).to(dt).contiguous(memory_format=torch.channels_last)
            w = torch.randn(c, c, k, k).to(dt)
            kernels[name] = (
                lambda x=x, w=w, k=k: torch.nn.functional.conv2d(x, w, padding=k // 2),
                2 * batch * hw * hw * c * c * k * k)
    return {name: _best_rate(fn, flops, device, seconds / len(kernels))
            for name, (fn, flops) in kernels.items()}


def gemm_peak(rates: dict[str, float]) -> float:
    """The matmul peak among `peak_kernels` rates: the faster GEMM (conv3x3 is not one)."""
    return max(rate for name, rate in rates.items() if name != "conv3x3")


def compute_peak(device: torch.device, dtype: torch.dtype | None, seconds: float = 1.0) -> float:
    """The measured matmul peak in `dtype`: the faster of BLAS and oneDNN (`peak_kernels`)."""
    return gemm_peak(peak_kernels(device, dtype, seconds))


class PeakMemory:
    """Peak memory of a block above what was in use when it began, in MB: CUDA's allocator
    statistics, or on Linux the process's peak RSS (VmHWM, reset through /proc/self/clear_refs).
    `mb` is None where neither is available."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mb = device, None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss_reset()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2 ** 20
        elif self._base is not None:
            peak = _status_kb("VmHWM")
            self.mb = None if peak is None else max(0.0, (peak - self._base) / 1024)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_reset() -> int | None:
    """Reset the peak-RSS mark to the current RSS; returns the current RSS in kB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


@dataclass
class BenchRow:
    backbone: str
    head: str
    mode: str
    batch: int
    image_size: int
    amp: str
    samples_per_s: float
    step_ms: float
    params_m: float
    gmacs: float              # per image, forward, at image_size
    flops_per_sample: float   # the measured step's FLOPs / batch (train: forward + backward)
    peak_mem_mb: float | None
    mfu: float                # achieved FLOP/s / measured matmul peak in the same precision
    peak_tflops: float
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BenchOptions:
    head: str = "linear"
    batch: int = 64
    steps: int = 10
    image_size: int = 0            # 0: the backbone's own input size
    source_size: int = 48          # the stored faces' size (FER2013: 48 x 48 grey)
    amp: str = "auto"
    device: str = "auto"
    regime: str = "full"
    prompts: str = "classnames"
    text_encoder: str = "minilm"
    pretrained: bool = False       # random init: weights do not change the speed


def _dataset(n_train: int, n_val: int, size: int, seed: int = 0) -> FERDataset:
    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8,
                                   generator=gen), torch.arange(n) % len(CANONICAL))

    return FERDataset("bench", CANONICAL, {"train": split(n_train), "val": split(n_val)},
                      {})


def training_rate(train, device: torch.device, batch: int) -> float:
    """Samples/s of `train(progress)` (a 2-epoch `train_sgd`): the median step time of the
    second epoch, each step timed between two progress calls (the median resists noise)."""
    stamps: list[tuple[int, float]] = []

    def progress(p: dict) -> None:
        sync(device)
        stamps.append((p["epoch"], time.perf_counter()))

    train(progress)
    times = [b[1] - a[1] for a, b in zip(stamps, stamps[1:], strict=False) if a[0] == b[0] == 2]
    if not times:  # one step per epoch: whole epochs then
        return batch / max(stamps[-1][1] - stamps[-2][1], 1e-9)
    return batch / statistics.median(times)


def _count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def bench_backbone(spec: str, modes: tuple[str, ...], opts: BenchOptions,
                   peaks: dict[str, float]) -> list[BenchRow]:
    """Rows for one backbone. `peaks` caches the matmul peak per precision across backbones."""
    from .engine import pick_device, prepare, train_sgd
    from .inputs import forward_all

    device = pick_device(opts.device)
    cfg = TrainConfig(epochs=2, batch_size=opts.batch, eval_batch_size=opts.batch,
                      regime=opts.regime, amp=opts.amp, device=opts.device,
                      image_size=opts.image_size, pretrained=opts.pretrained,
                      feature_cache=False, lr=1e-4)
    uses_text = head_uses_text(opts.head)
    cell = Cell(spec, opts.head, "bench", 0, opts.prompts if uses_text else None,
                opts.text_encoder if uses_text else None, cfg)
    n = opts.batch * opts.steps
    data = _dataset(n, opts.batch, opts.source_size)
    prepared = prepare(cell, data, device)
    model, inputs, amp = prepared.model, prepared.inputs, prepared.amp
    pre, autocast = inputs.pre, inputs.autocast
    channels_last = prepared.resolved["compute"]["channels_last"]
    amp_name = str(amp).replace("torch.", "") if amp else "fp32"
    if amp_name not in peaks:
        peaks[amp_name] = compute_peak(device, amp)
    from .backbones.base import measure

    _, gmacs = measure(model.backbone.encoder, pre.in_chans, pre.size)
    params_m = sum(p.numel() for p in model.backbone.encoder.parameters()) / 1e6
    train_split = data.split("train")
    rows = []
    for mode in modes:
        batch_idx = torch.arange(opts.batch)
        if mode == "train":
            model.train()

            def step(batch_idx: torch.Tensor = batch_idx) -> None:
                x = inputs.train_batch(train_split, batch_idx, torch.Generator(), 1)
                with autocast():
                    model.head.loss(model(x).float(), train_split.labels[:opts.batch]
                                    .to(device)).backward()
                model.zero_grad(set_to_none=True)

            flops = _count_flops(step)
            with PeakMemory(device) as mem:
                per_s = training_rate(lambda progress: train_sgd(
                    model, inputs, data, cell, device, amp, progress=progress), device,
                    opts.batch)
        else:
            images = train_split.images
            flops = _count_flops(lambda images=images: forward_all(
                model, pre, images[:opts.batch], device, opts.batch, autocast,
                channels_last=channels_last))
            forward_all(model, pre, images[:2 * opts.batch], device, opts.batch, autocast,
                        channels_last=channels_last)  # warm-up
            with PeakMemory(device) as mem:
                sync(device)
                t = time.perf_counter()
                forward_all(model, pre, images, device, opts.batch, autocast,
                            channels_last=channels_last)
                sync(device)
                per_s = n / (time.perf_counter() - t)
        flops_per_sample = flops / opts.batch
        rows.append(BenchRow(
            backbone=spec, head=opts.head, mode=mode, batch=opts.batch,
            image_size=pre.size[0], amp=amp_name, samples_per_s=round(per_s, 1),
            step_ms=round(1000 * opts.batch / per_s, 2), params_m=round(params_m, 3),
            gmacs=round(gmacs, 4), flops_per_sample=flops_per_sample,
            peak_mem_mb=None if mem.mb is None else round(mem.mb, 1),
            mfu=round(flops_per_sample * per_s / peaks[amp_name], 4),
            peak_tflops=round(peaks[amp_name] / 1e12, 3), device=str(device)))
    return rows


def with_options(opts: BenchOptions, **changes) -> BenchOptions:
    return replace(opts, **{k: v for k, v in changes.items() if v is not None})
