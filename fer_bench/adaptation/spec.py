"""Regime strings -> a parsed, validated spec (no torch here: the plan validates with it).

    lora:r=R[,alpha=A,dropout=P,targets=T,tower=image|text|both]
        LoRA (Hu et al. 2021) on the selected modules; T is a preset (attn, mlp, conv, all) or
        module names joined by '+' (`qkv+proj`, matched as name suffixes). alpha defaults to 2R.
    adapter[:dim=D,ratio=A,on=image|text|both]
        CLIP-Adapter (Gao et al. 2021): x + A * (MLP(x) - x), a bottleneck MLP of width D
        (default feature_dim // 4) on the image features and/or the class text embeddings.
    vpt:N
        VPT-shallow (Jia et al. 2022): N learned tokens inserted after the class token of a ViT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

BASIC = ("full", "image", "text", "frozen")
ADAPTATION = ("lora", "adapter", "vpt")
LORA_PRESETS = ("attn", "mlp", "conv", "all")
TOWERS = ("image", "text", "both")
USAGE = ("one of full, image, text, frozen, partial:N, lora:r=R[,alpha=A,dropout=P,"
         "targets=attn|mlp|conv|all|NAME+NAME,tower=image|text|both], "
         "adapter[:dim=D,ratio=A,on=image|text|both] or vpt:N")


@dataclass(frozen=True)
class RegimeSpec:
    kind: str                       # full | image | text | frozen | partial | lora | adapter | vpt
    options: dict = field(default_factory=dict)
    text: str = ""                  # the regime string as given

    @property
    def adaptation(self) -> bool:
        return self.kind in ADAPTATION

    def towers(self) -> set[str]:
        """Which towers the adaptation touches (image / text)."""
        where = self.options.get("tower") or self.options.get("on") or "image"
        return {"image", "text"} if where == "both" else {where}

    def resolved(self) -> dict:
        return {"kind": self.kind, **self.options}


def _options(body: str, regime: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in body.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"regime {regime!r}: {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _number(opts: dict, key: str, regime: str, kind: type, default, low: float,
            high: float = float("inf")):
    if key not in opts:
        return default
    try:
        v = kind(opts[key])
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"regime {regime!r}: {key} must be {what}, got {opts[key]!r}") from None
    if not low <= v <= high:
        bound = f"in [{low}, {high}]" if high != float("inf") else f">= {low}"
        raise ConfigError(f"regime {regime!r}: {key} must be {bound}, got {v}")
    return v


def _choice(opts: dict, key: str, regime: str, choices: tuple, default: str) -> str:
    v = opts.get(key, default)
    if v not in choices:
        raise ConfigError(f"regime {regime!r}: {key} must be one of {', '.join(choices)}, "
                          f"got {v!r}")
    return v


def _unknown(opts: dict, allowed: set[str], regime: str) -> None:
    bad = sorted(set(opts) - allowed)
    if bad:
        raise ConfigError(f"regime {regime!r}: unknown option(s) {', '.join(bad)} "
                          f"(takes {', '.join(sorted(allowed))})")


def _lora(opts: dict, regime: str) -> dict:
    _unknown(opts, {"r", "alpha", "dropout", "targets", "tower"}, regime)
    if "r" not in opts:
        raise ConfigError(f"regime {regime!r}: LoRA needs its rank, e.g. lora:r=8")
    r = _number(opts, "r", regime, int, 8, 1)
    targets = opts.get("targets", "attn")
    names = [t for t in targets.split("+") if t]
    if not names or any(not all(c.isalnum() or c in "._-" for c in t) for t in names):
        raise ConfigError(f"regime {regime!r}: targets must be a preset "
                          f"({', '.join(LORA_PRESETS)}) or module names joined by '+', "
                          f"got {targets!r}")
    return {"r": r, "alpha": _number(opts, "alpha", regime, float, 2.0 * r, 1e-9),
            "dropout": _number(opts, "dropout", regime, float, 0.0, 0.0, 0.99),
            "targets": "+".join(names), "tower": _choice(opts, "tower", regime, TOWERS, "image")}


def _adapter(opts: dict, regime: str) -> dict:
    _unknown(opts, {"dim", "ratio", "on"}, regime)
    return {"dim": _number(opts, "dim", regime, int, 0, 1) if "dim" in opts else 0,
            "ratio": _number(opts, "ratio", regime, float, 0.2, 1e-9, 1.0),
            "on": _choice(opts, "on", regime, TOWERS, "image")}


def parse_regime(regime: str) -> RegimeSpec:
    """The spec of a regime string; ConfigError with the expected forms when malformed."""
    if not isinstance(regime, str) or not regime.strip():
        raise ConfigError(f"regime {regime!r}: expected {USAGE}")
    regime = regime.strip()
    if regime in BASIC:
        return RegimeSpec(regime, {}, regime)
    kind, _, body = regime.partition(":")
    if kind == "partial":
        if not body.isdigit() or int(body) < 1:
            raise ConfigError(f"regime {regime!r}: partial:N needs an integer N >= 1")
        return RegimeSpec("partial", {"blocks": int(body)}, regime)
    if kind == "vpt":
        if not body.isdigit() or int(body) < 1:
            raise ConfigError(f"regime {regime!r}: vpt:N needs the number of visual tokens, "
                              "an integer N >= 1 (e.g. vpt:10)")
        return RegimeSpec("vpt", {"tokens": int(body)}, regime)
    if kind == "lora":
        return RegimeSpec("lora", _lora(_options(body, regime), regime), regime)
    if kind == "adapter":
        return RegimeSpec("adapter", _adapter(_options(body, regime), regime), regime)
    raise ConfigError(f"regime {regime!r}: expected {USAGE}")


def regime_problem(regime: str) -> str | None:
    """The message parse_regime would raise, or None when the regime is well formed."""
    try:
        parse_regime(regime)
    except ConfigError as e:
        return str(e)
    return None
