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

from ..adaptation.artifacts import base_digests, is_adaptation, trained_state
from ..backbones import Backbone, create_backbone
from ..data import FERDataset, load_dataset
from ..data.targets import soft_target_loss
from ..data.transforms import Preprocess
from ..errors import ConfigError, DataError, FerBenchError
from ..heads import ClassText, FeatureFit, Head
from ..levers import (
    autocast_for,
    enable_tf32,
    is_out_of_memory,
    maybe_compile,
    pick_device,
    release_memory,
    wants_channels_last,
)
from ..plan import Cell, ResolvedCell, TrainConfig, resolve
from ..results.metrics import compute_metrics
from ..results.stats import intervals
from ..tensor_cache import TensorCache
from ..text import TextEncoder, create_text_encoder, load_prompt_set
from . import distributed  # DDP hooks (torchrun): no-ops in one process
from .inputs import FeatureInputs, ImageInputs, frozen_image_encoder
from .regimes import apply_regime, freeze_norm_statistics

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


class CellModel(nn.Module):
    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


_TEXT_CACHE: dict[str, TextEncoder] = {}


def resolved(cell: Cell | ResolvedCell) -> ResolvedCell:
    """The engine's functions take a cell or its resolution (resolved once per cell run)."""
    return cell if isinstance(cell, ResolvedCell) else resolve(cell)


def build_text(rc: ResolvedCell, backbone: Backbone) -> TextEncoder | None:
    """The text encoder the resolution names, now that the backbone's paired tower is known."""
    tower = backbone.paired_text is not None
    problem = rc.text_problem(tower)
    if problem:
        raise ConfigError(f"cell {rc.cell.label}: {problem}")
    spec = rc.text_for(tower)
    if spec is None or spec == "paired":
        return backbone.paired_text if spec else None
    if spec not in _TEXT_CACHE:  # loading is slow; each cell gets its own trainable copy
        _TEXT_CACHE[spec] = create_text_encoder(spec)
    return copy.deepcopy(_TEXT_CACHE[spec])


def _build_head(rc: ResolvedCell, backbone: Backbone, text: TextEncoder | None,
                classes: tuple[str, ...], cache: TensorCache | None
                ) -> tuple[Head, dict, list[nn.Parameter]]:
    """The head, on class text from the prompt set where it has text; (head, record, learned
    prompt context)."""
    dim, n_classes = backbone.config.feature_dim, len(classes)
    if text is None:
        return rc.head.create(feature_dim=dim, n_classes=n_classes), {}, []
    prompts = load_prompt_set(rc.cell.prompts or "")
    per_class = prompts.for_classes(classes)
    class_text = ClassText(text, per_class, rc.train.prompt_sampling, prompts.learned_context,
                           cache=cache)
    head = rc.head.create(feature_dim=dim, n_classes=n_classes, class_text=class_text,
                          identity_projection=text is backbone.paired_text,
                          absent_classes=rc.train.absent_classes)
    context = [class_text.context.ctx] if class_text.context is not None else []
    return head, {"text_encoder": text.describe(),
                  "prompts": dict(zip(classes, per_class, strict=True))}, context


def build_model(cell: Cell | ResolvedCell, dataset: FERDataset,
                cache: TensorCache | None = None) -> tuple[CellModel, TextEncoder | None, dict]:
    """(model, text encoder, record): the record is what the results' `resolved` holds of the
    build (backbone config, text encoder, prompts, regime with trainable counts)."""
    rc = resolved(cell)
    torch.manual_seed(rc.cell.seed)  # random init is part of the seeded experiment
    backbone = create_backbone(rc.cell.backbone, pretrained=rc.train.pretrained)
    text = build_text(rc, backbone)
    head, text_record, context = _build_head(rc, backbone, text, dataset.classes, cache)
    if backbone.paired_text is not None and text is not backbone.paired_text:
        backbone.paired_text = None  # an unused CLIP text tower must not train or cost memory
    regime = rc.train.regime
    base = base_digests(backbone.encoder, text) if is_adaptation(regime) else None
    # the head's own parameters (a paired tower's logit scale too) train whatever the regime
    record = {"backbone": backbone.config.to_dict(), **text_record,
              "regime": apply_regime(backbone.encoder, text, regime,
                                     [*context, *head.own_parameters()], head=head,
                                     feature_dim=backbone.config.feature_dim,
                                     who=f"cell {rc.cell.label}")}
    if base is not None:  # what the saved trained parameters must be reloaded onto
        record["regime"]["base_digest"] = base
    return CellModel(backbone, head), text, record


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


