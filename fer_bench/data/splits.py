"""Assembling splits: a held-out validation split for datasets that ship without one."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Split


def holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic split of indices into (keep, held_out): `fraction` of each
    class (at least one image of every class with two or more) goes to held_out."""
    rng = np.random.default_rng(seed)
    keep, out = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(fraction * idx.size))
        k = min(max(k, 1), idx.size - 1) if idx.size >= 2 else 0
        out.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(out))


def make_split(images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None = None
               ) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images)),
                 torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
                 None if targets is None else torch.from_numpy(
                     np.ascontiguousarray(targets, dtype=np.float32)))
