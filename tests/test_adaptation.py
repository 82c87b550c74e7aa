"""Adaptation regimes (lora, adapter, vpt): what trains, what stays bit-identical, artifacts
that reload onto the base weights, and encoders a regime cannot apply to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fer_bench.adaptation import parse_regime
from fer_bench.errors import ConfigError
from fer_bench.plan import Benchmark, Cell, TrainConfig, expand
from fer_bench.run import run_plan, validate_cells
from fer_bench.train.engine import build_model, reload_trained
from fer_bench.train.regimes import apply_regime, freeze_norm_statistics

SMALL = "synfer:n=500"
VIT = "open_clip:test-ViT-nano@none"  # registered below: 2 layers, width 64, 32 px
NANO = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64,
                                        "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 2}}


@pytest.fixture(scope="module", autouse=True)
def nano_clip(tmp_path_factory):
    """A CLIP small enough for seconds-long tests (the shipped fer-ViT-Ti-8 is 4x wider)."""
    import open_clip

    from fer_bench.text.clip_models import open_clip_module as _open_clip

    _open_clip()  # fer-bench's own configs first, then this one
    path = tmp_path_factory.mktemp("oc") / "test-ViT-nano.json"
    path.write_text(json.dumps(NANO))
    open_clip.add_model_config(path)


def _cell(regime: str, head: str = "linear", backbone: str = VIT, seed: int = 0, **kw) -> Cell:
    cfg = TrainConfig(**{"regime": regime, "lr": 1e-2, "batch_size": 32, "epochs": 1,
                         "pretrained": False, "device": "cpu", "amp": "off",
                         "eval_batch_size": 128, **kw})
    text = head != "linear"
    return Cell(backbone, head, SMALL, seed, "classnames" if text else None,
                "default" if text else None, cfg)


def _step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One real optimisation step (Adam with weight decay: would move any parameter it got)."""
    from fer_bench.data.transforms import Preprocess

    pre = Preprocess(model.backbone.config)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    freeze_norm_statistics(model)
    model.head.loss(model(pre(images, train=True)), labels).backward()
    opt.step()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# which parameter names each regime may train (besides the head's own)
EXPECT = {
    "lora:r=4": lambda n: "lora_" in n and n.startswith("backbone.encoder."),
    "lora:r=2,targets=mlp": lambda n: "lora_" in n and ".mlp." in n,
    "vpt:3": lambda n: n == "backbone.encoder.vpt_prompts.tokens",
    "adapter": lambda n: n.startswith("head.image_adapter."),
    "adapter:on=text,dim=8": lambda n: n.startswith("head.class_text.text_adapter."),
    # the paired text tower is the backbone's, reached through the head too
    "lora:r=2,tower=text": lambda n: "lora_" in n and n.startswith(
        ("head.class_text.encoder.", "backbone.paired_text.")),
}


def _head_own(name: str) -> bool:
    # the paired CLIP tower's logit_scale is the LASTED head's own (trained, issue 13)
    if name.endswith("clip.logit_scale"):
        return True
    return name.startswith("head.") and not name.startswith(("head.class_text.",
                                                             "head.image_adapter."))


@pytest.mark.parametrize("regime,head", [
    ("lora:r=4", "linear"), ("lora:r=2,targets=mlp", "linear"), ("vpt:3", "linear"),
    ("adapter", "linear"), ("vpt:3", "lasted"), ("adapter:on=text,dim=8", "lasted"),
    ("lora:r=2,tower=text", "lasted"),
])
def test_regime_trains_only_its_parameters(tiny_dataset, regime, head):
    model, _, resolved = build_model(_cell(regime, head), tiny_dataset)
    allowed = EXPECT[regime]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    adapted = {n for n in names if not _head_own(n)}
    assert adapted and all(allowed(n) for n in adapted), sorted(adapted)[:5]
    assert resolved["regime"]["trainable_params"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad)
    before = _snapshot(model)
    split = tiny_dataset.split("train")
    _step(model, split.images[:16], split.labels[:16])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # frozen weights bit-identical (MHA base weights included), adapted ones moved
    assert changed and all(allowed(k) or _head_own(k) for k in changed), sorted(changed)[:5]
    assert any(allowed(k) for k in changed)


