"""Before a run does any work: is every pretrained weight it needs here? Looks in the caches the
libraries themselves read (the Hugging Face hub cache, open_clip's and torch hub's URL caches,
fer-bench's weights cache) without downloading or building anything, so a missing file is
reported once per file, not once per cell that would have failed on it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..weights import is_local_file
from . import parse_spec
from .cards import read_card
from .sources import PUBLISHED, MissingWeightsError

REMEDY = ("Download them where there is internet (a first run there fills the cache), copy the "
          "cache here, or pass a local file with NAME@/path/to/weights, or use NAME@none / "
          "--no-pretrained for random init.")


@dataclass
class MissingWeights:
    """One absent file and every backbone / text encoder that needs it."""

    what: str                      # "open_clip RN50x64-quickgelu@openai"
    looked: str                    # where it was looked for
    users: list[str] = field(default_factory=list)
    message: str = ""              # a card's own message (published sources)
    source: object = None          # the card's WeightSource, for published weights

    def __str__(self) -> str:
        who = ", ".join(self.users)
        if self.message:
            return self.message
        return f"{who}: pretrained weights {self.what} are not here (looked in {self.looked}). " \
               + REMEDY


def _hub_cached(repo: str, names: Iterable[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _hub_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _open_clip_need(model: str, tag: str) -> tuple[str, str] | None:
    """(identity, where looked) when open_clip's weights for MODEL@TAG are absent."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if tag == "default":
        tags = open_clip.list_pretrained_tags_by_model(model)
        tag = tags[0] if tags else "none"
    if tag == "none" or model.startswith(("hf-hub:", "local-dir:")):
        return None
    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    if hub:
        repo, name = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (
            hub.rstrip("/"), "")
        names = [name, name.rsplit(".", 1)[0] + ".safetensors"] if name else [
            HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME]
        if _hub_cached(repo, names):
            return None
    if url and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file():
        return None
    return (f"open_clip {model}@{tag}" + (f" (hf-hub {hub.rstrip('/')})" if hub else ""),
            _hub_dir() + (" and ~/.cache/clip" if url else ""))


def _timm_need(spec) -> tuple[str, str] | None:
    import timm.models
    from torch.hub import get_dir

    from .timm_family import _arch

    cfg = timm.models.get_pretrained_cfg(_arch(spec))
    if cfg is None:
        return None  # an unknown tag: the build reports it with suggestions
    if cfg.hf_hub_id and _hub_cached(cfg.hf_hub_id, [cfg.hf_hub_filename or "model.safetensors",
                                                     "pytorch_model.bin"]):
        return None
    if cfg.url and (Path(get_dir()) / "checkpoints" / os.path.basename(cfg.url)).is_file():
        return None
    src = cfg.hf_hub_id and f"hf-hub {cfg.hf_hub_id}" or cfg.url or "?"
    return f"timm {_arch(spec)} ({src})", _hub_dir()


def _need(name: str, text: bool, online):
    """(identity, looked, message, source) for one backbone / text encoder spec, or None when
    present. Online (asked lazily: a probe of the Hub), the libraries fetch their own hub
    weights, so only fer-bench's published sources and local files are checked."""
    if text:
        prefix, sep, rest = name.partition(":")
        if sep and prefix == "open_clip" and not online():
            model, _, tag = rest.partition("@")
            found = _open_clip_need(model, tag or "default")
            return found and (*found, "", None)
        return None  # minilm ships in a package; hf: text towers are checked when built
    spec = parse_spec(name)
    if spec.weights == "none":
        return None
    if spec.weights == PUBLISHED:
        src = read_card(spec.card).weight_source()
        if src.cached() or (src.layout == "timm_pickle" and src.path.is_file()):
            return None
        return src.file, str(src.path), str(MissingWeightsError(src)), src
    if is_local_file(spec.weights):
        p = Path(spec.weights).expanduser()
        return None if p.is_file() else (str(p), str(p.parent), "", None)
    if spec.family in ("open_clip", "timm") and online():
        return None
    if spec.family == "open_clip":
        found = _open_clip_need(spec.model, spec.weights)
    elif spec.family == "timm":
        found = _timm_need(spec)
    else:
        return None  # hf: and registered factories resolve their own weights when built
    return found and (*found, "", None)


def online() -> bool:
    """Whether the libraries may download (not told offline, and the Hub answers)."""
    from ..weights import hub_reachable
    from .download import offline

    return not offline() and hub_reachable()


def missing_weights(backbones: Iterable[str], text_encoders: Iterable[str] = (),
                    is_online: bool | None = None) -> list[MissingWeights]:
    """Every absent pretrained file, once, with the names that need it."""
    from functools import cache

    fixed = is_online
    ask = cache(online) if fixed is None else (lambda: fixed)
    out: dict[str, MissingWeights] = {}
    items = [(b, False) for b in dict.fromkeys(backbones)]
    items += [(t, True) for t in dict.fromkeys(text_encoders)]
    for name, text in items:
        found = _need(name, text, ask)
        if found:
            what, looked, message, source = found
            entry = out.setdefault(what, MissingWeights(what, looked, message=message,
                                                        source=source))
            entry.users.append(("text encoder " if text else "backbone ") + repr(name))
    return list(out.values())
