"""Shared helpers for the reliability suite: the fault plugin, a tiny matrix, and fer-bench run as
a separate process that a test can kill at a chosen moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLUGIN = Path(__file__).with_name("faults_plugin.py")
SAFETY_S = 240  # a hung child fails the test instead of hanging the suite (not a speed check)


def run_args(out: Path, backbones: str = "rel_tiny", seeds: str = "0,1,2",
             *extra: str) -> list[str]:
    return ["run", "--plugin", str(PLUGIN), "--backbones", backbones, "--heads", "linear",
            "--dataset", "relfer", "--seeds", seeds, "--epochs", "1", "--device", "cpu",
            "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def plugin():
    """The fault plugin, loaded into this process (registers relfer and the rel_* backbones),
    and unregistered afterwards so that other tests see the registries as they were."""
    from fer_bench.backbones import BACKBONES, parse_spec
    from fer_bench.data import DATASETS
    from fer_bench.registry import load_plugin

    parse_spec("timm:resnet18")  # built-in backbones register themselves on first use
    registries = (BACKBONES, DATASETS)
    before = [set(r.names()) for r in registries]  # names() also loads entry points first
    modules = set(sys.modules)
    load_plugin(PLUGIN)
    added = [set(r.names()) - names for r, names in zip(registries, before, strict=True)]
    yield PLUGIN
    for registry, names in zip(registries, added, strict=True):
        for name in names:
            registry._entries.pop(name, None)
    for name in set(sys.modules) - modules:
        if name.startswith("fer_bench_plugin_"):
            del sys.modules[name]


def cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str, str]:
    """`fer-bench ARGS` in this process, through the real entry point: (exit code, out, err)."""
    from fer_bench.cli import main

    monkeypatch.setattr(sys, "argv", ["fer-bench", *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err


def cells_of(out: Path) -> dict[str, dict[str, bytes]]:
    """cell id -> {file name: bytes} for every file in every cell directory."""
    return {d.name: {f.name: f.read_bytes() for f in sorted(d.iterdir()) if f.is_file()}
            for d in sorted((out / "cells").glob("*")) if d.is_dir()}


def results_of(out: Path) -> dict[str, bytes]:
    return {d.name: (d / "result.json").read_bytes()
            for d in sorted((out / "cells").glob("*")) if (d / "result.json").is_file()}


class Child:
    """`python -m fer_bench ...` in its own process, logging cell events to `log`."""

    def __init__(self, args: list[str], log: Path, freeze: str = "", gate: Path | None = None):
        env = {**os.environ, "FER_REL_LOG": str(log), "FER_REL_FREEZE": freeze,
               "FER_REL_GATE": str(gate or ""), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "fer_bench", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def events(self) -> list[str]:
        if not self.log.exists():
            return []
        mine = str(self.proc.pid)
        return [ln.split(" ", 1)[1] for ln in self.log.read_text().splitlines()
                if ln.split(" ", 1)[0] == mine]

    def wait_for(self, event: str, count: int = 1) -> None:
        deadline = time.monotonic() + SAFETY_S
        while self.events().count(event) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited ({self.proc.returncode}) before {event!r}:\n"
                                     + self.proc.stdout.read())
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"child never reached {event!r}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()

    def finish(self) -> tuple[int, str]:
        try:
            out, _ = self.proc.communicate(timeout=SAFETY_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("child did not finish") from None
        return self.proc.returncode, out
