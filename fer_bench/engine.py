"""Train and evaluate one cell: backbone + head on a dataset, checkpoint chosen on validation,
metrics on test. Pure computation: the runner decides what to run and where results go."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from . import distributed  # DDP hooks (torchrun): no-ops in one process
from .adaptation.artifacts import base_digests, is_adaptation, trained_state
from .backbones import Backbone, create_backbone
from .compute import (
    autocast_for,
    enable_tf32,
    is_out_of_memory,
    maybe_compile,
    release_memory,
    wants_channels_last,
)
from .data import FERDataset, load_dataset
from .data.targets import soft_target_loss
from .data.transforms import Preprocess
from .errors import ConfigError, DataError, FerBenchError
from .heads import HEADS, ClassText, Head, create_head, fit_logistic
from .inputs import FeatureInputs, ImageInputs, frozen_image_encoder
from .plan import Cell, TrainConfig, head_uses_text
from .regimes import apply_regime, freeze_norm_statistics
from .results.metrics import compute_metrics
from .results.stats import intervals
from .tensor_cache import TensorCache
from .text import TextEncoder, create_text_encoder, load_prompt_set

ProgressFn = Callable[[dict], None]
CUDA_SYNC_EVERY = 20  # CUDA steps between loss checks (finite?) and progress-bar loss updates


class CellFailure(FerBenchError):
    """A cell that cannot finish (non-finite loss, ...): recorded as failed, the matrix goes on."""


@dataclass
class CellOutput:
    metrics: dict
    predictions: dict[str, np.ndarray]
    timing: dict[str, float]
    resolved: dict
    history: list[dict] = field(default_factory=list)
    artifacts: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. learned prompts
    cross: dict[str, dict] = field(default_factory=dict)        # dataset spec -> metrics
    cross_predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    checkpoint: dict[str, torch.Tensor] | None = None           # best state, when asked for
    trained: dict[str, torch.Tensor] | None = None  # adaptation regimes: the trained parameters
    trained_meta: dict = field(default_factory=dict)            # ... and what they need


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available")
    return torch.device(name)


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


def build_model(cell: Cell, dataset: FERDataset, cache: TensorCache | None = None
                ) -> tuple[CellModel, TextEncoder | None, dict]:
    torch.manual_seed(cell.seed)  # random init is part of the seeded experiment
    backbone = create_backbone(cell.backbone, pretrained=cell.train.pretrained)
    text = build_text(cell, backbone)
    meta = HEADS.get(cell.head).meta
    n_classes = len(dataset.classes)
    dim = backbone.config.feature_dim
    resolved: dict = {"backbone": backbone.config.to_dict()}
    context: list[nn.Parameter] = []
    if text is not None:
        prompt_set = load_prompt_set(cell.prompts or "")
        prompts = prompt_set.for_classes(dataset.classes)
        paired = text is backbone.paired_text
        if meta.get("needs_aligned_text") and not paired:
            raise ConfigError(f"head {cell.head!r} needs the backbone's paired CLIP text tower; "
                              f"{cell.backbone!r} with text encoder {text.name!r} has none")
        class_text = ClassText(text, prompts, cell.train.prompt_sampling,
                               prompt_set.learned_context, cache=cache)
        if class_text.context is not None:
            context.append(class_text.context.ctx)
        head = create_head(cell.head, feature_dim=dim, n_classes=n_classes,
                           class_text=class_text, identity_projection=paired,
                           absent_classes=cell.train.absent_classes)
        resolved["text_encoder"] = text.describe()
        resolved["prompts"] = dict(zip(dataset.classes, prompts, strict=True))
    else:
        head = create_head(cell.head, feature_dim=dim, n_classes=n_classes)
    if backbone.paired_text is not None and text is not backbone.paired_text:
        backbone.paired_text = None  # an unused CLIP text tower must not train or cost memory
    regime = "frozen" if meta.get("frozen_image") or not head.trains else cell.train.regime
    base = base_digests(backbone.encoder, text) if is_adaptation(regime) else None
    # the head's own parameters (a paired tower's logit scale too) train whatever the regime
    resolved["regime"] = apply_regime(backbone.encoder, text, regime,
                                      [*context, *head.own_parameters()], head=head,
                                      feature_dim=dim, who=f"cell {cell.label}")
    if base is not None:  # what the saved trained parameters must be reloaded onto
        resolved["regime"]["base_digest"] = base
    return CellModel(backbone, head), text, resolved


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer, in its fused implementation where torch has one for these
    parameters (the same update in one kernel per step: 7.6x faster than the default AdamW
    step for resnet18 on this CPU); the default implementation otherwise."""
    if cfg.optimizer == "sgd":
        cls, kwargs = torch.optim.SGD, {"momentum": 0.9, "nesterov": True}
    else:
        cls, kwargs = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW), {}
    kwargs.update(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, ValueError, TypeError):
            pass  # no fused kernel for this device, dtype or torch version
    return cls(params, **kwargs)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class ClassBalance:
    """The imbalance options (off by default): class-balanced sampling, class-weighted loss,
    and logit adjustment (train on logits + tau * log prior; predict with plain logits)."""

    def __init__(self, labels: torch.Tensor, n_classes: int, cfg: TrainConfig,
                 device: torch.device) -> None:
        counts = torch.bincount(labels, minlength=n_classes).float().clamp_min(1)
        self.sample_weight = (1.0 / counts)[labels] if cfg.balance == "sampler" else None
        self.class_weight = ((len(labels) / (n_classes * counts)).to(device)
                             if cfg.balance == "loss" else None)
        prior = counts / counts.sum()
        self.adjust = (cfg.logit_adjust * prior.log()).to(device) if cfg.logit_adjust else None

    def order(self, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.sample_weight is None:
            return torch.randperm(n, generator=gen)
        return torch.multinomial(self.sample_weight, n, replacement=True, generator=gen)

    def loss(self, head: Head, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.adjust is not None:
            logits = logits + self.adjust
        return head.loss(logits, labels, self.class_weight)


def epoch_steps(n: int, batch_size: int, drop_last: bool) -> int:
    """Steps per epoch; drop_last (LASTED's DataLoader) drops a last partial batch."""
    if drop_last and n >= batch_size:
        return n // batch_size
    return math.ceil(n / batch_size)


def batch_objective(head: Head, balance: ClassBalance, logits: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, what to backpropagate). A loss that couples the batch's rows (LASTED's text axis)
    is computed under DDP on the global batch, as one process (or LASTED's DataParallel) does:
    the other ranks' logits join as constants, so each rank's backward carries its own rows'
    share; DDP's gradient average divides by the world size, which the factor undoes."""
    if not (head.batch_loss and distributed.active()):
        loss = balance.loss(head, logits, labels)
        return loss, loss
    loss = balance.loss(head, distributed.gather_batch(logits),
                        distributed.gather_batch(labels))
    return loss, loss * distributed.world()


def score_of(metrics: dict, loss: float, select: str) -> float:
    return -loss if select == "loss" else (metrics[select] or 0.0)


def train_sgd(model: CellModel, inputs: ImageInputs, dataset: FERDataset, cell: Cell,
              device: torch.device, amp: torch.dtype | None, compile_model: bool = False,
              progress: ProgressFn | None = None,
              compute: dict | None = None) -> tuple[int, list[dict]]:
    """The training loop; keeps the state of the best validation epoch. Returns (epoch, history).
    Each epoch records its training throughput (steps only, not validation); `compute` (the
    results' record of levers) gets the optimizer implementation."""
    cfg = cell.train
    train, val = dataset.split("train"), dataset.split("val")
    module = inputs.module  # the whole model, or only the head over cached features
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"cell {cell.label}: nothing to train under regime {cfg.regime!r}")
    opt = make_optimizer(params, cfg)
    if compute is not None:
        compute["optimizer"] = "fused" if opt.defaults.get("fused") else "default"
    steps_per_epoch = epoch_steps(len(train), cfg.batch_size, cfg.drop_last)
    updates = math.ceil(steps_per_epoch / cfg.accum_steps) * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch / cfg.accum_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, updates, warmup, cfg.schedule))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)  # fp16 only
    gen = torch.Generator().manual_seed(cell.seed)
    balance = ClassBalance(train.labels, len(dataset.classes), cfg, device)
    if device.type == "cuda" and not isinstance(inputs, FeatureInputs):
        train = replace(train, images=train.images.pin_memory())  # async host-to-device copies
    net = maybe_compile(distributed.wrap_model(module, device), compile_model)  # DDP: averages
    labels = train.labels.to(device)
    check_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1  # CPU: syncs are free

    best_score, best_state, best_epoch, stale = -math.inf, None, 0, 0
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        freeze_norm_statistics(module)
        order = balance.order(len(train), gen)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
        n_seen = 0
        opt.zero_grad(set_to_none=True)
        t_epoch = time.perf_counter()
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = inputs.train_batch(train, idx, gen, epoch)
            # DDP: this rank's slice of the global batch (augmented whole, as in one process)
            x, idx = distributed.shard_batch(x, idx)
            with inputs.autocast():
                logits = net(x)
            if train.targets is not None:  # FERPlus probability / multi_target labels
                loss = soft_target_loss(logits.float(), train.targets[idx].to(device),
                                        dataset.meta["targets"])
                backward = loss
            else:
                loss, backward = batch_objective(model.head, balance, logits.float(),
                                                 labels[idx.to(device)])
            step_loss = distributed.average(loss.detach())  # DDP: the global batch's loss
            scaler.scale(backward / cfg.accum_steps).backward()
            if (step + 1) % cfg.accum_steps == 0 or step + 1 == steps_per_epoch:
                scaler.unscale_(opt)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                model.head.after_step()  # e.g. clamp the logit scale's value (open_clip's rule)
                sched.step()
                opt.zero_grad(set_to_none=True)
            loss_sum += step_loss * len(idx)
            n_seen += len(idx)
            if step % check_every == 0 or step + 1 == steps_per_epoch:
                shown = float(loss_sum) / n_seen  # a device sync: on CUDA not every step
                if not math.isfinite(shown):
                    raise CellFailure(f"non-finite loss ({float(step_loss)}) at epoch {epoch}, "
                                      f"step {step + 1}; stopped this cell (try a lower lr or "
                                      "amp=off)")
            if progress:
                progress({"epoch": epoch, "epochs": cfg.epochs, "step": step + 1,
                          "steps": steps_per_epoch, "loss": shown})
        epoch_s = time.perf_counter() - t_epoch
        score, record = validate_epoch(model, inputs, val, dataset.classes, device,
                                       cfg.select_metric)
        history.append({"epoch": epoch, "train_loss": float(loss_sum) / max(1, n_seen),
                        **record, "lr": opt.param_groups[0]["lr"], "train_s": round(epoch_s, 3),
                        "train_images_per_s": round(n_seen / max(epoch_s, 1e-9), 1)})
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            # the trained part only: a frozen encoder's weights never change
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                history[-1]["early_stop"] = True
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    return best_epoch, history


