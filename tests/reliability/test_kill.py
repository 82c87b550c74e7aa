"""SIGKILL at any moment of a cell: no partial result is ever visible, finished cells keep their
bytes, and the next run completes only what is missing. Each test runs `fer-bench run` in a child
process, freezes it at the chosen moment of its second cell (tests/reliability/faults_plugin.py),
kills it there, inspects the directory, and resumes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fer_bench.plan import Benchmark, TrainConfig, expand
from fer_bench.run import run_plan

from .conftest import Child, cells_of, run_args


def tiny_cells(seeds=(0, 1, 2)):
    """The cells `run_args` makes on the command line (same ids)."""
    bench = Benchmark(backbones=["rel_tiny"], heads=["linear"], datasets=["relfer"],
                      seeds=list(seeds), train=replace(TrainConfig(), epochs=1, device="cpu"))
    return expand(bench)


@pytest.mark.parametrize("phase", ["train", "eval", "predictions", "result"])
def test_sigkill_mid_cell_loses_nothing(tmp_path: Path, plugin, phase: str):
    out = tmp_path / "run"
    child = Child(run_args(out), tmp_path / "events.log", freeze=f"{phase}:2")
    child.wait_for(f"frozen {phase}")
    child.kill()

    cells = tiny_cells()
    first, second, third = (c.cell_id for c in cells)
    on_disk = cells_of(out)
    # every result.json that exists is whole and says ok; the killed cell has none
    done = {cid for cid, files in on_disk.items() if "result.json" in files}
    assert done == {first}
    assert json.loads(on_disk[first]["result.json"])["status"] == "ok"
    killed = on_disk.get(second, {})
    assert "result.json" not in killed
    if phase == "predictions":  # half-written predictions exist only as a temp file
        assert "predictions.npz" not in killed
        assert any(n.endswith(".tmp") for n in killed)
    if phase == "result":
        assert any(n.startswith(".result.json.") for n in killed)

    summary = run_plan(cells, out, wait=False)
    assert summary.skipped == [first] and summary.ran == [second, third]
    assert not summary.failed
    after = cells_of(out)
    assert after[first] == on_disk[first]  # finished cell: byte for byte untouched
    for cid in (second, third):
        # temps cleaned up; the cell's log is kept (appended to by each attempt)
        assert set(after[cid]) == {"predictions.npz", "result.json", "train.log"}
        assert json.loads(after[cid]["result.json"])["status"] == "ok"


def test_killed_run_resumes_through_the_cli(tmp_path: Path, plugin):
    out = tmp_path / "run"
    child = Child(run_args(out), tmp_path / "events.log", freeze="train:3")
    child.wait_for("frozen train")
    child.kill()
    before = cells_of(out)
    assert len([c for c in before.values() if "result.json" in c]) == 2

    resumed = Child(run_args(out), tmp_path / "events2.log")
    code, output = resumed.finish()
    assert code == 0, output
    assert "1 ran, 2 skipped" in output
    assert resumed.events() == ["start"]  # only the missing cell was trained
    after = cells_of(out)
    for cid, files in before.items():
        if "result.json" in files:
            assert after[cid] == files
