"""`open_clip:MODEL[@WEIGHTS]`: a CLIP image tower with its paired text tower.

WEIGHTS is a pretrained tag (`openai`, `laion2b_s34b_b88k`), a local file, or `none`; MODEL may
also be `hf-hub:org/repo` or `local-dir:/path` as open_clip itself accepts. OpenAI's weights were
trained with QuickGELU: a tag that says so switches the architecture to QuickGELU (the cards use
the `-quickgelu` configs directly), so `open_clip:ViT-B-16@openai` is built right too."""

from __future__ import annotations

from ..text.clip_models import MODEL_HINT, build_clip, knows_open_clip, list_open_clip
from ..text.encoders import OpenClipTextEncoder
from .base import Backbone, BackboneConfig, count_params_m
from .registration import BackboneSpec, family


@family("open_clip", knows=knows_open_clip, list_models=list_open_clip,
        text_tower=lambda spec: True, hint=MODEL_HINT)
def build_open_clip(spec: BackboneSpec, *, load_weights: bool = True,
                    device: str = "cpu") -> Backbone:
    clip, pre, weights = build_clip(spec.model, spec.weights, spec.name, load=load_weights,
                                    device=device)
    visual = clip.visual
    clip.visual = None  # the text encoder keeps the rest; parameters are owned exactly once
    size = pre.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    text = OpenClipTextEncoder(clip, spec.model, weights) if device != "meta" else None
    cfg = BackboneConfig(
        name=spec.name, family="open_clip", model=spec.model, weights=weights,
        input_size=size, mean=tuple(pre.get("mean")), std=tuple(pre.get("std")), in_chans=3,
        interpolation=pre.get("interpolation", "bicubic"), fixed_input_size=True,
        resize_mode="squash" if pre.get("resize_mode") == "squash" else "shortest",
        feature_dim=int(visual.output_dim), text_tower=True, params_m=count_params_m(visual),
        text_params_m=count_params_m(clip),
        extra={"quick_gelu": _uses_quick_gelu(clip)},  # the text tower's activation
    )
    return Backbone(visual, cfg, text)


def _uses_quick_gelu(clip) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in clip.modules())
