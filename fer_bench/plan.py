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

import difflib
import fnmatch
import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

import torch

from .adaptation.spec import RegimeSpec, parse_regime, regime_problem
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
from .resources import data_files, read_toml

AXES = ("backbones", "prompts", "heads", "text_encoders", "datasets", "seeds", "regimes")
TOP_KEYS = {"name", "description", "axes", "train", "overrides", "skip", "eval"}
MATCH_KEYS = ("backbone", "head", "prompts", "text_encoder", "dataset", "regime")
EVAL_KEYS = {"cross_datasets", "keep_checkpoints"}
REGIMES = ("full", "image", "text", "frozen")  # and partial:N, lora:..., adapter[:...], vpt:N
SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "fear_disgust", "loss")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    accum_steps: int = 1              # gradient accumulation: effective batch = batch x accum
    lr: float = 1e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"          # adamw | adam | sgd
    schedule: str = "cosine"          # cosine | constant (after warmup)
    warmup_epochs: float = 0.0
    grad_clip: float = 1.0            # 0 disables (LASTED: none)
    drop_last: bool = False           # drop a last partial training batch (LASTED: true)
    absent_classes: str = "image_only"  # lasted, class absent from a batch: image_only | mask
    regime: str = "full"              # full | image | text | frozen | partial:N | lora:r=R,...
    #                                   | adapter[:dim=D,...] | vpt:N (fer_bench.adaptation.spec)
    amp: str = "auto"                 # auto (bf16/fp16 on CUDA, fp32 on CPU) | bf16 | fp16 | off
    select_metric: str = "accuracy"   # checkpoint selection on the *validation* split
    patience: int = 0                 # early stopping after N epochs without improvement; 0 off
    balance: str = "none"             # none | sampler | loss (class-balanced, for disgust)
    logit_adjust: float = 0.0         # tau of logit-adjusted loss (Menon et al. 2021); 0 off
    prompt_sampling: bool = False     # one prompt per class per step instead of the ensemble
    tta: str = "none"                 # test-time augmentation: none | tencrop (FER2013 style)
    probe_weight_decays: tuple = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    image_size: int = 0               # 0: the backbone's own input size
    pretrained: bool = True           # False: random init for every backbone (recorded)
    text_encoder: str = "minilm"      # for backbones without a paired text tower
    eval_batch_size: int = 256
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    # Speed levers (see README "Speed"); none changes what is measured beyond float rounding,
    # except feature_views, which sets how many augmented views a frozen encoder trains on.
    feature_cache: bool = True        # frozen image encoder: features computed once, on disk
    feature_views: int = 1            # 1: un-augmented features; V: + V-1 augmented views
    channels_last: str = "auto"       # auto (conv nets on CUDA, or CPU under bf16) | on | off
    compile: bool = False             # torch.compile the trained module
    tf32: bool = True                 # TF32 matmuls on Ampere+ GPUs
    oom_retry: bool = True            # CUDA OOM: halve the batch, double accumulation, retry

    def validate(self, where: str) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.accum_steps >= 1, "accum_steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.optimizer in ("adamw", "adam", "sgd"), "optimizer must be adamw, adam or sgd"),
            (self.schedule in ("cosine", "constant"), "schedule must be cosine or constant"),
            (regime_problem(self.regime) is None, f"regime: {regime_problem(self.regime)}"),
            (self.amp in ("auto", "bf16", "fp16", "off"), "amp must be auto, bf16, fp16 or off"),
            (self.absent_classes in ("mask", "image_only"),
             "absent_classes must be mask or image_only"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables)"),
            (self.select_metric in SELECT_METRICS,
             f"select_metric must be one of {', '.join(SELECT_METRICS)}"),
            (self.patience >= 0, "patience must be >= 0"),
            (self.tta in ("none", "tencrop"), "tta must be none or tencrop"),
            (self.balance in ("none", "sampler", "loss"), "balance must be none, sampler or loss"),
            (self.logit_adjust >= 0, "logit_adjust must be >= 0"),
            (bool(self.probe_weight_decays) and all(
                isinstance(w, int | float) and w >= 0 for w in self.probe_weight_decays),
             "probe_weight_decays must be a non-empty list of numbers >= 0"),
            (self.image_size >= 0, "image_size must be >= 0"),
            (self.feature_views >= 1, "feature_views must be >= 1"),
            (self.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"{where}: train.{msg}")


