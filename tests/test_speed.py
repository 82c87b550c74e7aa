"""The speed levers are correct: cached features equal recomputed ones, anything that changes
them misses the cache, reduced precision and channels_last agree with fp32, OOM retries work."""

import threading
import time

import pytest
import torch
from safetensors.torch import save_file

from fer_bench.backbones import create_backbone
from fer_bench.data.transforms import Preprocess
from fer_bench.levers import amp_dtype, autocast_for
from fer_bench.plan import Cell, TrainConfig
from fer_bench.tensor_cache import TensorCache
from fer_bench.train import engine
from fer_bench.train.engine import build_model, run_cell
from fer_bench.train.inputs import FeatureInputs, ImageInputs, forward_all

from .conftest import TINY

FAST = dict(epochs=1, batch_size=64, device="cpu", amp="off")


def cell(backbone="fer_cnn@none", head="lasted", prompts="classnames", **train) -> Cell:
    cfg = TrainConfig(**{**FAST, "regime": "frozen", **train})
    return Cell(backbone, head, TINY, 0, prompts if head in ("lasted", "clip", "zeroshot")
                else None, "minilm" if head in ("lasted", "zeroshot") else None, cfg)


def statuses(out, what: str) -> list[str]:
    return [c["status"] for c in out.resolved["compute"]["caches"] if c["what"] == what]


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def feature_inputs(c: Cell, dataset, cache: TensorCache):
    model, _, _ = build_model(c, dataset, cache)
    pre = Preprocess(model.backbone.config, c.train.image_size or None)
    autocast, amp = autocast_for(torch.device("cpu"), c.train.amp)
    return model, pre, FeatureInputs(model, pre, torch.device("cpu"), autocast, c.train, cache,
                                     str(amp))


def test_cached_features_equal_recomputed(tiny_dataset, fresh_cache):
    c = cell(head="linear", prompts=None)
    images = tiny_dataset.split("val").images
    model, pre, inputs = feature_inputs(c, tiny_dataset, TensorCache())
    first = inputs.features(images, "val")
    _, _, again = feature_inputs(c, tiny_dataset, TensorCache())   # a new cell, same key
    second = again.features(images, "val")
    direct = forward_all(model.backbone, pre, images, torch.device("cpu"), 256,
                         autocast_for(torch.device("cpu"), "off")[0])
    assert [e["status"] for e in inputs.cache.log] == ["miss"]
    assert [e["status"] for e in again.cache.log] == ["hit"]
    assert first.shape == (len(images), model.backbone.config.feature_dim)
    assert torch.equal(first, second) and torch.equal(first, direct)
    # ten-crop features are cached per crop: the head's merged logits match the full model's
    crops = again.cached_features(images, tta="tencrop")
    assert crops.shape == (len(images), 10, model.backbone.config.feature_dim)
    full = ImageInputs(model, pre, torch.device("cpu"), autocast_for(torch.device("cpu"),
                                                                      "off")[0], c.train)
    assert torch.allclose(again.logits(images, "tencrop"), full.logits(images, "tencrop"),
                          atol=1e-5)


def test_matrix_cells_share_features_and_text(fresh_cache):
    first = run_cell(cell(prompts="classnames"))
    second = run_cell(cell(prompts="clip_fer2013"))      # other prompts: same image features
    third = run_cell(cell(prompts="clip_fer2013"))   # the same prompts again: text hits too
    for what in ("train features", "val features", "test features"):
        assert statuses(first, what) == ["miss"]
        assert statuses(second, what) == ["hit"]
    assert statuses(second, "class text embeddings") == ["miss"]
    assert statuses(third, "class text embeddings") == ["hit"]
    assert third.metrics == second.metrics                  # a hit changes nothing
    assert second.resolved["compute"]["image_features"] == "cached"


def test_changed_preprocessing_or_weights_file_misses(tmp_path, fresh_cache):
    weights = tmp_path / "fer_cnn.safetensors"
    net = create_backbone("fer_cnn@none", pretrained=False).encoder
    save_file(net.state_dict(), weights)
    spec = f"fer_cnn@{weights}"
    assert statuses(run_cell(cell(spec, "linear", None)), "train features") == ["miss"]
    assert statuses(run_cell(cell(spec, "linear", None)), "train features") == ["hit"]
    # other preprocessing (input size) -> other features
    assert statuses(run_cell(cell(spec, "linear", None, image_size=40)),
                    "train features") == ["miss"]
    # the same file name with other weights inside -> other features
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    save_file(net.state_dict(), weights)
    assert statuses(run_cell(cell(spec, "linear", None)), "train features") == ["miss"]
    # augmented views are separate entries, computed once each
    out = run_cell(cell(spec, "linear", None, epochs=2, feature_views=2))
    assert statuses(out, "train features") == ["hit"]
    assert statuses(out, "train features (view 1)") == ["miss"]


