"""Training regimes: which parameters train. The head's own parameters (projection, logit scale,
classifier, learned prompt context) always train; the regime decides the towers.

    full       image and text towers (LASTED)
    image      image tower; text tower frozen (class embeddings computed once)
    text       text tower; image tower frozen
    frozen     neither tower: only the head
    partial:N  the last N blocks of the image tower; text tower frozen
    lora:r=R[,...] / adapter[:...] / vpt:N   both towers frozen; a few added parameters train
               (fer_bench.adaptation)
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError

# Attribute paths of block sequences in the families fer-bench builds (timm, open_clip, HF).
BLOCK_PATHS = ("blocks", "stages", "layers", "transformer.resblocks", "encoder.layer",
               "vision_model.encoder.layers", "trunk.blocks", "features")
RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _get(module: nn.Module, path: str) -> nn.Module | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's blocks, input to output: the unit `partial:N` counts from the end."""
    if all(hasattr(encoder, n) for n in RESNET_LAYERS):  # torchvision/timm/CLIP ResNets
        return [getattr(encoder, n) for n in RESNET_LAYERS]
    for path in BLOCK_PATHS:
        seq = _get(encoder, path)
        if isinstance(seq, nn.Sequential | nn.ModuleList) and len(seq) > 1:
            return [m for m in seq if _has_params(m)]  # pooling layers are not blocks
    # Fallback: top-level children that hold parameters, in registration order.
    return [m for m in encoder.children() if _has_params(m)]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def set_trainable(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


def freeze_norm_statistics(module: nn.Module) -> None:
    """Put normalisation layers whose parameters are all frozen into eval mode, so a frozen tower
    stays bit-identical (running statistics are buffers, not parameters). Call after train()."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def _count(params) -> int:
    return sum(p.numel() for p in params)


def trainable_record(image_encoder: nn.Module, text_encoder: nn.Module | None,
                     head: nn.Module | None) -> dict:
    """Trainable parameter counts per part and in total (each parameter counted once)."""
    seen: dict[int, nn.Parameter] = {}
    parts = {"image": image_encoder, "text": text_encoder, "head": head}
    counts = {}
    for name, module in parts.items():
        if module is None:
            continue
        mine = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
        seen.update((id(p), p) for p in mine)
        counts[name] = _count(mine)
    record = {"trainable_image_params_m": round(counts["image"] / 1e6, 4)}
    if text_encoder is not None:
        record["trainable_text_params_m"] = round(counts["text"] / 1e6, 4)
    if head is not None:
        record["trainable_head_params_m"] = round(counts.get("head", 0) / 1e6, 4)
    record["trainable_params"] = sum(counts.values())
    return record


def apply_regime(image_encoder: nn.Module, text_encoder: nn.Module | None, regime: str,
                 learned_context: list[nn.Parameter] = (), head: nn.Module | None = None,
                 feature_dim: int = 0, who: str = "cell") -> dict:
    """Freeze exactly what the regime says (adding the adaptation regimes' parameters); returns
    a record for the results."""
    from ..adaptation import apply_adaptation, parse_regime

    spec = parse_regime(regime)
    set_trainable(image_encoder, spec.kind in ("full", "image"))
    set_trainable(text_encoder, spec.kind in ("full", "text"))
    record: dict = {"regime": regime}
    if spec.kind == "partial":
        partial = spec.options["blocks"]
        blocks = encoder_blocks(image_encoder)
        if partial > len(blocks):
            raise ConfigError(f"regime partial:{partial}: the image encoder has only "
                              f"{len(blocks)} blocks")
        for b in blocks[-partial:]:
            set_trainable(b, True)
        record["blocks_total"] = len(blocks)
    if spec.adaptation:
        if head is None:
            raise ConfigError(f"{who}: regime {regime!r} needs the head to attach to")
        _, record["adaptation"] = apply_adaptation(image_encoder, text_encoder, head, spec,
                                                   feature_dim, who)
        record["resolved"] = spec.resolved()
    for p in learned_context:
        p.requires_grad_(True)
    record.update(trainable_record(image_encoder, text_encoder, head))
    return record
