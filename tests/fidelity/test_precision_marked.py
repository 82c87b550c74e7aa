"""A row trained in another precision than the rest is marked in the leaderboard."""

from __future__ import annotations

from typer.testing import CliRunner

from fer_bench.cli import app

from ..conftest import TINY

runner = CliRunner()


def test_bf16_row_is_marked(tmp_path):
    common = ["run", "--backbones", "fer_cnn", "--heads", "linear", "--dataset", TINY,
              "--epochs", "1", "--train", "frozen", "--quiet", "--out", str(tmp_path)]
    for extra in ([], ["--set", "amp=bf16"]):
        res = runner.invoke(app, [*common, *extra])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["leaderboard", str(tmp_path), "--format", "md"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("[bf16]") >= 2  # the row, and the footnote that explains it
    assert "the other rows in fp32" in res.stdout
