"""The HTML outputs (leaderboard --format html and the report) are autoescaped templates: a
backbone, head or error that looks like markup is shown as text, never run. Hand-made results:
no training."""

import json
import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from fer_bench.classes import CANONICAL
from fer_bench.cli import app
from fer_bench.results.metrics import compute_metrics
from fer_bench.results.store import SCHEMA_VERSION

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ERROR = '<img src=x onerror="alert(2)">'
runner = CliRunner()


def write_result(out: Path, cell_id: str, backbone: str, shift: int, **extra) -> None:
    y = np.arange(140) % 7
    pred = np.where(np.arange(140) % 5 < shift, y, (y + 1) % 7)
    cdir = out / "cells" / cell_id
    cdir.mkdir(parents=True)
    result = {"schema": SCHEMA_VERSION, "cell_id": cell_id, "status": "ok", "error": None,
              "backbone": backbone, "prompts": None, "head": "linear", "text_encoder": None,
              "dataset": "synfer:n=700", "split": "test", "seed": 0,
              "config": {"backbone": backbone, "head": "linear", "seed": 0},
              "metrics": compute_metrics(y, pred, CANONICAL), "timing": {"train_s": 1.0},
              "env": {}, **extra}
    (cdir / "result.json").write_text(json.dumps(result))


def hostile_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    write_result(out, "c0ffee000001", HOSTILE, 4)
    write_result(out, "c0ffee000002", "fer_cnn", 2)
    write_result(out, "c0ffee000003", HOSTILE, 0, status="failed", error=HOSTILE_ERROR,
                 metrics=None)
    return out


def assert_escaped(page: str) -> None:
    assert HOSTILE not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(re.findall(r"<script", page)) == 0


def test_leaderboard_html_escapes_names(tmp_path):
    res = runner.invoke(app, ["leaderboard", str(hostile_run(tmp_path)), "--format", "html",
                              "--resamples", "100"])
    assert res.exit_code == 0, res.output
    assert_escaped(res.stdout)
    assert res.stdout.startswith("<!doctype html>") and "<table class=\"lb\"" in res.stdout


def test_report_escapes_names_and_errors(tmp_path):
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(hostile_run(tmp_path)), "-o", str(out),
                              "--resamples", "100", "--max-confusions", "1"])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert_escaped(page)
    assert "&lt;img src=x onerror=" in page  # the failed cell's error, as text
    assert "<span class=fd>Fear and disgust</span>" in page  # our own markup stays markup