def validate_epoch(model: CellModel, inputs: ImageInputs, val, classes: tuple[str, ...],
                   device: torch.device, select: str) -> tuple[float, dict]:
    """(checkpoint-selection score, history fields) of the model on the validation split."""
    if model.head.uses_text:
        model.head.class_text.invalidate()
    logits = inputs.logits(val.images, what="val features")
    metrics = compute_metrics(val.labels.numpy(), logits.argmax(1).numpy(), classes)
    loss = float(model.head.loss(logits.to(device), val.labels.to(device)).item())
    return score_of(metrics, loss, select), {
        "val_loss": loss, "val_accuracy": metrics["accuracy"],
        "val_fear_disgust": metrics["fear_disgust"]}


def fit_probe(model: CellModel, inputs: ImageInputs, dataset: FERDataset,
              cell: Cell) -> list[dict]:
    """Fit the probe's weights on frozen features; weight decay chosen on validation only."""
    cfg = cell.train
    train, val = dataset.split("train"), dataset.split("val")
    ftr = inputs.features(train.images, what="train features")
    fval = inputs.features(val.images, what="val features")
    mean, std = ftr.mean(0), ftr.std(0).clamp_min(1e-6)
    ztr, zval = (ftr - mean) / std, (fval - mean) / std
    n_classes = len(dataset.classes)
    balance = ClassBalance(train.labels, n_classes, cfg, torch.device("cpu"))
    history, best = [], None
    for wd in cfg.probe_weight_decays:
        w, b = fit_logistic(ztr, train.labels, n_classes, float(wd),
                            class_weight=balance.class_weight)
        pred = (zval @ w.T + b).argmax(1)
        m = compute_metrics(val.labels.numpy(), pred.numpy(), dataset.classes)
        score = score_of(m, 0.0, cfg.select_metric if cfg.select_metric != "loss" else
                         "accuracy")
        history.append({"weight_decay": wd, "val_accuracy": m["accuracy"],
                        "val_fear_disgust": m["fear_disgust"]})
        if best is None or score > best[0]:
            best = (score, wd, w, b)
    _, wd, w, b = best
    with torch.no_grad():  # fold the standardisation into the linear layer
        model.head.fc.weight.copy_(w / std)
        model.head.fc.bias.copy_(b - (w / std) @ mean)
    history.append({"chosen_weight_decay": wd})
    return history


