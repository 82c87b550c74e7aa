"""Language-guided heads: image features projected into the text space, scored by cosine
similarity to class text embeddings times a learnable logit scale.

`lasted` trains them with LASTED's loss (Wu, Zhou & Zhang 2023; HighwayWu/LASTED main.py:163-179):
the mean of
  - the image axis: each image's C-way cross-entropy against its label, and
  - the text axis: for each class c, the mean logit of text c over the batch images of each class
    k forms a vector over k; cross-entropy with target k = c (each prompt must be closer, on
    average, to its own class's images than to any other class's images).
A class absent from the batch makes some of those means undefined. `absent_classes` says what
then happens (docs/fidelity.md):
  - "image_only": the original's rule -- any absent class drops the text axis for the whole
    batch (its NaN check), leaving the image axis alone;
  - "mask": undefined entries leave the softmax and absent classes' rows leave the mean; with
    fewer than two classes present no text term exists and the image axis stands alone.
Either way only terms that exist are averaged: a one-class batch is never halved.

The logit scale is the paired CLIP tower's own pretrained, trainable `logit_scale` when the head
scores against that tower (LASTED trains CLIP's), else a new one at CLIP's initial ln(1/0.07).
It is used unclamped in forward (a clamp there has zero gradient at the cap, so the scale could
never come back down); `after_step` clamps its value to ln 100 as open_clip does."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import ClassText, Head, HeadSpec, register_head

INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature
MAX_LOGIT_SCALE = math.log(100.0)
ABSENT_CLASSES = ("mask", "image_only")


def _text_axis_terms(logits: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-class text-axis CE over the present classes, present mask), vectorised."""
    n_classes = logits.shape[1]
    onehot = F.one_hot(labels, n_classes).to(logits.dtype)           # B x C
    counts = onehot.sum(0)                                           # images per class
    present = counts > 0
    # means[k, c]: mean logit of text c over the batch images of class k.
    means = (onehot.T @ logits) / counts.clamp_min(1).unsqueeze(1)
    masked = means.masked_fill(~present.unsqueeze(1), float("-inf"))
    per_text = torch.logsumexp(masked, dim=0) - means.diagonal()     # CE with target k = c
    return per_text, present


def lasted_loss(logits: torch.Tensor, labels: torch.Tensor,
                weight: torch.Tensor | None = None, absent_classes: str = "image_only"
                ) -> torch.Tensor:
    """LASTED's two-axis loss. `weight` (per class) re-weights the image axis, as for
    cross-entropy; `absent_classes` is "mask" or "image_only" (the original's rule)."""
    image_axis = F.cross_entropy(logits, labels, weight=weight)
    per_text, present = _text_axis_terms(logits, labels)
    n_present = int(present.sum())
    if n_present < 2 or (absent_classes == "image_only" and n_present < logits.shape[1]):
        return image_axis  # no text term exists: nothing to average it with
    return (image_axis + per_text[present].mean()) / 2


def clip_loss(logits: torch.Tensor, labels: torch.Tensor,
              weight: torch.Tensor | None = None, absent_classes: str = "image_only"
              ) -> torch.Tensor:
    """Symmetric CLIP loss with one text per class: image->text CE over classes, and for each
    class present, text->image CE over the batch with the class's images as (equal) targets.
    Absent classes have no text->image term (`absent_classes` applies to `lasted` only)."""
    n_classes = logits.shape[1]
    image_axis = F.cross_entropy(logits, labels, weight=weight)
    onehot = F.one_hot(labels, n_classes).to(logits.dtype)           # B x C
    present = onehot.sum(0) > 0
    log_p = F.log_softmax(logits.T, dim=1)                           # C x B, over images
    target = onehot.T / onehot.T.sum(1, keepdim=True).clamp_min(1)
    text_axis = -(target * log_p).sum(1)[present].mean()
    return (image_axis + text_axis) / 2


class ContrastiveHead(Head):
    def __init__(self, feature_dim: int, class_text: ClassText, loss: str = "lasted",
                 identity_projection: bool = False, logit_scale: nn.Parameter | None = None,
                 absent_classes: str = "image_only") -> None:
        super().__init__()
        if absent_classes not in ABSENT_CLASSES:
            raise ConfigError(f"train.absent_classes must be one of {', '.join(ABSENT_CLASSES)}"
                              f", got {absent_classes!r}")
        self.class_text = class_text
        text_dim = class_text.encoder.dim
        if identity_projection and feature_dim == text_dim:
            self.projection: nn.Module = nn.Identity()
        else:
            self.projection = nn.Linear(feature_dim, text_dim, bias=False)
        # The paired tower's own parameter (shared, not copied) or a new one.
        self.pretrained_scale = logit_scale is not None
        self.logit_scale = logit_scale if logit_scale is not None else nn.Parameter(
            torch.tensor(INIT_LOGIT_SCALE))
        self.loss_name, self.absent_classes = loss, absent_classes
        self._loss = lasted_loss if loss == "lasted" else clip_loss

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.projection(features.float()), dim=-1)
        text = self.class_text()
        return self.logit_scale.float().exp() * image @ text.T

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        return self._loss(logits, labels, weight, self.absent_classes)

    def own_parameters(self) -> list[nn.Parameter]:
        return [*self.projection.parameters(), self.logit_scale]

    @torch.no_grad()
    def after_step(self) -> None:
        self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def describe(self) -> dict:
        return {"loss": self.loss_name, "absent_classes": self.absent_classes,
                "logit_scale_init": "paired tower" if self.pretrained_scale else "ln(1/0.07)",
                "logit_scale": round(float(self.logit_scale.detach().exp()), 4)}


def _paired_scale(class_text: ClassText, identity_projection: bool) -> nn.Parameter | None:
    """The paired CLIP tower's `logit_scale`, when the head scores against that tower."""
    scale = getattr(class_text.encoder, "logit_scale", None)
    return scale if identity_projection and isinstance(scale, nn.Parameter) else None


def lasted(feature_dim: int, n_classes: int, class_text: ClassText,
           identity_projection: bool = False, absent_classes: str = "image_only") -> Head:
    """LASTED: language-guided contrastive head with the two-axis (image + text) loss."""
    return ContrastiveHead(feature_dim, class_text, "lasted", identity_projection,
                           _paired_scale(class_text, identity_projection), absent_classes)


def clip(feature_dim: int, n_classes: int, class_text: ClassText,
         identity_projection: bool = False, absent_classes: str = "image_only") -> Head:
    """The same cosine head trained with the symmetric CLIP loss."""
    return ContrastiveHead(feature_dim, class_text, "clip", identity_projection,
                           _paired_scale(class_text, identity_projection), absent_classes)


# batch_loss: the text axis couples the batch's images, so DDP computes it on the global batch
register_head(HeadSpec("lasted", lasted, uses_text=True, batch_loss=True))
register_head(HeadSpec("clip", clip, uses_text=True, batch_loss=True))
