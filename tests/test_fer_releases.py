"""The published FER / face encoders load their releases' checkpoints strictly, and match the
original model code where it is installable (hsemotion + timm, torchvision for DAN); where it is
not (face.evoLVe's IR-50: no package; rmn: its wheel installs top-level `models`/`utils`
packages and needs opencv and a Hub download at import), a checkpoint with the release's exact
key names and shapes must load, and one with a wrong key must not."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from fer_bench.backbones import create_backbone, describe
from fer_bench.backbones.convert import convert_timm_pickle, read_timm_pickle
from fer_bench.backbones.fer_nets import (
    IR50,
    ResMaskingNet,
    fit_state,
    map_ir50_keys,
    map_resmasking_keys,
)
from fer_bench.errors import FerBenchError

FIXTURES = Path(__file__).parent / "fixtures" / "release_keys"


def _meta_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _ir50_release_keys() -> dict[str, list[int]]:
    """face.evoLVe's IR_50([112, 112]) state dict, written from its model_irse.py layout:
    input_layer (conv, BN, PReLU), 24 bottleneck_IR units (res_layer BN-conv-PReLU-conv-BN,
    a conv-BN shortcut where the width changes), output_layer (BN2d, Dropout, Flatten, Linear,
    BN1d)."""
    def bn(p: str, c: int) -> dict:
        return {f"{p}.weight": [c], f"{p}.bias": [c], f"{p}.running_mean": [c],
                f"{p}.running_var": [c], f"{p}.num_batches_tracked": []}

    keys = {"input_layer.0.weight": [64, 3, 3, 3], **bn("input_layer.1", 64),
            "input_layer.2.weight": [64]}
    i, cin = 0, 64
    for depth, units in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for _ in range(units):
            p = f"body.{i}"
            if cin != depth:
                keys |= {f"{p}.shortcut_layer.0.weight": [depth, cin, 1, 1],
                         **bn(f"{p}.shortcut_layer.1", depth)}
            keys |= {**bn(f"{p}.res_layer.0", cin),
                     f"{p}.res_layer.1.weight": [depth, cin, 3, 3],
                     f"{p}.res_layer.2.weight": [depth],
                     f"{p}.res_layer.3.weight": [depth, depth, 3, 3],
                     **bn(f"{p}.res_layer.4", depth)}
            i, cin = i + 1, depth
    keys |= {**bn("output_layer.0", 512), "output_layer.3.weight": [512, 512 * 7 * 7],
             "output_layer.3.bias": [512], **bn("output_layer.4", 512)}
    return keys


def test_ir50_loads_face_evolve_key_names_strictly():
    keys = _ir50_release_keys()
    with torch.device("meta"):
        model = IR50()
    fit_state(model, {f"module.{k}": v for k, v in _meta_state(keys).items()}, "ir50", "ms1m",
              key_map=map_ir50_keys)  # DataParallel-saved, as face.evoLVe saves it
    fit_state(model, {f"ir_back.{k}": v for k, v in _meta_state(keys).items()}, "ir50",
              "poster", key_map=map_ir50_keys)  # POSTER's wrapper prefix
    keys.pop("body.3.shortcut_layer.0.weight")
    with pytest.raises(FerBenchError, match="missing: body.3.shortcut_layer.0.weight"):
        fit_state(model, _meta_state(keys), "ir50", "broken", key_map=map_ir50_keys)


def test_resmasking_loads_the_rmn_release_layout_strictly():
    """The key names and shapes of rmn 3.3.0's resmasking_dropout1 (fc = Dropout + Linear),
    dumped from the package: the classifier fc.1.* is the only thing dropped."""
    lines = (FIXTURES / "rmn_resmasking_dropout1.txt").read_text().splitlines()
    shapes = {k: eval(s) for k, s in (ln.split(" ", 1) for ln in lines)}  # noqa: S307 (lists)
    assert {"fc.1.weight", "mask1.downsample1.0.weight"} <= set(shapes)
    with torch.device("meta"):
        model = ResMaskingNet()
    fit_state(model, _meta_state(shapes), "resmasking", "rmn", key_map=map_resmasking_keys,
              optional_prefixes=("fc.",))
    shapes["layer4.0.conv1.weight"] = [512, 256, 1, 1]
    with pytest.raises(FerBenchError, match="wrong shape: layer4.0.conv1.weight"):
        fit_state(model, _meta_state(shapes), "resmasking", "rmn",
                  key_map=map_resmasking_keys, optional_prefixes=("fc.",))


def test_dan_resnet18_matches_torchvision_on_the_release_layout(tmp_path):
    """DAN loads resnet18_msceleb.pth ({'state_dict': ...}) into torchvision's resnet18."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    original = resnet18(num_classes=1000).eval()
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": original.state_dict(), "iter": 0}, path)
    ours = create_backbone(f"dan_resnet18@{path}").eval()
    original.fc = nn.Identity()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - original(x)).abs().max() < 1e-5


