"""`hf:ID_OR_PATH[@none]`: a Hugging Face vision tower (transformers), from the Hub cache or a
local directory written by `save_pretrained`.

- CLIP checkpoints (CLIPModel): the vision tower + visual projection, with the text tower
  (text model + text projection + tokenizer) as the paired text encoder.
- CLIPVisionModel / CLIPVisionModelWithProjection: the image tower alone.
- Any other AutoModel image encoder (ViT, DINOv2, ConvNeXt, Swin, SigLIP's vision model, ...):
  its pooled output, else the mean of its last hidden states.

Preprocessing comes from the checkpoint's preprocessor_config.json; without one, the input size
comes from the model config and mean/std from the family's convention (CLIP's for CLIP models,
ImageNet's otherwise), which `notes` then says. No remote code is ever run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, FerBenchError
from ..text.encoders import TextEncoder
from ..weights import hub_access, missing_weights_error
from .base import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    BackboneConfig,
    count_params_m,
    measure,
)
from .registration import BackboneSpec, family

CLIP_TYPES = ("clip", "clip_vision_model")


class HFVisionEncoder(nn.Module):
    """pixel_values -> image embedding (projected when the checkpoint has a projection)."""

    def __init__(self, vision: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.vision, self.projection = vision, projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.vision(pixel_values=x)
        feats = getattr(out, "image_embeds", None)
        if feats is None:
            feats = getattr(out, "pooler_output", None)
        if feats is None:
            feats = out.last_hidden_state
        if feats.ndim == 4 and feats.shape[-1] == 1 and feats.shape[-2] == 1:
            feats = feats.flatten(1)  # (B, C, 1, 1) poolers of conv nets
        if self.projection is not None:
            feats = self.projection(feats)
        return feats


class HFClipTextTower(TextEncoder):
    """The text half of a transformers CLIPModel: EOS-token pooled output, projected."""

    def __init__(self, text_model: nn.Module, projection: nn.Module, tokenizer, name: str,
                 weights: str, context_length: int,
                 logit_scale: nn.Parameter | None = None) -> None:
        super().__init__()
        self.text_model, self.projection, self._tokenizer = text_model, projection, tokenizer
        if logit_scale is not None:  # CLIPModel's pretrained temperature, for the lasted head
            self.logit_scale = logit_scale
        self.name, self.weights, self.context_length = name, weights, context_length
        self.dim = int(projection.out_features)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        out = self._tokenizer(texts, padding=True, truncation=True,
                              max_length=self.context_length, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def encode(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.text_model(input_ids=tokens["input_ids"],
                              attention_mask=tokens["attention_mask"])
        return self.projection(out.pooler_output)


def _read_json(path: str, filename: str) -> dict | None:
    """A JSON file of a local directory or a cached Hub repo; None if it has none."""
    local = Path(path).expanduser()
    if local.is_dir():
        f = local / filename
        return json.loads(f.read_text()) if f.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(path, filename)).read_text())
    except EntryNotFoundError:
        return None


def _preprocessing(path: str, config, model_type: str) -> tuple[dict, str]:
    vcfg = getattr(config, "vision_config", None) or config
    pp = _read_json(path, "preprocessor_config.json") or {}
    size = pp.get("crop_size") or pp.get("size") or getattr(vcfg, "image_size", 224)
    if isinstance(size, dict):
        size = (size.get("height") or size.get("shortest_edge"),
                size.get("width") or size.get("shortest_edge"))
    size = (size, size) if isinstance(size, int) else tuple(size)
    note = ""
    if "image_mean" in pp:
        mean, std = tuple(pp["image_mean"]), tuple(pp["image_std"])
    elif model_type in CLIP_TYPES:
        mean, std = CLIP_MEAN, CLIP_STD
        note = "no preprocessor_config.json: CLIP mean/std assumed"
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        note = "no preprocessor_config.json: ImageNet mean/std assumed"
    resize, crop_pct = pp.get("size"), 1.0
    if isinstance(resize, dict) and "shortest_edge" in resize and pp.get("do_center_crop", True):
        crop_pct = min(size) / resize["shortest_edge"]  # CLIPImageProcessor: 224 of 224
    squash = isinstance(resize, dict) and "height" in resize  # ViTImageProcessor: both sides
    return {"input_size": size, "mean": mean, "std": std, "crop_pct": crop_pct,
            "resize_mode": "squash" if squash else "shortest",
            "interpolation": "bicubic" if pp.get("resample", 3) == 3 else "bilinear",
            "in_chans": int(getattr(vcfg, "num_channels", 3)),
            "fixed_input_size": hasattr(vcfg, "patch_size")}, note


def _model_class(config):
    """The class the checkpoint names, if transformers has it, else AutoModel."""
    import transformers

    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel) and (
                arch.endswith(("Model", "ModelWithProjection"))):
            return cls
    return transformers.AutoModel


@family("hf")
def build_hf(spec: BackboneSpec, *, load_weights: bool = True, device: str = "cpu") -> Backbone:
    from transformers import AutoConfig

    path = spec.model
    if spec.weights not in ("default", "none"):
        raise ConfigError(f"backbone {spec.name!r}: hf: takes a Hub id or a local directory; "
                          f"'@{spec.weights}' is not supported (use @none for random init, or "
                          "pass the directory holding the weights)")
    load = load_weights and spec.weights != "none"
    try:
        with hub_access():
            config = AutoConfig.from_pretrained(path)
            cls = _model_class(config)
            if load:
                model = cls.from_pretrained(path)
            else:
                with torch.device(device):
                    model = cls._from_config(config) if hasattr(cls, "_from_config") else (
                        cls.from_config(config))
            pre, note = _preprocessing(path, config, config.model_type)
    except (OSError, ValueError) as e:
        raise missing_weights_error(spec.name, f"hf {path!r}", e) from e
    model.eval()
    text = None
    if config.model_type == "clip" and hasattr(model, "text_model"):
        encoder = HFVisionEncoder(model.vision_model, model.visual_projection)
        if device != "meta":
            text = _clip_text_tower(model, path, spec.name, "none" if not load else path)
    elif hasattr(model, "vision_model") and config.model_type not in CLIP_TYPES:
        encoder = HFVisionEncoder(model.vision_model)  # e.g. SigLIP: its vision half only
    else:
        encoder = HFVisionEncoder(model)
    try:
        dim, gmacs = measure(encoder, pre["in_chans"], pre["input_size"])
    except Exception as e:
        raise FerBenchError(f"backbone {spec.name!r}: {type(model).__name__} did not accept a "
                            f"1 x {pre['in_chans']} x {pre['input_size']} batch: "
                            f"{str(e)[:200]}") from e
    cfg = BackboneConfig(
        name=spec.name, family="hf", model=path,
        weights="none" if spec.weights == "none" else path,
        feature_dim=dim, params_m=count_params_m(encoder), gmacs=gmacs,
        text_tower=text is not None or (config.model_type == "clip" and device == "meta"),
        text_params_m=count_params_m(text), notes=note,
        extra={"class": type(model).__name__, "model_type": config.model_type}, **pre)
    return Backbone(encoder, cfg, text)


def _clip_text_tower(model, path: str, name: str, weights: str) -> TextEncoder | None:
    """The paired text tower, if the checkpoint has a tokenizer to go with it."""
    from transformers import AutoTokenizer

    try:
        with hub_access():
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError):
        return None  # an image-only use of a CLIP checkpoint saved without its tokenizer
    length = int(model.config.text_config.max_position_embeddings)
    tower = HFClipTextTower(model.text_model, model.text_projection, tokenizer, f"hf:{path}",
                            weights, length, getattr(model, "logit_scale", None))
    model.text_model = model.text_projection = None  # owned once, by the text tower
    return tower
