"""A cell that raises, diverges (NaN/inf loss) or runs out of memory is recorded as failed with
its reason and the matrix goes on; the run exits non-zero and lists them. A result that cannot be
written (disk full) stops the matrix with a clear error and leaves no partial file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from fer_bench import atomic
from fer_bench.run import ResultNotSaved, run_plan

from .conftest import cells_of, cli, run_args
from .test_kill import tiny_cells

FAULTY = {"rel_raise": "RuntimeError: boom: the backbone raised",
          "rel_nan": "non-finite loss",
          "rel_inf": "non-finite loss",
          "rel_oom": "OutOfMemoryError: CUDA out of memory"}


def test_failed_cells_are_recorded_and_the_matrix_goes_on(tmp_path: Path, plugin, monkeypatch,
                                                          capsys):
    out = tmp_path / "run"
    backbones = ",".join([*FAULTY, "rel_tiny"])  # the healthy cell comes after all failures
    code, stdout, stderr = cli(monkeypatch, capsys, run_args(out, backbones, "0"))
    assert code == 1  # some cells failed
    results = {r["backbone"]: r for r in
               (json.loads(p.read_text()) for p in out.glob("cells/*/result.json"))}
    assert set(results) == {*FAULTY, "rel_tiny"}
    assert results["rel_tiny"]["status"] == "ok"
    assert (out / "cells" / results["rel_tiny"]["cell_id"] / "predictions.npz").is_file()
    assert "1 ran, 0 skipped (already complete), 4 failed" in stdout.replace("\n", " ")
    for name, reason in FAULTY.items():
        r = results[name]
        assert r["status"] == "failed" and reason in r["error"], r["error"]
        assert r["metrics"] is None and "Traceback" in r["traceback"]
        assert f"{r['cell_id']}: " in stderr  # the summary lists each failed cell and why
    # out of memory is retried with halved batches first (same effective batch), then reported
    assert "still out of memory at batch size 1 after 8 halvings" in results["rel_oom"]["error"]
    assert "epoch 1, step 1" in results["rel_nan"]["error"]  # stopped at the first bad step

    # failed cells are retried by the next run; the finished one is kept
    code, stdout, _ = cli(monkeypatch, capsys, run_args(out, backbones, "0"))
    assert code == 1 and "0 ran, 1 skipped (already complete), 4 failed" in stdout.replace(
        "\n", " ")


def test_disk_full_on_a_result_stops_the_matrix_cleanly(tmp_path: Path, plugin, monkeypatch):
    out = tmp_path / "run"
    cells = tiny_cells()
    full = {"on": False}
    real = atomic.atomic_write

    def write(path, writer):
        if not full["on"] or Path(path).name != "result.json":
            return real(path, writer)

        def half_then_enospc(f):
            f.write(b'{"schema": 1, "cell_id": ')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(path, half_then_enospc)

    monkeypatch.setattr(atomic, "atomic_write", write)
    started = []

    def start(cell, i):
        started.append(cell.cell_id)
        full["on"] = len(started) == 2  # the disk fills during the second cell

    with pytest.raises(ResultNotSaved) as e:
        run_plan(cells, out, on_cell_start=start)
    msg = str(e.value)
    second = cells[1].cell_id
    assert "disk full" in msg and str(out / "cells" / second / "result.json") in msg
    assert second in msg and "accuracy" in msg  # the finished cell's metrics are not silent
    assert started == [cells[0].cell_id, second]  # the third cell was not started
    on_disk = cells_of(out)
    assert "result.json" in on_disk[cells[0].cell_id]
    assert not any(n == "result.json" or n.endswith(".tmp") for n in on_disk[second])

    full["on"] = False
    monkeypatch.setattr(atomic, "atomic_write", real)
    before = on_disk[cells[0].cell_id]
    summary = run_plan(cells, out)
    assert summary.skipped == [cells[0].cell_id] and summary.ran == [second, cells[2].cell_id]
    assert cells_of(out)[cells[0].cell_id] == before


def test_disk_full_exits_2_with_one_clear_line(tmp_path: Path, plugin, monkeypatch, capsys):
    def enospc(path, writer):
        raise atomic.WriteError(Path(path), OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(atomic, "atomic_write", enospc)
    code, _, err = cli(monkeypatch, capsys, run_args(tmp_path / "run", "rel_tiny", "0"))
    assert code == 2 and "disk full" in err and "Traceback" not in err


def test_non_finite_numbers_in_a_result_are_written_as_null(tmp_path: Path, plugin,
                                                            monkeypatch):
    from fer_bench.train import engine

    real = engine.run_cell

    def diverged_validation(cell, progress=None, *args, **kwargs):
        output = real(cell, progress, *args, **kwargs)
        output.history[0]["val_loss"] = float("inf")  # e.g. overflowing validation logits
        return output

    monkeypatch.setattr(engine, "run_cell", diverged_validation)
    cells = tiny_cells((0,))
    summary = run_plan(cells, tmp_path)
    assert summary.ran == [cells[0].cell_id]
    result = json.loads((tmp_path / "cells" / cells[0].cell_id / "result.json").read_text())
    assert result["history"][0]["val_loss"] is None
