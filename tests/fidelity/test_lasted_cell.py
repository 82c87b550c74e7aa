"""The `lasted` cell as LASTED runs it: the paired tower's own logit scale (shared, trainable,
clamped after the step, recorded), drop_last, and the class text cache keyed by precision."""

from __future__ import annotations

import math

import pytest
import torch

from fer_bench.heads.contrastive import INIT_LOGIT_SCALE
from fer_bench.plan import Cell, TrainConfig
from fer_bench.tensor_cache import TensorCache
from fer_bench.train.engine import build_model, epoch_steps, run_cell

from ..conftest import TINY
from .tiny_clip import register


def _cell(backbone: str, regime: str = "image", **train) -> Cell:
    return Cell(backbone, "lasted", TINY, 0, "classnames", "default",
                TrainConfig(regime=regime, device="cpu", pretrained=False, epochs=1,
                            batch_size=64, **train))


def test_paired_tower_scale_is_the_head_scale(tiny_dataset):
    model, text, resolved = build_model(_cell(f"open_clip:{register()}@none"), tiny_dataset)
    scale = model.head.logit_scale
    assert scale is text.clip.logit_scale          # the tower's own parameter, not a copy
    assert scale.requires_grad                     # trains even with the text tower frozen
    assert not model.head.class_text.trainable     # ...whose embeddings stay cached
    assert all(not p.requires_grad for p in text.encoding_parameters())


def test_unpaired_head_starts_at_clip_init(tiny_dataset):
    model, _, _ = build_model(_cell("fer_cnn"), tiny_dataset)
    assert model.head.logit_scale.item() == pytest.approx(INIT_LOGIT_SCALE)
    assert not model.head.pretrained_scale


def test_trained_scale_is_recorded_and_capped():
    out = run_cell(_cell("fer_cnn", lr=0.5, absent_classes="image_only", grad_clip=0.0))
    head = out.resolved["head"]
    assert head["loss"] == "lasted" and head["absent_classes"] == "image_only"
    assert 0 < head["logit_scale"] <= 100.0 + 1e-3
    assert head["logit_scale"] != pytest.approx(math.exp(INIT_LOGIT_SCALE))  # it trained


def test_drop_last():
    assert epoch_steps(100, 48, drop_last=True) == 2
    assert epoch_steps(100, 48, drop_last=False) == 3
    assert epoch_steps(40, 48, drop_last=True) == 1  # never zero steps


def test_text_cache_keyed_by_precision(tiny_dataset, tmp_path):
    """Fill the class text cache in bf16, read in fp32: a miss, not bf16 embeddings reused."""
    cache = TensorCache(root=tmp_path)
    model, _, _ = build_model(_cell("fer_cnn"), tiny_dataset, cache)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.head.class_text()
    model2, _, _ = build_model(_cell("fer_cnn"), tiny_dataset, cache)
    fp32 = model2.head.class_text()
    assert [e["status"] for e in cache.log] == ["miss", "miss"]
    assert not torch.equal(bf16, fp32)
    model3, _, _ = build_model(_cell("fer_cnn"), tiny_dataset, cache)
    assert torch.equal(model3.head.class_text(), fp32) and cache.log[-1]["status"] == "hit"