def evaluate_cross(inputs: ImageInputs, trained: FERDataset, spec: str, cfg: TrainConfig
                   ) -> tuple[dict, dict[str, np.ndarray]]:
    """Evaluate on another dataset's test split, classes mapped by name. Images of classes the
    model was not trained on cannot be scored: they are counted and reported, not hidden."""
    other = load_dataset(spec)
    test = other.split("test")
    to_trained = torch.tensor([trained.classes.index(c) if c in trained.classes else -1
                               for c in other.classes])
    mapped = to_trained[test.labels]
    keep = mapped >= 0
    logits = inputs.logits(test.images[keep], cfg.tta, what=f"{spec} test features")
    labels, preds = mapped[keep].numpy(), logits.argmax(1).numpy()
    metrics = compute_metrics(labels, preds, trained.classes)
    metrics["ci"] = intervals(labels, preds, trained.classes)
    dropped = torch.bincount(test.labels[~keep], minlength=len(other.classes)).tolist()
    metrics["unscored_classes"] = {c: n for c, n in zip(other.classes, dropped, strict=True)
                                   if n}
    return metrics, {"labels": labels, "preds": preds,
                     "scores": logits.softmax(1).numpy().astype(np.float32)}


def run_cell(cell: Cell, progress: ProgressFn | None = None,
             keep_checkpoint: bool = False) -> CellOutput:
    """One cell; on out-of-memory (CUDA), retried from scratch with the batch halved and the
    gradient accumulation doubled -- the same effective batch -- until it fits (recorded)."""
    retries: list[dict] = []
    while True:
        try:
            out = _run_cell_once(cell, progress, keep_checkpoint)
        except Exception as e:
            cfg = cell.train
            if not (cfg.oom_retry and is_out_of_memory(e)):
                raise
            if cfg.batch_size == 1 and cfg.eval_batch_size == 1:
                first = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                raise CellFailure(f"{first} -- still out of memory at batch size 1 after "
                                  f"{len(retries)} halvings; try amp=bf16, a smaller "
                                  "image_size or a regime that freezes the image tower") from e
            retries.append({"batch_size": cfg.batch_size, "accum_steps": cfg.accum_steps,
                            "eval_batch_size": cfg.eval_batch_size,
                            "error": str(e).splitlines()[0][:200] if str(e) else "OOM"})
            halved = cfg.batch_size > 1
            cell = replace(cell, train=replace(
                cfg, batch_size=max(1, cfg.batch_size // 2),
                accum_steps=cfg.accum_steps * 2 if halved else cfg.accum_steps,
                eval_batch_size=max(1, cfg.eval_batch_size // 2)))
            release_memory(pick_device(cfg.device))
            continue
        if retries:
            out.resolved["compute"]["oom_retries"] = retries
        return out


@dataclass
class Prepared:
    """A cell's model on its device with the compute levers applied, and what feeds it."""

    model: CellModel
    text: TextEncoder | None
    inputs: ImageInputs
    amp: torch.dtype | None
    cache: TensorCache
    resolved: dict


def prepare(cell: Cell, dataset: FERDataset, device: torch.device) -> Prepared:
    """Build the model and choose the levers (precision, memory format, TF32, feature cache)
    as `run_cell` does; `fer-bench bench` and the perf scripts measure exactly this."""
    cfg = cell.train
    cache = TensorCache(enabled=cfg.feature_cache)
    model, text, resolved = build_model(cell, dataset, cache)
    pre = Preprocess(model.backbone.config, cfg.image_size or None)
    autocast, amp = autocast_for(device, cfg.amp)
    channels_last = wants_channels_last(cfg.channels_last, device, model.backbone.encoder, amp)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    frozen = frozen_image_encoder(model)
    if frozen and cfg.feature_cache:
        inputs: ImageInputs = FeatureInputs(model, pre, device, autocast, cfg, cache, str(amp),
                                            channels_last)
    else:
        inputs = ImageInputs(model, pre, device, autocast, cfg, channels_last)
    resolved["preprocess"] = pre.describe()
    resolved["device"], resolved["amp"] = str(device), str(amp) if amp else "off"
    resolved["compute"] = {
        "amp": resolved["amp"], "channels_last": channels_last,
        "tf32": enable_tf32(device, cfg.tf32), "compile": cfg.compile,
        "batch_size": cfg.batch_size, "accum_steps": cfg.accum_steps,
        "eval_batch_size": cfg.eval_batch_size,
        "image_features": "cached" if isinstance(inputs, FeatureInputs) else
        ("computed per step (feature_cache off)" if frozen else "computed per step")}
    return Prepared(model, text, inputs, amp, cache, resolved)


def _run_cell_once(cell: Cell, progress: ProgressFn | None,
                   keep_checkpoint: bool) -> CellOutput:
    cfg = cell.train
    distributed.announce(cell)  # torchrun: rank 0 tells the other ranks to join this cell
    device = pick_device(cfg.device)
    t0 = time.perf_counter()
    dataset = load_dataset(cell.dataset)
    missing = [s for s in ("train", "val", "test") if s not in dataset.splits]
    if missing:
        raise DataError(f"dataset {cell.dataset!r} has no {', '.join(missing)} split(s) "
                        f"(has: {', '.join(dataset.splits)}); a cell needs train, val and test")
    prepared = prepare(cell, dataset, device)
    model, text, inputs, amp = prepared.model, prepared.text, prepared.inputs, prepared.amp
    resolved = prepared.resolved
    resolved["dataset"] = {"classes": list(dataset.classes), **dataset.meta,
                           "split_sizes": {k: len(v) for k, v in dataset.splits.items()}}

    if cell.head == "probe":
        history, best_epoch = fit_probe(model, inputs, dataset, cell), 0
    elif model.head.trains:
        best_epoch, history = train_sgd(model, inputs, dataset, cell, device, amp, cfg.compile,
                                        progress, resolved["compute"])
    else:  # zero-shot
        history, best_epoch = [], 0
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    test = dataset.split("test")
    if text is not None:
        model.head.class_text.invalidate()
    logits = inputs.logits(test.images, cfg.tta, what="test features")
    preds = logits.argmax(1)
    metrics = compute_metrics(test.labels.numpy(), preds.numpy(), dataset.classes)
    # 95% bootstrap intervals over test images (1000 resamples, seed 0: the leaderboard's own)
    metrics["ci"] = intervals(test.labels.numpy(), preds.numpy(), dataset.classes)
    metrics["checkpoint_epoch"] = best_epoch
    eval_s = time.perf_counter() - t1
    artifacts = {}
    if text is not None and model.head.class_text.context is not None:
        artifacts["learned_context"] = model.head.class_text.context.ctx.detach().cpu()
    cross, cross_predictions = {}, {}
    t2 = time.perf_counter()
    for spec in cell.cross:
        cross[spec], cross_predictions[spec] = evaluate_cross(inputs, dataset, spec, cfg)
    timing = {"train_s": round(train_s, 3), "eval_s": round(eval_s, 3)}
    if history and "train_images_per_s" in history[-1]:
        timing["train_images_per_s"] = history[-1]["train_images_per_s"]
    if cell.cross:
        timing["cross_s"] = round(time.perf_counter() - t2, 3)
    resolved["compute"]["caches"] = prepared.cache.log
    resolved["head"] = model.head.describe()  # e.g. the trained logit scale
    checkpoint = ({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
                  if keep_checkpoint else None)
    trained, trained_meta = None, {}
    if is_adaptation(resolved["regime"]["regime"]):
        trained = trained_state(model)
        trained_meta = {"regime": resolved["regime"]["regime"], "backbone": cell.backbone,
                        "cell_id": cell.cell_id, "seed": cell.seed,
                        "base_digest": resolved["regime"]["base_digest"]}
    return CellOutput(
        trained=trained, trained_meta=trained_meta,
        metrics=metrics,
        predictions={"labels": test.labels.numpy(), "preds": preds.numpy(),
                     "scores": logits.softmax(1).numpy().astype(np.float32)},
        timing=timing,
        resolved=resolved, history=history, artifacts=artifacts, cross=cross,
        cross_predictions=cross_predictions, checkpoint=checkpoint,
    )


def reload_trained(cell: Cell, path, device: str = "cpu") -> Prepared:
    """A cell's model rebuilt from its base weights plus its saved trained parameters
    (`trained.safetensors`), ready to evaluate: the base digests must match the file's."""
    from pathlib import Path

    from .adaptation.artifacts import check_base, decode, load_into

    path = Path(path)
    state, meta = decode(path.read_bytes(), str(path))
    dataset = load_dataset(cell.dataset)
    prepared = prepare(cell, dataset, pick_device(device))
    actual = prepared.resolved["regime"].get("base_digest", {})
    check_base(meta.get("base_digest", {}), actual, str(path))
    load_into(prepared.model, state, str(path))
    if prepared.text is not None:
        prepared.model.head.class_text.invalidate()
    return prepared
