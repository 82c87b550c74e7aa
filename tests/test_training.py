"""Heads, regimes and training options end to end on small data."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from fer_bench.backbones import register_backbone
from fer_bench.classes import CANONICAL
from fer_bench.cli import app
from fer_bench.data import DATASETS, FERDataset, Split
from fer_bench.plan import Cell, TrainConfig
from fer_bench.text import TextEncoder
from fer_bench.train.engine import build_model, run_cell

from .conftest import TINY

runner = CliRunner()


# --- a world where image and text embeddings agree by construction -------------------------
class KeywordText(TextEncoder):
    """Embeds a prompt as the one-hot of the class word it contains."""

    name, dim, weights = "keyword", 7, "none"
    words = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def tokenize(self, texts):
        return {"input_ids": torch.tensor([next(i for i, w in enumerate(self.words) if w in t)
                                           for t in texts])}

    def encode(self, tokens):
        return F.one_hot(tokens["input_ids"], 7).float() + 0 * self.dummy


class IntensityEncoder(nn.Module):
    """Image of constant grey level 30 * k + 10 -> one-hot of class k."""

    def forward(self, x):
        level = (x.mean((1, 2, 3)) * 255 - 10) / 30
        return F.one_hot(level.round().long().clamp(0, 6), 7).float()


@pytest.fixture(scope="module")
def aligned_world():
    register_backbone("aligned_toy", input_size=8, in_chans=1, mean=(0.0,), std=(1.0,),
                      text_tower=KeywordText, feature_dim=7)(lambda: IntensityEncoder())

    def make(n: int) -> Split:
        labels = torch.arange(n) % 7
        images = (labels * 30 + 10).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8)
        return Split(images.contiguous(), labels)

    DATASETS.register("aligned_toy", lambda arg=None, spec="": FERDataset(
        "aligned_toy", CANONICAL, {"train": make(70), "val": make(14), "test": make(21)}),
        overwrite=True)


def test_zeroshot_predicts_perfectly_when_embeddings_agree(aligned_world):
    cell = Cell("aligned_toy", "zeroshot", "aligned_toy", 0, "classnames", "default",
                TrainConfig())
    out = run_cell(cell)
    assert out.metrics["accuracy"] == 1.0 and out.history == []
    assert out.resolved["text_encoder"]["name"] == "keyword"


def test_zeroshot_without_paired_tower_is_rejected(tiny_dataset):
    from fer_bench.errors import ConfigError

    cell = Cell("fer_cnn", "zeroshot", TINY, 0, "classnames", "minilm", TrainConfig())
    with pytest.raises(ConfigError, match="paired"):
        build_model(cell, tiny_dataset)


# --- regimes freeze exactly what they say ---------------------------------------------------
@pytest.mark.parametrize("regime,image_trains,text_trains", [
    ("full", True, True), ("image", True, False), ("text", False, True),
    ("frozen", False, False), ("partial:1", "last", False),
])
def test_regimes_freeze_exactly(tiny_dataset, regime, image_trains, text_trains):
    cfg = TrainConfig(regime=regime, lr=1e-2, batch_size=16)
    cell = Cell("fer_cnn", "lasted", TINY, 0, "classnames", "minilm", cfg)
    model, text, _ = build_model(cell, tiny_dataset)
    enc = model.backbone.encoder
    before_img = {k: v.clone() for k, v in enc.state_dict().items()}
    before_txt = {k: v.clone() for k, v in text.state_dict().items()}
    from fer_bench.train.regimes import encoder_blocks

    blocks = encoder_blocks(enc)
    last_block_params = {id(p) for p in blocks[-1].parameters()}
    for p in enc.parameters():
        expect = image_trains is True or (image_trains == "last" and id(p) in last_block_params)
        assert p.requires_grad == expect
    assert all(p.requires_grad == text_trains for p in text.parameters())
    assert all(p.requires_grad for p in model.head.projection.parameters())

    from fer_bench.data.transforms import Preprocess
    from fer_bench.train.regimes import freeze_norm_statistics

    pre = Preprocess(model.backbone.config)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    freeze_norm_statistics(model)
    split = tiny_dataset.split("train")
    x, y = pre(split.images[:16], train=True), split.labels[:16]
    model.head.loss(model(x), y).backward()
    opt.step()
    after_img, after_txt = enc.state_dict(), text.state_dict()
    changed_img = {k for k in before_img if not torch.equal(before_img[k], after_img[k])}
    changed_txt = {k for k in before_txt if not torch.equal(before_txt[k], after_txt[k])}
    assert bool(changed_txt) == text_trains
    if image_trains is True:
        assert changed_img
    elif image_trains == "last":
        last = {f"features.{n}" for n, m in enc.features.named_children() if m is blocks[-1]}
        assert changed_img and all(k.rsplit(".", 2)[0] in last for k in changed_img)
    else:
        assert not changed_img  # bit-identical, BatchNorm running stats included


def test_linear_with_text_regime_is_rejected_before_work(tmp_path: Path):
    res = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "linear", "--train",
                              "text", "--dataset", TINY, "--out", str(tmp_path), "--quiet"])
    assert res.exit_code != 0 and not (tmp_path / "cells").exists()


# --- the head matrix end to end -------------------------------------------------------------
@pytest.fixture(scope="module")
def head_matrix(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("heads")
    res = runner.invoke(app, [
        "run", "--backbones", "fer_cnn", "--heads", "lasted,clip,linear,probe",
        "--prompts", "facs,learned:2", "--text-encoder", "minilm", "--dataset", TINY,
        "--epochs", "1", "--train", "image", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json"))]


def test_every_head_runs(head_matrix):
    heads = sorted((r["head"], r["prompts"]) for r in head_matrix)
    assert heads == [("clip", "facs"), ("clip", "learned:2"), ("lasted", "facs"),
                     ("lasted", "learned:2"), ("linear", None), ("probe", None)]
    assert all(r["status"] == "ok" for r in head_matrix)
    probe = next(r for r in head_matrix if r["head"] == "probe")
    assert probe["config"]["resolved"]["regime"]["regime"] == "frozen"
    chosen = probe["history"][-1]["chosen_weight_decay"]
    assert chosen in probe["config"]["train"]["probe_weight_decays"]


def test_learned_prompts_are_trained_and_saved(head_matrix):
    from safetensors.torch import load_file  # noqa: F401  (the format the runner writes)

    learned = [r for r in head_matrix if r["prompts"] == "learned:2"]
    regimes = [r["config"]["resolved"]["regime"] for r in learned]
    # text tower frozen by the regime, but the context vectors train
    assert all(0 < reg["trainable_text_params_m"] < 0.01 for reg in regimes)


@pytest.mark.parametrize("options", [
    {"balance": "sampler"}, {"balance": "loss"}, {"logit_adjust": 1.0},
    {"prompt_sampling": True}, {"accum_steps": 2, "patience": 1},
])
def test_training_options_run_and_are_recorded(tiny_dataset, options):
    cfg = TrainConfig(epochs=2, batch_size=32, regime="image", **options)
    cell = Cell("fer_cnn", "lasted", TINY, 0, "clip_fer2013", "minilm", cfg)
    out = run_cell(cell)
    assert 0 <= out.metrics["accuracy"] <= 1
    for k, v in options.items():
        assert cell.config()["train"][k] == v


def test_cross_dataset_evaluation_maps_classes_by_name(aligned_world):
    from fer_bench.classes import CANONICAL8

    def make(n: int) -> Split:
        labels = torch.arange(n) % 8
        level = torch.where(labels == 7, 250, labels * 30 + 10)  # contempt: unknown to the model
        images = level.to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8)
        return Split(images.contiguous(), labels)

    DATASETS.register("aligned_toy8", lambda arg=None, spec="": FERDataset(
        "aligned_toy8", CANONICAL8, {"train": make(16), "val": make(16), "test": make(24)}),
        overwrite=True)
    cell = Cell("aligned_toy", "zeroshot", "aligned_toy", 0, "classnames", "default",
                TrainConfig(), ("aligned_toy8",))
    out = run_cell(cell)
    cross = out.cross["aligned_toy8"]
    assert cross["classes"] == list(CANONICAL)  # scored in the trained model's classes
    assert cross["n_test"] == 21 and cross["accuracy"] == 1.0
    assert cross["unscored_classes"] == {"contempt": 3}
    assert "ci" in cross
    assert len(out.cross_predictions["aligned_toy8"]["labels"]) == 21
