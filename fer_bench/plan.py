"""Benchmark file + CLI flags -> a validated plan of cells, each with a stable id.

A benchmark file (benchmarks/*.toml):

    name = "demo"
    description = "..."
    [axes]                       # the matrix: every combination is a cell
    backbones = ["fer_cnn", "timm:resnet18@none"]
    prompts = ["classnames", "clip_fer2013"]
    heads = ["lasted", "linear"]
    text_encoders = ["default"]  # "default": the backbone's paired tower, else train.text_encoder
    datasets = ["synfer"]
    seeds = [0]
    [train]                      # shared settings (TrainConfig); flags override them
    epochs = 3

Heads without text (linear) ignore prompts and text encoders, so they collapse to one cell per
backbone x dataset x seed. A cell id is a hash of the cell's fully resolved config."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError

from .adaptation.spec import RegimeSpec, parse_regime
from .backbones import (
    BACKBONES,
    FAMILIES,
    BackboneConfig,
    BackboneSpec,
    cards,
    describe,
    has_text_tower,
    parse_spec,
)
from .backbones.cards import read_card
from .errors import ConfigError, FerBenchError, UnknownNameError
from .heads import HeadSpec, head_spec
from .levers import amp_dtype, pick_device
from .plan_schema import (
    AXES,
    Flag,
    Float,
    NonNegativeFloat,
    NonNegativeInt,
    NonNegativeNumbers,
    PositiveFloat,
    PositiveInt,
    Regime,
    Text,
    config_error,
    read_benchmark_file,
)
from .resources import data_files, read_toml

SelectMetric = Literal["accuracy", "balanced_accuracy", "macro_f1", "fear_disgust", "loss"]


@dataclass(frozen=True)
class TrainConfig:
    """A cell's training settings. The annotations are the checks (plan_schema): a [train]
    table, --set and a card's defaults are validated by pydantic into this dataclass."""
    __pydantic_config__ = ConfigDict(extra="forbid")  # a class attribute, not a field

    epochs: PositiveInt = 5
    batch_size: PositiveInt = 64
    accum_steps: PositiveInt = 1      # gradient accumulation: effective batch = batch x accum
    lr: PositiveFloat = 1e-3
    weight_decay: Float = 0.01
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    schedule: Literal["cosine", "constant"] = "cosine"  # after warmup
    warmup_epochs: Float = 0.0
    grad_clip: NonNegativeFloat = 1.0  # 0 disables (LASTED: none)
    drop_last: Flag = False           # drop a last partial training batch (LASTED: true)
    # lasted, class absent from a batch
    absent_classes: Literal["image_only", "mask"] = "image_only"
    regime: Regime = "full"           # full | image | text | frozen | partial:N | lora:r=R,...
    #                                   | adapter[:dim=D,...] | vpt:N (fer_bench.adaptation.spec)
    # auto: bf16/fp16 on CUDA, fp32 on CPU
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    select_metric: SelectMetric = "accuracy"  # checkpoint selection on the *validation* split
    patience: NonNegativeInt = 0      # early stopping after N epochs without improvement; 0 off
    # class-balanced sampling or loss (for disgust)
    balance: Literal["none", "sampler", "loss"] = "none"
    logit_adjust: NonNegativeFloat = 0.0  # tau of logit-adjusted loss (Menon et al. 2021); 0 off
    prompt_sampling: Flag = False     # one prompt per class per step instead of the ensemble
    tta: Literal["none", "tencrop"] = "none"  # test-time augmentation (FER2013 style)
    probe_weight_decays: NonNegativeNumbers = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    image_size: NonNegativeInt = 0    # 0: the backbone's own input size
    pretrained: Flag = True           # False: random init for every backbone (recorded)
    text_encoder: Text = "minilm"     # for backbones without a paired text tower
    eval_batch_size: PositiveInt = 256
    device: Text = "auto"             # auto | cpu | cuda | cuda:N
    # Speed levers (see README "Speed"); none changes what is measured beyond float rounding,
    # except feature_views, which sets how many augmented views a frozen encoder trains on.
    feature_cache: Flag = True        # frozen image encoder: features computed once, on disk
    feature_views: PositiveInt = 1    # 1: un-augmented features; V: + V-1 augmented views
    # auto: conv nets on CUDA, or CPU under bf16
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: Flag = False             # torch.compile the trained module
    tf32: Flag = True                 # TF32 matmuls on Ampere+ GPUs
    oom_retry: Flag = True            # CUDA OOM: halve the batch, double accumulation, retry

    def validate(self, where: str) -> None:
        """Raise ConfigError naming `where` and the key when a setting is out of range."""
        train_config({}, where, base=self)


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))


@functools.cache
def _train_adapter() -> TypeAdapter:
    return TypeAdapter(TrainConfig)