def class_text(head: Head) -> ClassText | None:
    """The head's class-text module, if it scores against text."""
    return next((m for m in head.modules() if isinstance(m, ClassText)), None)


def batch_objective(head: Head, balance: ClassBalance, logits: torch.Tensor,
                    labels: torch.Tensor, couples: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, what to backpropagate). A loss that couples the batch's rows (`couples`: the
    HeadSpec's batch_loss, LASTED's text axis) is computed under DDP on the global batch, as
    one process (or LASTED's DataParallel) does: the other ranks' logits join as constants, so
    each rank's backward carries its own rows' share; DDP's gradient average divides by the
    world size, which the factor undoes."""
    if not (couples and distributed.active()):
        loss = balance.loss(head, logits, labels)
        return loss, loss
    loss = balance.loss(head, distributed.gather_batch(logits),
                        distributed.gather_batch(labels))
    return loss, loss * distributed.world()


def score_of(metrics: dict, loss: float, select: str) -> float:
    return -loss if select == "loss" else (metrics[select] or 0.0)


@dataclass
class _Loop:
    """The SGD loop's state across epochs: what trains, how, and on which batches."""

    model: CellModel
    inputs: ImageInputs
    module: nn.Module          # the whole model, or only the head over cached features
    net: nn.Module             # `module`, DDP-wrapped and compiled as asked
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    balance: ClassBalance
    gen: torch.Generator
    labels: torch.Tensor       # the training labels, on the device
    steps: int                 # per epoch
    check_every: int           # steps between device syncs (loss finite? progress)
    couples: bool              # the loss couples a batch's rows (HeadSpec.batch_loss)


def _make_loop(model: CellModel, inputs: ImageInputs, train, n_classes: int, rc: ResolvedCell,
               device: torch.device, amp: torch.dtype | None, compile_model: bool) -> _Loop:
    cfg = rc.train
    module = inputs.module
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"cell {rc.cell.label}: nothing to train under regime "
                          f"{cfg.regime!r}")
    opt = make_optimizer(params, cfg)
    steps = epoch_steps(len(train), cfg.batch_size, cfg.drop_last)
    updates = math.ceil(steps / cfg.accum_steps) * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps / cfg.accum_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, updates, warmup, cfg.schedule))
    net = maybe_compile(distributed.wrap_model(module, device), compile_model)  # DDP: averages
    return _Loop(model, inputs, module, net, params, opt, sched,
                 torch.amp.GradScaler(device.type, enabled=amp == torch.float16),  # fp16 only
                 ClassBalance(train.labels, n_classes, cfg, device),
                 torch.Generator().manual_seed(rc.cell.seed), train.labels.to(device), steps,
                 CUDA_SYNC_EVERY if device.type == "cuda" else 1,  # CPU: syncs are free
                 rc.head.batch_loss)


