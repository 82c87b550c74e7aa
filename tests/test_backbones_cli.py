"""`fer-bench backbones list/show/measure` and the first command users type."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fer_bench.backbones.base import SUMMARY_FIELDS
from fer_bench.cli import app

runner = CliRunner()


def test_list_json_has_the_documented_fields_and_needs_no_model(monkeypatch):
    import open_clip
    import timm

    def refuse(*a, **k):
        raise AssertionError("list must not build models for cached cards")

    monkeypatch.setattr(open_clip, "create_model", refuse)
    monkeypatch.setattr(timm, "create_model", refuse)
    res = runner.invoke(app, ["backbones", "list", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert all(tuple(r) == SUMMARY_FIELDS for r in rows.values())
    r = rows["clip_rn50x64"]
    assert (r["family"], r["input_size"], r["feature_dim"], r["text_tower"], r["weights"]) == \
        ("open_clip", [448, 448], 1024, True, "openai")
    assert r["params_m"] == pytest.approx(420.38, abs=0.01) and r["gmacs"] > 200
    assert rows["vit_b16"]["text_tower"] is False
    assert rows["ir50"]["input_size"] == [112, 112]


def test_list_filters_with_wildcards_and_substrings():
    res = runner.invoke(app, ["backbones", "list", "clip_rn*", "--format", "json"])
    names = [r["name"] for r in json.loads(res.output)]
    assert names and all(n.startswith("clip_rn") for n in names) and "clip_rn50x64" in names
    res = runner.invoke(app, ["backbones", "list", "xception", "--format", "json"])
    assert [r["name"] for r in json.loads(res.output)] == ["mini_xception"]
    res = runner.invoke(app, ["backbones", "list", "clip_vit_b16*"])
    assert res.exit_code == 0 and "clip_vit_b16_laion2b" in res.output
    assert "resnet18" not in res.output and "GMACs" in res.output


def test_show_resolves_preprocessing_without_weights():
    res = runner.invoke(app, ["backbones", "show", "vit_b16", "--format", "json"])
    assert res.exit_code == 0, res.output
    cfg = json.loads(res.output)
    assert cfg["model"] == "vit_base_patch16_224" and cfg["fixed_input_size"] is True
    assert cfg["mean"] == pytest.approx([0.5] * 3)  # AugReg's stats, not ImageNet's
    assert cfg["gmacs"] == pytest.approx(17.56, abs=0.01) and cfg["feature_dim"] == 768
    assert cfg["weights"] == "vit_base_patch16_224.augreg2_in21k_ft_in1k"
    assert cfg["weights_loaded"] is False


def test_show_openai_tag_on_a_gelu_config_switches_to_quickgelu():
    res = runner.invoke(app, ["backbones", "show", "open_clip:ViT-B-32@openai", "-f", "json"])
    cfg = json.loads(res.output)
    assert cfg["extra"]["quick_gelu"] is True and cfg["text_tower"] is True


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_bench", *args], capture_output=True,
                          text=True)


def test_first_command_dry_run_works_without_weights(tmp_path):
    proc = cli("run", "--backbones", "clip_rn50x64,vit_b16", "--dry-run", "--out",
               str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "clip_rn50x64" in proc.stdout and "vit_b16" in proc.stdout


def test_absent_weights_fail_fast_in_one_line():
    proc = cli("backbones", "show", "clip_rn50", "--load")  # conftest sets HF_HUB_OFFLINE=1
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert "RN50-quickgelu@openai" in err and "@none" in err and "local file" in err