def test_trainable_encoder_bypasses_the_cache(fresh_cache):
    out = run_cell(cell(regime="image"))
    assert out.resolved["compute"]["image_features"] == "computed per step"
    assert not statuses(out, "train features")
    off = run_cell(cell(feature_cache=False))
    assert off.resolved["compute"]["image_features"] == "computed per step (feature_cache off)"
    assert {c["status"] for c in off.resolved["compute"]["caches"]} <= {"off"}


def test_corrupt_cache_entry_is_recomputed(fresh_cache):
    cache = TensorCache()
    key = {"kind": "features", "x": 1}
    cache.get(key, lambda: torch.ones(3))
    path = cache.path_for(key)
    path.write_bytes(path.read_bytes()[:20])           # truncated by a crash or full disk
    assert torch.equal(cache.get(key, lambda: torch.full((3,), 2.0)), torch.full((3,), 2.0))
    assert [e["status"] for e in cache.log] == ["miss", "miss"]
    assert torch.equal(TensorCache().get(key, lambda: torch.zeros(3)), torch.full((3,), 2.0))


def test_concurrent_lookups_compute_once(fresh_cache):
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return torch.arange(4.0)

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        TensorCache().get({"kind": "features", "k": "same"}, compute))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(torch.equal(r, torch.arange(4.0)) for r in results)


@pytest.mark.parametrize("backbone", ["fer_cnn@none", "timm:resnet18@none"])
def test_bf16_autocast_and_channels_last_agree_with_fp32(backbone, tiny_dataset):
    torch.manual_seed(0)
    model = create_backbone(backbone, pretrained=False)
    head = torch.nn.Linear(model.config.feature_dim, 7)
    net = torch.nn.Sequential(model, head).eval()
    pre = Preprocess(model.config, 48)
    images = tiny_dataset.split("test").images[:96]
    cpu = torch.device("cpu")
    fp32 = forward_all(net, pre, images, cpu, 32, autocast_for(cpu, "off")[0])
    bf16 = forward_all(net, pre, images, cpu, 32, autocast_for(cpu, "bf16")[0])
    cl = forward_all(net.to(memory_format=torch.channels_last), pre, images, cpu, 32,
                     autocast_for(cpu, "off")[0], channels_last=True)
    assert torch.allclose(cl, fp32, atol=1e-4, rtol=1e-4)
    assert torch.equal(cl.argmax(1), fp32.argmax(1))
    scale = fp32.abs().max()
    assert (bf16 - fp32).abs().max() <= 0.05 * scale          # bf16: ~3 significant digits
    margin = fp32.topk(2, 1).values
    clear = (margin[:, 0] - margin[:, 1]) > 0.1 * scale        # not a near-tie
    assert clear.sum() > 20
    assert torch.equal(bf16.argmax(1)[clear], fp32.argmax(1)[clear])


def test_amp_auto_is_fp32_on_every_cpu(monkeypatch):
    """The default's figures must not depend on the CPU family: bf16 is asked for, never
    implied, on the CPU."""
    import fer_bench.levers as compute

    for fast in (False, True):
        monkeypatch.setattr(compute, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert amp_dtype(torch.device("cpu"), "auto") is None
    assert amp_dtype(torch.device("cpu"), "bf16") is torch.bfloat16
    assert amp_dtype(torch.device("cpu"), "off") is None


@pytest.mark.parametrize("flags,native", [
    ("fpu avx2 avx512f amx_bf16 amx_tile", True),      # Intel Sapphire Rapids
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),  # AMD Zen 4 / Intel Cooper Lake
    ("fpu avx2 avx512f avx512_vnni", False),             # Skylake-SP: bf16 only emulated
    ("fpu avx2", False),
])
def test_native_bf16_is_read_from_the_cpu_flags_line(flags, native):
    from fer_bench.levers import has_native_bf16

    text = f"processor\t: 0\nmodel name\t: Some amx_bf16 CPU\nflags\t\t: {flags}\n"
    assert has_native_bf16(text) is native
    assert has_native_bf16("model name\t: avx512_bf16\n") is False  # only the flags line counts


