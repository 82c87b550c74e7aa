"""open_clip CLIP models (both towers): shared by the `open_clip:` backbone family, which keeps
the image tower, and the `open_clip:` text encoder, which keeps the text tower. Here, below both,
so neither imports the other."""

from __future__ import annotations

import fnmatch
import functools
import logging
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from ..errors import ConfigError, FerBenchError, UnknownNameError
from ..weights import hub_access, is_local_file, local_file, missing_weights_error

SCHEMAS = ("hf-hub:", "local-dir:")


def _preprocess_keys() -> set[str]:
    from open_clip.transform import PreprocessCfg

    return {f.name for f in fields(PreprocessCfg)} - {"size"}  # size: the model's own


CONFIG_DIR = Path(__file__).parent / "open_clip_configs"  # fer-bench's own tiny CLIPs


@functools.cache
def open_clip_module():
    """open_clip, with fer-bench's model configs (`fer-ViT-Ti-8`, a 4-layer CLIP ViT at 48 px
    for tests and CPU runs of the adaptation regimes) added to its registry once."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def knows_open_clip(model: str) -> bool:
    return model.startswith(SCHEMAS) or model in open_clip_module().list_models()


def list_open_clip(pattern: str) -> list[str]:
    return [m for m in open_clip_module().list_models() if fnmatch.fnmatchcase(m, pattern)]


MODEL_HINT = "Any name from open_clip.list_models() works, or hf-hub:org/repo / local-dir:/path"


def check_open_clip(model: str) -> None:
    if not knows_open_clip(model):
        raise UnknownNameError("open_clip model", model, open_clip_module().list_models(),
                               hint=MODEL_HINT)


@contextmanager
def _quiet_open_clip():
    """open_clip logs a warning for every random init; here random init is always asked for."""
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.CRITICAL)  # failures are reported by us, once
    try:
        yield
    finally:
        log.setLevel(level)


def build_clip(model_name: str, weights: str, who: str, *, load: bool = True,
               device: str = "cpu"):
    """(clip_model, preprocess_cfg, resolved weights) — shared with the open_clip text encoder.

    load=False builds the architecture only (nothing downloaded) but keeps the preprocessing the
    named weights were trained with."""
    open_clip = open_clip_module()

    check_open_clip(model_name)
    schema = model_name.startswith(SCHEMAS)
    kwargs: dict = {"device": device}
    tag_cfg: dict = {}
    if schema:
        if weights not in ("default", "none"):
            raise ConfigError(f"backbone {who!r}: {model_name} brings its own weights; "
                              f"'@{weights}' cannot be applied (use @none for random init)")
        kwargs["load_weights"] = load and weights != "none"
        resolved = model_name if kwargs["load_weights"] else "none"
    else:
        if weights == "default":
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if not tags and load:
                raise missing_weights_error(who, f"(open_clip lists no pretrained tag for "
                                                 f"{model_name!r})", LookupError(model_name))
            weights = tags[0] if tags else "none"
        resolved = weights
        if is_local_file(weights):
            if load:
                kwargs["pretrained"] = str(local_file(weights, who))
        elif weights != "none":
            tag_cfg = open_clip.get_pretrained_cfg(model_name, weights)
            if not tag_cfg:
                raise UnknownNameError(f"open_clip pretrained tag for {model_name}", weights,
                                       open_clip.list_pretrained_tags_by_model(model_name))
            if load:
                kwargs["pretrained"] = weights
            else:  # the preprocessing the tag was trained with, without its download
                kwargs["force_preprocess_cfg"] = {
                    k: v for k, v in tag_cfg.items() if k in _preprocess_keys()}
        model_cfg = open_clip.get_model_config(model_name) or {}
        if tag_cfg.get("quick_gelu") and not model_cfg.get("quick_gelu"):
            kwargs["force_quick_gelu"] = True
    try:
        with hub_access(), _quiet_open_clip():
            model = open_clip.create_model(model_name, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if not (schema or kwargs.get("pretrained")):
            raise
        if is_local_file(resolved) and isinstance(e, RuntimeError):  # strict load refused it
            raise FerBenchError(f"{resolved}: weights do not fit open_clip {model_name} "
                                f"(strict load): {' '.join(str(e).split())[:300]}") from e
        src = tag_cfg.get("hf_hub") or tag_cfg.get("url") if not schema else model_name
        where = f" from {src.rstrip('/')}" if src else ""
        raise missing_weights_error(who, f"open_clip {model_name}@{resolved}{where}", e) from e
    pre = open_clip.get_model_preprocess_cfg(model)
    return model, pre, resolved