def _hsemotion_release(path: Path) -> nn.Module:
    """A release like HSEmotion's: torch.save of a whole tf_efficientnet_b0 whose classifier
    is Sequential(Linear(1280, 8)) (random weights; non-trivial BN statistics)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_b0", num_classes=0)
    model.classifier = nn.Sequential(nn.Linear(1280, 8))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(model, path)
    return model.eval()


def test_hsemotion_converts_safely_and_matches_the_hsemotion_package(tmp_path, monkeypatch):
    hsemotion = pytest.importorskip("hsemotion.facial_emotions")
    home = tmp_path / "home"
    (home / ".hsemotion").mkdir(parents=True)
    release = home / ".hsemotion" / "enet_b0_8_best_afew.pt"
    _hsemotion_release(release)
    # The oracle: hsemotion's own loader, which unpickles the whole model (our test file only;
    # torch >= 2.6 refuses its releases by default, hence the switch).
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    recognizer = hsemotion.HSEmotionRecognizer("enet_b0_8_best_afew")
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    # fer-bench: the card's cached release file, converted on first use, loaded strictly
    weights = Path(str(tmp_path / "cache")) / "weights"
    weights.mkdir(parents=True)
    (weights / "enet_b0_8_best_afew.pt").write_bytes(release.read_bytes())
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    ours = create_backbone("hsemotion_b0").eval()
    assert (weights / "enet_b0_8_best_afew.safetensors").is_file()
    cfg = ours.config
    assert (cfg.input_size, cfg.mean, cfg.feature_dim) == ((224, 224), (0.485, 0.456, 0.406),
                                                            1280)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - recognizer.model(x)).abs().max() < 1e-5


def test_converter_drops_only_the_classifier_and_checks_padding(tmp_path):
    release = tmp_path / "enet.pt"
    _hsemotion_release(release)
    dropped = convert_timm_pickle(release, tmp_path / "enet.safetensors", "tf_efficientnet_b0")
    assert dropped == {"classifier.0.weight": [8, 1280], "classifier.0.bias": [8]}
    with pytest.raises(FerBenchError, match="same' padding"):
        convert_timm_pickle(release, tmp_path / "x.safetensors", "efficientnet_b0")
    with pytest.raises(FerBenchError, match="do not fit timm 'tf_efficientnet_b2'"):
        convert_timm_pickle(release, tmp_path / "x.safetensors", "tf_efficientnet_b2")


class Payload:
    """A pickle that would run code on load (its __reduce__ calls a function)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_converter_refuses_code_outside_timm_and_torch_and_never_runs_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(marker)}, path)
    with pytest.raises(FerBenchError, match="refused to convert.*pathlib"):
        read_timm_pickle(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(Payload(marker)))  # not even a torch file
    with pytest.raises(FerBenchError):
        read_timm_pickle(path)
    assert not marker.exists()


def test_farl_card_is_a_clip_tower_with_its_own_text_tower():
    cfg = describe("farl_vit_b16")
    assert (cfg.family, cfg.model, cfg.text_tower, cfg.input_size, cfg.feature_dim) == (
        "open_clip", "ViT-B-16-quickgelu", True, (224, 224), 512)
    assert cfg.weights == "published"


def test_farl_release_layout_is_the_one_open_clip_loads_strictly():
    """FaRL's checkpoint is {'state_dict': OpenAI CLIP ViT-B/16 keys} (the `clip` package's
    model); open_clip's ViT-B-16-quickgelu has exactly that layout, text tower included, and
    open_clip loads a local file strictly (an extra key is refused, tested by hand: 600 MB)."""
    import open_clip

    with torch.device("meta"):
        keys = set(open_clip.create_model("ViT-B-16-quickgelu", device="meta").state_dict())
    assert {"visual.class_embedding", "visual.positional_embedding", "visual.proj",
            "visual.conv1.weight", "visual.transformer.resblocks.11.attn.in_proj_weight",
            "token_embedding.weight", "positional_embedding", "text_projection",
            "ln_final.weight", "transformer.resblocks.11.mlp.c_proj.weight",
            "logit_scale"} <= keys
    assert not any(k.startswith(("visual.trunk.", "text.")) for k in keys)  # not timm/HF-style


def test_weights_convert_cli_writes_safetensors(tmp_path):
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from fer_bench.cli import app

    release = tmp_path / "enet_b0_8_best_afew.pt"
    model = _hsemotion_release(release)
    res = CliRunner().invoke(app, ["weights", "convert", str(release), "--arch",
                                   "tf_efficientnet_b0"])
    assert res.exit_code == 0, res.output
    state = load_file(str(tmp_path / "enet_b0_8_best_afew.safetensors"))
    assert "classifier.0.weight" not in state
    assert torch.equal(state["conv_stem.weight"], model.conv_stem.weight.detach())
    res = CliRunner().invoke(app, ["weights", "convert", str(release)])
    assert res.exit_code != 0 and "--arch" in str(res.exception)


@pytest.mark.slow  # a 600 MB ViT-B/16 CLIP checkpoint written and read (~30 s)
def test_farl_card_matches_open_clip_on_a_release_layout_file(tmp_path):
    """The original FaRL model is OpenAI CLIP ViT-B/16 code with FaRL's state dict (open_clip
    builds the same architecture). The same random weights in FaRL's file layout, through the
    card, give open_clip's own image and text features within 1e-5."""
    import open_clip

    torch.manual_seed(0)
    original = open_clip.create_model("ViT-B-16-quickgelu").eval()
    path = tmp_path / "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"
    torch.save({"state_dict": original.state_dict()}, path)
    ours = create_backbone(f"farl_vit_b16@{path}")
    x = torch.randn(2, 3, 224, 224)
    tokens = open_clip.get_tokenizer("ViT-B-16-quickgelu")(["a photo of a fearful face."])
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), original.encode_image(x), atol=1e-5,
                                   rtol=1e-5)
        text = ours.paired_text.eval()
        torch.testing.assert_close(text.encode({"input_ids": tokens}),
                                   original.encode_text(tokens), atol=1e-5, rtol=1e-5)
    assert ours.paired_text.logit_scale.item() == original.logit_scale.item()
    with pytest.raises(FerBenchError):  # strict: one unexpected key is refused
        sd = original.state_dict()
        sd["visual.mim_head.weight"] = torch.zeros(1)
        torch.save({"state_dict": sd}, path)
        create_backbone(f"farl_vit_b16@{path}")
