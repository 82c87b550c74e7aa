"""Batched preprocessing on tensors (on the GPU when there is one): uint8 faces -> the backbone's
input. Augmentation and resizing are one affine grid sample, so no per-sample PIL work ever
happens in the training loop. Size, mean/std, channels and interpolation come from the backbone."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..backbones.base import BackboneConfig


@dataclass(frozen=True)
class Augment:
    """FER2013-style training augmentation (random crop ~ shift/scale, flip, small rotation)."""

    max_rotation_deg: float = 10.0
    max_shift: float = 0.08        # fraction of the image
    scale: tuple[float, float] = (0.9, 1.1)
    flip: bool = True


TEN_CROPS = 10
FER2013_CROP = 44 / 48   # the usual FER2013 crop: 44 of 48 pixels


def ten_crop(x: torch.Tensor, crop: int | tuple[int, int]) -> torch.Tensor:
    """B x C x H x W -> B x 10 x C x h x w: the four corners and the centre, then the five crops
    of the horizontally flipped image (torchvision TenCrop's order); batched slicing."""
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    h, w = x.shape[-2:]
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f"crop {ch}x{cw} does not fit images of {h}x{w}")
    top, left = (h - ch) // 2, (w - cw) // 2

    def five(y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[..., :ch, :cw], y[..., :ch, w - cw:], y[..., h - ch:, :cw],
                            y[..., h - ch:, w - cw:], y[..., top:top + ch, left:left + cw]], 1)

    return torch.cat([five(x), five(x.flip(-1))], 1)   # torchvision crops the flipped image


def merge_crops(logits: torch.Tensor, n_crops: int = TEN_CROPS) -> torch.Tensor:
    """(B * n_crops) x K logits of consecutive crops -> B x K, averaged over each image's crops."""
    return logits.view(-1, n_crops, logits.shape[-1]).mean(1)


class Preprocess:
    def __init__(self, cfg: BackboneConfig, image_size: int | None = None,
                 augment: Augment | None = None) -> None:
        size = cfg.input_size
        if image_size and not cfg.fixed_input_size:
            size = (image_size, image_size)
        self.size = tuple(size)
        self.in_chans = cfg.in_chans
        self.mode = "bicubic" if cfg.interpolation == "bicubic" else "bilinear"
        mean = cfg.mean if len(cfg.mean) == cfg.in_chans else cfg.mean[:1] * cfg.in_chans
        std = cfg.std if len(cfg.std) == cfg.in_chans else cfg.std[:1] * cfg.in_chans
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.augment = augment or Augment()
        self.crop_pct, self.resize_mode = float(cfg.crop_pct), cfg.resize_mode

    def describe(self) -> dict:
        return {"size": list(self.size), "in_chans": self.in_chans, "mode": self.mode,
                "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist(),
                "eval_resize": {"mode": self.resize_mode, "crop_pct": self.crop_pct,
                                "antialias": True, "round": "uint8"}}

    def eval_resize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] B x C x h x w -> B x C x H x W as timm's and open_clip's evaluation transforms
        do it on a PIL image: resize the shortest side to H / crop_pct (or, "squash", both
        sides), antialiased (torch's antialiased kernels are PIL's filters, bicubic a = -0.5),
        one axis at a time rounding to uint8 levels as PIL does, then centre-crop H x W."""
        h, w = x.shape[-2:]
        H, W = self.size
        if (h, w) == (H, W) and self.crop_pct == 1.0:
            return x
        scale = (math.floor(H / self.crop_pct), math.floor(W / self.crop_pct))
        if self.resize_mode == "squash" or scale[0] != scale[1]:
            target = scale
        else:  # torchvision Resize(int): the short side to `scale`, the long one truncated
            short, long = (h, w) if h <= w else (w, h)
            other = int(scale[0] * long / short)
            target = (scale[0], other) if h <= w else (other, scale[0])
        # PIL resamples width, then height, rounding to uint8 after each pass: so do we
        for size in ((h, target[1]), target):
            if size != tuple(x.shape[-2:]):
                x = F.interpolate(x, size=size, mode=self.mode, align_corners=False,
                                  antialias=True).mul_(255).round_().clamp_(0, 255).div_(255)
        top, left = int(round((target[0] - H) / 2.0)), int(round((target[1] - W) / 2.0))
        return x[..., top:top + H, left:left + W]

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.in_chans:
            return x
        if self.in_chans == 3 and x.shape[1] == 1:  # gray faces replicated for RGB models
            return x.expand(-1, 3, -1, -1)
        if self.in_chans == 1 and x.shape[1] == 3:  # ITU-R 601 luma
            w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
            return (x * w).sum(1, keepdim=True)
        raise ValueError(f"cannot map {x.shape[1]} image channels to {self.in_chans}")

    def __call__(self, images: torch.Tensor, train: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 B x C x h x w (on any device) -> normalised float B x in_chans x H x W."""
        x = images.float().div_(255.0)
        x = self._random_affine(x, generator) if train else self.eval_resize(x)
        x = self._channels(x)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    def ten_crop(self, images: torch.Tensor, crop_fraction: float = FER2013_CROP) -> torch.Tensor:
        """Test-time ten-crop: uint8 B x C x h x w -> normalised float (B * 10) x in_chans x H x W,
        image i's crops at rows 10 i .. 10 i + 9; average the model's outputs with
        `merge_crops`."""
        x = images.float().div_(255.0)
        h, w = x.shape[-2:]
        crops = ten_crop(x, (max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))))
        x = crops.flatten(0, 1)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode=self.mode, align_corners=False,
                              antialias=x.shape[-1] > self.size[-1])
        x = self._channels(x)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    def _random_affine(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, a = x.shape[0], self.augment
        r = torch.rand(b, 5, generator=generator).to(x.device)
        angle = (r[:, 0] * 2 - 1) * math.radians(a.max_rotation_deg)
        scale = a.scale[0] + r[:, 1] * (a.scale[1] - a.scale[0])
        tx, ty = (r[:, 2] * 2 - 1) * a.max_shift * 2, (r[:, 3] * 2 - 1) * a.max_shift * 2
        flip = torch.where(r[:, 4] < 0.5, -1.0, 1.0) if a.flip else torch.ones_like(scale)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                             torch.stack([sin * flip, cos, ty], 1)], 1)
        # a non-square image: sample its centred region of the output's aspect (never squash)
        ratio = (x.shape[-1] / x.shape[-2]) / (self.size[1] / self.size[0])
        if ratio != 1.0:
            theta = theta * theta.new_tensor([[1 / ratio], [1.0]] if ratio > 1
                                             else [[1.0], [ratio]])
        grid = F.affine_grid(theta, [b, x.shape[1], *self.size], align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="border", align_corners=False)
