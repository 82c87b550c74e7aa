"""Crash-safe files (fer_bench.atomic): whole or nothing, disk full leaves nothing behind, and a
damaged .npz is detected, never trusted."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fer_bench import atomic
from fer_bench.atomic import (
    WriteError,
    atomic_save_npz,
    atomic_write,
    atomic_write_bytes,
    load_npz_checked,
    remove_stale_temps,
    write_json_atomic,
)
from fer_bench.errors import FerBenchError


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 255, (20, 1, 8, 8), dtype=np.uint8),
            "labels": rng.integers(0, 7, 20).astype(np.int64)}


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------------------ whole or nothing

def test_json_write_replaces_whole_file_and_respects_umask(tmp_path: Path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_unserialisable_result_touches_no_file(tmp_path: Path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"loss": float("nan")})  # JSON has no NaN
    assert json.loads(path.read_text()) == {"ok": True} and leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_disk_full_is_a_clear_error_and_leaves_nothing(tmp_path: Path, monkeypatch, where):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"old": True})
    before = path.read_bytes()

    def half_then_full(f):
        f.write(b'{"new": tr')
        enospc()

    if where == "fsync":
        monkeypatch.setattr(atomic.os, "fsync", enospc)
    if where == "replace":
        monkeypatch.setattr(atomic.os, "replace", enospc)
    with pytest.raises(WriteError) as e:
        if where == "write":
            atomic_write(path, half_then_full)
        else:
            write_json_atomic(path, {"new": True})
    assert isinstance(e.value, FerBenchError)
    assert str(path) in str(e.value) and "disk full" in str(e.value)
    assert e.value.errno == errno.ENOSPC
    assert path.read_bytes() == before  # the old result is intact, not half overwritten
    assert leftovers(tmp_path) == []


def test_disk_full_on_a_new_file_leaves_no_file(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(atomic.os, "fsync", enospc)
    with pytest.raises(WriteError):
        atomic_save_npz(tmp_path / "entry.npz", **arrays())
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_name_the_path(tmp_path: Path):
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(WriteError, match="afile"):
        atomic_write_bytes(tmp_path / "afile" / "x.bin", b"data")


def test_stale_temps_are_removed_but_nothing_else(tmp_path: Path):
    (tmp_path / ".result.json.abc123.tmp").write_text("{half")
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "notes.tmp").write_text("user file")  # not ours: no leading dot
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".result.json.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "result.json"]


# ----------------------------------------------------------------------------- checked .npz

def test_npz_round_trip(tmp_path: Path):
    a = arrays()
    for compress in (False, True):
        atomic_save_npz(tmp_path / "e.npz", compress=compress, **a)
        got = load_npz_checked(tmp_path / "e.npz")
        assert got is not None and set(got) == set(a)
        for k in a:
            np.testing.assert_array_equal(got[k], a[k])


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_npz_is_detected(tmp_path: Path, keep: float):
    path = tmp_path / "e.npz"
    atomic_save_npz(path, **arrays())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert load_npz_checked(path) is None


def test_flipped_byte_is_detected(tmp_path: Path):
    path = tmp_path / "e.npz"
    atomic_save_npz(path, **arrays())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:  # flip a byte inside the images member's data
        info = z.getinfo("images.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    assert load_npz_checked(path) is None


def test_checksum_mismatch_and_missing_checksum_are_detected(tmp_path: Path):
    a = arrays()
    good = tmp_path / "good.npz"
    atomic_save_npz(good, **a)
    with np.load(good) as z:
        stored = z[atomic.CHECKSUM_KEY]
    swapped = tmp_path / "swapped.npz"  # a well-formed zip whose arrays do not match the sum
    np.savez(swapped, images=a["images"][::-1], labels=a["labels"],
             **{atomic.CHECKSUM_KEY: stored})
    assert load_npz_checked(swapped) is None
    plain = tmp_path / "plain.npz"
    np.savez(plain, **a)
    assert load_npz_checked(plain) is None
    assert load_npz_checked(plain, require_checksum=False) is not None
    assert load_npz_checked(tmp_path / "missing.npz") is None


def test_npz_with_pickled_objects_is_refused_without_running_them(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([Boom()], dtype=object), allow_pickle=True)
    assert load_npz_checked(path, require_checksum=False) is None
    assert not marker.exists()
    with pytest.raises(ValueError):
        atomic_save_npz(tmp_path / "obj.npz", x=np.array([object()], dtype=object))
