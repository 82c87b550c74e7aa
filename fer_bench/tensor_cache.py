"""Content-keyed tensors on disk: the frozen-image-feature and frozen-text-embedding caches.

A key is a JSON-able dict naming everything the tensor depends on (content digests of the
weights and of the images, preprocessing, precision, ...). The file name is the key's hash, and
the key itself is stored in the file and compared on read, so a hash collision or a file from an
older version is a miss, never a wrong hit. Writes are atomic (temp file + rename), so readers
only ever see whole files; an OS lock per entry makes a second concurrent run wait for the first
one's result instead of computing the same features twice."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .atomic import WriteError, atomic_write_bytes
from .data.cache import cache_dir
from .locks import try_lock

CACHE_VERSION = 1
_WAIT_S = 0.1


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over dtypes, shapes and raw bytes: identical content, identical digest."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def module_digest(module: nn.Module) -> str:
    """Digest of every parameter and buffer, by name: what a frozen module computes with."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode() + b"=" + tensor_digest(t).encode())
    return h.hexdigest()


def autocast_state(device: torch.device) -> str:
    """The precision a forward on `device` runs in right now: "fp32" or the autocast dtype."""
    if torch.is_autocast_enabled(device.type):
        return str(torch.get_autocast_dtype(device.type)).replace("torch.", "")
    return "fp32"


class TensorCache:
    """`get(key, compute)`: the stored tensor for `key`, or `compute()` stored and returned.
    `log` records one (kind, status) per lookup for the results: hit, miss, or off."""

    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = (root or cache_dir()) / "tensors"
        self.enabled = enabled
        self.log: list[dict] = []

    def path_for(self, key: dict) -> Path:
        digest = hashlib.sha256(_blob(key).encode()).hexdigest()[:24]
        return self.root / f"{key.get('kind', 'tensor')}-{digest}.safetensors"

    def get(self, key: dict, compute: Callable[[], torch.Tensor], what: str = "") -> torch.Tensor:
        """`what` (e.g. "train features") only labels the log entry; it is not part of the key."""
        if not self.enabled:
            self._note(what, "off")
            return compute()
        path, blob = self.path_for(key), _blob(key)
        found = self._read(path, blob)
        if found is not None:
            self._note(what, "hit")
            return found
        lock = self._wait_lock(path)
        try:
            found = self._read(path, blob)  # another run may have written it while we waited
            if found is not None:
                self._note(what, "hit")
                return found
            value = compute()
            # a cache that cannot be written (read-only, full disk) is not an error
            with contextlib.suppress(WriteError):
                atomic_write_bytes(path, st_save({"value": value.detach().cpu().contiguous()},
                                                 metadata={"key": blob}))
            self._note(what, "miss")
            return value
        finally:
            if lock is not None:
                lock.release()

    def _note(self, what: str, status: str) -> None:
        self.log.append({"what": what, "status": status})

    @staticmethod
    def _read(path: Path, blob: str) -> torch.Tensor | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            if _metadata(data).get("key") != blob:
                return None
            return st_load(data)["value"]
        except (SafetensorError, ValueError, KeyError):
            return None  # truncated or foreign file: recompute and overwrite

    def _wait_lock(self, path: Path):
        lock_path = path.with_suffix(".lock")
        try:
            while (lock := try_lock(lock_path, f"computing {path.name}")) is None:
                time.sleep(_WAIT_S)
        except OSError:
            return None  # no lock on a read-only cache dir: compute without one
        return lock


def _blob(key: dict) -> str:
    return json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True, default=str)


def _metadata(data: bytes) -> dict:
    """The safetensors header's __metadata__ (the header is 8 bytes of length, then JSON)."""
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > len(data) - 8:
        raise ValueError("not a safetensors file")
    return json.loads(data[8:8 + n]).get("__metadata__") or {}
