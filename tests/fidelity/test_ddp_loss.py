"""LASTED's loss under DDP is the whole batch's loss, as in one process (and as LASTED's
DataParallel computes it): two gloo ranks, each holding half of a batch that lacks some classes,
give the one-process loss and gradients within 1e-5."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import distributed as dist
from torch import nn

from fer_bench.heads import head_spec
from fer_bench.heads.contrastive import ContrastiveHead
from fer_bench.plan import TrainConfig
from fer_bench.train import distributed
from fer_bench.train.engine import ClassBalance, batch_objective

from .test_lasted_loss import FixedText

C, D, B = 7, 12, 18
LABELS = [0, 3, 3, 6, 0, 5, 4, 3, 6, 6, 0, 4, 3, 5, 5, 0, 6, 4]  # classes 1 and 2 absent


def _model() -> nn.Module:
    torch.manual_seed(0)
    head = ContrastiveHead(D, FixedText(torch.randn(C, D)), "lasted",
                           logit_scale=nn.Parameter(torch.tensor(3.0)))
    return nn.Sequential(nn.Linear(20, D), nn.Tanh(), head)


def _step(model: nn.Module, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    head = model[2]
    balance = ClassBalance(torch.tensor(LABELS), C, TrainConfig(), torch.device("cpu"))
    couples = head_spec("lasted").batch_loss  # the text axis couples the batch's rows
    loss, backward = batch_objective(head, balance, net(x), y, couples)
    backward.backward()
    return {"loss": distributed.average(loss.detach()).item(),
            "grads": {n: p.grad.tolist() for n, p in model.named_parameters()}}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, 20, generator=torch.Generator().manual_seed(1)), torch.tensor(LABELS)


def _rank(r: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=r, world_size=world)
    try:
        model = _model()
        x, y = distributed.shard_batch(*_batch())
        result = _step(model, distributed.wrap_model(model, torch.device("cpu")), x, y)
        Path(out, f"rank{r}.json").write_text(json.dumps(result))
        # both ranks quiesce before teardown: gloo aborts a rank whose peer leaves mid-work
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_compute_the_global_batch_loss(tmp_path: Path):
    model = _model()
    single = _step(model, model, *_batch())
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        multi = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert abs(multi["loss"] - single["loss"]) < 1e-5
        for name, g in single["grads"].items():
            torch.testing.assert_close(torch.tensor(multi["grads"][name]), torch.tensor(g),
                                       atol=1e-5, rtol=1e-4, msg=f"rank {r}: {name}")


def test_per_shard_loss_would_differ():
    """The check above has teeth: the loss of one rank's shard alone is not the batch's."""
    model = _model()
    x, y = _batch()
    head = model[2]
    whole = head.loss(model(x), y).item()
    half = head.loss(model(x[:B // 2]), y[:B // 2]).item()
    assert abs(whole - half) > 1e-3
