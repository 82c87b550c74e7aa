"""Every family builds (random init) and gives features of the declared dimension from a batch
at its input size; local weights files round-trip; absent weights fail fast."""

from pathlib import Path

import pytest
import torch

from fer_bench import weights as weights_mod
from fer_bench.backbones import create_backbone
from fer_bench.errors import FerBenchError


def features(name: str, batch: int = 2) -> tuple:
    bb = create_backbone(name).eval()
    cfg = bb.config
    with torch.no_grad():
        out = bb(torch.randn(batch, cfg.in_chans, *cfg.input_size))
    assert out.shape == (batch, cfg.feature_dim), name
    assert torch.isfinite(out).all()
    return bb, cfg


@pytest.mark.parametrize("name, dim, size", [
    ("resnet18@none", 512, 224), ("efficientnet_b0@none", 1280, 224),
    ("convnext_tiny@none", 768, 224), ("vit_b16@none", 768, 224),
    ("clip_rn50@none", 1024, 224), ("clip_vit_b32@none", 512, 224),
    ("clip_vit_b16_laion2b@none", 512, 224),
    ("vgg_fer2013", 4096, 40), ("mini_xception", 128, 64), ("ir50", 512, 112),
    ("fer_cnn", 128, 48),
])
def test_family_builds_features_of_declared_dim(name, dim, size):
    bb, cfg = features(name)
    assert cfg.feature_dim == dim and cfg.input_size == (size, size)
    assert cfg.gmacs and cfg.gmacs > 0 and cfg.weights == "none"


def test_resmasking_at_224_batch_1():
    bb, cfg = features("resmasking", batch=1)
    assert cfg.in_chans == 3 and cfg.mean == (0.0,) * 3  # gray faces replicated, no norm


@pytest.mark.slow
def test_clip_rn50x64_at_448_batch_1():
    bb, cfg = features("clip_rn50x64@none", batch=1)
    assert cfg.input_size == (448, 448) and cfg.feature_dim == 1024
    total = cfg.params_m + cfg.text_params_m
    assert 615 < total < 630
    emb = bb.paired_text(["a photo of a fearful face"])
    assert emb.shape == (1, 1024)


def test_timm_local_weights_file_round_trips(tmp_path: Path):
    torch.manual_seed(0)
    a = create_backbone("timm:resnet18@none").eval()
    path = tmp_path / "r18.pth"
    torch.save(a.encoder.state_dict(), path)
    torch.manual_seed(1)
    b = create_backbone(f"timm:resnet18@{path}").eval()
    assert b.config.weights == str(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_open_clip_local_weights_file_round_trips(tmp_path: Path):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("RN50-quickgelu")
    path = tmp_path / "rn50.pt"
    torch.save(clip.state_dict(), path)
    bb = create_backbone(f"open_clip:RN50-quickgelu@{path}").eval()
    assert bb.config.weights == str(path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(bb(x), clip.eval().visual(x))
        torch.testing.assert_close(bb.paired_text(["a fearful face"]),
                                   clip.encode_text(open_clip.tokenize(["a fearful face"])))


def test_ir50_loads_face_recognition_checkpoint_layouts(tmp_path: Path):
    torch.manual_seed(0)
    a = create_backbone("ir50").eval()
    # DataParallel-saved face.evoLVe weights, wrapped as a training checkpoint
    path = tmp_path / "backbone_ir50_ms1m.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in a.encoder.state_dict().items()}},
               path)
    b = create_backbone(f"ir50@{path}").eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    bad = tmp_path / "not_ir50.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(FerBenchError, match="missing: input_layer"):
        create_backbone(f"ir50@{bad}")


def test_resmasking_loads_the_authors_layout(tmp_path: Path):
    torch.manual_seed(0)
    a = create_backbone("resmasking", measure_cost=False).eval()
    state = dict(a.encoder.state_dict())
    # the authors' modules list each masking shortcut twice and carry a 7-way classifier
    for k in list(state):
        if k.startswith("mask1.conv1.downsample."):
            state["mask1.downsample1." + k.split("downsample.")[1]] = state[k]
    state["fc.1.weight"], state["fc.1.bias"] = torch.zeros(7, 512), torch.zeros(7)
    path = tmp_path / "resmasking.pth"
    torch.save({"net": state}, path)
    b = create_backbone(f"resmasking@{path}", measure_cost=False).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_hf_clip_vision_tower_from_a_local_directory(tmp_path: Path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8,
                              projection_dim=16)
    model = CLIPVisionModel(config).eval()
    model.save_pretrained(tmp_path)
    bb = create_backbone(f"hf:{tmp_path}").eval()
    cfg = bb.config
    assert (cfg.family, cfg.input_size, cfg.feature_dim, cfg.text_tower) == \
        ("hf", (32, 32), 32, False)
    assert cfg.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # CLIP's convention
    assert "no preprocessor_config.json" in cfg.notes and cfg.gmacs > 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb(x), model(pixel_values=x).pooler_output)
    rand = create_backbone(f"hf:{tmp_path}@none")
    assert rand.config.weights == "none" and rand.config.feature_dim == 32


def test_hf_clip_model_gives_projected_features_and_reads_preprocessor_config(tmp_path):
    import json

    from transformers import CLIPConfig, CLIPModel

    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, vocab_size=100, max_position_embeddings=16)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=48, patch_size=16)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    model.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 48, "width": 48}, "image_mean": [0.5, 0.5, 0.5],
         "image_std": [0.25, 0.25, 0.25], "resample": 2}))
    cfg = create_backbone(f"hf:{tmp_path}").config
    assert cfg.feature_dim == 24 and cfg.input_size == (48, 48)
    assert cfg.mean == (0.5,) * 3 and cfg.interpolation == "bilinear" and cfg.notes == ""
    assert cfg.params_m < count(model)  # the text half is not part of the image encoder


def count(m) -> float:
    return sum(p.numel() for p in m.parameters()) / 1e6


def test_hf_missing_model_fails_fast():
    with pytest.raises(FerBenchError, match="hf 'no-such-org/no-such-model'"):
        create_backbone("hf:no-such-org/no-such-model")


def test_unreachable_hub_without_offline_flag_fails_fast(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights_mod, "hub_reachable", lambda: False)
    seen = []
    real = weights_mod.hub_access

    def spy():
        seen.append(True)
        return real()

    monkeypatch.setattr("fer_bench.backbones.timm_family.hub_access", spy)
    with pytest.raises(FerBenchError, match="resnet18.a1_in1k.*NAME@none"):
        create_backbone("resnet18")
    assert seen and constants.HF_HUB_OFFLINE is False  # cache-only only inside the block


def test_random_init_only_when_asked(monkeypatch):
    with pytest.raises(FerBenchError, match="could not load pretrained weights"):
        create_backbone("vit_b16")
    assert create_backbone("vit_b16", pretrained=False).config.weights == "none"
