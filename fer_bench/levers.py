"""Compute levers: mixed precision, memory format, TF32, torch.compile, out-of-memory retries.
Each is chosen per cell from `TrainConfig` and the device, and recorded in the results."""

from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError

NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def has_native_bf16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo text lists a native bf16 dot-product instruction set."""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return bool(NATIVE_BF16_FLAGS & set(flags.partition(":")[2].split()))


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether bf16 beats fp32 on this CPU: with AMX tiles (Intel Sapphire Rapids and later;
    ~4x matmuls, 1.5x ResNet training measured) or AVX512-BF16 (Intel Cooper Lake, AMD Zen 4
    and later; 3x matmuls, 2x resnet18 training measured on an EPYC). Elsewhere CPU bf16 is
    emulated and no faster. `amp = "auto"` is fp32 on every CPU (reproducible figures); this
    tells `fer-bench bench` and the speed scripts whether `amp = "bf16"` is worth asking for."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return has_native_bf16(text) and torch.backends.mkldnn.is_available()


def pick_device(name: str) -> torch.device:
    """`train.device`: auto (CUDA when there is one), cpu, cuda or cuda:N."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available")
    return torch.device(name)


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for `train.amp` on this device (None: fp32)."""
    if amp == "off":
        return None
    if amp == "auto":
        # CPU: fp32, always. bf16 kernels round differently from one CPU family to the next, so
        # a default figure must not depend on which CPU ran it; `amp = "bf16"` asks for it.
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported(including_emulation=False)  # Ampere+
            return torch.bfloat16 if native else torch.float16
        return None
    if amp == "fp16" and device.type == "cpu":
        raise ConfigError("train.amp=fp16 needs CUDA; use bf16 or off on the CPU")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast_for(device: torch.device, amp: str):
    """(context factory, dtype): `with factory():` runs the forward in the chosen precision."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return nullcontext, None
    return (lambda: torch.autocast(device.type, dtype=dtype)), dtype


def is_convnet(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def wants_channels_last(setting: str, device: torch.device, module: nn.Module,
                        amp: torch.dtype | None) -> bool:
    """`auto`: convolutional nets on CUDA, and on the CPU under bf16 autocast (oneDNN's bf16
    kernels: 1.3x for fer_cnn and resnet18 training with AMX, 1.15x for resnet18 with
    AVX512-BF16; max-pooling alone is 8x faster in channels_last). Not in fp32 on the CPU:
    torch 2.14's fp32 oneDNN path crashes (segfault; on both Intel and AMD here) in the backward
    of a 1x1 stride-2 convolution in channels_last (mini_xception's first residual at 60x60),
    which would take the whole run down. `on` forces it, `off` never."""
    if setting == "off":
        return False
    if setting == "on":
        return True
    if not is_convnet(module):
        return False
    return device.type == "cuda" or (device.type == "cpu" and amp == torch.bfloat16)


def enable_tf32(device: torch.device, enabled: bool) -> bool:
    """TF32 matmuls and convolutions on Ampere or newer GPUs; returns whether it is on."""
    on = bool(enabled and device.type == "cuda"
              and torch.cuda.get_device_capability(device)[0] >= 8)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    return on


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    return torch.compile(module) if enabled else module


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