def test_matmul_peak_is_the_faster_of_blas_and_onednn_on_cpu(monkeypatch):
    import fer_bench.train.throughput as bench

    cpu = torch.device("cpu")
    assert set(bench.peak_kernels(cpu, None, seconds=0.1)) == {"matmul", "gemm_onednn"}
    rates = bench.peak_kernels(cpu, None, seconds=0.15, conv3x3=True)
    assert set(rates) == {"matmul", "gemm_onednn", "conv3x3"}
    assert all(1e8 < r < 1e14 for r in rates.values())   # FLOP/s, not s or GFLOP/s
    monkeypatch.setattr(bench, "peak_kernels",
                        lambda *a, **k: {"matmul": 1e11, "gemm_onednn": 3e11})
    assert bench.compute_peak(cpu, None) == 3e11
    assert bench.gemm_peak({"matmul": 1e11, "gemm_onednn": 2e11, "conv3x3": 4e11}) == 2e11


def test_out_of_memory_halves_the_batch_and_keeps_the_effective_batch(monkeypatch,
                                                                      fresh_cache):
    real = ImageInputs.train_batch
    seen = []

    def limited(self, split, idx, gen, epoch):
        seen.append(len(idx))
        if len(idx) > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, split, idx, gen, epoch)

    monkeypatch.setattr(ImageInputs, "train_batch", limited)
    out = run_cell(cell(head="linear", prompts=None, regime="full"))
    compute = out.resolved["compute"]
    assert compute["batch_size"] == 16 and compute["accum_steps"] == 4
    assert [r["batch_size"] for r in compute["oom_retries"]] == [64, 32]
    assert "out of memory" in compute["oom_retries"][0]["error"]
    assert max(seen[-5:]) <= 16 and out.metrics["accuracy"] is not None
    # with retries off the error reaches the runner (which records the cell as failed)
    with pytest.raises(torch.OutOfMemoryError):
        run_cell(cell(head="linear", prompts=None, regime="full", oom_retry=False))
    assert engine.run_cell is run_cell


def test_bench_command_measures_the_training_loop(tmp_path):
    import json

    from typer.testing import CliRunner

    from fer_bench.cli import app

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "fer_cnn,mini_xception", "--batch", "8",
                                   "--steps", "2", "--device", "cpu", "--format", "json",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows == json.loads(out.read_text())
    assert [(r["backbone"], r["mode"]) for r in rows] == [
        ("fer_cnn", "train"), ("fer_cnn", "infer"), ("mini_xception", "train"),
        ("mini_xception", "infer")]
    for r in rows:
        assert r["samples_per_s"] > 0 and r["step_ms"] > 0
        assert r["step_ms"] == pytest.approx(1000 * 8 / r["samples_per_s"], rel=0.01)
        assert 0 < r["mfu"] <= 1 and r["peak_tflops"] > 0
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= 0
    fer_train, fer_infer = rows[0], rows[1]
    assert fer_train["params_m"] == pytest.approx(0.294, abs=0.001)
    assert fer_train["gmacs"] == pytest.approx(0.03, abs=0.005)
    # a training step (forward + backward) costs about 3 forwards
    assert 2.5 < fer_train["flops_per_sample"] / fer_infer["flops_per_sample"] < 3.5
    bad = CliRunner().invoke(app, ["bench", "fer_cnn", "--format", "xml"])
    text = " ".join(bad.output.replace("│", " ").split())  # unwrap the error box
    assert bad.exit_code == 2 and "'xml' is not one of 'table', 'json'" in text, bad.output


