"""`timm:NAME[@WEIGHTS]`: any timm model as a pooled-feature encoder (num_classes=0), with the
preprocessing from its pretrained_cfg.

WEIGHTS: `none` (random init), a pretrained tag (`timm:resnet50@a1_in1k`, or the same written
`timm:resnet50.a1_in1k`), or a local file, loaded through timm's own pretrained path
(pretrained_cfg_overlay=dict(file=...)) so timm's key filters and classifier handling apply."""

from __future__ import annotations

import torch

from ..errors import FerBenchError, UnknownNameError
from ..weights import hub_access, is_local_file, local_file, missing_weights_error
from .base import Backbone, BackboneConfig, count_params_m
from .registration import FAMILIES, BackboneSpec, family


def knows_timm(model: str) -> bool:
    import timm

    return timm.is_model(model.split(".")[0])


def list_timm(pattern: str) -> list[str]:
    import timm

    return timm.list_models(pattern)


def _arch(spec: BackboneSpec) -> str:
    """`resnet50@a1_in1k` -> `resnet50.a1_in1k` (tags select weights and preprocessing)."""
    w = spec.weights
    if w in ("none", "default") or is_local_file(w):
        return spec.model
    return f"{spec.model.split('.')[0]}.{w}"


def _describe_source(arch: str) -> str:
    import timm.models

    cfg = timm.models.get_pretrained_cfg(arch)
    src = cfg and (cfg.hf_hub_id and f"hf-hub {cfg.hf_hub_id}" or cfg.url)
    return f"timm {arch!r}" + (f" from {src}" if src else "")


@family("timm", knows=knows_timm, list_models=list_timm, text_tower=lambda spec: False,
        hint="Any name from timm.list_models() works")
def build_timm(spec: BackboneSpec, *, load_weights: bool = True,
               device: str = "cpu") -> Backbone:
    import timm
    import timm.data

    FAMILIES["timm"].check(spec.model)
    arch = _arch(spec)
    kwargs: dict = {"num_classes": 0}
    local = is_local_file(spec.weights)
    if load_weights and local:
        kwargs["pretrained_cfg_overlay"] = {"file": str(local_file(spec.weights, spec.name))}
    try:
        with hub_access(), torch.device(device):
            model = timm.create_model(arch, pretrained=load_weights, **kwargs)
    except RuntimeError as e:
        if "Unknown pretrained tag" in str(e) or "Invalid pretrained tag" in str(e):
            tags = [n for n in timm.list_pretrained(f"{spec.model.split('.')[0]}.*")]
            raise UnknownNameError("timm pretrained tag", arch, tags) from e
        if not load_weights:
            raise
        if local and "weights_only" in str(e).replace(" ", "_").lower():
            raise FerBenchError(f"backbone {spec.name!r}: {spec.weights} is not a plain tensor "
                                "checkpoint: refused to unpickle it (it needs code to load; "
                                "torch.load(weights_only=True))") from e
        raise missing_weights_error(spec.name, _describe_source(arch), e) from e
    except (OSError, ValueError) as e:
        if not load_weights:
            raise
        raise missing_weights_error(spec.name, _describe_source(arch), e) from e
    dc = timm.data.resolve_data_config({}, model=model)
    pcfg = getattr(model, "pretrained_cfg", {}) or {}
    if local:
        weights = spec.weights
    else:
        tag = pcfg.get("tag")
        weights = f"{arch.split('.')[0]}.{tag}" if tag else spec.weights
    cfg = BackboneConfig(
        name=spec.name, family="timm", model=spec.model, weights=weights,
        input_size=tuple(dc["input_size"][1:]), mean=tuple(dc["mean"]), std=tuple(dc["std"]),
        in_chans=int(dc["input_size"][0]), interpolation=dc.get("interpolation", "bilinear"),
        fixed_input_size=bool(pcfg.get("fixed_input_size", False)),
        # MobileNetV3/EfficientNet-style nets pool, then widen (conv_head): their pooled output
        # is head_hidden_size wide, not num_features
        feature_dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
        params_m=count_params_m(model),
        crop_pct=float(dc.get("crop_pct") or 1.0),
        resize_mode="squash" if dc.get("crop_mode") == "squash" else "shortest",
    )
    return Backbone(model, cfg)
