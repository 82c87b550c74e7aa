"""One cell across several GPUs: `fer-bench run --nproc N` re-launches the same command under
`torchrun`, and under torchrun every rank walks the matrix with rank 0 (see
`fer_bench.train.distributed`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError
from ..plan import Cell
from ..train import distributed

T = TypeVar("T")


def torchrun_command(nproc: int, module_args: list[str]) -> list[str]:
    """`torchrun --standalone --nproc-per-node N -m ...` with this interpreter (so the same
    environment), on one node; --standalone picks a free local rendezvous port."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", *module_args]


def strip_nproc(argv: list[str]) -> list[str]:
    """The command line without `--nproc N` / `--nproc=N` (the ranks must not relaunch)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_cli(nproc: int, argv: list[str] | None = None) -> int:
    """Run this `fer-bench run ...` command again as N ranks; returns torchrun's exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if "run" not in argv:
        raise ConfigError("--nproc: cannot find the `run` command line to relaunch; call "
                          "`torchrun --nproc-per-node N -m fer_bench run ...` instead")
    return subprocess.call(torchrun_command(nproc, ["fer_bench", *strip_nproc(argv)]))


def on_ranks(lead: Callable[[], T], device: str = "auto") -> T | None:
    """Under torchrun: rank 0 runs `lead` (the normal runner: locks, skips, writes) and
    announces each cell it starts; the other ranks join those cells and write nothing."""
    from ..train.engine import run_cell

    distributed.init_from_env(device)
    try:
        if distributed.rank() == 0:
            distributed.lead()
            try:
                return lead()
            finally:
                distributed.release()
                distributed.quiesce()
        distributed.follow(run_cell, Cell.from_config)
        distributed.quiesce()
        return None
    finally:
        distributed.shutdown()


def run_job_on_ranks(payload: dict) -> dict:
    """A Ray task or SLURM job holding N GPUs: run its cell as N torchrun ranks in
    subprocesses and return rank 0's report."""
    nproc = int(payload["nproc"])
    logs = Path(payload["out"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="job-", suffix=".json", dir=logs)
    report = Path(name + ".result")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({**payload, "nproc": 1}, f)
        code = subprocess.call(torchrun_command(
            nproc, ["fer_bench.executors.worker", name, str(report)]))
        if code != 0 or not report.is_file():
            return {"cell_id": None, "status": "failed",
                    "error": f"torchrun with {nproc} processes exited with code {code}"}
        return json.loads(report.read_text())
    finally:
        for p in (Path(name), report):
            p.unlink(missing_ok=True)
