"""`probe`: a linear probe on frozen image features (the CLIP paper's protocol): features are
extracted once, a multinomial logistic regression is fitted for each weight decay, and the one
that scores best on the *validation* split is kept (test never takes part in the choice)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import HEADS, Head
from .linear import LinearHead


class ProbeHead(LinearHead):
    trains = False  # fitted in closed loop on cached features, not by the SGD training loop


@HEADS.register("probe", uses_text=False, trains=False, frozen_image=True)
def probe(feature_dim: int, n_classes: int, **_: object) -> Head:
    """Linear probe on frozen image features, weight decay chosen on validation."""
    return ProbeHead(feature_dim, n_classes)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float,
                 max_iter: int = 200, class_weight: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch L-BFGS on standardised features; returns (weight C x D, bias C)."""
    w = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y, weight=class_weight)
        loss = loss + weight_decay * (w * w).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()
