"""Executors: shards cover a matrix exactly once; `--isolate` survives a cell that kills its
process; a local Ray instance finishes every cell exactly once although a worker is SIGKILLed
mid-cell; submitit's local executor runs a two-cell array; the SLURM dry run prints sbatch
parameters."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fer_bench.errors import ConfigError, FerBenchError
from fer_bench.executors import ExecOptions, execute, require_extra
from fer_bench.executors.cells import parse_shard, read_events, shard
from fer_bench.plan import Benchmark, Cell, TrainConfig, expand

from .conftest import TINY

SAFETY_S = 300  # a hung cluster fails the test instead of hanging the suite (not a speed check)

# Wraps the real fer_cnn: the first training forward in any process (claimed with O_EXCL)
# logs its pid and freezes, so the test can SIGKILL that worker in the middle of a cell.
FREEZE_PLUGIN = '''
import os, time
from pathlib import Path
import torch
import fer_bench.backbones.fer_nets  # registers fer_cnn
from fer_bench.backbones import BACKBONES

HERE = Path(__file__).parent
entry = BACKBONES.get("fer_cnn")
real = entry.obj

def _freeze_once(module, args):
    if not (module.training and torch.is_grad_enabled()):
        return
    try:
        os.close(os.open(HERE / "claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    with open(HERE / "frozen", "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the test kills this process
        time.sleep(0.05)

def fer_cnn(*a, **k):
    m = real(*a, **k)
    m.register_forward_pre_hook(_freeze_once)
    return m

if not getattr(real, "_frozen_wrapper", False):
    fer_cnn._frozen_wrapper = True
    entry.obj = fer_cnn
'''

# A backbone whose training kills its own process (a segfault or an OOM kill, as seen from
# outside): only --isolate keeps the matrix alive.
CRASH_PLUGIN = '''
import os, signal
from torch import nn
from fer_bench.backbones import register_backbone

class Crash(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(48 * 48, 8)

    def forward(self, x):
        if self.training:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.fc(x.flatten(1))

@register_backbone("exec_crash", input_size=48, in_chans=1, mean=(0.5,), std=(0.5,),
                   feature_dim=8)
def exec_crash(weights: str = "none"):
    return Crash()
'''


def tiny_cells(backbones=("fer_cnn",), seeds=(0, 1, 2)):
    bench = Benchmark(backbones=list(backbones), heads=["linear"], datasets=[TINY],
                      seeds=list(seeds),
                      train=replace(TrainConfig(), epochs=1, batch_size=32, device="cpu"))
    return expand(bench)


def results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())
            for p in (out / "cells").glob("*/result.json")}


def by_cell(events: list[dict], kind: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        if e["event"] == kind:
            counts[e["cell_id"]] = counts.get(e["cell_id"], 0) + 1
    return counts


# ------------------------------------------------------------------------------------- shards

def test_shards_cover_the_matrix_exactly_once():
    bench = Benchmark(backbones=["fer_cnn", "timm:resnet18", "open_clip:RN50@openai"],
                      heads=["linear", "lasted", "probe"], prompts=["classnames", "clip_fer2013"],
                      seeds=[0, 1, 2])
    cells = expand(bench)
    ids = [c.cell_id for c in cells]
    for n in (1, 2, 3, 5, len(cells) + 2):
        parts = [[c.cell_id for c in shard(cells, i, n)] for i in range(n)]
        flat = [cid for p in parts for cid in p]
        assert sorted(flat) == sorted(ids)  # every cell once, none twice
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
        # the same shards whatever order the cells come in (flags in another order, ...)
        assert [[c.cell_id for c in shard(cells[::-1], i, n)] for i in range(n)] == parts


def test_shard_spec_is_checked():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/3", "1", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_cell_roundtrips_through_json():
    for c in tiny_cells(seeds=(0, 7)):
        again = Cell.from_config(json.loads(json.dumps(c.config())))
        assert again == c and again.cell_id == c.cell_id


def test_missing_extra_names_it():
    with pytest.raises(FerBenchError, match=r"pip install 'fer-bench\[ray\]'"):
        require_extra("fer_bench_no_such_module", "ray", "--executor ray")


# ------------------------------------------------------------------------------------ isolate

@pytest.mark.slow
def test_isolate_survives_a_cell_that_kills_its_process(tmp_path: Path):
    from fer_bench.registry import load_plugin

    plugin = tmp_path / "crash_plugin.py"
    plugin.write_text(CRASH_PLUGIN)
    load_plugin(plugin)  # the driver validates names; the children load it themselves
    cells = tiny_cells(backbones=("exec_crash", "fer_cnn"), seeds=(0,))
    out = tmp_path / "run"
    summary = execute(cells, out, ExecOptions(isolate=True, plugins=[str(plugin)]))
    crash, ok = cells
    assert summary.ran == [ok.cell_id]
    assert "SIGKILL" in summary.failed[crash.cell_id]
    res = results(out)
    assert res[ok.cell_id]["status"] == "ok"
    assert res[crash.cell_id]["status"] == "failed"  # recorded, as an in-process failure is
    assert "SIGKILL" in res[crash.cell_id]["error"]
    again = execute(cells, out, ExecOptions(isolate=True, plugins=[str(plugin)]))
    assert again.skipped == [ok.cell_id]  # resume: the finished cell is not redone


# ---------------------------------------------------------------------------------------- ray

@pytest.mark.slow
def test_ray_finishes_every_cell_once_when_a_worker_is_killed(tmp_path: Path):
    import threading

    import ray

    plugin = tmp_path / "freeze_plugin.py"
    plugin.write_text(FREEZE_PLUGIN)
    cells, out = tiny_cells(), tmp_path / "run"
    killed: dict = {}

    def killer() -> None:  # SIGKILL the worker that froze in the middle of training
        deadline = time.monotonic() + SAFETY_S
        while not (tmp_path / "frozen").exists() or not (tmp_path / "frozen").read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        pid = int((tmp_path / "frozen").read_text())
        starts = [e for e in read_events(out) if e["event"] == "start" and e["pid"] == pid]
        killed["cell_id"] = starts[-1]["cell_id"]
        killed["had_result"] = (out / "cells" / killed["cell_id"] / "result.json").exists()
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # local, private
    try:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        summary = execute(cells, out, ExecOptions(executor="ray", max_retries=2,
                                                  plugins=[str(plugin)]))
        thread.join(timeout=5)
    finally:
        ray.shutdown()

    assert killed.get("pid"), "no worker froze: the kill never happened"
    assert killed["had_result"] is False  # it was killed mid-cell
    assert not summary.failed and sorted(summary.ran) == sorted(c.cell_id for c in cells)
    res = results(out)
    assert len(res) == len(cells) and all(r["status"] == "ok" for r in res.values())
    events = read_events(out)
    starts, ends = by_cell(events, "start"), by_cell(events, "end")
    assert ends == {c.cell_id: 1 for c in cells}  # every cell completed exactly once
    assert starts[killed["cell_id"]] == 2  # the killed cell was retried once ...
    assert sum(starts.values()) == len(cells) + 1  # ... and no other cell ran twice
    assert {e["executor"] for e in events} == {"ray"}
    assert all(e["pid"] != os.getpid() for e in events)  # ran in Ray workers, not here


# -------------------------------------------------------------------------------------- slurm

@pytest.mark.slow
def test_submitit_local_executor_runs_a_two_cell_array(tmp_path: Path):
    from fer_bench.executors.slurm import run_slurm

    cells, out = tiny_cells(seeds=(0, 1)), tmp_path / "run"
    reports: dict = {}
    opts = ExecOptions(executor="slurm", slurm_partition="gpu", slurm_time="0:30:00")
    opts.validate()
    run_slurm(cells, out, opts, rerun=False, cluster="local",
              on_result=lambda c, r: reports.setdefault(c.cell_id, r))
    assert {cid: r["status"] for cid, r in reports.items()} == {c.cell_id: "ran" for c in cells}
    assert all(r["status"] == "ok" for r in results(out).values()) and len(results(out)) == 2
    events = read_events(out)
    assert by_cell(events, "end") == {c.cell_id: 1 for c in cells}
    assert {e["executor"] for e in events} == {"slurm"}
    assert len({e["pid"] for e in events}) == 2  # one process per array task
    assert (out / "logs" / "slurm").is_dir()  # submitit's logs live beside the results


def test_slurm_dry_run_prints_sbatch_parameters(tmp_path: Path, monkeypatch, capsys):
    from fer_bench.cli import main

    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [
        "fer-bench", "run", "--backbones", "fer_cnn", "--heads", "linear", "--dataset", TINY,
        "--seeds", "0,1,2", "--out", str(out), "--executor", "slurm", "--dry-run",
        "--slurm-partition", "gpu", "--slurm-time", "2:00:00", "--slurm-mem", "32G",
        "--slurm-gpus", "2", "--cpus-per-cell", "8", "--slurm-array-parallelism", "2"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    text = capsys.readouterr().out
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --mem=32GB",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --array=0-2%2"):
        assert line in text, line
    assert not out.exists() or not any(out.iterdir())  # a dry run submits and writes nothing


def test_bad_executor_flags_fail_in_one_line(tmp_path: Path, monkeypatch, capsys):
    from fer_bench.cli import main

    for flags, msg in ((["--executor", "yarn"], "'yarn' is not one of"),
                       (["--executor", "ray", "--isolate"], "--isolate"),
                       (["--shard", "3/3"], "--shard '3/3'"),
                       (["--executor", "slurm", "--slurm-time", "soon", "--dry-run"],
                        "--slurm-time")):
        monkeypatch.setattr(sys, "argv", ["fer-bench", "run", "--backbones", "fer_cnn",
                                          "--heads", "linear", "--dataset", TINY, "--out",
                                          str(tmp_path / "x"), *flags])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
