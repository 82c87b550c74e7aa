"""Parameter-efficient adaptation regimes: `lora:...`, `adapter[...]`, `vpt:N` (see spec.py).

Each freezes both towers and adds a few parameters: LoRA inside the encoder(s) (lora.py),
CLIP-Adapter MLPs on the head's inputs, VPT tokens in a ViT's sequence (modules.py). The head's
own parameters and learned prompt context train as under every regime."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .spec import ADAPTATION, RegimeSpec, parse_regime, regime_problem

__all__ = ["ADAPTATION", "RegimeSpec", "apply_adaptation", "check_applicable", "parse_regime",
           "regime_problem"]


def check_applicable(encoder: nn.Module, spec: RegimeSpec, who: str) -> None:
    """Raise ConfigError if `spec` cannot be applied to this image encoder (works on a meta
    build: nothing is computed)."""
    if spec.kind == "vpt":
        from .modules import check_vpt

        check_vpt(encoder, who, spec.options["tokens"])
    elif spec.kind == "lora" and "image" in spec.towers():
        from .lora import resolve_targets

        resolve_targets(encoder, spec.options["targets"], who)


def apply_adaptation(image_encoder: nn.Module, text_encoder: nn.Module | None, head: nn.Module,
                     spec: RegimeSpec, feature_dim: int, who: str) -> tuple[list, dict]:
    """Add the regime's parameters (the towers are already frozen); returns (parameters,
    record)."""
    towers = spec.towers()
    if "text" in towers and text_encoder is None and spec.kind == "lora":
        raise ConfigError(f"{who}: regime {spec.text!r} puts LoRA on the text tower, but this "
                          "head uses no text encoder (use tower=image)")
    if spec.kind == "vpt":
        from .modules import apply_vpt

        params, record = apply_vpt(image_encoder, spec.options["tokens"], who)
    elif spec.kind == "adapter":
        from .modules import apply_adapter

        params, record = apply_adapter(head, feature_dim, spec.options, towers, who)
    elif spec.kind == "lora":
        from .lora import apply_lora

        params, record = [], {}
        if "image" in towers:
            p, record["image"] = apply_lora(image_encoder, spec.options, f"{who} (image tower)")
            params += p
        if "text" in towers:
            p, record["text"] = apply_lora(text_encoder, spec.options, f"{who} (text tower)")
            params += p
    else:
        raise ConfigError(f"{who}: {spec.text!r} is not an adaptation regime")
    for p in params:
        p.requires_grad_(True)
    return params, record
