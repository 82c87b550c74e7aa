"""Every real dataset format, from tiny generated fixture files: counts, class mapping by NAME
(each image's gray value encodes its class), splits and FERPlus's label rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_bench.classes import CANONICAL, CANONICAL8
from fer_bench.data.ferplus import process_votes

from .test_datasets_fixtures import (
    COUNTS,
    FP_COLS,
    _cache_dir,  # noqa: F401  (autouse: cache under tmp_path)
    _v,
    decoded_classes,
    load,
    write_affectnet_lists,
    write_affectnet_npy,
    write_fer_csv,
    write_fer_folder,
    write_ferplus,
    write_ferplus_folders,
    write_generic_folder,
    write_rafdb,
)


def assert_consistent(ds, classes=CANONICAL) -> None:
    """Every image's encoded class equals its label's class, by name."""
    assert ds.classes == classes
    for split in ds.splits.values():
        names = [ds.classes[i] for i in split.labels.tolist()]
        encoded = [CANONICAL8[i] for i in decoded_classes(split.images)]
        assert names == encoded


def counts(ds) -> dict:
    return ds.stats()["splits"]


def per_class(n: dict[str, int], classes=CANONICAL) -> dict[str, int]:
    return {c: n.get(c, 0) for c in classes}


FULL = {s: per_class({c: k for c in CANONICAL}) for s, k in COUNTS.items()}


@pytest.mark.parametrize("icml", [False, True])
def test_fer2013_csv_and_icml_header(tmp_path, icml):
    path = write_fer_csv(tmp_path / ("icml_face_data.csv" if icml else "fer2013.csv"), icml=icml)
    ds = load(f"fer2013:{path}")
    assert counts(ds) == FULL
    assert ds.splits["train"].images.shape[1:] == (1, 48, 48)
    assert ds.splits["train"].images.dtype == torch.uint8
    assert_consistent(ds)


def test_fer2013_directory_holding_csv(tmp_path):
    write_fer_csv(tmp_path / "fer2013" / "fer2013.csv")   # torchvision's root/fer2013/ layout
    assert counts(load(f"fer2013:{tmp_path}")) == FULL


def test_fer2013_roundtrip_exact_pixels(tmp_path):
    """SynFER written as fer2013.csv comes back bit-identical (the fast parser is exact)."""
    from fer_bench.data.synfer import generate, write_fer2013_csv

    src = generate(n=700, seed=3)
    path = write_fer2013_csv(src, tmp_path / "fer2013.csv")
    ds = load(f"fer2013:{path}")
    for s in ("train", "val", "test"):
        assert torch.equal(ds.splits[s].images, src.splits[s].images)
        assert torch.equal(ds.splits[s].labels, src.splits[s].labels)


def test_fer2013_folder_prefix_split(tmp_path):
    ds = load(f"fer2013:{write_fer_folder(tmp_path)}")
    assert counts(ds) == FULL            # PublicTest_ -> val, PrivateTest_ -> test
    assert "prefix" in ds.meta["test_split"]
    assert_consistent(ds)


def test_fer2013_folder_without_prefixes(tmp_path):
    ds = load(f"fer2013:{write_fer_folder(tmp_path, prefixes=False)}#val_fraction=0.34")
    c = counts(ds)
    assert c["test"] == per_class({k: 3 for k in CANONICAL})   # all of test/ (val + test)
    assert c["val"] == per_class({k: 1 for k in CANONICAL})    # held out of train
    assert c["train"] == per_class({k: 2 for k in CANONICAL})
    assert "no PublicTest_" in ds.meta["test_split"] and "held out" in ds.meta["val_split"]
    assert_consistent(ds)


@pytest.mark.parametrize("votes, expected", [
    (_v(fear=5, surprise=5), None),
    (_v(fear=6, surprise=1, anger=1, sadness=1, neutral=1), "fear"),
    (_v(neutral=1, happiness=1, surprise=1, sadness=1, anger=1, disgust=1, fear=1, contempt=1,
        unknown=1, NF=1), None),
    (_v(NF=10), None),
    (_v(unknown=7, fear=3), None),
    (_v(disgust=5, anger=4, fear=1), "disgust"),
])
def test_ferplus_majority_rule(votes, expected):
    w = process_votes(np.array(votes, dtype=float), "majority")
    top = int(np.argmax(w))
    assert (FP_COLS[top] if top < 8 else None) == {"fear": "fear", "disgust": "disgust",
                                                   None: None}[expected]


def test_ferplus_probability_and_multi_target_rules():
    w = process_votes(np.array(_v(fear=6, surprise=4), float), "probability")
    assert w[FP_COLS.index("fear")] == pytest.approx(0.6)
    assert w[FP_COLS.index("surprise")] == pytest.approx(0.4)
    m = process_votes(np.array(_v(fear=6, surprise=2, anger=2), float), "multi_target")
    assert m[FP_COLS.index("fear")] == 1.0 and m[FP_COLS.index("anger")] == 0   # 2 < 30% of 10
    m = process_votes(np.array(_v(fear=5, surprise=4, anger=1), float), "multi_target")
    assert m[FP_COLS.index("fear")] == pytest.approx(5 / 9)      # single vote dropped first
    assert m[FP_COLS.index("surprise")] == pytest.approx(4 / 9)


FP_TRAIN8 = per_class({"angry": 3, "disgust": 4, "fear": 5, "happy": 3, "sad": 3, "surprise": 3,
                       "neutral": 3, "contempt": 1}, CANONICAL8)


def test_ferplus_csv_majority(tmp_path):
    write_ferplus(tmp_path)
    ds = load(f"ferplus:{tmp_path}")
    assert ds.classes == CANONICAL8
    c = counts(ds)
    assert c["train"] == FP_TRAIN8
    assert c["val"] == per_class({k: 2 for k in CANONICAL}, CANONICAL8)
    assert c["test"] == per_class({k: 1 for k in CANONICAL}, CANONICAL8)
    assert ds.splits["train"].targets is None
    assert_consistent(ds, CANONICAL8)


def test_ferplus7_drops_contempt(tmp_path):
    votes, _ = write_ferplus(tmp_path)
    ds = load(f"ferplus7:{votes}")          # the votes file itself also works
    assert ds.classes == CANONICAL
    assert counts(ds)["train"] == {k: v for k, v in FP_TRAIN8.items() if k != "contempt"}
    assert_consistent(ds)


def test_ferplus_probability_targets(tmp_path):
    write_ferplus(tmp_path)
    ds = load(f"ferplus:{tmp_path}#mode=probability")
    train = ds.splits["train"]
    assert train.targets is not None and train.targets.shape == (len(train), 8)
    assert torch.allclose(train.targets.sum(1), torch.ones(len(train)))
    # labels are a top class (ties: the reference's first in FERPlus column order)
    assert torch.equal(train.targets.gather(1, train.labels[:, None])[:, 0],
                       train.targets.max(1).values)
    # the fear 6 / surprise 4 row keeps both as soft targets
    fi, si = CANONICAL8.index("fear"), CANONICAL8.index("surprise")
    assert ((train.targets[:, fi] - 0.6).abs() < 1e-6).any()
    assert ((train.targets[:, si] - 0.4).abs() < 1e-6).any()
    # the 5/5 tie is kept here (reference rule), so train differs from majority; val/test don't
    assert len(train) == sum(FP_TRAIN8.values()) + 1
    assert ds.splits["val"].targets is None and ds.meta["targets"] == "probability"
    assert counts(ds)["test"] == per_class({k: 1 for k in CANONICAL}, CANONICAL8)


def test_ferplus_multi_target(tmp_path):
    write_ferplus(tmp_path)
    ds = load(f"ferplus:{tmp_path}#mode=multi_target")
    t = ds.splits["train"].targets
    assert set(t.unique().tolist()) <= {0.0, 1.0} and (t.sum(1) >= 1).all()
    assert (t.sum(1) == 2).any()                       # fear 6 / surprise 4: both accepted


def test_ferplus_generated_folders(tmp_path):
    ds = load(f"ferplus:{write_ferplus_folders(tmp_path)}")
    assert counts(ds) == {s: per_class({c: k for c in CANONICAL8}, CANONICAL8)
                          for s, k in COUNTS.items()}
    assert_consistent(ds, CANONICAL8)


@pytest.mark.parametrize("kind", ["aligned", "original"])
def test_rafdb_order_and_images(tmp_path, kind):
    ds = load(f"rafdb:{write_rafdb(tmp_path, kind)}#val_fraction=0.34")
    assert ds.meta["format"] == f"rafdb-{kind}"
    assert ds.splits["train"].images.shape[1:] == (3, 100, 100)
    c = counts(ds)
    assert c["test"] == per_class({k: 1 for k in CANONICAL})
    assert c["val"] == per_class({k: 1 for k in CANONICAL})   # held out of train
    assert c["train"] == per_class({k: 2 for k in CANONICAL})
    assert_consistent(ds)


def test_rafdb_basic_dir_and_size_option(tmp_path):
    write_rafdb(tmp_path)
    ds = load(f"rafdb:{tmp_path / 'basic'}#size=64,channels=1")
    assert ds.splits["test"].images.shape[1:] == (1, 64, 64)


@pytest.mark.parametrize("name, classes", [("affectnet", CANONICAL), ("affectnet8", CANONICAL8)])
def test_affectnet_lists(tmp_path, name, classes):
    ds = load(f"{name}:{write_affectnet_lists(tmp_path)}#size=32,val_fraction=0.34")
    c = counts(ds)
    assert c["test"] == per_class({k: 1 for k in classes}, classes)   # validation.csv
    assert c["train"] == per_class({k: 2 for k in classes}, classes)
    assert ds.meta["dropped"]["train"] == {"none": 1, "uncertain": 1, "no-face": 1,
                                           **({"contempt": 3} if name == "affectnet" else {})}
    assert_consistent(ds, classes)


def test_affectnet_crop(tmp_path):
    ds = load(f"affectnet:{write_affectnet_lists(tmp_path)}#size=16,crop=1")
    assert ds.meta["crop"] and ds.splits["test"].images.shape[-1] == 16
    assert_consistent(ds)


def test_affectnet_npy_layout(tmp_path):
    ds = load(f"affectnet8:{write_affectnet_npy(tmp_path)}#size=32,val_fraction=0.34")
    assert ds.meta["format"] == "affectnet-npy"
    assert counts(ds)["test"] == per_class({k: 1 for k in CANONICAL8}, CANONICAL8)
    assert ds.meta["dropped"]["test"] == {"uncertain": 1}
    assert_consistent(ds, CANONICAL8)


def test_folder_synonyms(tmp_path):
    ds = load(f"folder:{write_generic_folder(tmp_path)}")
    assert counts(ds) == FULL
    assert ds.splits["train"].images.shape[1:] == (1, 24, 24)
    assert_consistent(ds)


def test_folder_without_val_holds_out(tmp_path):
    ds = load(f"folder:{write_generic_folder(tmp_path, val=False)}#val_fraction=0.34")
    assert counts(ds)["val"] == per_class({k: 1 for k in CANONICAL})
    assert "held out" in ds.meta["val_split"]


FEAR_SPECS = {
    "fer2013": lambda p: f"fer2013:{write_fer_csv(p / 'fer2013.csv')}",
    "icml": lambda p: f"fer2013:{write_fer_csv(p / 'icml_face_data.csv', icml=True)}",
    "fer2013-folder": lambda p: f"fer2013:{write_fer_folder(p)}",
    "ferplus": lambda p: (write_ferplus(p), f"ferplus:{p}")[1],
    "ferplus-folders": lambda p: f"ferplus:{write_ferplus_folders(p)}",
    "rafdb": lambda p: f"rafdb:{write_rafdb(p)}",
    "affectnet": lambda p: f"affectnet:{write_affectnet_lists(p)}#size=24",
    "affectnet-npy": lambda p: f"affectnet:{write_affectnet_npy(p)}#size=24",
    "folder": lambda p: f"folder:{write_generic_folder(p)}",
}


@pytest.mark.parametrize("fmt", sorted(FEAR_SPECS))
def test_fear_arrives_as_fear(tmp_path, fmt):
    """An image labelled fear in each format's own coding is `fear` after loading."""
    ds = load(FEAR_SPECS[fmt](tmp_path))
    fear_value = 20 + 30 * CANONICAL8.index("fear")
    for split in ds.splits.values():
        is_fear = split.labels == ds.classes.index("fear")
        assert is_fear.any()
        means = split.images[is_fear].float().mean(dim=(1, 2, 3))
        assert torch.allclose(means, torch.full_like(means, fear_value), atol=2)


