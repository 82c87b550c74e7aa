"""`open_clip:MODEL[@WEIGHTS]`: a CLIP image tower with its paired text tower.

WEIGHTS is a pretrained tag (`openai`, `laion2b_s34b_b88k`), a local file, or `none`; MODEL may
also be `hf-hub:org/repo` or `local-dir:/path` as open_clip itself accepts."""

from __future__ import annotations

from . import BackboneSpec, family
from .base import Backbone, BackboneConfig, count_params_m
from .weights import is_local_file, local_file, missing_weights_error


def build_clip(model_name: str, weights: str, who: str):
    """(clip_model, preprocess_cfg, resolved weights) — shared with the open_clip text encoder."""
    import open_clip

    hub = model_name.startswith(("hf-hub:", "local-dir:"))
    if hub or weights == "none":
        pretrained = None
    elif weights == "default":
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if not tags:
            raise missing_weights_error(who, f"(open_clip lists no pretrained tag for "
                                             f"{model_name!r})", LookupError(model_name))
        pretrained = weights = tags[0]
    elif is_local_file(weights):
        pretrained = str(local_file(weights, who))
    else:
        pretrained = weights
    if not hub and model_name not in open_clip.list_models():
        from ..errors import UnknownNameError

        raise UnknownNameError("open_clip model", model_name, open_clip.list_models(),
                               hint="Any name from open_clip.list_models() works")
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained)
    except (OSError, RuntimeError, ValueError) as e:
        if pretrained is None and not hub:
            raise
        raise missing_weights_error(who, f"open_clip {model_name}@{weights}", e) from e
    pre = open_clip.get_model_preprocess_cfg(model)
    return model, pre, ("hub" if hub else weights)


@family("open_clip")
def build_open_clip(spec: BackboneSpec) -> Backbone:
    from ..text.encoders import OpenClipTextEncoder

    clip, pre, weights = build_clip(spec.model, spec.weights, spec.name)
    visual = clip.visual
    clip.visual = None  # the text encoder keeps the rest; parameters are owned exactly once
    size = pre.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    text = OpenClipTextEncoder(clip, spec.model, weights)
    cfg = BackboneConfig(
        name=spec.name, family="open_clip", model=spec.model, weights=weights,
        input_size=size, mean=tuple(pre.get("mean")), std=tuple(pre.get("std")), in_chans=3,
        interpolation=pre.get("interpolation", "bicubic"), fixed_input_size=True,
        feature_dim=int(visual.output_dim), text_tower=True, params_m=count_params_m(visual),
    )
    return Backbone(visual, cfg, text)
