"""Crash-safe files: every write goes to a temp file in the same directory, is fsynced, then
renamed over the target (and the directory fsynced), so a reader sees the old file or the new
one, never half of one -- whatever kills the writer (SIGKILL, power cut, disk full).

    atomic_write_bytes(path, data)        any bytes
    write_json_atomic(path, obj)          JSON (NaN/inf refused: JSON has none)
    atomic_save_npz(path, **arrays)       .npz with an embedded checksum of every array
    load_npz_checked(path) -> dict|None   None for a missing, truncated or corrupted .npz

A failed write raises `WriteError` (a FerBenchError naming the path and the reason) and leaves
no temp file behind. Temp files are named `.<name>.<random>.tmp`; one left by a killed writer is
never read, and `remove_stale_temps` clears them once the caller knows their writer is gone."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from .errors import FerBenchError

CHECKSUM_KEY = "__fer_bench_sha256__"
TEMP_SUFFIX = ".tmp"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class WriteError(FerBenchError):
    """A file could not be written (disk full, permissions, ...); nothing partial was left."""

    def __init__(self, path: Path, err: OSError) -> None:
        self.path, self.errno = Path(path), err.errno
        if err.errno in _DISK_FULL:
            why = "disk full (no space left on device)"
        else:
            why = err.strerror or str(err)
        super().__init__(f"cannot write {path}: {why}; nothing partial was left behind")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: renames are durable once the file is flushed
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temp file next to `path`, fsync it and rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(path.parent, e) from e
    tmp = _temp_path(path)
    try:
        # O_EXCL: never follow or reuse someone else's file; 0o666 lets the umask decide modes
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(path, e) from e
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def write_json_atomic(path: str | Path, data: dict | list) -> None:
    """Serialise first (a value JSON cannot hold fails before any file is touched), then write."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """A checksum over names, dtypes, shapes and bytes, independent of the file's layout."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_save_npz(path: str | Path, *, compress: bool = False, checksum: bool = True,
                    **arrays: np.ndarray) -> None:
    """Save arrays as .npz atomically; with `checksum`, an extra array records their sha256 so
    `load_npz_checked` can tell a complete entry from a damaged one."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if CHECKSUM_KEY in arrays:
        raise ValueError(f"{CHECKSUM_KEY!r} is reserved")
    if any(a.dtype == object for a in arrays.values()):
        raise ValueError("object arrays cannot be saved without pickle")
    payload = dict(arrays)
    if checksum:
        payload[CHECKSUM_KEY] = np.array(arrays_sha256(arrays))
    save = np.savez_compressed if compress else np.savez
    atomic_write(path, lambda f: save(f, **payload))


def load_npz_checked(path: str | Path, *, require_checksum: bool = True
                     ) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz written by `atomic_save_npz`, or None when the file is missing,
    truncated, corrupted or (with `require_checksum`) carries no checksum. Never unpickles."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception:  # BadZipFile, zlib.error, EOFError, ValueError...: damaged, not trusted
        return None
    stored = arrays.pop(CHECKSUM_KEY, None)
    if stored is None:
        return None if require_checksum else arrays
    if stored.shape != () or str(stored) != arrays_sha256(arrays):
        return None
    return arrays


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files left in `directory` by writers that were killed mid-write. Call it only
    while holding whatever guarantees no live writer uses the directory (a cell's lock)."""
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if is_temp_name(p.name) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
