"""Two `fer-bench run` processes on one output directory: every cell runs exactly once, the
second process takes the free cells and adopts the results of the cell the first is running,
and a killed process's cell lock never blocks anyone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fer_bench.run import run_plan

from .conftest import SAFETY_S, Child, results_of, run_args
from .test_kill import tiny_cells


@pytest.mark.slow  # two child processes, one after the other
def test_two_runs_share_the_matrix_and_run_each_cell_once(tmp_path: Path, plugin):
    out, log, gate = tmp_path / "run", tmp_path / "events.log", tmp_path / "gate"
    gate.touch()
    args = run_args(out, "rel_tiny", "0,1,2,3")
    a = Child(args, log, freeze="train:1", gate=gate)  # holds cell 1 until the gate opens
    a.wait_for("frozen train")
    b = Child(args, log)
    b.wait_for("start", 3)  # b skips the locked cell 1 and runs cells 2-4
    deadline = time.monotonic() + SAFETY_S
    while len(results_of(out)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.proc.poll() is None  # ... then waits for cell 1 instead of finishing without it
    gate.unlink()
    code_a, out_a = a.finish()
    code_b, out_b = b.finish()
    assert code_a == 0 and code_b == 0, out_a + out_b

    starts = [ln for ln in log.read_text().splitlines() if ln.endswith(" start")]
    assert len(starts) == 4  # four cells, four trainings across both processes
    assert a.events().count("start") == 1 and b.events().count("start") == 3
    assert "1 ran, 3 skipped" in out_a  # a found b's three results after its own cell
    assert "3 ran, 1 skipped" in out_b  # b adopted a's result for cell 1
    results = results_of(out)
    assert len(results) == 4
    assert all(json.loads(r)["status"] == "ok" for r in results.values())


def test_cell_locked_by_a_killed_run_is_run_by_the_next(tmp_path: Path, plugin):
    out, log = tmp_path / "run", tmp_path / "events.log"
    a = Child(run_args(out, "rel_tiny", "0,1"), log, freeze="train:1")
    a.wait_for("frozen train")
    cells = tiny_cells((0, 1))
    # while a is alive, its cell is "running elsewhere" and left to it
    busy = run_plan(cells, out, wait=False)
    assert busy.ran == [cells[1].cell_id] and busy.skipped == [] and not busy.failed
    assert busy.busy == {cells[0].cell_id: busy.busy[cells[0].cell_id]}
    assert f"pid {a.proc.pid} on " in busy.busy[cells[0].cell_id]  # who holds it, for messages
    a.kill()  # SIGKILL: no chance to release anything
    summary = run_plan(cells, out, wait=False)
    assert summary.ran == [cells[0].cell_id] and summary.skipped == [cells[1].cell_id]
    assert len(results_of(out)) == 2
