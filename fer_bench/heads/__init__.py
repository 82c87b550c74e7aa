"""Heads: what turns image features into class scores, and the loss that trains them.

    lasted   cosine to class text embeddings x learnable scale; LASTED's two-axis loss
    clip     the same scores, trained with the symmetric CLIP loss
    linear   a cross-entropy classifier on image features (the study's baseline)
"""

from __future__ import annotations

from .base import HEADS, ClassText, Head, create_head
from .contrastive import ContrastiveHead, clip_loss, lasted_loss
from .linear import LinearHead

__all__ = ["HEADS", "ClassText", "ContrastiveHead", "Head", "LinearHead", "clip_loss",
           "create_head", "lasted_loss"]
