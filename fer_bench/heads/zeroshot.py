"""`zeroshot`: no training. Class prompts through a CLIP-aligned text tower, prompt-ensembled,
logits = 100 x cosine (the CLIP paper's convention). Needs the backbone's paired text tower (or
the text tower of the same open_clip model): otherwise image and text spaces are unrelated."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import ClassText, Head, HeadSpec, register_head

ZEROSHOT_SCALE = 100.0


class ZeroShotHead(Head):
    def __init__(self, class_text: ClassText) -> None:
        super().__init__()
        self.class_text = class_text

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(features.float(), dim=-1)
        return ZEROSHOT_SCALE * image @ self.class_text().T


def zeroshot(feature_dim: int, n_classes: int, class_text: ClassText, **_: object) -> Head:
    """Zero-shot CLIP: prompt-ensemble classifier, no training."""
    if class_text.encoder.dim != feature_dim:
        raise ConfigError(f"zeroshot: image features ({feature_dim}-d) and text embeddings "
                          f"({class_text.encoder.dim}-d) are not in one space; zeroshot needs "
                          "the backbone's paired CLIP text tower")
    return ZeroShotHead(class_text)


register_head(HeadSpec("zeroshot", zeroshot, uses_text=True, trains=False, frozen_image=True,
                       needs_aligned_text=True))
