"""Backbone registry: card names, `family:model@weights` specs and registered factories.

    clip_rn50x64             a card in backbones/*.toml naming one of the below
    open_clip:RN50@openai    a CLIP image tower, with its paired text tower
    timm:resnet18            any timm model (`@none` random init, `@TAG`, `@/path/weights.pth`)
    hf:ORG/REPO or hf:/dir   a Hugging Face vision tower (CLIP vision, ViT, DINOv2, ...)
    fer_cnn                  a registered factory (built-in FER nets, plugins, entry points)
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, FerBenchError, UnknownNameError
from ..resources import data_files
from ..weights import is_local_file, split_weights
from .base import (
    Backbone,
    BackboneConfig,
    count_params_m,
    measure,
)
from .cards import read_card
from .registration import (
    BACKBONES,
    DEFAULT_META,
    FAMILIES,
    BackboneSpec,
    Family,
    family,
    register_backbone,
)
from .sources import PUBLISHED
from .sources import resolve as resolve_source


def has_text_tower(spec: BackboneSpec) -> bool | None:
    """Whether the backbone comes with a paired (CLIP-aligned) text tower, known without
    building it; None when only building it would tell."""
    if spec.family == "registered":
        return BACKBONES.get(spec.model).meta.get("text_tower") is not None
    return FAMILIES[spec.family].has_text_tower(spec)


def check_model(spec: BackboneSpec) -> None:
    """The family knows the spec's model (a card's model too, which parsing does not check)."""
    if spec.family != "registered":
        FAMILIES[spec.family].check(spec.model, f"in backbone {spec.name!r}")


def cards() -> dict[str, Path]:
    """Card name -> file, from FER_BENCH_BACKBONES_PATH dirs, then the shipped backbones/."""
    return data_files("backbones")


def parse_spec(name: str) -> BackboneSpec:
    """Resolve a name without building anything (what a dry run checks)."""
    _load_builtin_families()
    name = name.strip()
    if not name:
        raise ConfigError("empty backbone name")
    prefix, sep, rest = name.partition(":")
    if sep and prefix in FAMILIES:
        model, weights = split_weights(rest)
        if not model:
            raise ConfigError(f"backbone {name!r}: no model after '{prefix}:'")
        FAMILIES[prefix].check(model)
        return BackboneSpec(name, prefix, model, weights)
    base, weights = split_weights(name)
    card_files = cards()
    if base in card_files:
        card = read_card(card_files[base], known_families=["registered", *FAMILIES])
        if weights == "default":
            weights = card.weights
        if card.family == "registered" and card.model not in BACKBONES:
            raise ConfigError(f"{card.path}: model {card.model!r} is not a registered backbone "
                              "(load its plugin with --plugin or install its package)")
        return BackboneSpec(name, card.family, card.model, weights, card.path, card.overrides)
    if base in BACKBONES:
        return BackboneSpec(name, "registered", base, weights)
    raise UnknownNameError("backbone", name, _known_names(card_files),
                           hint="Use a card name, a registered name, or timm:NAME / "
                                "open_clip:MODEL@TAG / hf:ID (`fer-bench backbones list`)")


def _known_names(card_files: dict[str, Path]) -> list[str]:
    """Cards, registered names and the open_clip/timm listings (for "closest" suggestions)."""
    known = list(card_files) + BACKBONES.names()
    for prefix, fam in FAMILIES.items():
        if fam.list_models:
            with contextlib.suppress(ImportError):  # the listings only improve suggestions
                known += [f"{prefix}:{n}" for n in fam.list_models("*")]
    return known


def create_backbone(name: str, *, pretrained: bool = True, measure_cost: bool = True,
                    device: str = "cpu", use_cache: bool = True) -> Backbone:
    """Build a backbone from a card name, spec or registered name.

    `pretrained=False` forces random init (recorded as weights "none"). GMACs come from the
    card's measured table when it matches, else from a dry forward that computes nothing
    (`measure_cost=False` skips it). device="meta" builds without memory or weights."""
    spec = parse_spec(name)
    load = pretrained and spec.weights != "none" and device != "meta"
    card = read_card(spec.card) if spec.card is not None else None
    published = spec.weights == PUBLISHED
    if published:  # the card's release file from the cache (never downloaded here)
        source = card.weight_source() if card is not None else None
        if source is None:
            raise ConfigError(f"backbone {name!r}: '@{PUBLISHED}' needs a card with a "
                              "[source] table")
        spec = replace(spec, weights=str(resolve_source(source)) if load else "none")
    build = _build_registered if spec.family == "registered" else FAMILIES[spec.family].build
    bb = build(spec, load_weights=load, device=device)
    if not load and device != "meta":  # on meta, `weights` names what a real build would load
        bb.config = replace(bb.config, weights="none")
    elif published and device == "meta":
        bb.config = replace(bb.config, weights=PUBLISHED)
    if card is not None:
        bb.config = replace(bb.config, name=spec.name, notes=card.notes or bb.config.notes)
        if card.overrides:
            bb.config = replace(bb.config, **card.preprocess_overrides())
    if measure_cost and bb.config.gmacs is None:
        cached = card.measured if card is not None and use_cache else {}
        if (cached.get("params_m") == bb.config.params_m and cached.get("gmacs") is not None
                and tuple(cached.get("input_size", ())) == bb.config.input_size):
            gmacs = float(cached["gmacs"])
        else:
            try:
                dim, gmacs = measure(bb.encoder, bb.config.in_chans, bb.config.input_size)
            except Exception as e:
                raise FerBenchError(f"backbone {name!r}: a dry forward at its input size "
                                    f"{bb.config.input_size} failed: {type(e).__name__}: "
                                    f"{str(e)[:200]}") from e
            if dim != bb.config.feature_dim:
                raise FerBenchError(f"backbone {name!r}: declares feature_dim "
                                    f"{bb.config.feature_dim} but produces {dim}")
        bb.config = replace(bb.config, gmacs=gmacs)
    return bb


def describe(name: str, *, cached: bool = True) -> BackboneConfig:
    """The resolved config without weights or memory: from the card's [measured] table if it
    has one (and `cached`), else by building the architecture on the meta device. `weights`
    names what a real build would load. Never downloads."""
    spec = parse_spec(name)
    card = read_card(spec.card) if spec.card is not None else None
    if cached and card is not None and card.measured and (
            spec.weights in (card.weights, "none") or is_local_file(spec.weights)):
        return replace(card.config(spec.name), weights=spec.weights)  # same architecture
    return create_backbone(name, device="meta", use_cache=cached).config


def _build_registered(spec: BackboneSpec, *, load_weights: bool = True,
                      device: str = "cpu") -> Backbone:
    entry = BACKBONES.get(spec.model)
    m = {**DEFAULT_META, **entry.meta}
    factory = entry.obj
    kwargs = {}
    weights = m["default_weights"] if spec.weights == "default" else spec.weights
    if "weights" in inspect.signature(factory).parameters:
        kwargs["weights"] = weights if load_weights else "none"
    elif weights not in ("default", "none"):
        raise ConfigError(f"backbone {spec.name!r}: {spec.model!r} takes no weights argument, "
                          f"so '@{spec.weights}' cannot be applied")
    try:
        with torch.device(device):
            encoder = factory(**kwargs)
    except FerBenchError:
        raise
    except Exception as e:
        if device == "meta":  # a factory that cannot build on meta is measured for real
            return _build_registered(spec, load_weights=False, device="cpu")
        raise FerBenchError(f"backbone factory {spec.model!r} failed: {type(e).__name__}: "
                            f"{e}") from e
    if isinstance(encoder, Backbone):
        encoder.config = replace(encoder.config, name=spec.name)
        return encoder
    if not isinstance(encoder, nn.Module):
        raise FerBenchError(f"backbone factory {spec.model!r} returned {type(encoder).__name__}, "
                            "expected a torch.nn.Module")
    size = m["input_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    try:
        dim, gmacs = measure(encoder, m["in_chans"], size)
    except Exception as e:
        raise FerBenchError(f"backbone {spec.model!r}: a dry forward on a 1 x {m['in_chans']} x "
                            f"{size[0]} x {size[1]} batch failed: {type(e).__name__}: "
                            f"{str(e)[:200]}") from e
    if m["feature_dim"] and m["feature_dim"] != dim:
        raise FerBenchError(f"backbone {spec.model!r}: declares feature_dim {m['feature_dim']} "
                            f"but its output has {dim}")
    text = m["text_tower"]() if m["text_tower"] and device != "meta" else None
    cfg = BackboneConfig(
        name=spec.name, family=m["family"], model=spec.model, weights=weights,
        input_size=size, mean=tuple(m["mean"]), std=tuple(m["std"]), in_chans=m["in_chans"],
        interpolation=m["interpolation"], fixed_input_size=m["fixed_input_size"],
        feature_dim=dim, text_tower=m["text_tower"] is not None,
        params_m=count_params_m(encoder), gmacs=gmacs, text_params_m=count_params_m(text),
        notes=m["notes"] or entry.doc, extra={"source": entry.source},
    )
    return Backbone(encoder, cfg, text)


_loaded = False


def _load_builtin_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import fer_nets, hf_family, open_clip_family, timm_family  # noqa: F401  (register)


__all__ = ["BACKBONES", "FAMILIES", "Backbone", "BackboneConfig", "BackboneSpec", "Family",
           "cards", "check_model", "create_backbone", "describe", "family", "has_text_tower",
           "parse_spec", "register_backbone", "split_weights"]