def _tiny_clip_resnet() -> nn.Module:
    from open_clip.modified_resnet import ModifiedResNet

    torch.manual_seed(0)
    return ModifiedResNet(layers=(1, 1, 1, 1), output_dim=32, heads=2, image_size=64, width=8)


def test_lora_reaches_the_clip_resnet_attention_pool():
    """The attention pool reads its projections' weights directly (never calls them): LoRA goes
    in through a parametrization there, and must change the output after a step."""
    enc = _tiny_clip_resnet()
    x = torch.randn(4, 3, 64, 64)
    head = nn.Linear(32, 7)
    apply_regime(enc, None, "lora:r=2,targets=attn", head=head, feature_dim=32)
    lora = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert lora == {f"attnpool.{p}.parametrizations.weight.0.lora_{ab}"
                    for p in ("q_proj", "k_proj", "v_proj", "c_proj") for ab in "AB"}
    base = {k: v.clone() for k, v in enc.state_dict().items() if "lora_" not in k}
    out0 = enc.eval()(x).detach()
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.5)
    enc.train()
    freeze_norm_statistics(enc)
    enc(x).pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in base.items())
    enc.eval()
    assert not torch.allclose(enc(x), out0)


def test_timm_vit_takes_lora_and_vpt():
    import timm

    for regime, n_tokens in (("lora:r=2,targets=qkv+proj", 0), ("vpt:2", 2)):
        torch.manual_seed(0)
        enc = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                                num_classes=0)
        tokens = []
        enc.blocks[0].register_forward_hook(lambda m, a, out, t=tokens: t.append(out.shape[1]))
        apply_regime(enc, None, regime, head=nn.Linear(192, 7), feature_dim=192)
        enc(torch.randn(2, 3, 32, 32)).sum().backward()
        assert tokens == [1 + 4 + n_tokens]  # class token + 2x2 patches + prompts
        grads = {n for n, p in enc.named_parameters() if p.grad is not None}
        assert grads and all("lora_" in n or "vpt_prompts" in n for n in grads)


@pytest.mark.parametrize("backbone,regime,message", [
    ("fer_cnn", "vpt:4", "needs a ViT image encoder"),
    ("timm:resnet18@none", "vpt:4", "needs a ViT image encoder"),
    ("fer_cnn", "lora:r=4", "LoRA target 'attn' matches no module"),
    (VIT, "lora:r=4,targets=nonexistent", "matches no module"),
])
def test_inapplicable_encoder_is_rejected_before_training(backbone, regime, message):
    with pytest.raises(ConfigError, match=message):
        validate_cells([_cell(regime, backbone=backbone)])


def test_text_side_regime_with_a_text_free_head_is_rejected():
    with pytest.raises(ConfigError, match="has no text"):
        validate_cells([_cell("adapter:on=text")])
    validate_cells([_cell("lora:r=2,targets=conv", backbone="fer_cnn")])  # CNN: conv LoRA fits


