"""The trained parameters of an adapted cell, alone: `trained.safetensors` in the cell's
directory holds every parameter that trained (LoRA factors, adapters, visual tokens, the head,
learned prompt context) under its name in the cell's model, plus metadata naming the regime and
the sha256 digests of the frozen base weights it must be loaded onto (see
`fer_bench.train.engine.reload_trained`). The base weights are not copied: a LoRA'd RN50x64's
artifact is megabytes, not 1.7 GB."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import ConfigError, FerBenchError
from ..tensor_cache import module_digest
from .spec import ADAPTATION

TRAINED_FILE = "trained.safetensors"
FORMAT = "fer-bench-trained-1"


def is_adaptation(regime: str) -> bool:
    return regime.partition(":")[0] in ADAPTATION


def base_digests(image_encoder: nn.Module, text_encoder: nn.Module | None) -> dict[str, str]:
    """Digests of the frozen towers before adaptation (parameters and buffers, by name)."""
    out = {"image_encoder": module_digest(image_encoder)}
    if text_encoder is not None:
        out["text_encoder"] = module_digest(text_encoder)
    return out


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """name -> tensor (CPU, contiguous) for every parameter that trains."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if p.requires_grad}


def encode(state: dict[str, torch.Tensor], meta: dict) -> bytes:
    return st_save(state, metadata={"format": FORMAT, "meta": json.dumps(meta, sort_keys=True)})


def decode(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        state = st_load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except Exception as e:  # truncated / not safetensors
        raise FerBenchError(f"{where}: not a readable trained-parameters file ({e})") from e
    if header.get("format") != FORMAT:
        raise FerBenchError(f"{where}: not a fer-bench trained-parameters file "
                            f"(format {header.get('format')!r}, expected {FORMAT!r})")
    return state, json.loads(header.get("meta") or "{}")


def check_base(saved: dict, actual: dict, where: str) -> None:
    """The base weights the parameters were trained on must be the ones they are loaded onto."""
    for tower, digest in saved.items():
        if actual.get(tower) != digest:
            raise ConfigError(f"{where}: trained on base {tower} weights {digest[:12]}..., but "
                              f"the rebuilt model's are {str(actual.get(tower))[:12]}...; "
                              "reload onto the same backbone weights (same card/tag/file, and "
                              "the same seed for random init)")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy the trained tensors into `model`; every saved name must be a trainable parameter."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    extra, missing = sorted(set(state) - trainable), sorted(trainable - set(state))
    if extra or missing:
        raise ConfigError(f"{where}: the file's parameters do not match the cell's trainable "
                          f"ones (unexpected: {extra[:5]}, missing: {missing[:5]})")
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ConfigError(f"{where}: unexpected tensors {result.unexpected_keys[:5]}")
