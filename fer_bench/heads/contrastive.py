"""Language-guided heads: image features projected into the text space, scored by cosine
similarity to class text embeddings times a learnable logit scale.

`lasted` trains them with LASTED's loss (Wu, Zhou & Zhang 2023): the mean of
  - the image axis: each image's C-way cross-entropy against its label, and
  - the text axis: for each class c, the mean logit of text c over the batch images of each class
    k forms a vector over k; cross-entropy with target k = c (each prompt must be closer, on
    average, to its own class's images than to any other class's images).
Classes absent from the batch make some of those means undefined; they are masked out of the
softmax (the published code dropped the whole text term instead)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import HEADS, ClassText, Head

INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature
MAX_LOGIT_SCALE = math.log(100.0)


def lasted_loss(logits: torch.Tensor, labels: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """LASTED's two-axis loss, vectorised over classes, undefined text-axis entries masked.
    `weight` (per class) re-weights the image axis, as for cross-entropy."""
    n_classes = logits.shape[1]
    image_axis = F.cross_entropy(logits, labels, weight=weight)
    onehot = F.one_hot(labels, n_classes).to(logits.dtype)           # B x C
    counts = onehot.sum(0)                                           # images per class
    present = counts > 0
    # means[k, c]: mean logit of text c over the batch images of class k.
    means = (onehot.T @ logits) / counts.clamp_min(1).unsqueeze(1)
    masked = means.masked_fill(~present.unsqueeze(1), float("-inf"))
    per_text = torch.logsumexp(masked, dim=0) - means.diagonal()     # CE with target k = c
    text_axis = per_text[present].mean()
    return (image_axis + text_axis) / 2


def clip_loss(logits: torch.Tensor, labels: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric CLIP loss with one text per class: image->text CE over classes, and for each
    class present, text->image CE over the batch with the class's images as (equal) targets."""
    n_classes = logits.shape[1]
    image_axis = F.cross_entropy(logits, labels, weight=weight)
    onehot = F.one_hot(labels, n_classes).to(logits.dtype)           # B x C
    present = onehot.sum(0) > 0
    log_p = F.log_softmax(logits.T, dim=1)                           # C x B, over images
    target = onehot.T / onehot.T.sum(1, keepdim=True).clamp_min(1)
    text_axis = -(target * log_p).sum(1)[present].mean()
    return (image_axis + text_axis) / 2


class ContrastiveHead(Head):
    uses_text = True

    def __init__(self, feature_dim: int, class_text: ClassText, loss: str = "lasted",
                 identity_projection: bool = False) -> None:
        super().__init__()
        self.class_text = class_text
        text_dim = class_text.encoder.dim
        if identity_projection and feature_dim == text_dim:
            self.projection: nn.Module = nn.Identity()
        else:
            self.projection = nn.Linear(feature_dim, text_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))
        self._loss = lasted_loss if loss == "lasted" else clip_loss

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.projection(features.float()), dim=-1)
        text = self.class_text()
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * image @ text.T

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        return self._loss(logits, labels, weight)


@HEADS.register("lasted", uses_text=True)
def lasted(feature_dim: int, n_classes: int, class_text: ClassText,
           identity_projection: bool = False) -> Head:
    """LASTED: language-guided contrastive head with the two-axis (image + text) loss."""
    return ContrastiveHead(feature_dim, class_text, "lasted", identity_projection)


@HEADS.register("clip", uses_text=True)
def clip(feature_dim: int, n_classes: int, class_text: ClassText,
         identity_projection: bool = False) -> Head:
    """The same cosine head trained with the symmetric CLIP loss."""
    return ContrastiveHead(feature_dim, class_text, "clip", identity_projection)
