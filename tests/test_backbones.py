import textwrap
from pathlib import Path

import pytest
import torch

from fer_bench.backbones import create_backbone, parse_spec
from fer_bench.errors import FerBenchError, UnknownNameError
from fer_bench.registry import load_plugin


def test_timm_random_init_features_and_preprocessing():
    bb = create_backbone("timm:resnet18@none")
    cfg = bb.config
    assert (cfg.family, cfg.model, cfg.weights) == ("timm", "resnet18", "none")
    assert cfg.feature_dim == 512 and cfg.input_size == (224, 224) and cfg.in_chans == 3
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406))
    assert 11 < cfg.params_m < 12
    assert bb(torch.randn(2, 3, 64, 64)).shape == (2, 512)


def test_no_pretrained_forces_random_init():
    assert create_backbone("timm:resnet18", pretrained=False).config.weights == "none"


def test_fer_cnn_is_grayscale_48px():
    bb = create_backbone("fer_cnn")
    assert bb.config.in_chans == 1 and bb.config.input_size == (48, 48)
    assert bb.config.weights == "none"
    assert bb(torch.randn(3, 1, 48, 48)).shape == (3, bb.config.feature_dim)


def test_unknown_names_suggest_closest():
    with pytest.raises(UnknownNameError, match="fer_cnn"):
        parse_spec("fer_cn")
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_backbone("timm:resnet181@none")


def test_missing_pretrained_weights_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FerBenchError, match="@none"):
        create_backbone("timm:resnet18.a1_in1k")


def test_plain_module_plugin_infers_dim(tmp_path: Path):
    plugin = tmp_path / "my_encoder.py"
    plugin.write_text(textwrap.dedent("""
        from torch import nn
        import fer_bench.backbones as fb

        @fb.register_backbone("tiny_plugin_net", input_size=32, in_chans=1,
                              mean=(0.5,), std=(0.5,))
        def tiny():
            return nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, 5))
    """))
    load_plugin(plugin)
    bb = create_backbone("tiny_plugin_net")
    assert bb.config.feature_dim == 5 and bb.config.input_size == (32, 32)
    assert bb.config.family == "custom"


def test_local_weights_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    a = create_backbone("fer_cnn")
    path = tmp_path / "fer_cnn.pt"
    torch.save(a.encoder.state_dict(), path)
    torch.manual_seed(1)
    b = create_backbone(f"fer_cnn@{path}")
    assert b.config.weights == str(path)
    x = torch.randn(2, 1, 48, 48)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_pickled_code_in_weights_is_refused(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": object()}, path)  # needs arbitrary unpickling
    with pytest.raises(FerBenchError, match="refused"):
        create_backbone(f"fer_cnn@{path}")


def test_open_clip_random_init_has_paired_text_tower():
    bb = create_backbone("open_clip:RN50@none")
    cfg = bb.config
    assert cfg.text_tower and cfg.input_size == (224, 224) and cfg.feature_dim == 1024
    assert cfg.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # CLIP's, not ImageNet's
    emb = bb.paired_text(["a photo of a fearful face", "a photo of a happy face"])
    assert emb.shape == (2, 1024)
    # parameters are owned once: the text tower does not also hold the image tower
    assert bb.paired_text.clip.visual is None


def test_timm_feature_dim_matches_output_for_conv_head_nets():
    bb = create_backbone("timm:mobilenetv3_small_100@none")
    assert bb(torch.randn(2, 3, 64, 64)).shape == (2, bb.config.feature_dim) == (2, 1024)
