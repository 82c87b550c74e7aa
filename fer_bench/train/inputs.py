"""What training steps and evaluations feed the model.

`ImageInputs`: uint8 images -> batched preprocessing -> backbone -> head, every step (the image
encoder trains, or the feature cache is off). `FeatureInputs`: the image encoder is frozen, so
its features are a pure function of (encoder weights, images, preprocessing, precision); they are
computed once, kept in a content-keyed on-disk cache shared by every cell that agrees on those
(other prompt sets, heads, text encoders, seeds of a pretrained encoder), and only the head runs
per step. A frozen encoder trains on un-augmented features (view 0); `train.feature_views = V`
adds V - 1 augmented views, each computed once with a fixed seed, cycled over epochs."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from ..data import Split
from ..data.transforms import Preprocess, merge_crops
from ..plan import TrainConfig
from ..tensor_cache import TensorCache, module_digest, tensor_digest
from . import distributed

FEATURES_VERSION = 2  # bump when the way features are computed changes (2: eval crop)


@torch.no_grad()
def forward_all(module: nn.Module, pre: Preprocess, images: torch.Tensor, device: torch.device,
                batch_size: int, autocast, tta: str = "none", merge: bool = True,
                channels_last: bool = False, augment_seed: int | None = None) -> torch.Tensor:
    """module(preprocessed images) for all images, in batches: float32 on the CPU. With
    tta="tencrop", each image's output is the mean over its ten crops (FER2013 convention), or
    with merge=False all ten (N x 10 x D). `augment_seed` applies training augmentation."""
    module.eval()
    distributed.sync_buffers(module)  # DDP: every rank evaluates rank 0's model
    rows = distributed.eval_range(len(images))  # DDP: this rank's slice; else all rows
    gen = torch.Generator().manual_seed(augment_seed) if augment_seed is not None else None
    out = []
    step = max(1, batch_size // 10) if tta == "tencrop" else batch_size
    for i in range(rows.start, rows.stop, step):
        batch = images[i:min(i + step, rows.stop)].to(device, non_blocking=True)
        x = pre.ten_crop(batch) if tta == "tencrop" else pre(batch, train=gen is not None,
                                                              generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            y = module(x).float()
        if tta == "tencrop":
            y = merge_crops(y) if merge else y.view(-1, 10, y.shape[-1])
        out.append(y.cpu())
    return distributed.gather_rows(torch.cat(out), len(images))  # DDP: all rows, in order


class ImageInputs:
    """Images through the whole model, every step."""

    def __init__(self, model: nn.Module, pre: Preprocess, device: torch.device, autocast,
                 cfg: TrainConfig, channels_last: bool = False) -> None:
        self.model, self.pre, self.device, self.autocast, self.cfg = (model, pre, device,
                                                                      autocast, cfg)
        self.module = model  # what the optimizer steps through
        self.channels_last = channels_last

    def train_batch(self, split: Split, idx: torch.Tensor, gen: torch.Generator,
                    epoch: int) -> torch.Tensor:
        images = split.images[idx].to(self.device, non_blocking=True)
        x = self.pre(images, train=True, generator=gen)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def logits(self, images: torch.Tensor, tta: str = "none", what: str = "") -> torch.Tensor:
        return forward_all(self.model, self.pre, images, self.device, self.cfg.eval_batch_size,
                           self.autocast, tta, channels_last=self.channels_last)

    def features(self, images: torch.Tensor, what: str = "") -> torch.Tensor:
        return forward_all(self.model.backbone, self.pre, images, self.device,
                           self.cfg.eval_batch_size, self.autocast,
                           channels_last=self.channels_last)


class FeatureInputs(ImageInputs):
    """Cached features of a frozen image encoder; only the head runs per step."""

    def __init__(self, model: nn.Module, pre: Preprocess, device: torch.device, autocast,
                 cfg: TrainConfig, cache: TensorCache, amp: str,
                 channels_last: bool = False) -> None:
        super().__init__(model, pre, device, autocast, cfg, channels_last)
        self.module = model.head
        self.cache = cache
        backbone = model.backbone
        self._key = {"kind": "features", "version": FEATURES_VERSION,
                     "backbone": backbone.config.to_dict(),
                     "encoder": module_digest(backbone.encoder),
                     "preprocess": pre.describe(), "amp": amp, "device": device.type}
        self._digests: dict[int, str] = {}
        self._memo: dict[tuple, torch.Tensor] = {}

    def _digest(self, images: torch.Tensor) -> str:
        if id(images) not in self._digests:
            self._digests[id(images)] = tensor_digest(images)
        return self._digests[id(images)]

    def cached_features(self, images: torch.Tensor, tta: str = "none", view: int = 0,
                        what: str = "") -> torch.Tensor:
        """N x D (N x 10 x D for ten-crop), float32 on the CPU; view > 0: augmented."""
        memo = (id(images), tta, view)
        if memo not in self._memo:
            key = {**self._key, "images": self._digest(images), "tta": tta, "view": view,
                   "augment": asdict(self.pre.augment) if view else None}

            def compute() -> torch.Tensor:
                return forward_all(self.model.backbone, self.pre, images, self.device,
                                   self.cfg.eval_batch_size, self.autocast, tta, merge=False,
                                   channels_last=self.channels_last,
                                   augment_seed=view if view else None)

            self._memo[memo] = self.cache.get(key, compute, what)
        return self._memo[memo]

    def train_batch(self, split: Split, idx: torch.Tensor, gen: torch.Generator,
                    epoch: int) -> torch.Tensor:
        view = (epoch - 1) % self.cfg.feature_views
        what = "train features" + (f" (view {view})" if view else "")
        return self.cached_features(split.images, view=view, what=what)[idx].to(
            self.device, non_blocking=True)

    def features(self, images: torch.Tensor, what: str = "") -> torch.Tensor:
        return self.cached_features(images, what=what)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, tta: str = "none", what: str = "") -> torch.Tensor:
        feats = self.cached_features(images, tta, what=what or "features")
        head = self.model.head
        head.eval()
        flat = feats.flatten(0, 1) if tta == "tencrop" else feats
        out = []
        for i in range(0, len(flat), self.cfg.eval_batch_size):
            with self.autocast():
                out.append(head(flat[i:i + self.cfg.eval_batch_size].to(self.device)).float()
                           .cpu())
        y = torch.cat(out)
        return merge_crops(y) if tta == "tencrop" else y


def frozen_image_encoder(model: nn.Module) -> bool:
    return not any(p.requires_grad for p in model.backbone.encoder.parameters())
