"""Published weights: `fer-bench weights list | fetch | verify`, against a local HTTP server on
127.0.0.1 serving a checkpoint in a release's layout (resume after a cut connection, checksum
refusal, the offline message), and loading the fetched file strictly."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fer_bench.backbones import create_backbone
from fer_bench.backbones.cards import read_card
from fer_bench.backbones.download import fetch
from fer_bench.backbones.fer_nets import FerCNN
from fer_bench.backbones.sources import MissingWeightsError, verify
from fer_bench.cli import app
from fer_bench.errors import ConfigError, FerBenchError

runner = CliRunner()


class _Server:
    """Serves one payload; honours Range; `cut_first` closes the first full response early."""

    def __init__(self, payload: bytes, cut_first: bool = False) -> None:
        self.payload, self.cut, self.requests = payload, cut_first, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                body = outer.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut and not rng:
                    outer.cut = False
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/release/fer_cnn_ms1m.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def release(tmp_path):
    """A checkpoint as releases ship them: {'state_dict': ...} with a `module.` prefix."""
    torch.manual_seed(0)
    model = FerCNN()
    path = tmp_path / "release.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "epoch": 120}, path)
    return model, path.read_bytes()


def _card(tmp_path: Path, monkeypatch, url: str, payload: bytes, sha: str | None = None,
          size: int | None = None) -> str:
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    sha = hashlib.sha256(payload).hexdigest() if sha is None else sha
    lines = ['family = "registered"', 'model = "fer_cnn"', 'weights = "published"',
             "[source]", f'url = "{url}"', 'file = "fer_cnn_ms1m.pth"', 'licence = "MIT"',
             'paper = "a test release"']
    if sha:
        lines.append(f'sha256 = "{sha}"')
    if size is not None:
        lines.append(f"size = {size}")
    (cards / "tiny_published.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("FER_BENCH_BACKBONES_PATH", str(cards))
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return "tiny_published"


def _source(name: str):
    from fer_bench.backbones import cards

    return read_card(cards()[name]).weight_source()


def test_fetch_resumes_after_a_cut_connection_and_loads_strictly(tmp_path, monkeypatch,
                                                                  release):
    model, payload = release
    server = _Server(payload, cut_first=True)
    try:
        name = _card(tmp_path, monkeypatch, server.url, payload, size=len(payload))
        src = _source(name)
        path = fetch(src, show_progress=False)
    finally:
        server.close()
    assert server.requests[0] is None and server.requests[1] == f"bytes={len(payload) // 3}-"
    assert path.read_bytes() == payload and not path.with_name(path.name + ".part").exists()
    assert verify(src) == "ok"
    bb = create_backbone(name).eval()  # the published file, loaded strictly
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(bb(x), model.eval()(x), atol=1e-6)


def test_fetch_refuses_a_checksum_mismatch(tmp_path, monkeypatch, release):
    _, payload = release
    server = _Server(payload)
    try:
        name = _card(tmp_path, monkeypatch, server.url, payload, sha="0" * 64)
        src = _source(name)
        with pytest.raises(FerBenchError, match="does not match.*refused"):
            fetch(src, show_progress=False)
    finally:
        server.close()
    assert not src.path.exists() and not list(src.path.parent.glob("*.part"))
    with pytest.raises(MissingWeightsError, match="fer_cnn_ms1m.pth"):
        create_backbone(name)  # nothing half-downloaded is ever loaded


def test_verify_reports_unverified_without_a_published_sha256(tmp_path, monkeypatch, release):
    _, payload = release
    name = _card(tmp_path, monkeypatch, "http://127.0.0.1:9/x.pth", payload, sha="")
    src = _source(name)
    assert src.sha256 is None and verify(src) == "missing"
    src.path.parent.mkdir(parents=True)
    src.path.write_bytes(payload)
    assert verify(src) == "unverified"
    res = runner.invoke(app, ["weights", "verify", name])
    assert res.exit_code == 0 and "unverified" in res.output
    src.path.write_bytes(payload + b"x")  # a cached file that changed is caught by size/sha
    name = _card(tmp_path, monkeypatch, "http://127.0.0.1:9/x.pth", payload)
    assert verify(_source(name)) == "mismatch"
    assert runner.invoke(app, ["weights", "verify", name]).exit_code == 1


def test_offline_gives_one_message_with_url_file_and_destination(tmp_path, monkeypatch,
                                                                   release):
    _, payload = release
    name = _card(tmp_path, monkeypatch, "http://127.0.0.1:9/release/x.pth", payload)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(app, ["weights", "fetch", name])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    src = _source(name)
    assert "http://127.0.0.1:9/release/x.pth" in text and "fer_cnn_ms1m.pth" in text
    assert str(src.path).replace("\n", "") in text.replace(" ", "") or str(src.path) in text


def test_list_shows_source_licence_and_cached_state(tmp_path, monkeypatch, release):
    _, payload = release
    name = _card(tmp_path, monkeypatch, "http://127.0.0.1:9/x.pth", payload,
                 size=len(payload))
    rows = {r["name"]: r for r in json.loads(runner.invoke(
        app, ["weights", "list", "--format", "json"]).output)}
    assert rows[name]["cached"] is False and rows[name]["licence"] == "MIT"
    assert {"farl_vit_b16", "ir50_ms1m", "resmasking_fer2013", "hsemotion_b0",
            "hsemotion_b2", "dan_resnet18_msceleb"} <= set(rows)
    assert all(r["url"] and r["licence"] and r["paper"] for r in rows.values())
    _source(name).path.parent.mkdir(parents=True)
    _source(name).path.write_bytes(payload)
    rows = {r["name"]: r for r in json.loads(runner.invoke(
        app, ["weights", "list", "--format", "json"]).output)}
    assert rows[name]["cached"] is True
    res = runner.invoke(app, ["weights", "list"])
    assert res.exit_code == 0 and name in res.output


def test_local_file_still_overrides_a_published_card(tmp_path, monkeypatch, release):
    model, payload = release
    name = _card(tmp_path, monkeypatch, "http://127.0.0.1:9/x.pth", payload)
    local = tmp_path / "mine.pth"
    local.write_bytes(payload)
    bb = create_backbone(f"{name}@{local}").eval()
    x = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(bb(x), model.eval()(x), atol=1e-6)
    assert create_backbone(f"{name}@none").config.weights == "none"


def test_card_source_is_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('family = "registered"\nmodel = "fer_cnn"\nweights = "published"\n'
                   '[source]\nurl = "http://x"\nfile = "a.pth"\nsha256 = "abc"\n')
    with pytest.raises(ConfigError, match="source.sha256: expected 64 lowercase hex digits"):
        read_card(bad)
    bad.write_text('family = "registered"\nmodel = "fer_cnn"\nweights = "published"\n')
    with pytest.raises(ConfigError, match="go together"):
        read_card(bad)


def test_run_stops_before_any_work_with_one_message_per_missing_weight(tmp_path, monkeypatch):
    import fer_bench.run as runner_mod

    def refuse(*a, **k):
        raise AssertionError("nothing may run when weights are missing")

    monkeypatch.setattr(runner_mod, "run_plan", refuse)
    monkeypatch.setattr("fer_bench.backbones.preflight.online", lambda: False)
    out = tmp_path / "runs"
    res = runner.invoke(app, ["run", "--backbones", "clip_rn50x64,vit_b16", "--out", str(out)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert text.count("missing weights:") == 2  # one per file, not one per cell (4 cells)
    assert text.count("backbone 'clip_rn50x64'") == 1 and text.count("backbone 'vit_b16'") == 1
    assert "RN50x64-quickgelu@openai" in text and "vit_base_patch16_224" in text
    assert "nothing was run" in text and not out.exists()


def test_preflight_sees_weights_in_the_hub_cache_without_downloading(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from fer_bench.backbones.preflight import missing_weights
    from fer_bench.plan import Benchmark, cell_text_encoders, expand

    repo = tmp_path / "hub" / "models--timm--vit_base_patch16_224.augreg2_in21k_ft_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"x")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cells = expand(Benchmark(backbones=["vit_b16", "clip_rn50x64", "fer_cnn"],
                             heads=["lasted", "linear"]))
    missing = missing_weights([c.backbone for c in cells], cell_text_encoders(cells),
                              is_online=False)
    assert [m.users for m in missing] == [["backbone 'clip_rn50x64'"]]
    assert cell_text_encoders(cells) == ["minilm", "minilm"]  # vit_b16 x 1 prompt set; fer_cnn
    assert missing_weights(["vit_b16@none", "clip_rn50x64@none"], is_online=False) == []


def test_card_training_defaults_fill_only_unset_keys():
    from dataclasses import replace

    from fer_bench.plan import Benchmark, TrainConfig, expand

    def lrs(**kw) -> dict:
        return {(c.backbone): (c.train.lr, c.train.warmup_epochs)
                for c in expand(Benchmark(backbones=["clip_vit_b16", "clip_vit_b16@none",
                                                     "ir50", "hsemotion_b0"],
                                          heads=["linear"], **kw))}

    assert lrs() == {"clip_vit_b16": (1e-5, 1.0), "clip_vit_b16@none": (1e-3, 0.0),
                     "ir50": (1e-3, 0.0), "hsemotion_b0": (1e-4, 1.0)}
    explicit = lrs(train=replace(TrainConfig(), lr=3e-4), explicit={"lr"})
    assert explicit["clip_vit_b16"] == (3e-4, 1.0) and explicit["ir50"] == (3e-4, 0.0)
    scratch = lrs(train=replace(TrainConfig(), pretrained=False))
    assert scratch["clip_vit_b16"] == (1e-3, 0.0)


def test_cli_lr_wins_over_the_card_and_dry_run_lists_weights_and_lr(tmp_path):
    res = runner.invoke(app, ["run", "-b", "fer_specific", "--dry-run", "--out",
                              str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    text = res.output
    for name in ("farl_vit_b16", "ir50_ms1m", "resmasking_fer2013", "hsemotion_b0",
                 "hsemotion_b2", "dan_resnet18_msceleb"):
        assert name in text
    row = next(ln for ln in text.splitlines() if "published: enet_b2_8.pt" in ln)
    assert "260x260" in row and "0.0001" in row and "card" in row
    row = next(ln for ln in text.splitlines() if "FaRL-Base-Patch16" in ln)
    assert "1e-05" in row and "224x224" in row
    assert not (tmp_path / "o").exists()
    res = runner.invoke(app, ["run", "-b", "fer_specific", "--dry-run", "--lr", "0.02",
                              "--format", "json"])
    cells = json.loads(res.output[res.output.index("["):res.output.rindex("]") + 1])
    assert {c["config"]["train"]["lr"] for c in cells} == {0.02}


def test_fetch_of_a_pickled_timm_release_resumes_converts_and_loads(tmp_path, monkeypatch):
    """HSEmotion's layout end to end: a whole pickled tf_efficientnet_b0, served over a cut
    connection, fetched, converted without unpickling code, and loaded strictly."""
    import timm
    from torch import nn

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_b0", num_classes=0)
    model.classifier = nn.Sequential(nn.Linear(1280, 8))
    release = tmp_path / "enet.pt"
    torch.save(model, release)
    payload = release.read_bytes()
    server = _Server(payload, cut_first=True)
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny_hse.toml").write_text(
        'family = "timm"\nmodel = "tf_efficientnet_b0"\nweights = "published"\n[source]\n'
        f'url = "{server.url}"\nfile = "enet_b0_8_best_afew.pt"\nlayout = "timm_pickle"\n'
        f'arch = "tf_efficientnet_b0"\nsha256 = "{hashlib.sha256(payload).hexdigest()}"\n')
    monkeypatch.setenv("FER_BENCH_BACKBONES_PATH", str(cards))
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        res = runner.invoke(app, ["weights", "fetch", "tiny_hse", "--quiet"])
    finally:
        server.close()
    assert res.exit_code == 0, res.output
    assert len(server.requests) == 2 and server.requests[1].startswith("bytes=")
    src = _source("tiny_hse")
    assert src.load_path.suffix == ".safetensors" and src.load_path.is_file()
    assert verify(src) == "ok"
    ours = create_backbone("tiny_hse").eval()
    model.classifier = nn.Identity()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - model.eval()(x)).abs().max() < 1e-5