def test_bench_runner_writes_the_shared_json_shape(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "run_all.py"
    proc = subprocess.run([sys.executable, str(script), "--only", "gpu_rn50x64"],
                          env={**os.environ, "BENCH_OUT": str(out)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    (name, record), = data.items()
    assert name == "gpu_rn50x64_lasted_bf16_mfu" and record["target"] == 0.35
    if torch.cuda.is_available():
        assert record["pass"] in (True, False) and record["value"] > 0
    else:
        assert record["pass"] is None and record["skipped"] == "no CUDA device"


def test_leaderboard_shows_training_throughput_and_bench_figures(tmp_path):
    import json

    from typer.testing import CliRunner

    from fer_bench.cli import app

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--backbones", "fer_cnn", "--heads", "linear",
                                   "--dataset", TINY, "--epochs", "1", "--device", "cpu",
                                   "--quiet", "--out", str(run)])
    assert res.exit_code == 0, res.output
    result = json.loads(next(run.glob("cells/*/result.json")).read_text())
    assert result["timing"]["train_images_per_s"] > 0
    assert result["config"]["resolved"]["compute"]["image_features"] == "computed per step"
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([
        {"backbone": "fer_cnn", "head": "linear", "mode": "train", "samples_per_s": 812.0,
         "mfu": 0.125},
        {"backbone": "fer_cnn", "head": "linear", "mode": "infer", "samples_per_s": 3456.0,
         "mfu": 0.2},
        {"backbone": "other", "head": "linear", "mode": "train", "samples_per_s": 1.0,
         "mfu": 0.9}]))
    res = CliRunner().invoke(app, ["leaderboard", str(run), "--bench", str(bench), "--format",
                                   "csv", "--columns",
                                   "backbone,train_images_per_s,bench_train_per_s,"
                                   "bench_infer_per_s,bench_mfu"])
    assert res.exit_code == 0, res.output
    header, row = res.output.strip().splitlines()
    assert header == ("backbone,train_images_per_s,bench_train_per_s,bench_infer_per_s,"
                      "bench_mfu")
    values = row.split(",")
    assert values[0] == "fer_cnn" and float(values[1]) > 0
    assert values[2:] == ["812.0", "3456.0", "0.125"]
    table = CliRunner().invoke(app, ["leaderboard", str(run), "--bench", str(bench)])
    assert "MFU" in table.output and "12.5%" in table.output
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    res = CliRunner().invoke(app, ["leaderboard", str(run), "--bench", str(broken)])
    assert res.exit_code != 0 and "expected the JSON list" in str(res.exception)


@pytest.mark.slow
def test_compiled_training_matches_eager(fresh_cache):
    """torch.compile (opt-in) trains the same model: same losses up to float reassociation."""
    eager = run_cell(cell("fer_cnn@none", "linear", None, regime="full"))
    compiled = run_cell(cell("fer_cnn@none", "linear", None, regime="full", compile=True))
    assert compiled.resolved["compute"]["compile"] is True
    a, b = eager.history[0], compiled.history[0]
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-2)


def test_understated_peak_never_prints_mfu_above_100(monkeypatch):
    """A peak measured while the machine was busy (here: deliberately 1 MFLOP/s) made MFU read
    140%; now such a figure is re-measured, capped at 100% and flagged as noisy."""
    import re

    from typer.testing import CliRunner

    from fer_bench.cli import app
    from fer_bench.train import throughput as bench

    calls = []

    def understated(device, dtype, seconds=1.0):
        calls.append(seconds)
        return 1e6

    monkeypatch.setattr(bench, "compute_peak", understated)
    meter = bench.PeakMeter(torch.device("cpu"))
    opts = bench.BenchOptions(batch=8, steps=2, device="cpu", amp="off")
    row, = bench.bench_backbone("fer_cnn", ("train",), opts, meter)
    assert row.mfu == 1.0 and row.mfu_noisy
    assert len(calls) == 3 and calls[-1] > calls[0]  # before, after, and a longer re-measure
    res = CliRunner().invoke(app, ["bench", "fer_cnn", "--batch", "8", "--steps", "2",
                                   "--device", "cpu", "--amp", "off"])
    assert res.exit_code == 0, res.output
    shown = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)%", res.output)]
    assert shown and max(shown) <= 100.0, res.output
    assert "too noisy" in res.output and "?" in res.output


def test_peak_spread_flags_a_noisy_machine(monkeypatch):
    from fer_bench.train import throughput as bench

    rates = iter([100e9, 50e9])
    monkeypatch.setattr(bench, "compute_peak", lambda device, dtype, seconds=1.0: next(rates))
    meter = bench.PeakMeter(torch.device("cpu"))
    meter.measure("fp32", None)
    meter.measure("fp32", None)
    mfu, noisy = bench.honest_mfu(40e9, meter, "fp32", None)
    assert mfu == pytest.approx(0.4) and noisy and meter.spread("fp32") == pytest.approx(1.0)
    meter.samples["fp32"] = [100e9, 95e9]
    assert bench.honest_mfu(40e9, meter, "fp32", None) == (pytest.approx(0.4), False)