def _step_loss(loop: _Loop, train, idx: torch.Tensor, epoch: int, dataset: FERDataset,
               cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(this step's loss, what to backpropagate) for the batch `idx`."""
    device = loop.labels.device
    x = loop.inputs.train_batch(train, idx, loop.gen, epoch)
    # DDP: this rank's slice of the global batch (augmented whole, as in one process)
    x, idx = distributed.shard_batch(x, idx)
    with loop.inputs.autocast():
        logits = loop.net(x)
    if train.targets is not None:  # FERPlus probability / multi_target labels
        loss = soft_target_loss(logits.float(), train.targets[idx].to(device),
                                dataset.meta["targets"])
        return loss, loss
    return batch_objective(loop.model.head, loop.balance, logits.float(),
                           loop.labels[idx.to(device)], loop.couples)


def _optimizer_step(loop: _Loop, cfg: TrainConfig) -> None:
    loop.scaler.unscale_(loop.opt)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(loop.params, cfg.grad_clip)
    loop.scaler.step(loop.opt)
    loop.scaler.update()
    loop.model.head.after_step()  # e.g. clamp the logit scale's value (open_clip's rule)
    loop.sched.step()
    loop.opt.zero_grad(set_to_none=True)


def _train_epoch(loop: _Loop, train, dataset: FERDataset, cfg: TrainConfig, epoch: int,
                 progress: ProgressFn | None) -> dict:
    """One pass over the training split; its history fields (loss, lr, throughput)."""
    loop.module.train()
    freeze_norm_statistics(loop.module)
    order = loop.balance.order(len(train), loop.gen)
    loss_sum = torch.zeros((), device=loop.labels.device)  # on the device: no sync per step
    n_seen = 0
    loop.opt.zero_grad(set_to_none=True)
    t_epoch = time.perf_counter()
    for step in range(loop.steps):
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        loss, backward = _step_loss(loop, train, idx, epoch, dataset, cfg)
        step_loss = distributed.average(loss.detach())  # DDP: the global batch's loss
        loop.scaler.scale(backward / cfg.accum_steps).backward()
        if (step + 1) % cfg.accum_steps == 0 or step + 1 == loop.steps:
            _optimizer_step(loop, cfg)
        loss_sum += step_loss * len(idx)
        n_seen += len(idx)
        if step % loop.check_every == 0 or step + 1 == loop.steps:
            shown = float(loss_sum) / n_seen  # a device sync: on CUDA not every step
            if not math.isfinite(shown):
                raise CellFailure(f"non-finite loss ({float(step_loss)}) at epoch {epoch}, "
                                  f"step {step + 1}; stopped this cell (try a lower lr or "
                                  "amp=off)")
        if progress:
            progress({"epoch": epoch, "epochs": cfg.epochs, "step": step + 1,
                      "steps": loop.steps, "loss": shown})
    epoch_s = time.perf_counter() - t_epoch
    return {"train_loss": float(loss_sum) / max(1, n_seen),
            "lr": loop.opt.param_groups[0]["lr"], "train_s": round(epoch_s, 3),
            "train_images_per_s": round(n_seen / max(epoch_s, 1e-9), 1)}


def train_sgd(model: CellModel, inputs: ImageInputs, dataset: FERDataset,
              cell: Cell | ResolvedCell, device: torch.device, amp: torch.dtype | None,
              compile_model: bool = False, progress: ProgressFn | None = None,
              compute: dict | None = None) -> tuple[int, list[dict]]:
    """The training loop; keeps the state of the best validation epoch. Returns (epoch, history).
    Each epoch records its training throughput (steps only, not validation); `compute` (the
    results' record of levers) gets the optimizer implementation."""
    rc = resolved(cell)
    cfg = rc.train
    train, val = dataset.split("train"), dataset.split("val")
    if device.type == "cuda" and not isinstance(inputs, FeatureInputs):
        train = replace(train, images=train.images.pin_memory())  # async host-to-device copies
    loop = _make_loop(model, inputs, train, len(dataset.classes), rc, device, amp,
                      compile_model)
    if compute is not None:
        compute["optimizer"] = "fused" if loop.opt.defaults.get("fused") else "default"
    best_score, best_state, best_epoch, stale = -math.inf, None, 0, 0
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        record = _train_epoch(loop, train, dataset, cfg, epoch, progress)
        score, val_record = validate_epoch(model, inputs, val, dataset.classes, device,
                                           cfg.select_metric)
        history.append({"epoch": epoch, "train_loss": record.pop("train_loss"), **val_record,
                        **record})
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            # the trained part only: a frozen encoder's weights never change
            best_state = {k: v.detach().clone() for k, v in loop.module.state_dict().items()}
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                history[-1]["early_stop"] = True
                break
    if best_state is not None:
        loop.module.load_state_dict(best_state)
    return best_epoch, history


def validate_epoch(model: CellModel, inputs: ImageInputs, val, classes: tuple[str, ...],
                   device: torch.device, select: str) -> tuple[float, dict]:
    """(checkpoint-selection score, history fields) of the model on the validation split."""
    text = class_text(model.head)
    if text is not None:
        text.invalidate()
    logits = inputs.logits(val.images, what="val features")
    metrics = compute_metrics(val.labels.numpy(), logits.argmax(1).numpy(), classes)
    loss = float(model.head.loss(logits.to(device), val.labels.to(device)).item())
    return score_of(metrics, loss, select), {
        "val_loss": loss, "val_accuracy": metrics["accuracy"],
        "val_fear_disgust": metrics["fear_disgust"]}


def fit_on_features(model: CellModel, inputs: ImageInputs, dataset: FERDataset,
                    rc: ResolvedCell) -> list[dict]:
    """A head fitted in closed form (`HeadSpec.fit`, the probe) on frozen features; anything
    it chooses (weight decay) is chosen on validation only."""
    cfg = rc.train
    train, val = dataset.split("train"), dataset.split("val")
    n_classes = len(dataset.classes)
    select = cfg.select_metric if cfg.select_metric != "loss" else "accuracy"

    def score(preds: torch.Tensor) -> tuple[float, dict]:
        m = compute_metrics(val.labels.numpy(), preds.numpy(), dataset.classes)
        return score_of(m, 0.0, select), {"val_accuracy": m["accuracy"],
                                          "val_fear_disgust": m["fear_disgust"]}

    data = FeatureFit(
        train=inputs.features(train.images, what="train features"), train_labels=train.labels,
        val=inputs.features(val.images, what="val features"), n_classes=n_classes,
        weight_decays=tuple(cfg.probe_weight_decays),
        class_weight=ClassBalance(train.labels, n_classes, cfg,
                                  torch.device("cpu")).class_weight, score=score)
    return rc.head.fit(model.head, data)


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
    resolution: ResolvedCell


def prepare(cell: Cell | ResolvedCell, dataset: FERDataset, device: torch.device) -> Prepared:
    """Build the model and choose the levers (precision, memory format, TF32, feature cache)
    as `run_cell` does; `fer-bench bench` and the perf scripts measure exactly this."""
    rc = resolved(cell)
    cfg = rc.train
    cache = TensorCache(enabled=cfg.feature_cache)
    model, text, record = build_model(rc, dataset, cache)
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
    amp_name = str(amp) if amp else "off"
    record.update(preprocess=pre.describe(), device=str(device), amp=amp_name, compute={
        "amp": amp_name, "channels_last": channels_last,
        "tf32": enable_tf32(device, cfg.tf32), "compile": cfg.compile,
        "batch_size": cfg.batch_size, "accum_steps": cfg.accum_steps,
        "eval_batch_size": cfg.eval_batch_size,
        "image_features": "cached" if isinstance(inputs, FeatureInputs) else
        ("computed per step (feature_cache off)" if frozen else "computed per step")})
    return Prepared(model, text, inputs, amp, cache, record, rc)


def _load_cell_dataset(cell: Cell) -> FERDataset:
    dataset = load_dataset(cell.dataset)
    missing = [s for s in ("train", "val", "test") if s not in dataset.splits]
    if missing:
        raise DataError(f"dataset {cell.dataset!r} has no {', '.join(missing)} split(s) "
                        f"(has: {', '.join(dataset.splits)}); a cell needs train, val and test")
    return dataset


def _fit(p: Prepared, dataset: FERDataset, device: torch.device,
         progress: ProgressFn | None) -> tuple[int, list[dict]]:
    """(checkpoint epoch, history): SGD, a closed-form fit, or nothing (zero-shot)."""
    rc = p.resolution
    if rc.head.fit is not None:
        return 0, fit_on_features(p.model, p.inputs, dataset, rc)
    if rc.head.trains:
        return train_sgd(p.model, p.inputs, dataset, rc, device, p.amp, rc.train.compile,
                         progress, p.resolved["compute"])
    return 0, []


def _test(p: Prepared, dataset: FERDataset, best_epoch: int
          ) -> tuple[dict, dict[str, np.ndarray]]:
    """(metrics, predictions) on the test split."""
    test = dataset.split("test")
    text = class_text(p.model.head)
    if text is not None:
        text.invalidate()
    logits = p.inputs.logits(test.images, p.resolution.train.tta, what="test features")
    labels, preds = test.labels.numpy(), logits.argmax(1).numpy()
    metrics = compute_metrics(labels, preds, dataset.classes)
    # 95% bootstrap intervals over test images (1000 resamples, seed 0: the leaderboard's own)
    metrics["ci"] = intervals(labels, preds, dataset.classes)
    metrics["checkpoint_epoch"] = best_epoch
    return metrics, {"labels": labels, "preds": preds,
                     "scores": logits.softmax(1).numpy().astype(np.float32)}


def _kept_parameters(p: Prepared, keep_checkpoint: bool) -> dict:
    """What a cell's output keeps of its weights: learned prompts, the best checkpoint (when
    asked), and an adaptation regime's trained parameters with what they need."""
    model, rc, regime = p.model, p.resolution, p.resolved["regime"]
    text = class_text(model.head)
    kept: dict = {"artifacts": {}, "trained": None, "trained_meta": {}, "checkpoint": None}
    if text is not None and text.context is not None:
        kept["artifacts"]["learned_context"] = text.context.ctx.detach().cpu()
    if keep_checkpoint:
        kept["checkpoint"] = {k: v.detach().cpu().contiguous()
                              for k, v in model.state_dict().items()}
    if is_adaptation(regime["regime"]):
        kept["trained"] = trained_state(model)
        kept["trained_meta"] = {"regime": regime["regime"], "backbone": rc.cell.backbone,
                                "cell_id": rc.cell.cell_id, "seed": rc.cell.seed,
                                "base_digest": regime["base_digest"]}
    return kept


def _run_cell_once(cell: Cell, progress: ProgressFn | None,
                   keep_checkpoint: bool) -> CellOutput:
    rc = resolve(cell)
    distributed.announce(cell)  # torchrun: rank 0 tells the other ranks to join this cell
    device = rc.device
    t0 = time.perf_counter()
    dataset = _load_cell_dataset(cell)
    p = prepare(rc, dataset, device)
    p.resolved["dataset"] = {"classes": list(dataset.classes), **dataset.meta,
                             "split_sizes": {k: len(v) for k, v in dataset.splits.items()}}
    best_epoch, history = _fit(p, dataset, device, progress)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics, predictions = _test(p, dataset, best_epoch)
    timing = {"train_s": round(train_s, 3), "eval_s": round(time.perf_counter() - t1, 3)}
    if history and "train_images_per_s" in history[-1]:
        timing["train_images_per_s"] = history[-1]["train_images_per_s"]
    cross, cross_predictions = {}, {}
    t2 = time.perf_counter()
    for spec in cell.cross:
        cross[spec], cross_predictions[spec] = evaluate_cross(p.inputs, dataset, spec, rc.train)
    if cell.cross:
        timing["cross_s"] = round(time.perf_counter() - t2, 3)
    p.resolved["compute"]["caches"] = p.cache.log
    p.resolved["head"] = p.model.head.describe()  # e.g. the trained logit scale
    return CellOutput(metrics=metrics, predictions=predictions, timing=timing,
                      resolved=p.resolved, history=history, cross=cross,
                      cross_predictions=cross_predictions,
                      **_kept_parameters(p, keep_checkpoint))


def reload_trained(cell: Cell, path, device: str = "cpu") -> Prepared:
    """A cell's model rebuilt from its base weights plus its saved trained parameters
    (`trained.safetensors`), ready to evaluate: the base digests must match the file's."""
    from pathlib import Path

    from ..adaptation.artifacts import check_base, decode, load_into

    path = Path(path)
    state, meta = decode(path.read_bytes(), str(path))
    dataset = load_dataset(cell.dataset)
    prepared = prepare(cell, dataset, pick_device(device))
    actual = prepared.resolved["regime"].get("base_digest", {})
    check_base(meta.get("base_digest", {}), actual, str(path))
    load_into(prepared.model, state, str(path))
    text = class_text(prepared.model.head)
    if text is not None:
        text.invalidate()
    return prepared
