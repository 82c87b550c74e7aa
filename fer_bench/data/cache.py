"""On-disk cache of loaded datasets: one uncompressed .npz per (source, options), no pickle.

The file name hashes the source path and the options; inside, `__key__` records the sources'
size and mtime, so an edited source file is detected and the cache rebuilt in place (no stale
copies pile up). Writes are atomic (temp file + rename). A truncated or corrupt file is caught by
zip's per-member CRC-32 (checked when each array is read in full) and the shape checks below, and
is rebuilt -- never trusted."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .dataset import SPLITS, FERDataset, Split

CACHE_VERSION = 2  # 2: non-square images keep their centred square (were squashed)


def cache_dir() -> Path:
    return Path(os.environ.get("FER_BENCH_CACHE") or Path.home() / ".cache" / "fer_bench")


def source_stamp(*paths: str | Path) -> list[list]:
    """Path, size and mtime of each source file: what the cache's validity hangs on."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def files_digest(paths: list[Path]) -> str:
    """One hash over many image files' names, sizes and mtimes (image-folder datasets)."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class DatasetCache:
    """Cache slot for one dataset spec. `identity` (paths + content options) names the file;
    `stamp` (sizes, mtimes, ...) must match what is stored for a hit."""

    def __init__(self, name: str, identity: dict, stamp: object) -> None:
        blob = json.dumps(identity, sort_keys=True, default=str)
        self.path = cache_dir() / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.npz"
        self.key = json.dumps({"v": CACHE_VERSION, "identity": identity, "stamp": stamp},
                              sort_keys=True, default=str)
        self.status = "off"

    def load(self) -> FERDataset | None:
        if not self.path.is_file():
            self.status = "miss"
            return None
        try:
            ds = self._read()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            self.status = f"rebuilt (unreadable cache {self.path.name}: {type(e).__name__})"
            return None
        if ds is None:
            self.status = "rebuilt (source changed)"
            return None
        self.status = "hit"
        ds.meta["cache"] = "hit"
        return ds

    def _read(self) -> FERDataset | None:
        with np.load(self.path, allow_pickle=False) as z:
            if bytes(z["__key__"]).decode() != self.key:
                return None
            head = json.loads(bytes(z["__meta__"]).decode())
            splits = {}
            for s in head["splits"]:
                images, labels = z[f"{s}.images"], z[f"{s}.labels"]
                targets = z[f"{s}.targets"] if f"{s}.targets" in z.files else None
                if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (
                        images.shape[0],) or labels.dtype != np.int64:
                    raise ValueError("bad array shapes")
                if len(labels) and (labels.min() < 0 or labels.max() >= len(head["classes"])):
                    raise ValueError("labels out of range")
                splits[s] = Split(torch.from_numpy(images), torch.from_numpy(labels),
                                  None if targets is None else torch.from_numpy(targets))
        return FERDataset(head["name"], tuple(head["classes"]), splits, head["meta"])

    def save(self, ds: FERDataset) -> None:
        """Atomic write; a cache that cannot be written (read-only disk, full) is not an error."""
        arrays: dict[str, np.ndarray] = {}
        for s in SPLITS:
            if s in ds.splits:
                sp = ds.splits[s]
                arrays[f"{s}.images"] = sp.images.numpy()
                arrays[f"{s}.labels"] = sp.labels.numpy()
                if sp.targets is not None:
                    arrays[f"{s}.targets"] = sp.targets.numpy()
        meta = {k: v for k, v in ds.meta.items() if k != "cache"}
        head = {"name": ds.name, "classes": list(ds.classes), "meta": meta,
                "splits": [s for s in SPLITS if s in ds.splits]}
        arrays["__meta__"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
        arrays["__key__"] = np.frombuffer(self.key.encode(), dtype=np.uint8)
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def cached(cache: DatasetCache | None, build) -> FERDataset:
    """`cache.load()` or `build()` (then saved); `meta["cache"]` says which happened."""
    if cache is None:
        ds = build()
        ds.meta["cache"] = "off"
        return ds
    ds = cache.load()
    if ds is not None:
        return ds
    ds = build()
    cache.save(ds)
    ds.meta["cache"] = cache.status
    return ds
