"""`--executor slurm`: the cells as one SLURM job array, submitted through submitit (no sbatch
script to maintain). Each array task runs one cell with the runner's lock and atomic writes on
the shared file system; the driver waits and prints the leaderboard (or, if it is stopped, the
jobs go on and `fer-bench leaderboard <out>` reads their results later)."""

from __future__ import annotations

import math
import re
import shlex
import sys
from pathlib import Path

from ..errors import ConfigError
from ..plan import Cell
from ..run import is_complete
from .cells import make_payload, record_crash, run_job
from .options import require_extra

SUBMITIT_DIR = Path("logs") / "slurm"


def parse_minutes(value: str) -> int:
    """SLURM time (`MM`, `HH:MM:SS`, `D-HH:MM:SS`, `D-HH`) -> minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not m:
        raise ConfigError(f"--slurm-time {value!r}: expected MINUTES, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        minutes = days * 1440 + a * 60 + (b or 0) + (1 if c else 0)
    elif c is not None:   # HH:MM:SS
        minutes = a * 60 + b + (1 if c else 0)
    elif b is not None:   # MM:SS
        minutes = a + (1 if b else 0)
    else:                 # MM
        minutes = a
    if minutes < 1:
        raise ConfigError(f"--slurm-time {value!r}: must be at least one minute")
    return minutes


def parse_mem_gb(value: str | None) -> int | None:
    """`64G`, `64GB`, `500M`, `1T` or a number of GB -> whole GB (rounded up)."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", value.strip(), re.IGNORECASE)
    if not m:
        raise ConfigError(f"--slurm-mem {value!r}: expected e.g. 64G, 500M or 1T")
    scale = {"": 1, "K": 1 / 2**20, "M": 1 / 1024, "G": 1, "T": 1024}[m.group(2).upper()]
    return max(1, math.ceil(float(m.group(1)) * scale))


def parameters(opts, n_cells: int, name: str) -> dict:
    """submitit's generic parameters (AutoExecutor names) for these options."""
    params = {"name": f"fer-bench-{name}", "timeout_min": parse_minutes(opts.slurm_time),
              "cpus_per_task": max(1, int(opts.cpus_per_cell)), "gpus_per_node": opts.slurm_gpus,
              "slurm_array_parallelism": min(opts.slurm_array_parallelism, max(1, n_cells))}
    mem = parse_mem_gb(opts.slurm_mem)
    if mem is not None:
        params["mem_gb"] = mem
    if opts.slurm_partition:
        params["slurm_partition"] = opts.slurm_partition
    return params


def sbatch_preview(opts, out: Path, n_cells: int, name: str) -> str:
    """The sbatch script submitit would submit for the array (for `--dry-run`)."""
    from submitit.slurm.slurm import _make_sbatch_string

    p = parameters(opts, n_cells, name)
    kwargs = {"job_name": p["name"], "time": p["timeout_min"],
              "cpus_per_task": p["cpus_per_task"], "gpus_per_node": p["gpus_per_node"] or None,
              "array_parallelism": p["slurm_array_parallelism"], "map_count": n_cells,
              "partition": p.get("slurm_partition")}
    if "mem_gb" in p:
        kwargs["mem"] = f"{p['mem_gb']}GB"
    folder = Path(out).resolve() / SUBMITIT_DIR / "%j"
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {folder}"
    return _make_sbatch_string(command=command, folder=folder, **kwargs)


def dry_run(cells: list[Cell], out: Path, opts, name: str) -> str:
    require_extra("submitit", "slurm", "--executor slurm")
    todo = [c for c in cells if not is_complete(out, c)]
    width = min(opts.slurm_array_parallelism, max(1, len(todo)))
    head = (f"# {len(todo)} of {len(cells)} cells to run as one SLURM array "
            f"(--array=0-{max(0, len(todo) - 1)}%{width}), one cell per task, results in "
            f"{out}/cells/\n")
    return head + sbatch_preview(opts, out, max(1, len(todo)), name)


def slurm_cell(payload: dict) -> dict:
    """One array task: a cell on the GPUs SLURM gave it (torchrun across them when > 1)."""
    return run_job(payload)


def run_slurm(cells: list[Cell], out: Path, opts, *, rerun: bool, on_result,
              cluster: str | None = None, name: str = "matrix") -> None:
    """Submit the cells not yet complete as one array and wait for them. `cluster` is
    submitit's: None (SLURM, detected), "local" or "debug" (tests, laptops)."""
    submitit = require_extra("submitit", "slurm", "--executor slurm")
    todo = []
    for cell in cells:
        if not rerun and is_complete(out, cell):
            on_result(cell, {"cell_id": cell.cell_id, "status": "skipped", "error": None})
        else:
            todo.append(cell)
    if not todo:
        return
    folder = Path(out).resolve() / SUBMITIT_DIR / "%j"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as e:  # no sbatch/srun here
        raise ConfigError(f"--executor slurm: {e} (run from a SLURM login node; "
                          "--dry-run prints the sbatch parameters anywhere)") from None
    executor.update_parameters(**parameters(opts, len(todo), name))
    nproc = opts.slurm_gpus if opts.slurm_gpus >= 2 else 1
    payloads = [make_payload(c, out, plugins=opts.plugins, rerun=rerun, executor="slurm",
                             nproc=nproc, threads=max(1, int(opts.cpus_per_cell)))
                for c in todo]
    jobs = executor.map_array(slurm_cell, payloads)
    for cell, job in zip(todo, jobs, strict=True):
        try:
            report = job.result()
        except Exception as e:  # the job died (timeout, node failure, preemption)
            reason = f"SLURM job {job.job_id}: {str(e).strip().splitlines()[-1][:300]}" \
                if str(e).strip() else f"SLURM job {job.job_id} failed"
            record_crash(out, cell, reason, "slurm")
            report = {"cell_id": cell.cell_id, "status": "failed", "error": reason}
        on_result(cell, report)
