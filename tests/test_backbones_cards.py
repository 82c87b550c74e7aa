"""Shipped cards: every one resolves, reports its config, and its cached [measured] table
matches a fresh measurement (meta device, nothing downloaded)."""

from pathlib import Path

import pytest

from fer_bench.backbones import cards, create_backbone, describe, parse_spec
from fer_bench.backbones.base import CLIP_MEAN, SUMMARY_FIELDS
from fer_bench.backbones.cards import MEASURED_KEYS, measured_table, read_card
from fer_bench.errors import ConfigError, UnknownNameError

CLIP = ["clip_rn50", "clip_rn50x4", "clip_rn50x16", "clip_rn50x64", "clip_vit_b32",
        "clip_vit_b16", "clip_vit_l14", "clip_vit_l14_336"]
REQUIRED = CLIP + ["clip_vit_b16_laion2b", "resnet18", "resnet50", "convnext_tiny",
                   "efficientnet_b0", "vit_b16", "vgg_fer2013", "resmasking", "mini_xception",
                   "ir50"]
BIG = {"clip_rn50x16", "clip_rn50x64", "clip_vit_l14", "clip_vit_l14_336"}


def test_every_required_card_ships():
    assert set(REQUIRED) <= set(cards())


@pytest.mark.parametrize("name", sorted(cards()))
def test_card_resolves_and_reports_its_config(name):
    spec = parse_spec(name)
    assert spec.card is not None
    cfg = describe(name)
    row = cfg.summary()
    assert tuple(row) == SUMMARY_FIELDS
    assert cfg.feature_dim > 0 and cfg.params_m > 0 and cfg.gmacs > 0
    assert len(cfg.mean) == len(cfg.std) == cfg.in_chans
    assert cfg.interpolation in ("bilinear", "bicubic")
    assert read_card(spec.card).measured, f"{name}: run `fer-bench backbones measure --write`"


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in sorted(cards())])
def test_measured_table_matches_a_fresh_measurement(name):
    fresh = measured_table(describe(name, cached=False))
    cached = read_card(cards()[name]).measured
    assert set(cached) >= set(MEASURED_KEYS) - {"text_params_m"}
    for key, value in fresh.items():
        if isinstance(value, float):
            assert cached[key] == pytest.approx(value, abs=2e-3), key
        elif isinstance(value, tuple):
            assert tuple(cached[key]) == pytest.approx(value), key
        else:
            assert cached[key] == value, key


def test_clip_cards_use_openai_weights_with_quickgelu_and_clip_stats():
    for name in CLIP:
        card = read_card(cards()[name])
        assert card.family == "open_clip" and card.weights == "openai"
        assert card.model.endswith("-quickgelu"), name
        cfg = describe(name)
        assert cfg.text_tower and cfg.mean == pytest.approx(CLIP_MEAN)
    assert describe("clip_rn50x64").input_size == (448, 448)
    assert describe("clip_vit_l14_336").input_size == (336, 336)
    laion = read_card(cards()["clip_vit_b16_laion2b"])
    assert laion.weights.startswith("laion2b") and not laion.model.endswith("quickgelu")


def test_published_parameter_counts():
    rn50x64 = describe("clip_rn50x64")
    assert 615 < rn50x64.params_m + rn50x64.text_params_m < 630  # ~623 M with its text tower
    assert describe("clip_rn50").params_m + describe("clip_rn50").text_params_m == \
        pytest.approx(102.0, abs=0.1)
    assert describe("vit_b16").params_m == pytest.approx(85.8, abs=0.1)
    assert describe("ir50").params_m == pytest.approx(43.6, abs=0.1)       # face.evoLVe IR-50
    # 142.9 M as published counts the masking blocks' shared shortcuts twice
    assert describe("resmasking").params_m == pytest.approx(137.8, abs=0.1)
    assert describe("vgg_fer2013").params_m == pytest.approx(29.9, abs=0.1)
    assert describe("mini_xception").params_m < 0.06                       # "~60 k"


def test_image_only_cards_have_no_text_tower():
    for name in ("resnet18", "resnet50", "convnext_tiny", "efficientnet_b0", "vit_b16",
                 "vgg_fer2013", "resmasking", "mini_xception", "ir50"):
        assert not describe(name).text_tower, name
    assert describe("vit_b16").weights == "augreg2_in21k_ft_in1k"


def test_card_weights_override_keeps_architecture():
    cfg = describe("clip_rn50@none")
    assert cfg.weights == "none" and cfg.params_m == describe("clip_rn50").params_m


def test_user_card_directory_and_preprocess_overrides(tmp_path: Path, monkeypatch):
    (tmp_path / "my_r18.toml").write_text(
        'family = "timm"\nmodel = "resnet18"\nweights = "none"\nnotes = "mine"\n'
        '[preprocess]\ninput_size = 112\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n')
    monkeypatch.setenv("FER_BENCH_BACKBONES_PATH", str(tmp_path))
    bb = create_backbone("my_r18")
    cfg = bb.config
    assert (cfg.name, cfg.input_size, cfg.mean, cfg.notes) == ("my_r18", (112, 112),
                                                               (0.5,) * 3, "mine")
    full = describe("resnet18").gmacs
    assert full / 5 < cfg.gmacs < full / 3  # measured at 112 px, not 224
    assert describe("my_r18").input_size == (112, 112)  # no cache: measured on meta


@pytest.mark.parametrize("text, needle", [
    ('family = "timm"\nmodel = "resnet18"\ncolour = "red"\n', "unknown top-level key colour"),
    ('family = "tfhub"\nmodel = "x"\n', "unknown family 'tfhub'"),
    ('model = "x"\n', "family: is required"),
    ('family = "timm"\nmodel = "resnet18"\n[preprocess]\nsize = 3\n', "preprocess.size"),
    ('family = "timm"\nmodel = "resnet18"\n[preprocess]\ninput_size = "big"\n',
     "preprocess.input_size"),
    ('family = "timm"\nmodel = "resnet18"\n[preprocess]\ninput_sise = 96\n',
     "unknown key preprocess.input_sise (did you mean 'input_size'?)"),
    ('family = "timm"\nmodel = "resnet18"\n[train]\nlr = "fast"\n',
     "train.lr: expected a number, got 'fast'"),
    ('family = "timm"\nmodel = "resnet18"\nweights = "published"\n[source]\nurl = "u"\n'
     'file = "m.pth"\nlayout = "timm_pickle"\n', "needs source.arch"),
])
def test_bad_cards_name_the_file(tmp_path: Path, monkeypatch, text, needle):
    (tmp_path / "bad_card.toml").write_text(text)
    monkeypatch.setenv("FER_BENCH_BACKBONES_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="bad_card.toml") as e:
        parse_spec("bad_card")
    assert needle in str(e.value)


def test_unknown_names_suggest_cards_and_library_models():
    with pytest.raises(UnknownNameError, match="clip_rn50x64"):
        parse_spec("clip_rn50x46")
    with pytest.raises(UnknownNameError, match="timm:convnext_small"):
        parse_spec("convnext_smal")
    with pytest.raises(UnknownNameError, match="ViT-B-16"):
        parse_spec("open_clip:ViT-B-61")
