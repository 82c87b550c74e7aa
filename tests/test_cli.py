"""End to end through the CLI: a small synfer matrix, results contract, leaderboard, resume."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fer_bench.classes import CANONICAL
from fer_bench.cli import app

from .conftest import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    res = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "lasted,linear",
                              "--prompts", "classnames,clip_fer2013", "--text-encoder", "minilm",
                              "--dataset", TINY, "--epochs", "2", "--seeds", "0",
                              "--train", "image", "--out", str(out), "--quiet",
                              "--keep-checkpoints"])
    assert res.exit_code == 0, res.output
    return out


def results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json"))]


def test_results_contract(run_dir: Path):
    rs = results(run_dir)
    assert len(rs) == 3  # linear is run once, not once per prompt set
    for r in rs:
        assert r["schema"] == 1 and r["status"] == "ok" and r["error"] is None
        assert r["split"] == "test" and r["dataset"] == TINY and r["seed"] == 0
        assert (run_dir / "cells" / r["cell_id"] / "predictions.npz").is_file()
        m = r["metrics"]
        assert m["classes"] == list(CANONICAL)
        cm = np.array(m["confusion"])
        assert cm.shape == (7, 7) and cm.sum() == m["n_test"]
        assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        recall = np.diag(cm) / cm.sum(1)
        assert m["fear_disgust"] == pytest.approx((recall[1] + recall[2]) / 2)
        assert [m["per_class_accuracy"][c] for c in CANONICAL] == pytest.approx(list(recall))
        assert 0 <= m["macro_f1"] <= 1 and 0 <= m["balanced_accuracy"] <= 1
        assert r["timing"]["train_s"] > 0 and r["env"]["torch"]
        assert r["config"]["resolved"]["backbone"]["weights"] == "none"
    lasted = [r for r in rs if r["head"] == "lasted"]
    assert {r["prompts"] for r in lasted} == {"classnames", "clip_fer2013"}
    assert all(r["text_encoder"] == "minilm" for r in lasted)
    # the class texts actually used are recorded with the result
    fear = lasted[0]["config"]["resolved"]["prompts"]["fear"]
    assert fear and all(isinstance(p, str) for p in fear)


def test_training_really_happens(run_dir: Path):
    # real optimisation for every head: the training loss falls from the first epoch to the last
    for r in results(run_dir):
        losses = [h["train_loss"] for h in r["history"]]
        assert len(losses) == 2 and losses[-1] < losses[0], (r["head"], losses)
        assert r["metrics"]["checkpoint_epoch"] in (1, 2)


def test_leaderboard_json_and_formats(run_dir: Path):
    res = runner.invoke(app, ["leaderboard", str(run_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    keys = {"rank", "backbone", "prompts", "head", "dataset", "n_seeds", "fear_disgust",
            "accuracy", "balanced_accuracy", "macro_f1", "per_class_accuracy"}
    assert keys <= set(rows[0])
    fd = [r["fear_disgust"] for r in rows]
    assert fd == sorted(fd, reverse=True)
    for fmt, needle in [("md", "| fear/disgust |"), ("csv", "rank,backbone"),
                        ("table", "fear/disgust")]:
        res = runner.invoke(app, ["leaderboard", str(run_dir), "--format", fmt])
        assert res.exit_code == 0 and needle in res.output, res.output
    res = runner.invoke(app, ["leaderboard", str(run_dir), "--format", "json", "--sort",
                              "accuracy"])
    acc = [r["accuracy"] for r in json.loads(res.output)]
    assert acc == sorted(acc, reverse=True)


def test_rerun_skips_complete_cells(run_dir: Path):
    before = {p: p.read_bytes() for p in run_dir.glob("cells/*/result.json")}
    res = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "lasted,linear",
                              "--prompts", "classnames,clip_fer2013", "--text-encoder", "minilm",
                              "--dataset", TINY, "--epochs", "2", "--seeds", "0",
                              "--train", "image", "--out", str(run_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "0 ran, 3 skipped" in res.output
    assert before == {p: p.read_bytes() for p in run_dir.glob("cells/*/result.json")}


def test_dry_run_lists_cells_without_training(tmp_path: Path):
    from fer_bench.plan import expand, find_benchmark, load_benchmark

    res = runner.invoke(app, ["run", "--dry-run", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    n = len(expand(load_benchmark(find_benchmark("demo"))))
    assert f"{n} cells" in res.output
    for needle in ("px", "precision", "weights", "random init"):  # what a paper needs
        assert needle in res.output
    assert not (tmp_path / "cells").exists()


@pytest.mark.parametrize("args,needle", [
    (["--backbones", "fer_cn"], "closest: fer_cnn"),
    (["--backbones", "fer_cnn", "--heads", "linaer"], "closest: linear"),
    (["--backbones", "fer_cnn", "--prompts", "clip_fer2031"], "clip_fer2013"),
    (["--backbones", "fer_cnn", "--dataset", "synfr"], "synfer"),
    (["--backbones", "fer_cnn", "--seeds", "a,b"], "--seeds"),
    (["--benchmark", "nope.toml"], "unknown benchmark"),
])
def test_user_mistakes_are_one_clear_line(tmp_path: Path, args, needle):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "fer_bench", "run", "--dry-run", "--out",
                           str(tmp_path), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_data_stats_json():
    res = runner.invoke(app, ["data", "stats", TINY, "--format", "json"])
    stats = json.loads(res.output)
    assert stats["classes"] == list(CANONICAL)
    assert set(stats["splits"]) == {"train", "val", "test"}
    assert sum(sum(v.values()) for v in stats["splits"].values()) == 700


def test_checkpoint_and_log_are_kept(run_dir: Path):
    import torch
    from safetensors.torch import load_file

    from fer_bench.data import load_dataset
    from fer_bench.data.transforms import Preprocess
    from fer_bench.plan import Cell, TrainConfig
    from fer_bench.train.engine import build_model

    r = next(r for r in results(run_dir) if r["head"] == "linear")
    cdir = run_dir / "cells" / r["cell_id"]
    log = (cdir / "train.log").read_text()
    assert "epoch 1/2" in log and "done: test accuracy" in log
    # the kept weights reproduce the recorded test predictions
    train = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in r["config"]["train"].items()})
    cell = Cell(r["backbone"], r["head"], r["dataset"], r["seed"], None, None, train)
    ds = load_dataset(r["dataset"])
    model, _, _ = build_model(cell, ds)
    model.load_state_dict(load_file(cdir / "checkpoint.safetensors"))
    model.eval()
    pre = Preprocess(model.backbone.config, train.image_size or None)
    with torch.no_grad():
        preds = model(pre(ds.split("test").images)).argmax(1).numpy()
    saved = np.load(cdir / "predictions.npz", allow_pickle=False)["preds"]
    assert (preds == saved).all()


def test_set_overrides_any_training_setting(tmp_path: Path):
    res = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "linear", "--dataset",
                              TINY, "--set", "weight_decay=0.05", "--set", "balance=sampler",
                              "--set", 'amp="off"', "--dry-run", "--format", "json",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    train = json.loads(res.output)[0]["config"]["train"]
    assert (train["weight_decay"], train["balance"], train["amp"]) == (0.05, "sampler", "off")
    bad = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--set", "wd=1", "--dry-run"])
    assert bad.exit_code != 0 and "train.wd" in str(bad.exception)
    typo = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--set", "wieght_decay=1",
                               "--dry-run"])
    assert "command line: unknown key train.wieght_decay (did you mean 'weight_decay'?)" in str(
        typo.exception)
    for flags, needle in ((["--lr", "0"], "command line: train.lr: expected a number > 0, got 0.0"),
                          (["--set", "amp=bf32"], "train.amp: expected one of 'auto', 'bf16'")):
        bad = runner.invoke(app, ["run", "--backbones", "fer_cnn", *flags, "--dry-run"])
        assert bad.exit_code != 0 and needle in str(bad.exception), flags


def test_dry_run_checks_prompt_coverage_of_8_class_datasets(tmp_path: Path, monkeypatch):
    (tmp_path / "seven.toml").write_text(
        "[classes]\n" + "".join(f'{c} = ["{c}"]\n' for c in CANONICAL))
    monkeypatch.setenv("FER_BENCH_PROMPTS_PATH", str(tmp_path))
    res = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "lasted", "--prompts",
                              "seven", "--dataset", f"ferplus:{tmp_path}/absent", "--dry-run"])
    assert res.exit_code != 0 and "contempt" in str(res.exception)
    ok = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "lasted", "--prompts",
                             "seven", "--dataset", f"fer2013:{tmp_path}/absent", "--dry-run"])
    assert ok.exit_code == 0, ok.output


def test_run_help_is_grouped_with_real_metavars():
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "140"})
    assert res.exit_code == 0
    out = res.output
    for panel in ("Axes", "Training", "Output", "Clusters"):
        assert f"─ {panel} " in out, out
    assert out.index("--backbones") < out.index("─ Training ") < out.index("--epochs")
    assert out.index("─ Clusters ") < out.index("--slurm-partition")
    assert "<bool>" not in out and "<str>" not in out and "list[str]" not in out
    assert "KEY=VALUE" in out and "<local|ray|slurm>" in out
    for form in ("partial:N", "lora:r=R", "adapter[:OPTS]", "vpt:N"):  # every regime form
        assert form in out, form


def test_fixed_choices_reject_a_typo_listing_valid_values(tmp_path: Path):
    for flag, bad, valid in (("--executor", "rey", "'local', 'ray', 'slurm'"),
                             ("--format", "jsn", "'table', 'json'")):
        res = runner.invoke(app, ["run", "--dry-run", "--out", str(tmp_path), flag, bad])
        text = " ".join(res.output.replace("│", " ").split())  # unwrap the error box
        assert res.exit_code == 2 and valid in text, res.output
    ok = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "linear", "--dry-run",
                             "--no-dry-run", "--dry-run", "--format", "json", "--executor",
                             "local", "--no-rerun", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output  # the old spellings still work


def test_dry_run_shows_schedule_only_where_cells_differ(tmp_path: Path):
    bench = tmp_path / "b.toml"
    bench.write_text('[axes]\nbackbones = ["fer_cnn", "timm:resnet18@none"]\nheads = ["linear"]\n'
                     '[train]\nlr = 1e-3\n[[overrides]]\nbackbone = "timm:*"\n'
                     'train = { lr = 1e-4, image_size = 32 }\n')
    res = runner.invoke(app, ["run", "-b", str(bench), "--dry-run", "--out", str(tmp_path)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "┃ schedule" in res.output and "lr 0.0001" in res.output and "lr 0.001" in res.output
    same = runner.invoke(app, ["run", "--dry-run", "--out", str(tmp_path)],
                         env={"COLUMNS": "200"})
    assert same.exit_code == 0 and "┃ schedule" not in same.output