def coerce_train(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check keys and types of a [train] table (or flags) against TrainConfig."""
    hints = get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    out = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"{where}: unknown key train.{key}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
        typ = hints[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typ is tuple and isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: train.{key} must be {typ.__name__}, "
                              f"got {type(value).__name__} {value!r}")
        out[key] = value
    return out


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
    data = read_toml(path)
    where = str(path)
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                          f"(expected: {', '.join(sorted(TOP_KEYS))})")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise ConfigError(f"{where}: [axes] must be a table")
    bad = set(axes) - set(AXES)
    if bad:
        raise ConfigError(f"{where}: unknown axis {', '.join(sorted(bad))} "
                          f"(expected: {', '.join(AXES)})")
    bench = Benchmark(name=str(data.get("name", path.stem)),
                      description=str(data.get("description", "")), source=where)
    for axis, values in axes.items():
        elem = int if axis == "seeds" else str
        if not isinstance(values, list) or not all(
                isinstance(v, elem) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}: axes.{axis} must be a list of {elem.__name__}s")
        if not values:
            raise ConfigError(f"{where}: axes.{axis} is empty")
        setattr(bench, axis, list(values))
    train = data.get("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"{where}: [train] must be a table")
    bench.train = replace(TrainConfig(), **coerce_train(train, where))
    bench.train.validate(where)
    bench.explicit = set(train)
    for i, regime in enumerate(bench.regimes or []):
        replace(bench.train, regime=regime).validate(f"{where}: axes.regimes[{i}]")
    for i, entry in enumerate(_tables(data, "overrides", where)):
        at = f"{where}: overrides[{i}]"
        match = _match(entry, at, extra={"train"})
        values = entry.get("train")
        if not isinstance(values, dict) or not values:
            raise ConfigError(f"{at}: needs a non-empty 'train' table of settings to override")
        replace(bench.train, **coerce_train(values, at)).validate(at)
        bench.overrides.append((match, coerce_train(values, at)))
    bench.skip = [_match(e, f"{where}: skip[{i}]")
                  for i, e in enumerate(_tables(data, "skip", where))]
    ev = data.get("eval", {})
    if not isinstance(ev, dict) or set(ev) - EVAL_KEYS:
        raise ConfigError(f"{where}: [eval] takes only {', '.join(sorted(EVAL_KEYS))}")
    cross = ev.get("cross_datasets", [])
    if not isinstance(cross, list) or not all(isinstance(x, str) for x in cross):
        raise ConfigError(f"{where}: eval.cross_datasets must be a list of dataset specs")
    bench.cross_datasets = list(cross)
    if not isinstance(ev.get("keep_checkpoints", False), bool):
        raise ConfigError(f"{where}: eval.keep_checkpoints must be true or false")
    bench.keep_checkpoints = ev.get("keep_checkpoints", False)
    return bench


def _tables(data: dict, key: str, where: str) -> list[dict]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return entries


def _match(entry: dict, at: str, extra: set[str] = frozenset()) -> dict[str, str]:
    """The cell-matching part of an [[overrides]] / [[skip]] entry: globs per axis."""
    unknown = set(entry) - set(MATCH_KEYS) - extra
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(unknown))} "
                          f"(match on: {', '.join(MATCH_KEYS)})")
    match = {k: v for k, v in entry.items() if k in MATCH_KEYS}
    if not match or not all(isinstance(v, str) for v in match.values()):
        raise ConfigError(f"{at}: needs at least one of {', '.join(MATCH_KEYS)} as a string "
                          "(globs allowed: \"clip_*\")")
    return match


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
    train = replace(bench.train, **values)
    train.validate(where)
    return train


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