def train_config(values: Mapping[str, Any], where: str, base: TrainConfig | None = None,
                 at: tuple = ("train",)) -> TrainConfig:
    """`base` (default: the defaults) with `values` set, checked and coerced (an int for a
    float becomes a float, a list a tuple). Errors name `where` and the key, `at` being where
    the values sit in the file."""
    try:
        return _train_adapter().validate_python({**asdict(base or TrainConfig()), **values})
    except ValidationError as e:
        raise config_error(where, e, prefix=at, keys={"train": TRAIN_KEYS}) from None


@dataclass
class Benchmark:
    name: str = "adhoc"
    description: str = ""
    backbones: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=lambda: ["clip_fer2013"])
    heads: list[str] = field(default_factory=lambda: ["lasted", "linear"])
    text_encoders: list[str] = field(default_factory=lambda: ["default"])
    datasets: list[str] = field(default_factory=lambda: ["synfer"])
    seeds: list[int] = field(default_factory=lambda: [0])
    regimes: list[str] | None = None  # an axis of train.regime values; None: train.regime only
    train: TrainConfig = field(default_factory=TrainConfig)
    overrides: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    skip: list[dict[str, str]] = field(default_factory=list)
    cross_datasets: list[str] = field(default_factory=list)
    keep_checkpoints: bool = False
    source: str = "command line"
    # train keys the benchmark file or the command line set: a card's per-family defaults
    # ([train] in backbones/*.toml) fill in only the others
    explicit: set[str] = field(default_factory=set)


def benchmark_files() -> dict[str, Path]:
    return data_files("benchmarks")


