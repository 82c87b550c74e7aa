"""One lock per cell, so that two `fer-bench run` processes on the same output directory never
run the same cell at once.

The lock is an OS lock (`flock`) on `<out>/.locks/<cell_id>.lock`: the kernel drops it when the
holding process ends in any way (exit, exception, SIGKILL, OOM killer), so a crashed run never
blocks the next one and there is no staleness to guess. The file also records who holds it
(pid, host, start time) for messages; that record is informative only, never trusted for
exclusion. Lock files are left in place: deleting one while another process waits on it would
let two processes hold "the" lock on two different files."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt lock, also released when the process dies
    fcntl = None  # type: ignore[assignment]

LOCK_DIR = ".locks"


def owner_record(what: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


class Lock:
    """A held lock; `release()` (or leaving the `with` block) frees it."""

    def __init__(self, path: Path, fd: int | None, handle: object | None = None) -> None:
        self.path, self._fd, self._handle = path, fd, handle

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # no owner record outlives the owner
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._handle is not None:
            self._handle.release()  # type: ignore[attr-defined]
            self._handle = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_lock(path: Path, what: str = "") -> Lock | None:
    """Take the lock at `path` without waiting; None when another live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - exercised on Windows only
        import filelock

        handle = filelock.FileLock(str(path) + ".w", timeout=0)
        try:
            handle.acquire()
        except filelock.Timeout:
            return None
        path.write_text(json.dumps(owner_record(what)))
        return Lock(path, None, handle)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: held by a live process
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the file was replaced or deleted under us: lock the one now there
            os.close(fd)
            continue
        record = json.dumps(owner_record(what)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return Lock(path, fd)


def read_owner(path: Path) -> dict:
    """Who holds the lock at `path`, as far as its record says ({} when unknown)."""
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_owner(owner: dict) -> str:
    if not owner.get("pid"):
        return "another process"
    return f"pid {owner['pid']} on {owner.get('host', '?')} since {owner.get('since', '?')}"