@pytest.mark.parametrize("regime,message", [
    ("lora", "needs its rank"), ("lora:r=0", "r must be >= 1"), ("lora:r=4,rank=2", "unknown"),
    ("lora:r=4,tower=left", "tower must be one of"), ("vpt", "vpt:N needs"),
    ("vpt:0", "vpt:N needs"), ("adapter:ratio=2", "ratio must be in"), ("lorax", "expected"),
])
def test_malformed_regimes_fail_validation_with_the_forms(regime, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(regime=regime).validate("test")


def test_regime_spec_defaults():
    spec = parse_regime("lora:r=8")
    assert spec.options == {"r": 8, "alpha": 16.0, "dropout": 0.0, "targets": "attn",
                            "tower": "image"}
    assert parse_regime("adapter").options == {"dim": 0, "ratio": 0.2, "on": "image"}


def test_regimes_axis_multiplies_cells_and_skip_matches_it():
    bench = Benchmark(backbones=["fer_cnn", VIT], heads=["linear"],
                      regimes=["full", "lora:r=4,targets=all", "vpt:4"],
                      skip=[{"backbone": "fer_cnn", "regime": "vpt:*"}])
    cells = expand(bench)
    got = sorted((c.backbone, c.train.regime) for c in cells)
    assert ("fer_cnn", "vpt:4") not in got and len(got) == 5
    # without the axis, cell ids are what they were
    plain = expand(Benchmark(backbones=["fer_cnn"], heads=["linear"]))
    assert plain[0].cell_id == Cell("fer_cnn", "linear", "synfer", 0, None, None,
                                    TrainConfig()).cell_id


# --- artifacts ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory) -> tuple[Path, list[Cell]]:
    out = tmp_path_factory.mktemp("adapted")
    cells = [_cell("lora:r=2"), _cell("vpt:2", "lasted"), _cell("adapter:on=both", "lasted")]
    summary = run_plan(cells, out)
    assert not summary.failed, summary.failed
    return out, cells


def test_artifact_holds_only_trained_parameters_and_reproduces_predictions(adapted_run):
    from safetensors.torch import load_file

    out, cells = adapted_run
    for cell in cells:
        cdir = out / "cells" / cell.cell_id
        result = json.loads((cdir / "result.json").read_text())
        state = load_file(cdir / "trained.safetensors")
        regime = result["config"]["resolved"]["regime"]
        assert sum(t.numel() for t in state.values()) == regime["trainable_params"]
        assert result["trained_params_file"]["params"] == regime["trainable_params"]
        assert set(regime["base_digest"]) >= {"image_encoder"}
        prepared = reload_trained(cell, cdir / "trained.safetensors")
        test = prepared.inputs  # evaluate the rebuilt model on the test split
        from fer_bench.data import load_dataset

        images = load_dataset(cell.dataset).split("test").images
        preds = test.logits(images).argmax(1).numpy()
        saved = np.load(cdir / "predictions.npz")["preds"]
        assert np.array_equal(preds, saved), cell.train.regime


def test_artifact_refuses_other_base_weights(adapted_run):
    out, cells = adapted_run
    path = out / "cells" / cells[0].cell_id / "trained.safetensors"
    other_seed = _cell("lora:r=2", seed=1)  # random init of another seed: other base weights
    with pytest.raises(ConfigError, match="trained on base image_encoder weights"):
        reload_trained(other_seed, path)


@pytest.mark.parametrize("regime", ["lora:r=2", "vpt:2"])
def test_out_of_memory_retry_rebuilds_the_regime(monkeypatch, regime):
    """oom_retry starts the cell again from a fresh model at half the batch: the regime is applied
    once to that model (same trainable set as without the retry), and the retry is recorded."""
    from fer_bench.train.engine import run_cell
    from fer_bench.train.inputs import ImageInputs

    real, seen = ImageInputs.train_batch, []

    def limited(self, split, idx, gen, epoch):
        seen.append(len(idx))
        if len(idx) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, split, idx, gen, epoch)

    plain = run_cell(_cell(regime, batch_size=8))
    monkeypatch.setattr(ImageInputs, "train_batch", limited)
    out = run_cell(_cell(regime))  # batch 32: OOM at 32 and 16, fits at 8 with accum 4
    compute, reg = out.resolved["compute"], out.resolved["regime"]
    assert [r["batch_size"] for r in compute["oom_retries"]] == [32, 16]
    assert compute["batch_size"] == 8 and compute["accum_steps"] == 4
    assert reg["trainable_params"] == plain.resolved["regime"]["trainable_params"] > 0
    assert reg["adaptation"] == plain.resolved["regime"]["adaptation"]
    assert max(seen[-5:]) <= 8 and out.metrics["accuracy"] is not None