def find_benchmark(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    files = benchmark_files()
    if name_or_path in files:
        return files[name_or_path]
    raise UnknownNameError("benchmark", name_or_path, files,
                           hint="Pass a path to a .toml file or a name from benchmarks/")


def load_benchmark(path: Path) -> Benchmark:
    """A benchmark file, checked (plan_schema) before anything of it is used."""
    where = str(path)
    file = read_benchmark_file(read_toml(path), where)
    bench = Benchmark(name=file.name or path.stem, description=file.description, source=where,
                      train=train_config(file.train, where), explicit=set(file.train),
                      skip=[m.globs() for m in file.skip],
                      cross_datasets=list(file.eval.cross_datasets),
                      keep_checkpoints=file.eval.keep_checkpoints)
    for axis in AXES:
        if (values := getattr(file.axes, axis)) is not None:
            setattr(bench, axis, list(values))
    for i, entry in enumerate(file.overrides):
        train = train_config(entry.train, where, base=bench.train, at=("overrides", i, "train"))
        bench.overrides.append((entry.globs(), {k: getattr(train, k) for k in entry.train}))
    return bench


def matches(match: dict[str, str], **cell: str | None) -> bool:
    return all(fnmatch.fnmatchcase(str(cell[k]), pattern) for k, pattern in match.items())


def expand_backbones(names: list[str]) -> list[str]:
    """Globs (`clip_*`, `timm:convnext_*`) expand over cards and registered names, or over the
    family's own model list; other names pass through unchanged (validated later)."""
    out: list[str] = []
    for name in names:
        if not any(ch in name for ch in "*?["):
            out.append(name)
            continue
        prefix, sep, rest = name.partition(":")
        parse_spec("fer_cnn")  # built-in families and registrations
        lister = FAMILIES[prefix].list_models if sep and prefix in FAMILIES else None
        if lister is not None:
            found = [f"{prefix}:{m}" for m in lister(rest)]
        else:
            found = sorted(n for n in {*cards(), *BACKBONES.names()}
                           if fnmatch.fnmatchcase(n, name))
        if not found:
            raise ConfigError(f"backbone pattern {name!r} matches nothing")
        out += [f for f in found if f not in out]
    return out


# Options added after results existed: at their defaults they stay out of the cell id, so
# results computed before they existed are still found (and not recomputed).
ID_NEUTRAL_DEFAULTS = {"feature_cache": True, "feature_views": 1, "channels_last": "auto",
                       "compile": False, "tf32": True, "oom_retry": True}
# Bumped when the same config computes different numbers, so such cells get new ids. 2: the
# LASTED loss never halves (absent classes), the paired tower's logit scale, fp32 by default on
# the CPU, eval preprocessing as timm/open_clip do it (shortest side, crop_pct, uint8 rounding).
CELL_SEMANTICS = 2


@dataclass(frozen=True)
class Cell:
    backbone: str
    head: str
    dataset: str
    seed: int
    prompts: str | None
    text_encoder: str | None      # "default" resolved when the backbone is known
    train: TrainConfig
    cross: tuple[str, ...] = ()   # extra test datasets (classes mapped by name)

    def config(self) -> dict:
        d = asdict(self)
        d["train"] = {k: v for k, v in asdict(self.train).items()
                      if not (k in ID_NEUTRAL_DEFAULTS and v == ID_NEUTRAL_DEFAULTS[k])}
        if not self.cross:  # ids of cells without cross evaluation stay as they were
            del d["cross"]
        else:
            d["cross"] = list(self.cross)
        return d

    @classmethod
    def from_config(cls, config: dict) -> Cell:
        """The inverse of `config()` (fields a config leaves out keep their defaults; JSON lists
        become tuples again). The id is checked: a cell never runs under another's id."""
        def tuples(d: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        keys = {f.name for f in fields(cls)} - {"train"}
        cell = cls(**tuples({k: v for k, v in config.items() if k in keys}),
                   train=TrainConfig(**tuples(config["train"])))
        if json.loads(json.dumps(cell.config())) != json.loads(json.dumps(config)):
            raise FerBenchError("a cell sent to a worker does not rebuild to the same config "
                                "(different fer-bench versions on the driver and the worker?)")
        return cell

    @property
    def cell_id(self) -> str:
        config = self.config()
        if CELL_SEMANTICS > 1:  # results computed under older semantics are not reused
            config["semantics"] = CELL_SEMANTICS
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = [self.backbone, self.head]
        if self.prompts:
            parts.append(self.prompts)
        if self.text_encoder and self.text_encoder != "default":
            parts.append(self.text_encoder)
        return " / ".join(parts) + f" / {self.dataset} / seed {self.seed}"


def card_defaults(backbone: str) -> tuple[dict[str, Any], str]:
    """(the card's [train] defaults, the card's path) for a backbone loaded with its published
    or pretrained weights; nothing for `@none` (a from-scratch control) or a plain spec."""
    try:
        spec = parse_spec(backbone)
    except FerBenchError:  # reported by validation, with suggestions
        return {}, ""
    if spec.card is None or spec.weights == "none":
        return {}, ""
    return dict(read_card(spec.card).train), str(spec.card)


def with_card_defaults(bench: Benchmark, backbone: str) -> TrainConfig:
    """The benchmark's train config with the backbone card's defaults for unset keys."""
    if not bench.train.pretrained:
        return bench.train
    defaults, where = card_defaults(backbone)
    values = {k: v for k, v in defaults.items() if k not in bench.explicit}
    if not values:
        return bench.train
    return train_config(values, where, base=bench.train)


def expand(bench: Benchmark) -> list[Cell]:
    """Every combination of the axes, text-free heads collapsed, in a stable order."""
    for axis in AXES:
        if axis != "regimes" and not getattr(bench, axis):
            raise ConfigError(f"{bench.source}: axis {axis!r} is empty")
    cells: dict[str, Cell] = {}
    cross = tuple(bench.cross_datasets)
    for ds in bench.datasets:
        for bb in expand_backbones(bench.backbones):
            for head in bench.heads:
                text = head_spec(head).uses_text
                for pr in (bench.prompts if text else [None]):
                    for te in (bench.text_encoders if text else [None]):
                        for rg in bench.regimes or [bench.train.regime]:
                            axes = {"backbone": bb, "head": head, "prompts": pr,
                                    "text_encoder": te, "dataset": ds, "regime": rg}
                            _add_cells(cells, bench, axes, cross)
    if not cells:
        raise ConfigError(f"{bench.source}: every cell is skipped by [[skip]]")
    return list(cells.values())


def _add_cells(cells: dict[str, Cell], bench: Benchmark, axes: dict, cross: tuple) -> None:
    """The cells (one per seed) of one combination of the axes, unless [[skip]] drops it."""
    if any(matches(m, **axes) for m in bench.skip):
        return
    train = with_card_defaults(bench, axes["backbone"])
    if bench.regimes:
        train = replace(train, regime=axes["regime"])
    for m, values in bench.overrides:
        if matches(m, **axes):
            train = replace(train, **values)
    for seed in bench.seeds:
        c = Cell(axes["backbone"], axes["head"], axes["dataset"], seed, axes["prompts"],
                 axes["text_encoder"], train, tuple(x for x in cross if x != axes["dataset"]))
        cells.setdefault(c.cell_id, c)


# ------------------------------------------------------------------------ resolving a cell
# A cell names its parts; `resolve` works out, once, what they mean together: the backbone's
# spec and (lazily) its config, the head's capabilities, the text encoder the default rule
# picks, the regime that applies, the precision and the input size. Validation, the dry-run
# estimate and table, and the engine all read this, so each rule exists in one place.

@dataclass(frozen=True)
class ResolvedCell:
    cell: Cell
    backbone: BackboneSpec
    head: HeadSpec
    regime: RegimeSpec                # what trains: `frozen` for a frozen-image head
    train: TrainConfig                # the cell's settings with that regime
    text_tower: bool | None           # the backbone has a paired tower (None: a build tells)
    text_encoder: str | None          # None: the head has no text; "paired": the backbone's
    text_fallback: str | None = None  # `default` where a build may show no paired tower

    def text_for(self, tower: bool) -> str | None:
        """The text encoder once the backbone is built and its paired tower known."""
        if self.text_encoder == "paired" and not tower and self.text_fallback:
            return self.text_fallback
        return self.text_encoder

    def text_problem(self, tower: bool | None) -> str | None:
        """Why the cell's text side cannot work (None: it can, or only a build will tell).
        `tower` is the backbone's paired tower: known after a build, else `text_tower`."""
        te = self.text_for(tower) if tower is not None else self.text_encoder
        c = self.cell
        if te == "paired" and tower is False:
            return (f"--text-encoder paired, but backbone {c.backbone!r} has no paired text "
                    "tower; name one (minilm, open_clip:MODEL@TAG, hf:ID)")
        if self.head.needs_aligned_text and (te != "paired" or tower is False):
            why = (f"backbone {c.backbone!r} has no text tower" if tower is False
                   else f"text encoder {te!r} is not aligned with the image features")
            return f"head {c.head!r} needs the backbone's paired CLIP text tower, but {why}"
        return None

    def regime_problem(self) -> str | None:
        """A regime that trains only the text side of a head without text."""
        if self.head.uses_text:
            return None
        r = self.regime
        if r.kind == "text" or (r.adaptation and r.towers() == {"text"}):
            return (f"regime {self.train.regime!r} trains only on the text side, but head "
                    f"{self.cell.head!r} has no text")
        return None

    @functools.cached_property
    def config(self) -> BackboneConfig:
        """The backbone's config from its card or a meta build: no weights, no download."""
        return _describe(self.cell.backbone)

    @property
    def input_size(self) -> tuple[int, int]:
        """What images are resized to: `image_size` unless the encoder's input is fixed."""
        size = self.train.image_size
        if size and not self.config.fixed_input_size:
            return (size, size)
        return tuple(self.config.input_size)

    @property
    def weights(self) -> str:
        """The image encoder's weights, as its card or spec names them."""
        w = self.config.weights
        return "random init" if not self.train.pretrained or w in ("none", "") else w

    @property
    def device(self) -> torch.device:
        return pick_device(self.train.device)

    @property
    def precision(self) -> str:
        """The training precision `amp` resolves to on the device this cell would use."""
        cfg = self.train
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            return {"auto": "bf16/fp16 (cuda)", "off": "fp32"}.get(cfg.amp, cfg.amp)
        dtype = amp_dtype(self.device, cfg.amp)
        return "fp32" if dtype is None else {torch.bfloat16: "bf16",
                                             torch.float16: "fp16"}[dtype]

    def to_json(self) -> dict:
        """What the dry run reports of the resolution (JSON-ready)."""
        return {"head": self.head.name, "regime": self.train.regime,
                "text_encoder": self.text_encoder, "text_fallback": self.text_fallback,
                "input_size": list(self.input_size), "precision": self.precision,
                "weights": self.weights}


@functools.cache
def _describe(backbone: str) -> BackboneConfig:
    return describe(backbone)


def _text_choice(cell: Cell, head: HeadSpec, tower: bool | None
                 ) -> tuple[str | None, str | None]:
    """(text encoder, fallback): `default` is the backbone's paired tower where it has one,
    else `train.text_encoder`; where only a build tells, the paired tower with that fallback."""
    if not head.uses_text:
        return None, None
    te = cell.text_encoder or "default"
    if te != "default":
        return te, None
    if tower is None:
        return "paired", cell.train.text_encoder
    return ("paired" if tower else cell.train.text_encoder), None


def resolve(cell: Cell) -> ResolvedCell:
    """The cell's parts worked out together (unknown names fail with suggestions). Builds and
    loads nothing: the backbone's config is described only when asked for."""
    spec = parse_spec(cell.backbone)
    head = head_spec(cell.head)
    train = replace(cell.train, regime="frozen") if head.frozen_image else cell.train
    tower = has_text_tower(spec)
    text, fallback = _text_choice(cell, head, tower)
    return ResolvedCell(cell, spec, head, parse_regime(train.regime), train, tower, text,
                        fallback)


def cell_text_encoders(cells: list[Cell]) -> list[str]:
    """The text encoders a plan's cells load besides their backbones' paired towers (where
    only a build tells whether a tower exists, its fallback: weights checks stay on the safe
    side)."""
    names = []
    for c in cells:
        rc = resolve(c)
        names += [t for t in (rc.text_encoder, rc.text_fallback) if t not in (None, "paired")]
    return names
