"""Users' own encoders: decorator in a --plugin file, an installed entry point, and each one
running in a one-cell matrix."""

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import fer_bench
from fer_bench.backbones import BACKBONES, create_backbone
from fer_bench.cli import app
from fer_bench.plan import Cell, TrainConfig
from fer_bench.run import run_plan
from tests.conftest import TINY

PLUGIN = """
from torch import nn
import fer_bench


@fer_bench.register_backbone("{name}", input_size=32, in_chans=1, mean=(0.5,), std=(0.5,))
def tiny(weights: str = "none"):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 6))
"""


def test_register_backbone_is_exported():
    from fer_bench.backbones import register_backbone

    assert fer_bench.register_backbone is register_backbone
    assert fer_bench.__version__


def test_plugin_file_backbone_runs_in_a_one_cell_matrix(tmp_path: Path):
    plugin = tmp_path / "my_encoder.py"
    plugin.write_text(PLUGIN.format(name="plugin_tiny_cli"))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "run", "--plugin", str(plugin), "--backbones", "plugin_tiny_cli", "--heads", "linear",
        "--dataset", TINY, "--epochs", "1", "--seeds", "0", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    [result] = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    assert result["status"] == "ok"
    bb = result["config"]["resolved"]["backbone"]
    assert (bb["feature_dim"], bb["input_size"], bb["in_chans"], bb["family"]) == \
        (6, [32, 32], 1, "custom")
    assert bb["gmacs"] > 0 and bb["params_m"] > 0
    res = CliRunner().invoke(app, ["backbones", "show", "plugin_tiny_cli", "--plugin",
                                   str(plugin), "-f", "json"])
    assert json.loads(res.output)["feature_dim"] == 6


@pytest.fixture
def entry_point_package(tmp_path: Path, monkeypatch):
    """A tiny installed package: a module plus a dist-info with entry_points.txt."""
    pkg = tmp_path / "fbtest_ep_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from torch import nn

        def make():  # a bare factory: no decorator, registered by its entry point name
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    """))
    dist = tmp_path / "fbtest_ep_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fbtest-ep-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fer_bench.backbones]\nep_tiny = fbtest_ep_pkg:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(BACKBONES, "_entry_points_loaded", False)
    yield "ep_tiny"
    BACKBONES._entries.pop("ep_tiny", None)


def test_entry_point_backbone_runs_in_a_one_cell_matrix(entry_point_package, tmp_path: Path):
    bb = create_backbone(entry_point_package)
    assert bb.config.feature_dim == 4 and bb.config.input_size == (224, 224)
    assert "entry point" in bb.config.extra["source"]
    cell = Cell(entry_point_package, "linear", TINY, 0, None, None,
                TrainConfig(epochs=1, batch_size=64, device="cpu"))
    summary = run_plan([cell], tmp_path / "run")
    assert summary.ran == [cell.cell_id], summary.failed


class HashText(nn.Module):
    """A stand-in text tower: deterministic embeddings of the prompt strings."""

    name, dim, weights = "hash", 8, "none"

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, texts):
        codes = torch.tensor([[hash(t + str(i)) % 97 / 97 for i in range(8)] for t in texts])
        return self.proj(codes)


def test_decorator_declares_size_stats_channels_and_a_paired_text_tower():
    @fer_bench.register_backbone("decl_net", input_size=(40, 36), in_chans=3,
                                 mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6),
                                 interpolation="bicubic", text_tower=HashText)
    def decl_net():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    try:
        bb = create_backbone("decl_net")
        cfg = bb.config
        assert (cfg.input_size, cfg.mean, cfg.std, cfg.interpolation) == \
            ((40, 36), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic")
        assert cfg.text_tower and isinstance(bb.paired_text, HashText)
        assert bb(torch.randn(2, 3, 40, 36)).shape == (2, 8)
    finally:
        BACKBONES._entries.pop("decl_net", None)


def test_decorator_rejects_stats_that_do_not_fit_the_channels():
    with pytest.raises(fer_bench.backbones.FerBenchError, match="one value per channel"):
        fer_bench.register_backbone("bad_stats", in_chans=1)  # ImageNet's 3-channel stats


def test_factory_that_returns_no_module_is_a_clear_error():
    fer_bench.register_backbone("not_a_module")(lambda: "oops")
    try:
        with pytest.raises(fer_bench.backbones.FerBenchError, match="expected a torch.nn"):
            create_backbone("not_a_module")
    finally:
        BACKBONES._entries.pop("not_a_module", None)
