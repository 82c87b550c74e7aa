"""A damaged dataset cache entry (truncated, corrupted) is detected and rebuilt, never trusted;
a cache that cannot be written (disk full) costs the cache, not the run."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from fer_bench.data import DATASETS, load_dataset

pytestmark = pytest.mark.skipif("fer2013" not in DATASETS,
                                reason="no on-disk dataset loader in this build")


@pytest.fixture
def csv_dataset(tmp_path: Path, monkeypatch) -> tuple[str, Path]:
    """A 42-row fer2013.csv (2 faces per class per split) and an empty cache directory."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for c in range(7):
            for _ in range(2):
                lines.append(f"{c},{' '.join(map(str, rng.integers(0, 255, 2304)))},{usage}")
    csv = tmp_path / "fer2013.csv"
    csv.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("FER_BENCH_CACHE", str(cache))
    return f"fer2013:{csv}", cache


def same(a, b) -> bool:
    return a.classes == b.classes and all(
        a.splits[s].images.equal(b.splits[s].images) and a.splits[s].labels.equal(
            b.splits[s].labels) for s in a.splits)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_cache_entry_is_rebuilt(csv_dataset, damage: str):
    spec, cache = csv_dataset
    original = load_dataset(spec, reuse=False)
    [entry] = list(cache.glob("*.npz"))
    good = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(good[: len(good) * 2 // 3])
    elif damage == "flip":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF  # inside the image arrays
        entry.write_bytes(bytes(data))
    else:
        entry.write_bytes(b"")
    again = load_dataset(spec, reuse=False)
    assert same(original, again)  # the damaged entry was not trusted ...
    assert again.meta.get("cache") != "hit"
    assert entry.read_bytes() == good  # ... and was rebuilt whole
    assert load_dataset(spec, reuse=False).meta.get("cache") == "hit"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp files


def test_cache_that_cannot_be_written_costs_only_the_cache(csv_dataset, monkeypatch):
    spec, cache = csv_dataset

    def enospc(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)  # the disk fills while the entry is written
    ds = load_dataset(spec, reuse=False)
    assert len(ds.splits["train"]) == 14
    assert not cache.exists() or not list(cache.iterdir())  # no partial or temp file left
