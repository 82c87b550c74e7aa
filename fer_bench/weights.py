"""Shared rules for weights strings and loading them.

"none" means random init (only when asked), "default" means the library's default pretrained
weights, anything that looks like a path is a local file. Downloads go through each library's
own machinery (hub cache, HF_HUB_OFFLINE); when the Hub cannot be reached we switch that machinery
to cache-only so a missing file fails at once instead of retrying for a minute."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch

from .errors import FerBenchError

LOCAL_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def split_weights(text: str) -> tuple[str, str]:
    """`model@weights` -> (model, weights); no `@` (or nothing after it) means "default"."""
    if "@" in text:
        model, weights = text.rsplit("@", 1)
        return model, weights or "default"
    return text, "default"


def is_local_file(weights: str) -> bool:
    return "/" in weights or weights.endswith(LOCAL_SUFFIXES) or weights.startswith("~")


def local_file(weights: str, backbone: str) -> Path:
    p = Path(weights).expanduser()
    if not p.is_file():
        raise FerBenchError(f"backbone {backbone!r}: weights file {p} does not exist")
    return p


def missing_weights_error(backbone: str, what: str, err: Exception) -> FerBenchError:
    """Weights that could not be had (offline, no cache): say which, and how to supply them."""
    detail = str(err).splitlines()[0][:200] if str(err) else ""
    return FerBenchError(
        f"backbone {backbone!r}: could not load pretrained weights {what} "
        f"({type(err).__name__}: {detail}). "
        "They are not in the local cache and could not be downloaded. Download them on a "
        "machine with internet (the hub cache is ~/.cache/huggingface), or pass a local file "
        "with NAME@/path/to/weights, or use NAME@none (or --no-pretrained) for random init."
    )


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the Hub endpoint (cached for the process)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https"
                                                                  else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_access() -> Iterator[None]:
    """Within this block the Hub is used only if it can be reached; otherwise the libraries run
    cache-only (exactly as with HF_HUB_OFFLINE=1), so absent weights fail fast, never hang."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("FER_BENCH_ASSUME_ONLINE") or hub_reachable():
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file, never unpickling code; a checkpoint that
    wraps it ({"state_dict": ...}, {"model": ...}, {"net": ...}) is unwrapped."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles needing code are refused by weights_only
        raise FerBenchError(f"{path}: not a plain tensor checkpoint (refused to unpickle "
                            f"code): {str(e).splitlines()[0][:200]}") from e
    for key in ("state_dict", "model", "net", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise FerBenchError(f"{path}: expected a state dict (parameter name -> tensor)")
    return state
