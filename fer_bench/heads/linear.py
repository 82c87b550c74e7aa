"""`linear`: a cross-entropy classifier on image features (the study's baseline)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Head, HeadSpec, register_head


class LinearHead(Head):
    def __init__(self, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(feature_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.float())


def linear(feature_dim: int, n_classes: int, **_: object) -> Head:
    """Linear classifier trained with cross-entropy on image features."""
    return LinearHead(feature_dim, n_classes)


register_head(HeadSpec("linear", linear))
