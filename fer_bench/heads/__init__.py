"""Heads: what turns image features into class scores, and the loss that trains them. Each is
one file and one `register_head(HeadSpec(...))` call; plugins add theirs the same way.

    lasted   cosine to class text embeddings x learnable scale; LASTED's two-axis loss
    clip     the same scores, trained with the symmetric CLIP loss
    linear   a cross-entropy classifier on image features (the study's baseline)
    zeroshot prompt-ensemble classifier through a CLIP text tower, no training
    probe    logistic regression on frozen features, weight decay chosen on validation
"""

from __future__ import annotations

from .base import (
    HEADS,
    ClassText,
    FeatureFit,
    Head,
    HeadSpec,
    create_head,
    head_spec,
    register_head,
)
from .contrastive import ContrastiveHead, clip_loss, lasted_loss
from .linear import LinearHead
from .probe import ProbeHead, fit_logistic, fit_probe
from .zeroshot import ZeroShotHead

__all__ = ["HEADS", "ClassText", "ContrastiveHead", "FeatureFit", "Head", "HeadSpec",
           "LinearHead", "ProbeHead", "ZeroShotHead", "clip_loss", "create_head", "fit_logistic",
           "fit_probe", "head_spec", "lasted_loss", "register_head"]
