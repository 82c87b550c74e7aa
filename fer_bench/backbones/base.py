"""What every image encoder carries (like timm's pretrained_cfg) and the module wrapper the
engine trains. The data pipeline takes preprocessing from here, never from a global default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BackboneConfig:
    name: str                      # what the user typed (card name or spec)
    family: str                    # timm | open_clip | hf | fer | custom
    model: str                     # the family's model name
    weights: str                   # "none" (random init), a pretrained tag, or a local file
    input_size: tuple[int, int]    # (H, W) the encoder expects
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3              # 1: grayscale in; 3: gray faces are replicated to RGB
    interpolation: str = "bilinear"
    fixed_input_size: bool = False
    feature_dim: int = 0
    text_tower: bool = False       # a paired CLIP text tower exists
    params_m: float = 0.0
    gmacs: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


class Backbone(nn.Module):
    """An image encoder: B x C x H x W float (already normalised) -> B x feature_dim."""

    def __init__(self, encoder: nn.Module, config: BackboneConfig,
                 text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        # A paired text tower (CLIP) is owned by the backbone so `--text-encoder paired` finds it.
        self.paired_text = text_encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.encoder(images)
        if out.ndim != 2:  # encoders returning maps or tokens: global-average to a vector
            out = out.flatten(2).mean(-1) if out.ndim == 4 else out.mean(1)
        return out


def count_params_m(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@torch.no_grad()
def infer_feature_dim(encoder: nn.Module, in_chans: int, input_size: tuple[int, int]) -> int:
    """D by a dry forward on one zero image (for plain user modules that do not declare it)."""
    was_training = encoder.training
    encoder.eval()
    out = encoder(torch.zeros(1, in_chans, *input_size))
    encoder.train(was_training)
    if out.ndim not in (2, 3, 4):
        raise ValueError(f"encoder output has shape {tuple(out.shape)}; expected B x D "
                         "(or B x D x H x W / B x T x D, which are pooled)")
    return int(out.shape[1] if out.ndim in (2, 4) else out.shape[-1])
