"""Backbone cards: small TOML files naming an encoder (backbones/*.toml, or a directory in
FER_BENCH_BACKBONES_PATH).

    family = "open_clip"                 # open_clip | timm | hf | registered
    model = "RN50x64-quickgelu"          # the family's own model name
    weights = "openai"                   # tag, local file, or "none"
    notes = "..."
    [preprocess]                         # optional overrides of the library's preprocessing
    input_size = 448                     # also mean, std, interpolation, in_chans,
                                         # fixed_input_size, crop_pct, resize_mode
    [source]                             # published weights (weights = "published"): url,
                                         # file, sha256, size, licence, paper (sources.py)
    [train]                              # the family's training defaults (lr, warmup_epochs,
                                         # weight_decay, schedule), used where neither the
                                         # benchmark file nor the command line sets them
    [measured]                           # written by `fer-bench backbones measure --write`

The [measured] table caches what `backbones list` shows (dims, params, GMACs, preprocessing) so
listing needs no model at all; the tests check it against a fresh measurement."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from ..errors import ConfigError
from ..resources import read_toml
from ..schema import (
    Flag,
    Float,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Table,
    Text,
    config_error,
)
from .base import BackboneConfig
from .sources import PUBLISHED, Source, WeightSource

InputSize = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


class Preprocess(Table):
    """[preprocess]: overrides of the library's preprocessing (only the keys given apply)."""

    input_size: InputSize | None = None
    mean: list[Float] | None = None
    std: list[Float] | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None
    in_chans: PositiveInt | None = None
    fixed_input_size: Flag | None = None
    crop_pct: PositiveFloat | None = None
    resize_mode: Text | None = None


class CardTrain(Table):
    """[train]: the family's training defaults (used where no benchmark or flag sets them)."""

    lr: PositiveFloat | None = None
    warmup_epochs: NonNegativeFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    schedule: Text | None = None


class CardFile(Table):
    family: Text
    model: Annotated[Text, Field(min_length=1)]
    weights: Text = "default"
    notes: Text = ""
    preprocess: Preprocess = Preprocess()
    source: Source | None = None
    train: CardTrain = CardTrain()
    measured: dict[str, Any] = {}


CARD_KEYS = {"": tuple(CardFile.model_fields), "preprocess": tuple(Preprocess.model_fields),
             "source": tuple(Source.model_fields), "train": tuple(CardTrain.model_fields)}
MEASURED_KEYS = ("family", "input_size", "in_chans", "feature_dim", "params_m", "text_params_m",
                 "gmacs", "mean", "std", "interpolation", "crop_pct", "resize_mode",
                 "fixed_input_size", "text_tower")
OPTIONAL_MEASURED = {"text_params_m": 0.0, "crop_pct": 1.0, "resize_mode": "shortest"}


@dataclass(frozen=True)
class Card:
    path: Path
    family: str
    model: str
    weights: str
    notes: str = ""
    overrides: tuple = ()
    measured: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] | None = None   # [source]: published weights
    train: tuple = ()                      # [train]: (key, value) training defaults

    def weight_source(self) -> WeightSource | None:
        return WeightSource(self.path.stem, **self.source) if self.source else None

    def preprocess_overrides(self) -> dict[str, Any]:
        over = dict(self.overrides)
        if "input_size" in over:
            s = over["input_size"]
            over["input_size"] = (s, s) if isinstance(s, int) else tuple(s)
        for k in ("mean", "std"):
            if k in over:
                over[k] = tuple(float(v) for v in over[k])
        return over

    def config(self, name: str) -> BackboneConfig:
        """The config the cached [measured] table describes (weights not loaded)."""
        m = self.measured
        return BackboneConfig(
            name=name, family=str(m["family"]), model=self.model,
            weights=self.weights, input_size=tuple(m["input_size"]), mean=tuple(m["mean"]),
            std=tuple(m["std"]), in_chans=int(m["in_chans"]),
            interpolation=str(m["interpolation"]),
            fixed_input_size=bool(m["fixed_input_size"]), feature_dim=int(m["feature_dim"]),
            text_tower=bool(m["text_tower"]), params_m=float(m["params_m"]),
            gmacs=float(m["gmacs"]), text_params_m=float(m.get("text_params_m", 0.0)),
            crop_pct=float(m.get("crop_pct", 1.0)),
            resize_mode=str(m.get("resize_mode", "shortest")), notes=self.notes)


def read_card(path: Path, known_families: list[str] | None = None) -> Card:
    return _read_card(Path(path), tuple(known_families or ()), Path(path).stat().st_mtime_ns)


@lru_cache(maxsize=256)
def _read_card(path: Path, known_families: tuple[str, ...], _mtime: int) -> Card:
    try:
        card = CardFile.model_validate(read_toml(path))
    except ValidationError as e:
        raise config_error(str(path), e, keys=CARD_KEYS) from None
    if known_families and card.family not in known_families:
        raise ConfigError(f"{path}: unknown family {card.family!r} "
                          f"(expected one of: {', '.join(known_families)})")
    missing = [k for k in MEASURED_KEYS if k not in card.measured and k not in OPTIONAL_MEASURED]
    if card.measured and missing:
        raise ConfigError(f"{path}: [measured] lacks {', '.join(missing)} (rewrite it with "
                          "`fer-bench backbones measure NAME --write`)")
    if (card.weights == PUBLISHED) != (card.source is not None):
        raise ConfigError(f"{path}: weights = \"{PUBLISHED}\" and a [source] table go together")
    source = card.source.model_dump(exclude_unset=True) if card.source else None
    return Card(path, card.family, card.model, card.weights, card.notes,
                tuple(sorted(card.preprocess.model_dump(exclude_unset=True).items())),
                dict(card.measured), source,
                tuple(sorted(card.train.model_dump(exclude_unset=True).items())))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def measured_table(cfg: BackboneConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    return {k: d[k] for k in MEASURED_KEYS}


def write_measured(path: Path, cfg: BackboneConfig) -> None:
    """Replace the card's [measured] table (kept last in the file) with `cfg`'s values."""
    text = Path(path).read_text()
    head = text.split("\n[measured]", 1)[0].rstrip("\n")
    lines = ["", "[measured]  # by `fer-bench backbones measure --write` (random init, "
                 "meta device)"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in measured_table(cfg).items()]
    Path(path).write_text(head + "\n" + "\n".join(lines) + "\n")
    _read_card.cache_clear()
