"""The Head interface and the class-text module shared by the language-guided heads."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

HEADS: Registry[Callable[..., Head]] = Registry("head", "fer_bench.heads")


class Head(nn.Module):
    """features (B x D) -> logits (B x C); `loss(logits, labels)` is what training minimises."""

    uses_text: bool = False  # needs a text encoder and a prompt set

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


class ClassText(nn.Module):
    """Class embeddings from a prompt set: per class, L2-normalised prompt embeddings averaged and
    renormalised (prompt ensembling). With a frozen encoder they are computed once and cached;
    with a trainable one they are recomputed on every training forward."""

    def __init__(self, encoder: nn.Module, prompts: list[list[str]]) -> None:
        super().__init__()
        self.encoder = encoder
        flat = [p for ps in prompts for p in ps]
        self.n_classes = len(prompts)
        tokens = encoder.tokenize(flat)
        for k, v in tokens.items():
            self.register_buffer(f"tok_{k}", v, persistent=False)
        self._token_keys = list(tokens)
        owner = torch.tensor([c for c, ps in enumerate(prompts) for _ in ps])
        self.register_buffer("owner", owner, persistent=False)
        self._cache: torch.Tensor | None = None

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.encoder.parameters())

    def _compute(self) -> torch.Tensor:
        tokens = {k: getattr(self, f"tok_{k}") for k in self._token_keys}
        emb = F.normalize(self.encoder.encode(tokens).float(), dim=-1)
        summed = torch.zeros(self.n_classes, emb.shape[1], device=emb.device, dtype=emb.dtype)
        summed = summed.index_add(0, self.owner, emb)
        return F.normalize(summed, dim=-1)

    def forward(self) -> torch.Tensor:
        """C x T, unit rows."""
        if self.trainable and torch.is_grad_enabled():
            self._cache = None
            return self._compute()
        if self._cache is None or self._cache.device != self.owner.device:
            with torch.no_grad():
                self._cache = self._compute()
        return self._cache

    def invalidate(self) -> None:
        self._cache = None


def create_head(name: str, **kwargs) -> Head:
    return HEADS.get(name).obj(**kwargs)
