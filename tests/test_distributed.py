"""One cell across processes: `fer-bench run --nproc 2` (torchrun, DDP, gloo on CPU) gives the
single-process result on the same data and seed, and only rank 0 writes.

Why equality is meaningful here: the test backbone has no batch norm (per-rank batch statistics
would differ from the global batch's), every rank augments the whole global batch from the same
generator and trains on its half, so DDP's averaged gradient is the global batch's gradient up
to float rounding. Both runs use one thread per process (torchrun's default): summation order
is then the only difference, and it is far below the tolerances below."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.executors.torchrun import strip_nproc, torchrun_command
from fer_bench.train import distributed

from .conftest import TINY

PLUGIN = '''
import os
from torch import nn
from fer_bench.backbones import register_backbone

@register_backbone("ddp_mlp", input_size=24, in_chans=1, mean=(0.5,), std=(0.5,),
                   feature_dim=32)
def ddp_mlp(weights: str = "none") -> nn.Module:
    with open(os.environ["DDP_TEST_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    return nn.Sequential(nn.Flatten(), nn.Linear(24 * 24, 64), nn.ReLU(), nn.Linear(64, 32))
'''


def _run(tmp: Path, out: str, *extra: str) -> tuple[Path, list[str]]:
    plugin, log = tmp / "ddp_plugin.py", tmp / f"{out}.log"
    plugin.write_text(PLUGIN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "DDP_TEST_LOG": str(log)}
    args = ["run", "--plugin", str(plugin), "--backbones", "ddp_mlp", "--heads", "linear",
            "--dataset", TINY, "--epochs", "2", "--batch-size", "32", "--device", "cpu",
            # fp32: the comparison is about DDP's arithmetic, not bf16 rounding (amp=auto picks
            # bf16 on CPUs with AMX)
            "--set", "amp=off", "--quiet", "--out", str(tmp / out), *extra]
    proc = subprocess.run([sys.executable, "-m", "fer_bench", *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return tmp / out, log.read_text().split()


@pytest.mark.slow
def test_two_ddp_processes_match_one_process(tmp_path: Path):
    single, single_builds = _run(tmp_path, "single")
    multi, multi_builds = _run(tmp_path, "multi", "--nproc", "2")
    assert len(single_builds) == 1
    assert len(set(multi_builds)) == 2  # both ranks built and trained the cell

    cells = sorted((multi / "cells").iterdir())
    assert len(cells) == 1 and not (multi / "cells" / ".tmp").exists()  # one writer, one result
    a, b = single / "cells" / cells[0].name, cells[0]  # same config -> same cell id
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    assert rb["status"] == "ok"
    for ha, hb in zip(ra["history"], rb["history"], strict=True):
        for key in ("train_loss", "val_loss"):
            assert hb[key] == pytest.approx(ha[key], abs=1e-5), key
    pa, pb = np.load(a / "predictions.npz"), np.load(b / "predictions.npz")
    assert np.array_equal(pa["labels"], pb["labels"])  # gathered in order: the whole test split
    np.testing.assert_allclose(pb["scores"], pa["scores"], atol=1e-5)
    assert ra["metrics"]["accuracy"] == rb["metrics"]["accuracy"]


def test_single_process_hooks_are_identity():
    x, y = torch.arange(10.0), torch.arange(10)
    assert not distributed.active()
    assert distributed.shard_batch(x, y) == (x, y)
    assert distributed.eval_range(7) == range(7)
    assert distributed.gather_rows(x, 10) is x
    assert distributed.average(torch.tensor(2.5)).item() == 2.5


def test_nproc_relaunch_command():
    argv = ["run", "-b", "demo", "--nproc", "4", "--epochs", "1", "--nproc=2"]
    assert strip_nproc(argv) == ["run", "-b", "demo", "--epochs", "1"]
    cmd = torchrun_command(4, ["fer_bench", "run"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in cmd and cmd[-2:] == ["fer_bench", "run"]
