"""The two registries backbones are found in: named factories (`register_backbone`: built-in
FER nets, plugins, entry points) and families (`family`: the `timm:`, `open_clip:`, `hf:`
prefixes), plus the parsed name both are looked up with. The family modules register here, so
the package's `__init__` (which imports them) is never imported back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import FerBenchError, UnknownNameError
from ..registry import Registry
from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone", "fer_bench.backbones")


@dataclass(frozen=True)
class Family:
    """How one prefix (`timm:`, `open_clip:`, `hf:`) builds backbones, and what it knows about a
    model without building it.

    build(spec, load_weights=..., device=...) -> Backbone. With load_weights=False it must not
    download anything; with device="meta" it builds the architecture without memory (for
    measuring params and GMACs). `knows(model)` says whether the library has the model (so a
    dry run catches typos without building), `list_models(glob)` lists its models (for
    suggestions and `timm:convnext_*` patterns), `text_tower(spec)` whether a build comes with
    a paired CLIP text tower (None: only a build tells)."""

    prefix: str
    build: Callable[..., Backbone]
    knows: Callable[[str], bool] | None = None
    list_models: Callable[[str], list[str]] | None = None
    text_tower: Callable[[BackboneSpec], bool | None] | None = None
    hint: str = ""  # appended to an unknown-model error: where names come from

    def check(self, model: str, where: str = "") -> None:
        """Raise UnknownNameError, with the closest names, for a model the library lacks."""
        if self.knows is None or self.knows(model):
            return
        known = self.list_models("*") if self.list_models else []
        hint = "; ".join(filter(None, [where, self.hint]))
        raise UnknownNameError(f"{self.prefix} model", model, known, hint=hint)

    def has_text_tower(self, spec: BackboneSpec) -> bool | None:
        return self.text_tower(spec) if self.text_tower else None


FAMILIES: dict[str, Family] = {}

# What a factory registered without metadata (a bare entry point) gets.
DEFAULT_META: dict[str, Any] = dict(
    input_size=(224, 224), in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    interpolation="bilinear", feature_dim=None, text_tower=None, family="custom", notes="",
    default_weights="none", fixed_input_size=False)


def register_backbone(name: str, *, input_size: int | tuple[int, int] = 224, in_chans: int = 3,
                      mean: tuple[float, ...] = IMAGENET_MEAN,
                      std: tuple[float, ...] = IMAGENET_STD, interpolation: str = "bilinear",
                      feature_dim: int | None = None, text_tower: Callable | None = None,
                      family: str = "custom", notes: str = "",
                      default_weights: str = "none",
                      fixed_input_size: bool = False) -> Callable:
    """Register a factory returning an `nn.Module` that maps B x C x H x W images to B x D.

        @fer_bench.register_backbone("my_net", input_size=112, mean=(0.5,) * 3, std=(0.5,) * 3)
        def my_net(weights: str = "none") -> nn.Module: ...

    The factory may take `weights: str` ("none", or whatever the user put after `@`). D is found
    by a dry forward unless declared. `in_chans=1` takes grayscale (mean/std one value);
    `text_tower`, if given, is a factory for the paired text encoder (a
    `fer_bench.text.TextEncoder`), which the text heads then use by default."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise FerBenchError(f"register_backbone({name!r}): input_size must be an int or (H, W)")
    if len(mean) != in_chans or len(std) != in_chans:
        raise FerBenchError(f"register_backbone({name!r}): mean/std need one value per channel "
                            f"(in_chans={in_chans})")
    if interpolation not in ("bilinear", "bicubic"):
        raise FerBenchError(f"register_backbone({name!r}): interpolation must be bilinear or "
                            "bicubic")
    meta = dict(input_size=size, in_chans=in_chans, mean=tuple(mean), std=tuple(std),
                interpolation=interpolation, feature_dim=feature_dim, text_tower=text_tower,
                family=family, notes=notes, default_weights=default_weights,
                fixed_input_size=fixed_input_size)

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKBONES.register(name, factory, overwrite=True, **meta)
        return factory

    return deco


def family(prefix: str, **known: Any) -> Callable:
    """Register a family's builder: `@family("timm", knows=..., list_models=..., ...)`."""

    def deco(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        FAMILIES[prefix] = Family(prefix, builder, **known)
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
