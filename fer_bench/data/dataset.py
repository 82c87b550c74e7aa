"""The in-memory form every dataset loader produces: compact uint8 images, canonical labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Split:
    """One split. `images` is uint8 N x C x H x W (C = 1 for grayscale faces, 3 for colour);
    `labels` is int64 N, indices into the owning dataset's `classes` (the hard label that
    evaluation uses). `targets`, when set, is float32 N x len(classes): soft training targets
    (FERPlus `probability`: rows sum to 1; `multi_target`: multi-hot rows); the dataset's
    `meta["targets"]` names which kind."""

    images: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), "
                             f"got {tuple(self.labels.shape)}")
        if self.targets is not None and (self.targets.ndim != 2 or self.targets.shape[0]
                                         != self.images.shape[0]
                                         or not self.targets.is_floating_point()):
            raise ValueError(f"targets must be float N x classes with N = "
                             f"{self.images.shape[0]}, got {self.targets.dtype} "
                             f"{tuple(self.targets.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self, n_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=n_classes).tolist()


@dataclass
class FERDataset:
    """A loaded dataset: canonical class names (in canonical order) and its splits."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    meta: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"dataset {self.name!r} has no {name!r} split "
                           f"(has: {', '.join(self.splits)})")
        return self.splits[name]

    def stats(self) -> dict:
        """Per split, per class counts (the `data stats` contract)."""
        return {
            "dataset": self.name,
            "classes": list(self.classes),
            "splits": {
                s: dict(zip(self.classes, self.splits[s].counts(len(self.classes)), strict=True))
                for s in SPLITS if s in self.splits
            },
        }
