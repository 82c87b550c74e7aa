"""Training losses for soft targets (`Split.targets`, FERPlus `probability` / `multi_target`).

The engine uses these instead of plain cross-entropy on `labels` when a training split carries
`targets`; `kind` is the dataset's `meta["targets"]`. Evaluation always uses `labels`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TARGET_KINDS = ("probability", "multi_target")


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over the batch, as in FERPlus's reference code:
    probability: cross-entropy against the vote distribution, -sum_k t_k log p_k;
    multi_target: -log max_k (t_k p_k) with t multi-hot: the model is right when it puts its mass
    on ANY class the annotators accepted."""
    logp = F.log_softmax(logits.float(), dim=1)
    t = targets.to(logp.dtype)
    if kind == "probability":
        return -(t * logp).sum(1).mean()
    if kind == "multi_target":
        masked = logp.masked_fill(t <= 0, float("-inf"))
        return -masked.max(1).values.mean()
    raise ValueError(f"unknown target kind {kind!r} (expected one of {', '.join(TARGET_KINDS)})")
