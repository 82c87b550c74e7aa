"""Backbone registry: card names, `family:model@weights` specs and registered factories.

    timm:resnet18            any timm model (`@none` random init, `@TAG`, `@/path/weights.pth`)
    open_clip:RN50@openai    a CLIP image tower, with its paired text tower
    fer_cnn                  a registered factory (built-in FER nets, plugins, entry points)
    clip_rn50x64             a card in backbones/*.toml naming one of the above
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from ..errors import ConfigError, FerBenchError, UnknownNameError
from ..registry import Registry
from ..resources import data_files, read_toml
from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    BackboneConfig,
    count_params_m,
    infer_feature_dim,
)

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone", "fer_bench.backbones")
FAMILIES: dict[str, Callable[..., Backbone]] = {}  # prefix -> builder(model, weights, name)


def register_backbone(name: str, *, input_size: int | tuple[int, int] = 224, in_chans: int = 3,
                      mean: tuple[float, ...] = IMAGENET_MEAN,
                      std: tuple[float, ...] = IMAGENET_STD, interpolation: str = "bilinear",
                      feature_dim: int | None = None, text_tower: Callable | None = None,
                      family: str = "custom", notes: str = "",
                      default_weights: str = "none") -> Callable:
    """Register a factory returning an `nn.Module` that maps B x C x H x W images to B x D.

    The factory may take `weights: str` ("none", or whatever the user put after `@`). D is found
    by a dry forward unless declared. `text_tower`, if given, is a factory for the paired text
    encoder (a `fer_bench.text.TextEncoder`)."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(mean) != in_chans and in_chans != 1 or len(std) != len(mean):
        raise FerBenchError(f"register_backbone({name!r}): mean/std need one value per channel")
    meta = dict(input_size=size, in_chans=in_chans, mean=tuple(mean), std=tuple(std),
                interpolation=interpolation, feature_dim=feature_dim, text_tower=text_tower,
                family=family, notes=notes, default_weights=default_weights)

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKBONES.register(name, factory, overwrite=True, **meta)
        return factory

    return deco


def family(prefix: str) -> Callable:
    def deco(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        FAMILIES[prefix] = builder
        return builder

    return deco


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed name: what to build, not yet built."""

    name: str          # as the user typed it
    family: str        # "timm", "open_clip", "hf" or "registered"
    model: str
    weights: str       # "default", "none", a tag or a file
    card: Path | None = None
    overrides: tuple = ()  # (key, value) pairs from a card's [preprocess] table

    @property
    def canonical(self) -> str:
        w = "" if self.weights == "default" else f"@{self.weights}"
        prefix = "" if self.family == "registered" else f"{self.family}:"
        return f"{prefix}{self.model}{w}"


def split_weights(text: str) -> tuple[str, str]:
    if "@" in text:
        model, weights = text.rsplit("@", 1)
        return model, weights or "default"
    return text, "default"


def cards() -> dict[str, Path]:
    return data_files("backbones")


def parse_spec(name: str) -> BackboneSpec:
    _load_builtin_families()
    name = name.strip()
    if not name:
        raise ConfigError("empty backbone name")
    prefix, sep, rest = name.partition(":")
    if sep and prefix in FAMILIES:
        model, weights = split_weights(rest)
        if not model:
            raise ConfigError(f"backbone {name!r}: no model after '{prefix}:'")
        return BackboneSpec(name, prefix, model, weights)
    base, weights = split_weights(name)
    card_files = cards()
    if base in card_files:
        card = read_toml(card_files[base])
        fam, model = card.get("family"), card.get("model")
        if not isinstance(fam, str) or not isinstance(model, str):
            raise ConfigError(f"{card_files[base]}: a card needs string keys 'family' and 'model'")
        if fam != "registered" and fam not in FAMILIES:
            raise ConfigError(f"{card_files[base]}: unknown family {fam!r} "
                              f"(expected one of: registered, {', '.join(sorted(FAMILIES))})")
        if weights == "default":
            weights = str(card.get("weights", "default"))
        pre = card.get("preprocess", {})
        return BackboneSpec(name, fam, model, weights, card_files[base],
                            tuple(sorted(pre.items())))
    if base in BACKBONES:
        return BackboneSpec(name, "registered", base, weights)
    raise UnknownNameError("backbone", name, list(card_files) + BACKBONES.names(),
                           hint="Use a card name, a registered name, or timm:NAME / "
                                "open_clip:MODEL@TAG / hf:ID (`fer-bench backbones list`)")


def create_backbone(name: str, *, pretrained: bool = True) -> Backbone:
    """Build a backbone from a card name, spec or registered name. `pretrained=False` forces
    random init (recorded as weights "none")."""
    spec = parse_spec(name)
    if not pretrained:
        spec = replace(spec, weights="none")
    build = _build_registered if spec.family == "registered" else FAMILIES[spec.family]
    bb = build(spec)
    if spec.overrides:
        over = dict(spec.overrides)
        if "input_size" in over:
            s = over["input_size"]
            over["input_size"] = (s, s) if isinstance(s, int) else tuple(s)
        for k in ("mean", "std"):
            if k in over:
                over[k] = tuple(over[k])
        bb.config = replace(bb.config, **over)
    if spec.card is not None:
        card = read_toml(spec.card)
        bb.config = replace(bb.config, name=spec.name, notes=card.get("notes", bb.config.notes))
    return bb


def _build_registered(spec: BackboneSpec) -> Backbone:
    entry = BACKBONES.get(spec.model)
    m = entry.meta
    factory = entry.obj
    kwargs = {}
    if "weights" in inspect.signature(factory).parameters:
        kwargs["weights"] = spec.weights
    elif spec.weights not in ("default", "none"):
        raise ConfigError(f"backbone {spec.name!r}: {spec.model!r} takes no weights argument, "
                          f"so '@{spec.weights}' cannot be applied")
    encoder = factory(**kwargs)
    if isinstance(encoder, Backbone):
        return encoder
    if not isinstance(encoder, nn.Module):
        raise FerBenchError(f"backbone factory {spec.model!r} returned {type(encoder).__name__}, "
                            "expected a torch.nn.Module")
    dim = m["feature_dim"] or infer_feature_dim(encoder, m["in_chans"], m["input_size"])
    text = m["text_tower"]() if m["text_tower"] else None
    weights = m["default_weights"] if spec.weights == "default" else spec.weights
    cfg = BackboneConfig(
        name=spec.name, family=m["family"], model=spec.model, weights=weights,
        input_size=m["input_size"], mean=m["mean"], std=m["std"], in_chans=m["in_chans"],
        interpolation=m["interpolation"], feature_dim=dim, text_tower=text is not None,
        params_m=count_params_m(encoder), notes=m["notes"] or entry.doc,
    )
    return Backbone(encoder, cfg, text)


_loaded = False


def _load_builtin_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import fer_nets, open_clip_family, timm_family  # noqa: F401  (register on import)


__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "BackboneSpec", "cards", "create_backbone",
           "parse_spec", "register_backbone"]
