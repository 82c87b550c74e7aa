"""CellResult, the typed view of result.json: every key a result file holds survives a read and
a write, in order, and the completeness check the runner relies on reads the same file."""

import json

import numpy as np
import pytest

from fer_bench.atomic import file_sha256
from fer_bench.classes import CANONICAL
from fer_bench.results.metrics import compute_metrics
from fer_bench.results.store import (
    PREDICTIONS_FILE,
    RESULT_FILE,
    SCHEMA_VERSION,
    CellResult,
    cross_predictions_file,
    read_cell,
    read_results,
)


def full_result() -> dict:
    """A result with every key the runner writes (and one a later fer-bench might add)."""
    y = np.arange(70) % 7
    metrics = compute_metrics(y, np.roll(y, 3), CANONICAL)
    metrics["ci"] = {"level": 0.95, "n_resamples": 1000, "seed": 0, "accuracy": [0.1, 0.2]}
    return {
        "schema": SCHEMA_VERSION, "cell_id": "abc123def456", "status": "ok", "error": None,
        "backbone": "fer_cnn", "prompts": "classnames", "head": "lasted",
        "text_encoder": "minilm", "dataset": "synfer:n=700", "split": "test", "seed": 3,
        "config": {"backbone": "fer_cnn", "seed": 3, "resolved": {"compute": {"amp": "off"}}},
        "metrics": metrics, "timing": {"train_s": 1.5, "eval_s": 0.25},
        "env": {"torch": "2.5", "python": "3.11"},
        "history": [{"epoch": 1, "train_loss": 1.9, "val_accuracy": 0.3}],
        "cross": {"synfer:n=900": {**metrics, "predictions": "predictions-synfer_n=900.npz"}},
        "finished_at": "2025-01-01T00:00:00+0000", "predictions_sha256": "0" * 64,
        "trained_params_file": {"file": "trained.safetensors", "sha256": "1" * 64,
                                "tensors": 2, "params": 10},
        "a_future_key": {"kept": True},
    }


def test_every_key_round_trips_in_order(tmp_path):
    data = full_result()
    path = tmp_path / RESULT_FILE
    path.write_text(json.dumps(data))
    cell = read_cell(path)
    assert cell.to_json() == data
    assert list(cell.to_json()) == list(data)
    assert json.dumps(cell.to_json()) == json.dumps(data)
    # the typed view
    assert (cell.ok, cell.seed, cell.dir) == (True, 3, tmp_path)
    assert cell.ci == data["metrics"]["ci"] and cell.resolved == {"compute": {"amp": "off"}}
    assert set(cell.cross) == {"synfer:n=900"} and cell.timing["train_s"] == 1.5


def test_a_failed_or_partial_result_keeps_exactly_its_keys():
    failed = {**{k: v for k, v in full_result().items() if k not in (
        "history", "cross", "predictions_sha256", "trained_params_file", "a_future_key")},
        "status": "failed", "error": "RuntimeError: boom", "metrics": None,
        "traceback": "Traceback ...", }
    cell = CellResult.from_json(failed)
    assert cell.to_json() == failed and list(cell.to_json()) == list(failed)
    assert not cell.ok and not cell.complete() and cell.ci is None and cell.cross == {}
    minimal = {"schema": 1, "status": "ok"}  # hand-made: absent keys stay absent
    assert CellResult.from_json(minimal).to_json() == minimal


def test_complete_checks_the_predictions_checksum(tmp_path):
    cdir = tmp_path / "cells" / "abc123def456"
    cdir.mkdir(parents=True)
    np.savez(cdir / PREDICTIONS_FILE, labels=np.arange(7), preds=np.arange(7))
    data = {**full_result(), "predictions_sha256": file_sha256(cdir / PREDICTIONS_FILE)}
    (cdir / RESULT_FILE).write_text(json.dumps(data))
    [cell] = read_results(tmp_path)
    assert cell.complete()
    (cdir / RESULT_FILE).write_text(json.dumps({**data, "predictions_sha256": "f" * 64}))
    assert not read_cell(cdir / RESULT_FILE).complete()
    (cdir / PREDICTIONS_FILE).unlink()
    (cdir / RESULT_FILE).write_text(json.dumps(data))
    assert not read_cell(cdir / RESULT_FILE).complete()


def test_cross_predictions_file_name():
    assert cross_predictions_file("synfer:n=900") == "predictions-synfer_n=900.npz"
    assert cross_predictions_file("a/b c") == "predictions-a_b_c.npz"


def test_a_result_built_in_code_writes_the_base_keys_then_its_extras():
    cell = CellResult(cell_id="abc", status="ok", extra={"finished_at": "now"})
    data = cell.to_json()
    assert list(data)[:3] == ["schema", "cell_id", "status"] and data["finished_at"] == "now"
    assert CellResult.from_json(data) == cell


def test_checkpoint_of_a_model_with_shared_towers_is_written_once_per_tensor(tmp_path):
    """A CLIP text tower reached from the backbone and from the head shares its tensors;
    safetensors refuses shared tensors, so the second name is stored as an alias."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save
    from torch import nn

    from fer_bench.run.cell_files import unshared

    tower = nn.Linear(4, 3)
    model = nn.ModuleDict({"backbone": nn.ModuleDict({"paired_text": tower}),
                           "head": nn.ModuleDict({"class_text": tower, "own": nn.Linear(3, 2)})})
    sd = model.state_dict()
    with pytest.raises(RuntimeError, match="share memory"):
        save(sd)
    state, aliases = unshared(sd)
    assert aliases == {"head.class_text.weight": "backbone.paired_text.weight",
                       "head.class_text.bias": "backbone.paired_text.bias"}
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(save(state, metadata={"aliases": json.dumps(aliases)}))
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["aliases"]) == aliases
        assert set(f.keys()) == set(sd) - set(aliases)
        assert torch.equal(f.get_tensor("backbone.paired_text.weight"), tower.weight)
