"""`probe`: a linear probe on frozen image features (the CLIP paper's protocol): features are
extracted once, a multinomial logistic regression is fitted for each weight decay, and the one
that scores best on the *validation* split is kept (test never takes part in the choice)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import FeatureFit, Head, HeadSpec, register_head
from .linear import LinearHead


class ProbeHead(LinearHead):
    """A linear layer whose weights come from `fit_probe`, not from the SGD loop."""


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


def fit_probe(head: Head, data: FeatureFit) -> list[dict]:
    """One logistic regression per weight decay on standardised features; the best on
    validation is folded (standardisation included) into the head's linear layer."""
    mean, std = data.train.mean(0), data.train.std(0).clamp_min(1e-6)
    ztr, zval = (data.train - mean) / std, (data.val - mean) / std
    history, best = [], None
    for wd in data.weight_decays:
        w, b = fit_logistic(ztr, data.train_labels, data.n_classes, float(wd),
                            class_weight=data.class_weight)
        score, record = data.score((zval @ w.T + b).argmax(1))
        history.append({"weight_decay": wd, **record})
        if best is None or score > best[0]:
            best = (score, wd, w, b)
    _, wd, w, b = best
    with torch.no_grad():
        head.fc.weight.copy_(w / std)
        head.fc.bias.copy_(b - (w / std) @ mean)
    history.append({"chosen_weight_decay": wd})
    return history


register_head(HeadSpec("probe", probe, trains=False, frozen_image=True, fit=fit_probe))
