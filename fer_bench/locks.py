"""One lock per cell, so that two `fer-bench run` processes on the same output directory never
run the same cell at once.

The lock is `filelock`'s OS lock (flock on POSIX, msvcrt on Windows) on
`<out>/.locks/<cell_id>.lock`: the kernel drops it when the holding process ends in any way
(exit, exception, SIGKILL, OOM killer), so a crashed run never blocks the next one and there is
no staleness to guess. Who holds it (pid, host, start time) is recorded beside it in
`<cell_id>.lock.owner`, for messages only, never trusted for exclusion (filelock truncates the
lock file itself whenever anyone opens it). Lock files are left in place: deleting one while
another process waits on it would let two processes hold "the" lock on two different files."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import filelock

from .atomic import atomic_write_bytes

LOCK_DIR = ".locks"


def owner_record(what: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def owner_path(path: Path) -> Path:
    return path.with_name(path.name + ".owner")


class Lock:
    """A held lock; `release()` (or leaving the `with` block) frees it."""

    def __init__(self, path: Path, handle: filelock.BaseFileLock) -> None:
        self.path, self._handle = path, handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                owner_path(self.path).unlink(missing_ok=True)  # no record outlives the owner
            self._handle.release()
            self._handle = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_lock(path: Path, what: str = "") -> Lock | None:
    """Take the lock at `path` without waiting; None when another holder (another process, or
    another lock object in this one) has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = filelock.FileLock(path, timeout=0)
    try:
        handle.acquire()
    except filelock.Timeout:
        return None
    with contextlib.suppress(OSError):  # the record is informative: never fail a cell for it
        atomic_write_bytes(owner_path(path), json.dumps(owner_record(what)).encode())
    return Lock(path, handle)


def read_owner(path: Path) -> dict:
    """Who holds the lock at `path`, as far as its record says ({} when unknown)."""
    try:
        data = json.loads(owner_path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_owner(owner: dict) -> str:
    if not owner.get("pid"):
        return "another process"
    return f"pid {owner['pid']} on {owner.get('host', '?')} since {owner.get('since', '?')}"