def test_ten_crop_matches_torchvision_order():
    from torchvision.transforms import functional as TF

    from fer_bench.data.transforms import merge_crops, ten_crop

    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    ours = ten_crop(x, 4)
    assert ours.shape == (2, 10, 1, 4, 4)
    for b in range(2):
        ref = TF.ten_crop(x[b], [4, 4])
        for k in range(10):
            assert torch.equal(ours[b, k], ref[k])
    logits = torch.arange(20 * 3, dtype=torch.float32).view(20, 3)
    assert torch.equal(merge_crops(logits), logits.view(2, 10, 3).mean(1))


def test_preprocess_ten_crop_shapes():
    from fer_bench.backbones.base import BackboneConfig
    from fer_bench.data.transforms import Preprocess

    cfg = BackboneConfig("t", "timm", "t", "none", (32, 32), (0.5,), (0.5,), in_chans=3)
    out = Preprocess(cfg).ten_crop(torch.full((3, 1, 48, 48), 255, dtype=torch.uint8))
    assert out.shape == (30, 3, 32, 32) and torch.allclose(out, torch.ones_like(out))


def test_soft_target_losses():
    from fer_bench.data.targets import soft_target_loss

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    logp = logits.log_softmax(1)
    onehot = torch.tensor([[1.0, 0.0, 0.0]])
    assert soft_target_loss(logits, onehot, "probability") == pytest.approx(-logp[0, 0].item())
    soft = torch.tensor([[0.6, 0.4, 0.0]])
    assert soft_target_loss(logits, soft, "probability") == pytest.approx(
        -(0.6 * logp[0, 0] + 0.4 * logp[0, 1]).item())
    multi = torch.tensor([[0.0, 1.0, 1.0]])   # best accepted class counts
    assert soft_target_loss(logits, multi, "multi_target") == pytest.approx(-logp[0, 1].item())


def test_split_rejects_bad_targets():
    from fer_bench.data import Split

    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="targets must be float N x classes"):
        Split(images, torch.zeros(2, dtype=torch.int64), torch.zeros(3, 7))
