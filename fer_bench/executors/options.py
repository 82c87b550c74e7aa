"""The options of `fer-bench run`'s executors, checked before anything is submitted, and the
optional packages (ray, submitit) an executor needs."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ..errors import ConfigError, FerBenchError

EXECUTORS = ("local", "ray", "slurm")


@dataclass
class ExecOptions:
    executor: str = "local"
    isolate: bool = False
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    ray_address: str | None = None
    max_retries: int = 2
    slurm_partition: str | None = None
    slurm_time: str = "24:00:00"
    slurm_mem: str | None = None
    slurm_gpus: int = 1
    slurm_array_parallelism: int = 64
    plugins: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor {self.executor!r}: expected one of "
                              f"{', '.join(EXECUTORS)}")
        if self.cpus_per_cell <= 0:
            raise ConfigError("--cpus-per-cell must be > 0")
        if self.gpus_per_cell < 0:
            raise ConfigError("--gpus-per-cell must be >= 0")
        if self.gpus_per_cell > 1 and self.gpus_per_cell != int(self.gpus_per_cell):
            raise ConfigError(f"--gpus-per-cell {self.gpus_per_cell}: above 1, a whole number "
                              "(a cell on N GPUs runs as N torchrun processes)")
        if self.max_retries < 0:
            raise ConfigError("--max-retries must be >= 0")
        if self.slurm_gpus < 0:
            raise ConfigError("--slurm-gpus must be >= 0")
        if self.slurm_array_parallelism < 1:
            raise ConfigError("--slurm-array-parallelism must be >= 1")
        if self.isolate and self.executor != "local":
            raise ConfigError(f"--isolate is for --executor local ({self.executor} already "
                              "runs each cell in its own worker process)")


def require_extra(module: str, extra: str, flag: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FerBenchError(f"{flag} needs the {module!r} package: pip install "
                            f"'fer-bench[{extra}]'") from None


def all_plugins(plugins: list[Path] | None) -> list[str]:
    """--plugin files and FER_BENCH_PLUGINS, as absolute paths: workers on other processes or
    machines load the same files (on a shared file system)."""
    env = [p for p in os.environ.get("FER_BENCH_PLUGINS", "").split(os.pathsep) if p]
    return [str(Path(p).expanduser().resolve()) for p in [*(plugins or []), *env]]
