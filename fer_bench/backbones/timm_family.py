"""`timm:NAME[@WEIGHTS]`: any timm model as a pooled-feature encoder (num_classes=0), with the
preprocessing from its pretrained_cfg."""

from __future__ import annotations

from ..errors import UnknownNameError
from . import BackboneSpec, family
from .base import Backbone, BackboneConfig, count_params_m
from .weights import is_local_file, local_file, missing_weights_error


@family("timm")
def build_timm(spec: BackboneSpec) -> Backbone:
    import timm
    import timm.data

    arch = spec.model
    if not timm.is_model(arch.split(".")[0]):
        raise UnknownNameError("timm model", arch, timm.list_models(),
                               hint="Any name from timm.list_models() works")
    kwargs: dict = {"num_classes": 0}
    weights = spec.weights
    if weights == "none":
        pretrained = False
    elif is_local_file(weights):
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = {"file": str(local_file(weights, spec.name))}
    else:
        pretrained = True
        if weights != "default":
            arch = f"{arch.split('.')[0]}.{weights}"
    try:
        model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if not pretrained:
            raise
        raise missing_weights_error(spec.name, f"timm {arch!r}", e) from e
    dc = timm.data.resolve_data_config({}, model=model)
    pcfg = getattr(model, "pretrained_cfg", {}) or {}
    if weights == "default":
        tag = pcfg.get("tag")
        weights = f"{arch.split('.')[0]}.{tag}" if tag else "default"
    cfg = BackboneConfig(
        name=spec.name, family="timm", model=spec.model, weights=weights,
        input_size=tuple(dc["input_size"][1:]), mean=tuple(dc["mean"]), std=tuple(dc["std"]),
        in_chans=3, interpolation=dc.get("interpolation", "bilinear"),
        fixed_input_size=bool(pcfg.get("fixed_input_size", False)),
        feature_dim=int(model.num_features), params_m=count_params_m(model),
    )
    return Backbone(model, cfg)
