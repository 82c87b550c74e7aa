"""One cell on several GPUs (or CPU processes): the DistributedDataParallel pieces the training
loop calls, all no-ops in a single process.

`torchrun --nproc-per-node N -m fer_bench run ...` starts N ranks. Every rank builds the same
model from the same seed and draws the same global order and augmentation from the same
generator; each then trains on its 1/N slice of every global batch (DDP averages the gradients,
which equals the global batch's mean-loss gradient when slices are equal). Evaluation forwards a
slice per rank and all-gathers the logits in order, so metrics are computed on the whole split,
identically on every rank. Rank 0 runs the normal runner (locks, skips, atomic writes); the
other ranks follow it cell by cell (`follow`) and never write a result."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import distributed as dist
from torch import nn

from ..errors import FerBenchError

T = TypeVar("T")
_leading = False  # rank 0 announces each cell to the followers (set by `lead`)


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise FerBenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: expected an integer "
                            "(set by torchrun)") from None


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def init_from_env(device: str = "auto") -> str:
    """Join torchrun's process group: NCCL when this rank trains on CUDA, gloo otherwise. Each
    rank's default CUDA device becomes cuda:LOCAL_RANK, so `device = "cuda"` means its own GPU.
    Returns the backend."""
    if active():
        return dist.get_backend()
    if not dist.is_available():
        raise FerBenchError("torch.distributed is not available in this PyTorch build")
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise FerBenchError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} "
                                "CUDA device(s) visible: lower --nproc-per-node")
        torch.cuda.set_device(local)
    backend = "nccl" if use_cuda else "gloo"
    # A rank that fails must not leave the others waiting for hours.
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return backend


def quiesce() -> None:
    """Wait until every rank is here: gloo aborts a rank whose peer tears down mid-message
    (`terminate called without an active exception`), so ranks meet before `shutdown`."""
    if active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


# ------------------------------------------------------------------------------ training hooks

def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to train through: DDP around `model` when distributed, `model` itself
    otherwise. On CUDA, batch norm becomes SyncBatchNorm, so its statistics are those of the
    global batch as in one process (gloo has no SyncBatchNorm: on CPU each rank normalises with
    its own slice's statistics)."""
    if not active():
        return model
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the root; same params
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    # Heads may skip parameters on some steps (cached class text): tolerate unused ones.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=True)


def shard_batch(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of a global batch (every rank gets >= 1 row: a batch
    smaller than the world is cycled, as DistributedSampler pads)."""
    if not active():
        return tensors
    n, w, r = len(tensors[0]), world(), rank()
    if n < w:
        pick = torch.arange(w, device=tensors[0].device) % n
        tensors = tuple(t[pick.to(t.device)] for t in tensors)
        n = w
    bounds = [n * i // w for i in range(w + 1)]
    return tuple(t[bounds[r]:bounds[r + 1]] for t in tensors)


def average(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (the global batch's loss, for logging and the
    non-finite check, so every rank stops at the same step)."""
    if not active():
        return value
    v = value.detach().float().reshape(1).to(_comm_device())
    dist.all_reduce(v)
    return (v / world()).reshape(()).to(value.device)


def gather_batch(local: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of the global batch, in rank order (what one process would hold). This
    rank's rows keep their autograd graph; the others' are constants (see
    engine.batch_objective for why the gradient is then exact)."""
    if not active():
        return local
    dev = _comm_device()
    size = torch.tensor([len(local)], device=dev)
    sizes = [torch.zeros_like(size) for _ in range(world())]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[:len(local)] = local.detach().to(dev)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    rows = [p[:c].to(local.device) for p, c in zip(parts, counts, strict=True)]
    rows[rank()] = local
    return torch.cat(rows)


# ---------------------------------------------------------------------------- evaluation hooks

def eval_range(n: int) -> range:
    """The rows of an n-row split this rank evaluates (all of them in one process)."""
    if not active() or n < world():
        return range(n)
    return eval_range_of(n, rank())


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """All ranks' `eval_range` outputs, concatenated in row order: the whole split's outputs,
    the same on every rank (metrics are computed after this gather, never per rank)."""
    if not active() or n < world():
        return local
    dev = _comm_device()
    sizes = [len(eval_range_of(n, r)) for r in range(world())]
    width = max(sizes)
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[:len(local)] = local.to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).to(local.device)


def eval_range_of(n: int, r: int) -> range:
    w = world()
    return range(n * r // w, n * (r + 1) // w)


def sync_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank before evaluating: each
    rank updated them on its own slice, and the ranks must evaluate one model."""
    if not active():
        return
    dev = _comm_device()
    for buf in module.buffers():
        t = buf.data.to(dev)
        dist.broadcast(t, 0)
        buf.data.copy_(t.to(buf.device))


# ------------------------------------------------------------------------- cell-by-cell protocol

def _broadcast_bytes(data: bytes | None) -> bytes:
    """Rank 0's bytes on every rank, as tensors (JSON, never pickle)."""
    dev = _comm_device()
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=dev)
    dist.broadcast(size, 0)
    buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8).to(dev) if data
           else torch.empty(int(size.item()), dtype=torch.uint8, device=dev))
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().numpy().tobytes())


def lead() -> None:
    """Rank 0 from now on announces each cell it starts (`announce`); `release` ends it."""
    global _leading
    _leading = active() and rank() == 0


def announce(cell) -> None:
    """Called as a cell starts: rank 0 tells the followers which cell (its `config()`) to
    join."""
    if _leading:
        _broadcast_bytes(json.dumps(cell.config()).encode())


def release() -> None:
    """Rank 0 has no more cells: the followers leave `follow`."""
    global _leading
    if _leading:
        _broadcast_bytes(b"")
        _leading = False


def follow(run_cell: Callable[[T], object], decode: Callable[[dict], T]) -> int:
    """Ranks > 0: run every cell rank 0 announces (its `config()`, rebuilt by `decode`), until
    it releases them. Results stay with rank 0; an exception in `run_cell` is the same one
    rank 0 records (the ranks compute the same global quantities), so the follower just moves
    on. Returns the number of cells joined."""
    joined = 0
    while data := _broadcast_bytes(None):
        cell = decode(json.loads(data))  # a cell that does not rebuild stops this rank
        joined += 1
        with contextlib.suppress(Exception):  # rank 0 records it
            run_cell(cell)
    return joined


__all__ = ["active", "announce", "average", "env_world_size", "eval_range", "follow",
           "gather_batch",
           "gather_rows", "init_from_env", "lead", "quiesce", "rank", "release", "shard_batch",
           "shutdown", "sync_buffers", "world", "wrap_model"]
