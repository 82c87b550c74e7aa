"""Datasets through the CLI: `data stats` JSON contract, `data verify`, `data list`, and a
one-cell `fer-bench run` matrix on a fixture fer2013.csv."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fer_bench.classes import CANONICAL, CANONICAL8
from fer_bench.cli import app
from fer_bench.errors import DataError

from .test_datasets_fixtures import (
    COUNTS,
    _cache_dir,  # noqa: F401  (autouse: cache under tmp_path)
    pixels,
    write_fer_csv,
    write_ferplus,
    write_rafdb,
)

runner = CliRunner()


def test_stats_json_contract(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    spec = f"fer2013:{path}"
    res = runner.invoke(app, ["data", "stats", spec, "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == {"dataset": spec, "classes": list(CANONICAL),
                   "splits": {s: {c: k for c in CANONICAL} for s, k in COUNTS.items()}}


def test_stats_ferplus_follows_mode_and_omits_absent_splits(tmp_path):
    write_ferplus(tmp_path)
    out = json.loads(runner.invoke(app, ["data", "stats", f"ferplus:{tmp_path}", "-f",
                                         "json"]).stdout)
    assert out["classes"] == list(CANONICAL8) and out["splits"]["train"]["contempt"] == 1
    prob = json.loads(runner.invoke(app, ["data", "stats", f"ferplus:{tmp_path}#mode=probability",
                                          "-f", "json"]).stdout)
    assert sum(prob["splits"]["train"].values()) == sum(out["splits"]["train"].values()) + 1
    only_train = write_fer_csv(tmp_path / "t" / "fer2013.csv",
                               rows=[("train", c) for c in CANONICAL])
    out = json.loads(runner.invoke(app, ["data", "stats", f"fer2013:{only_train}", "-f",
                                         "json"]).stdout)
    assert list(out["splits"]) == ["train"]


def test_stats_table_and_skip_bad_warning(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    lines = path.read_text().splitlines()
    lines[4] = "7," + pixels("fear") + ",Training"
    path.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["data", "stats", f"fer2013:{path}"])
    assert isinstance(res.exception, DataError)   # `fer-bench` prints it as one line, exit 2
    assert f"{path} line 5: unknown emotion label '7'" in str(res.exception)
    res = runner.invoke(app, ["data", "stats", f"fer2013:{path}", "--skip-bad", "1"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 bad row" in res.stderr and "line 5" in res.stderr
    assert "fear" in res.stdout and "total" in res.stdout


def test_verify_ok_and_problems(tmp_path):
    root = write_rafdb(tmp_path)
    res = runner.invoke(app, ["data", "verify", f"rafdb:{root}"])
    assert res.exit_code == 0, res.output
    assert "ok" in res.stdout and "test: 7 images (3x100x100 uint8)" in res.stdout
    for name in ("train_00001_aligned.jpg", "test_00003_aligned.jpg"):
        (root / "basic" / "Image" / "aligned" / name).unlink()
    res = runner.invoke(app, ["data", "verify", f"rafdb:{root}"])
    assert res.exit_code == 1
    assert "2 problem(s)" in res.stdout
    assert "train_00001_aligned.jpg: not found" in res.stdout
    assert "test_00003_aligned.jpg: not found" in res.stdout


def test_data_list_and_synfer_still_work():
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 0
    for name in ("fer2013:PATH", "ferplus:PATH", "ferplus7:PATH", "rafdb:PATH",
                 "affectnet:PATH", "affectnet8:PATH", "folder:PATH", "synfer"):
        assert name in res.stdout
    res = runner.invoke(app, ["data", "stats", "synfer:n=700", "-f", "json"])
    assert json.loads(res.stdout)["dataset"] == "synfer:n=700"


def test_run_one_cell_on_fixture_fer2013(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    out = tmp_path / "run"
    spec = f"fer2013:{path}"
    res = runner.invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "linear", "--dataset",
                              spec, "--epochs", "1", "--no-pretrained", "--out", str(out),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    (result,) = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    assert result["status"] == "ok" and result["dataset"] == spec
    assert result["metrics"]["n_test"] == COUNTS["test"] * 7
    assert result["config"]["resolved"]["dataset"]["format"] == "fer2013-csv"
