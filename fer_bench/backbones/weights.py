"""Shared rules for weights strings: "none" means random init (only when asked), "default" means
the library's default pretrained weights, anything that looks like a path is a local file."""

from __future__ import annotations

from pathlib import Path

from ..errors import FerBenchError

LOCAL_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def is_local_file(weights: str) -> bool:
    return "/" in weights or weights.endswith(LOCAL_SUFFIXES) or weights.startswith("~")


def local_file(weights: str, backbone: str) -> Path:
    p = Path(weights).expanduser()
    if not p.is_file():
        raise FerBenchError(f"backbone {backbone!r}: weights file {p} does not exist")
    return p


def missing_weights_error(backbone: str, what: str, err: Exception) -> FerBenchError:
    """Weights that could not be had (offline, no cache): say which, and how to supply them."""
    return FerBenchError(
        f"backbone {backbone!r}: could not load pretrained weights {what} "
        f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). "
        "They are not in the local cache and could not be downloaded. Download them on a "
        "machine with internet (the hub cache is ~/.cache/huggingface), or pass a local file "
        "with NAME@/path/to/weights, or use NAME@none (or --no-pretrained) for random init."
    )
