"""Adding a head is one file and one registration: a toy head in a --plugin file goes through
the plan, the dry-run estimate, the engine and the leaderboard with no other change."""

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fer_bench.cli import app
from tests.conftest import TINY

# A cosine-prototype head with a margin loss: nothing in fer-bench names it, so every stage
# must learn what it can do from its HeadSpec alone.
PLUGIN = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn

    import fer_bench


    class Prototypes(fer_bench.Head):
        def __init__(self, feature_dim: int, n_classes: int, margin: float = 0.2):
            super().__init__()
            self.protos = nn.Parameter(torch.randn(n_classes, feature_dim) * 0.01)
            self.margin = margin

        def forward(self, features):
            return 10.0 * F.normalize(features, dim=-1) @ F.normalize(self.protos, dim=-1).T

        def loss(self, logits, labels, weight=None):
            margin = F.one_hot(labels, logits.shape[1]) * self.margin * 10.0
            return F.cross_entropy(logits - margin, labels, weight=weight)


    fer_bench.register_head(fer_bench.HeadSpec(
        "toy_prototypes", lambda feature_dim, n_classes, **_: Prototypes(feature_dim, n_classes)))
''')


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "toy_head.py"
    path.write_text(PLUGIN)
    return path


def _run(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_toy_head_plugin_runs_through_plan_estimate_engine_and_leaderboard(plugin, tmp_path):
    out = tmp_path / "run"
    axes = ["--plugin", str(plugin), "--backbones", "fer_cnn@none", "--heads",
            "toy_prototypes,linear", "--dataset", TINY, "--epochs", "2", "--seeds", "0",
            "--out", str(out)]

    # plan + dry-run estimate: a text-free head (one cell each, no prompt axis), its own
    # parameters counted as trainable beside the encoder's
    plan = json.loads(_run("run", *axes, "--dry-run", "--format", "json"))
    by_head = {p["config"]["head"]: p for p in plan}
    assert set(by_head) == {"toy_prototypes", "linear"}
    toy, lin = by_head["toy_prototypes"], by_head["linear"]
    assert toy["config"]["prompts"] is None and toy["status"] == "to run"
    assert toy["estimate"]["trainable_m"] > 0
    assert toy["estimate"]["params_m"] == lin["estimate"]["params_m"]

    # engine: trained by the SGD loop with the plugin's own loss, evaluated, written
    _run("run", *axes, "--quiet")
    results = {r["config"]["head"]: r for r in
               (json.loads(p.read_text()) for p in out.glob("cells/*/result.json"))}
    res = results["toy_prototypes"]
    assert res["status"] == "ok", res.get("error")
    losses = [h["train_loss"] for h in res["history"]]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert 0.0 <= res["metrics"]["accuracy"] <= 1.0
    assert set(res["metrics"]["per_class_accuracy"]) >= {"fear", "disgust"}

    # leaderboard: ranked beside a built-in head, by fear/disgust
    rows = json.loads(_run("leaderboard", str(out), "--format", "json"))
    assert {r["head"] for r in rows} == {"toy_prototypes", "linear"}
    fd = [r["fear_disgust"] for r in rows]
    assert fd == sorted(fd, reverse=True)


def test_a_plugin_head_that_contradicts_itself_is_refused(tmp_path):
    from fer_bench.errors import FerBenchError
    from fer_bench.heads import HeadSpec

    with pytest.raises(FerBenchError, match="frozen_image=True"):
        HeadSpec("bad", lambda **_: None, trains=False)
