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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..classes import CANONICAL
from ..data import FERDataset, Split
from ..heads import head_spec
from ..plan import Cell, TrainConfig

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


NOISY_SPREAD = 0.25  # peak samples further apart than this: the machine's pace was not steady


@dataclass
class PeakMeter:
    """The matmul peak per precision, sampled repeatedly around the timed steps. A busy machine
    can only slow a sample down, so the fastest sample is the peak; how far the samples spread
    says whether the machine was steady enough to trust an MFU (a peak measured while busy
    and steps timed while quiet once printed an MFU of 140%)."""

    device: torch.device
    seconds: float = 0.5
    samples: dict[str, list[float]] = field(default_factory=dict)

    def measure(self, name: str, dtype: torch.dtype | None, seconds: float | None = None
                ) -> float:
        rate = compute_peak(self.device, dtype, seconds or self.seconds)
        self.samples.setdefault(name, []).append(rate)
        return rate

    def peak(self, name: str) -> float:
        return max(self.samples[name])

    def spread(self, name: str) -> float:
        """Fastest over slowest sample, minus one (0: every sample agreed)."""
        rates = self.samples[name]
        return max(rates) / max(min(rates), 1e-9) - 1


def honest_mfu(achieved: float, meter: PeakMeter, name: str, dtype: torch.dtype | None
               ) -> tuple[float, bool]:
    """(MFU, noisy): achieved FLOP/s over the best peak sample. A step cannot outrun the peak,
    so an MFU above 1 means the peak samples were taken while the machine was busier than
    during the steps: the peak is measured again, longer, and what still exceeds 1 is capped
    and flagged. Also flagged when the peak samples spread more than NOISY_SPREAD."""
    mfu = achieved / meter.peak(name)
    if mfu > 1:
        meter.measure(name, dtype, 4 * meter.seconds)
        mfu = achieved / meter.peak(name)
    noisy = mfu > 1 or meter.spread(name) > NOISY_SPREAD
    return min(mfu, 1.0), noisy


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
    mfu_noisy: bool = False   # the machine was too noisy to trust `mfu` (see honest_mfu)
    peak_spread: float = 0.0  # fastest / slowest peak sample - 1

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


def _time_train(model, inputs, data, cell, device, amp, opts: BenchOptions
                ) -> tuple[float, float, float | None]:
    """(FLOPs of one step, samples/s, peak MB) of training through `train_sgd`."""
    from .engine import train_sgd

    train_split = data.split("train")
    model.train()

    def step() -> None:
        x = inputs.train_batch(train_split, torch.arange(opts.batch), torch.Generator(), 1)
        with inputs.autocast():
            model.head.loss(model(x).float(), train_split.labels[:opts.batch]
                            .to(device)).backward()
        model.zero_grad(set_to_none=True)

    flops = _count_flops(step)
    with PeakMemory(device) as mem:
        per_s = training_rate(lambda progress: train_sgd(
            model, inputs, data, cell, device, amp, progress=progress), device, opts.batch)
    return flops, per_s, mem.mb


def _time_infer(model, inputs, images: torch.Tensor, device, opts: BenchOptions,
                channels_last: bool) -> tuple[float, float, float | None]:
    """(FLOPs of one batch, samples/s, peak MB) of inference through `forward_all`."""
    from .inputs import forward_all

    def run(x: torch.Tensor) -> None:
        forward_all(model, inputs.pre, x, device, opts.batch, inputs.autocast,
                    channels_last=channels_last)

    flops = _count_flops(lambda: run(images[:opts.batch]))
    run(images[:2 * opts.batch])  # warm-up
    with PeakMemory(device) as mem:
        sync(device)
        t = time.perf_counter()
        run(images)
        sync(device)
        per_s = len(images) / (time.perf_counter() - t)
    return flops, per_s, mem.mb


def bench_backbone(spec: str, modes: tuple[str, ...], opts: BenchOptions,
                   meter: PeakMeter | None = None) -> list[BenchRow]:
    """Rows for one backbone. The matmul peak is sampled before and after each timed mode
    (`meter` keeps the samples across backbones); MFU is taken against the best sample."""
    from ..backbones.base import measure
    from .engine import pick_device, prepare

    device = pick_device(opts.device)
    meter = meter or PeakMeter(device)
    cfg = TrainConfig(epochs=2, batch_size=opts.batch, eval_batch_size=opts.batch,
                      regime=opts.regime, amp=opts.amp, device=opts.device,
                      image_size=opts.image_size, pretrained=opts.pretrained,
                      feature_cache=False, lr=1e-4)
    uses_text = head_spec(opts.head).uses_text
    cell = Cell(spec, opts.head, "bench", 0, opts.prompts if uses_text else None,
                opts.text_encoder if uses_text else None, cfg)
    data = _dataset(opts.batch * opts.steps, opts.batch, opts.source_size)
    prepared = prepare(cell, data, device)
    model, inputs, amp = prepared.model, prepared.inputs, prepared.amp
    amp_name = str(amp).replace("torch.", "") if amp else "fp32"
    _, gmacs = measure(model.backbone.encoder, inputs.pre.in_chans, inputs.pre.size)
    params_m = sum(p.numel() for p in model.backbone.encoder.parameters()) / 1e6
    rows = []
    for mode in modes:
        meter.measure(amp_name, amp)
        if mode == "train":
            flops, per_s, mem_mb = _time_train(model, inputs, data, cell, device, amp, opts)
        else:
            flops, per_s, mem_mb = _time_infer(model, inputs, data.split("train").images,
                                               device, opts,
                                               prepared.resolved["compute"]["channels_last"])
        meter.measure(amp_name, amp)
        flops_per_sample = flops / opts.batch
        mfu, noisy = honest_mfu(flops_per_sample * per_s, meter, amp_name, amp)
        rows.append(BenchRow(
            backbone=spec, head=opts.head, mode=mode, batch=opts.batch,
            image_size=inputs.pre.size[0], amp=amp_name, samples_per_s=round(per_s, 1),
            step_ms=round(1000 * opts.batch / per_s, 2), params_m=round(params_m, 3),
            gmacs=round(gmacs, 4), flops_per_sample=flops_per_sample,
            peak_mem_mb=None if mem_mb is None else round(mem_mb, 1), mfu=round(mfu, 4),
            peak_tflops=round(meter.peak(amp_name) / 1e12, 3), device=str(device),
            mfu_noisy=noisy, peak_spread=round(meter.spread(amp_name), 3)))
    return rows


def with_options(opts: BenchOptions, **changes) -> BenchOptions:
    return replace(opts, **{k: v for k, v in changes.items() if v is not None})
