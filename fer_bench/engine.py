"""Train and evaluate one cell: backbone + head on a dataset, checkpoint chosen on validation,
metrics on test. Pure computation: the runner decides what to run and where results go."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .backbones import Backbone, create_backbone
from .data import FERDataset, load_dataset
from .data.transforms import Preprocess
from .errors import ConfigError, FerBenchError
from .heads import ClassText, Head, create_head
from .plan import Cell, TrainConfig, head_uses_text
from .results.metrics import compute_metrics
from .text import TextEncoder, create_text_encoder, load_prompt_set

ProgressFn = Callable[[dict], None]


class CellFailure(FerBenchError):
    """A cell that cannot finish (non-finite loss, ...): recorded as failed, the matrix goes on."""


@dataclass
class CellOutput:
    metrics: dict
    predictions: dict[str, np.ndarray]
    timing: dict[str, float]
    resolved: dict
    history: list[dict] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available")
    return torch.device(name)


def autocast_for(device: torch.device, amp: str):
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return nullcontext, None
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return (lambda: torch.autocast(device.type, dtype=dtype)), dtype


class CellModel(nn.Module):
    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


_TEXT_CACHE: dict[str, TextEncoder] = {}


def build_text(cell: Cell, backbone: Backbone) -> TextEncoder | None:
    if not head_uses_text(cell.head):
        return None
    spec = cell.text_encoder or "default"
    if spec == "default":
        spec = "paired" if backbone.paired_text is not None else cell.train.text_encoder
    if spec == "paired":
        return create_text_encoder("paired", backbone.paired_text, cell.backbone)
    if spec not in _TEXT_CACHE:  # loading is slow; each cell gets its own trainable copy
        _TEXT_CACHE[spec] = create_text_encoder(spec)
    return copy.deepcopy(_TEXT_CACHE[spec])


def apply_regime(model: CellModel, regime: str, text: TextEncoder | None) -> None:
    """Freeze exactly what the regime says. The head's own parameters always train."""
    image_trains = regime in ("full", "image")
    text_trains = regime in ("full", "text")
    for p in model.backbone.encoder.parameters():
        p.requires_grad_(image_trains)
    if text is not None:
        for p in text.parameters():
            p.requires_grad_(text_trains)


def build_model(cell: Cell, dataset: FERDataset) -> tuple[CellModel, TextEncoder | None, dict]:
    torch.manual_seed(cell.seed)  # random init is part of the seeded experiment
    backbone = create_backbone(cell.backbone, pretrained=cell.train.pretrained)
    text = build_text(cell, backbone)
    n_classes = len(dataset.classes)
    dim = backbone.config.feature_dim
    resolved: dict = {"backbone": backbone.config.to_dict()}
    if text is not None:
        prompt_set = load_prompt_set(cell.prompts or "")
        prompts = prompt_set.for_classes(dataset.classes)
        class_text = ClassText(text, prompts)
        paired = text is backbone.paired_text
        head = create_head(cell.head, feature_dim=dim, n_classes=n_classes,
                           class_text=class_text, identity_projection=paired)
        resolved["text_encoder"] = text.describe()
        resolved["prompts"] = dict(zip(dataset.classes, prompts, strict=True))
    else:
        head = create_head(cell.head, feature_dim=dim, n_classes=n_classes)
    if backbone.paired_text is not None and text is not backbone.paired_text:
        backbone.paired_text = None  # an unused CLIP text tower must not train or cost memory
    model = CellModel(backbone, head)
    apply_regime(model, cell.train.regime, text)
    return model, text, resolved


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                               nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def predict(model: CellModel, pre: Preprocess, images: torch.Tensor, device: torch.device,
            batch_size: int, autocast) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = pre(images[i:i + batch_size].to(device, non_blocking=True))
        with autocast():
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def run_cell(cell: Cell, progress: ProgressFn | None = None) -> CellOutput:
    cfg = cell.train
    device = pick_device(cfg.device)
    t0 = time.perf_counter()
    dataset = load_dataset(cell.dataset)
    model, text, resolved = build_model(cell, dataset)
    model.to(device)
    pre = Preprocess(model.backbone.config, cfg.image_size or None)
    autocast, amp_dtype = autocast_for(device, cfg.amp)
    resolved["preprocess"] = pre.describe()
    resolved["dataset"] = {"classes": list(dataset.classes), **dataset.meta}
    resolved["device"], resolved["amp"] = str(device), str(amp_dtype) if amp_dtype else "off"

    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    gen = torch.Generator().manual_seed(cell.seed)
    train_images, train_labels = train.images, train.labels
    if device.type == "cuda":
        train_images = train_images.pin_memory()

    best_score, best_state, best_epoch = -math.inf, None, 0
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        loss_sum, n_seen = 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = pre(train_images[idx].to(device, non_blocking=True), train=True, generator=gen)
            y = train_labels[idx].to(device, non_blocking=True)
            with autocast():
                logits = model(x)
            loss = model.head.loss(logits.float(), y)
            if not torch.isfinite(loss):
                raise CellFailure(f"non-finite loss ({loss.item()}) at epoch {epoch}, step "
                                  f"{step + 1}; stopped this cell (try a lower lr or amp=off)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            n_seen += len(idx)
            if progress:
                progress({"epoch": epoch, "epochs": cfg.epochs, "step": step + 1,
                          "steps": steps_per_epoch, "loss": loss_sum / n_seen})
        if text is not None:
            model.head.class_text.invalidate()
        val_logits = predict(model, pre, val.images, device, cfg.eval_batch_size, autocast)
        val_metrics = compute_metrics(val.labels.numpy(), val_logits.argmax(1).numpy(),
                                      dataset.classes)
        val_loss = float(model.head.loss(val_logits, val.labels).item())
        score = -val_loss if cfg.select_metric == "loss" else (
            val_metrics[cfg.select_metric] or 0.0)
        history.append({"epoch": epoch, "train_loss": loss_sum / max(1, n_seen),
                        "val_loss": val_loss, "val_accuracy": val_metrics["accuracy"],
                        "val_fear_disgust": val_metrics["fear_disgust"]})
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if best_state is not None:
        model.load_state_dict(best_state)
    if text is not None:
        model.head.class_text.invalidate()
    logits = predict(model, pre, test.images, device, cfg.eval_batch_size, autocast)
    preds = logits.argmax(1)
    metrics = compute_metrics(test.labels.numpy(), preds.numpy(), dataset.classes)
    metrics["checkpoint_epoch"] = best_epoch
    eval_s = time.perf_counter() - t1
    return CellOutput(
        metrics=metrics,
        predictions={"labels": test.labels.numpy(), "preds": preds.numpy(),
                     "scores": logits.softmax(1).numpy().astype(np.float32)},
        timing={"train_s": round(train_s, 3), "eval_s": round(eval_s, 3)},
        resolved=resolved, history=history,
    )
