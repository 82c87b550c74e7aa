"""Evaluation preprocessing as the libraries do it, checked against their own transforms (timm's
create_transform with crop_pct, open_clip's image_transform) on square and non-square images."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from fer_bench.backbones import create_backbone
from fer_bench.data.bad_rows import BadRows
from fer_bench.data.images import ImageJob, decode_images
from fer_bench.data.transforms import Preprocess

SIZES = [(300, 200), (200, 300), (48, 48), (64, 48), (60, 44)]


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
    return Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)


def _levels(ours: torch.Tensor, ref: torch.Tensor, std) -> torch.Tensor:
    return (ours - ref).abs() * torch.tensor(std).view(3, 1, 1) * 255


def _check(pre: Preprocess, transform, std) -> None:
    for i, (w, h) in enumerate(SIZES):
        im = _image(w, h, i)
        stored = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None]
        diff = _levels(pre(stored)[0], transform(im), std)
        assert diff.max() <= 2.01, (w, h, float(diff.max()))    # PIL's fixed-point rounding
        assert diff.mean() < 0.01, (w, h, float(diff.mean()))


@pytest.mark.parametrize("model", ["resnet18", "convnext_tiny"])
def test_timm_eval_transform(model):
    net = timm.create_model(model, pretrained=False)
    dc = resolve_data_config({}, model=net)
    assert dc["crop_pct"] < 1  # the centre crop is exercised
    pre = Preprocess(create_backbone(f"timm:{model}@none").config)
    assert pre.crop_pct == pytest.approx(dc["crop_pct"])
    _check(pre, create_transform(**dc), dc["std"])


def test_open_clip_eval_transform():
    _, _, transform = open_clip.create_model_and_transforms("ViT-B-32")
    pre = Preprocess(create_backbone("open_clip:ViT-B-32@none").config)
    _check(pre, transform, open_clip.OPENAI_DATASET_STD)


def test_non_square_files_are_stored_unsquashed(tmp_path):
    """A dataset of 60 x 44 files is stored at 60 x 44; a different-aspect image forced into
    it keeps its centred region instead of being squashed."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    _image(60, 44, 0).save(a)
    wide = np.zeros((44, 120, 3), np.uint8)
    wide[:, 30:90] = 200  # the centred 60 x 44 region is bright, the sides dark
    Image.fromarray(wide).save(b)
    images, keep = decode_images([ImageJob(a), ImageJob(b)], BadRows(False))
    assert images.shape == (2, 3, 44, 60) and keep.tolist() == [0, 1]
    assert images[1].min() == 200  # no dark side was squashed in
