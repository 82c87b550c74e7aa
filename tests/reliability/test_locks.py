"""Cell locks (fer_bench.locks): exclusive between processes, gone when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from fer_bench.locks import describe_owner, read_owner, try_lock

HOLD = """
import sys, time
from pathlib import Path
from fer_bench.locks import try_lock
lock = try_lock(Path(sys.argv[1]), "held by a child")
print("locked" if lock else "busy", flush=True)
time.sleep(600)
"""


def hold_in_child(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_is_exclusive_and_released(tmp_path: Path):
    path = tmp_path / ".locks" / "abc.lock"
    first = try_lock(path, "cell abc")
    assert first is not None
    assert try_lock(path) is None  # a second holder, even in the same process, is refused
    owner = read_owner(path)
    assert owner["pid"] == os.getpid() and owner["what"] == "cell abc"
    assert f"pid {os.getpid()}" in describe_owner(owner)
    first.release()
    with try_lock(path) as again:
        assert again is not None


def test_lock_held_by_another_process_then_freed_by_sigkill(tmp_path: Path):
    path = tmp_path / "cell.lock"
    child = hold_in_child(path)
    try:
        assert try_lock(path) is None
        assert read_owner(path)["pid"] == child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    # no stale lock: the kernel released it with the process, nothing to clean up or time out
    lock = try_lock(path)
    assert lock is not None
    assert read_owner(path)["pid"] == os.getpid()
    lock.release()

