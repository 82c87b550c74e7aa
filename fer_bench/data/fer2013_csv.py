"""Fast, checked parsing of FER2013-style CSVs (`fer2013.csv`, `icml_face_data.csv`).

Pixels are parsed by numpy's C parser over a chunk of rows at once (no Python loop per pixel)
straight into one preallocated uint8 array, so all of FER2013 (~290 MB of text) costs ~83 MB of
images plus a few MB of working memory. Bad rows are explained in Python only when the cheap
checks flag them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .bad_rows import BadRows

N_PIXELS = 48 * 48
USAGE = {b"Training": 0, b"PublicTest": 1, b"PrivateTest": 2}
USAGE_SPLIT = ("train", "val", "test")
_CHUNK = 512  # rows per vectorised parse: bounds working memory to ~20 MB
_DIGITS_SPACE = b"0123456789 "
_HEADER_HELP = ("expected the columns emotion, pixels and Usage (fer2013.csv: "
                "'emotion,pixels,Usage'; icml_face_data.csv: 'emotion, Usage, pixels')")


@dataclass
class Fer2013Rows:
    """Parsed rows, bad ones removed: images N x 48 x 48 uint8, FER2013 label codes, usage codes
    (0 Training, 1 PublicTest, 2 PrivateTest) and each row's 0-based data-row index in the file."""

    images: np.ndarray
    codes: np.ndarray
    usage: np.ndarray
    rows: np.ndarray
    n_rows: int


def parse_header(line: bytes, file: Path) -> tuple[int, int, int, int]:
    """Column indices of emotion, pixels, Usage (names stripped: icml has ' Usage', ' pixels')
    and the column count."""
    names = [c.strip().strip(b'"').strip().lower() for c in line.strip().split(b",")]
    have = set(names)
    if {b"emotion", b"pixels"} <= have and b"usage" not in have:
        raise DataError(f"{file} line 1: no Usage column -- this looks like Kaggle's train.csv, "
                        "which holds only the Training split; use fer2013.csv or "
                        "icml_face_data.csv (they hold all three splits)")
    if have == {b"pixels"}:
        raise DataError(f"{file} line 1: only a pixels column -- this looks like Kaggle's "
                        "test.csv, which has no labels; use fer2013.csv or icml_face_data.csv")
    missing = [c for c in (b"emotion", b"pixels", b"usage") if c not in have]
    if missing:
        raise DataError(f"{file} line 1: header {line.strip().decode(errors='replace')!r} lacks "
                        f"{', '.join(m.decode() for m in missing)}; {_HEADER_HELP}")
    return (names.index(b"emotion"), names.index(b"pixels"), names.index(b"usage"), len(names))


def _count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 24):
            n += block.count(b"\n")
    return n + 1


def explain_pixels(field: bytes) -> str | None:
    """Why a pixels field is bad (slow path, bad rows only), or None when it is fine."""
    tokens = field.split()
    for i, t in enumerate(tokens):
        if not t.isdigit():
            return (f"pixel {i + 1} is {t.decode(errors='replace')!r}, not a number 0-255")
        if int(t) > 255:
            return f"pixel {i + 1} is {int(t)}, outside 0-255"
    if len(tokens) != N_PIXELS:
        return f"expected {N_PIXELS} pixel values (48x48), got {len(tokens)}"
    return None


def _fast_values(fields: list[bytes]) -> np.ndarray:
    """numpy's C parser over many rows at once; callers guarantee digits and spaces only."""
    if not fields:
        return np.empty((0, N_PIXELS), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        values = np.fromstring(b" ".join(fields), dtype=np.int32, sep=" ")
    return values.reshape(len(fields), N_PIXELS)


def parse_pixels(fields: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel fields (stripped) -> (uint8 k x 2304 for the good rows, bool mask of bad rows).

    Fast path: one C-level parse for the whole chunk after cheap checks (only digits and single
    spaces, 2303 spaces per row); rows failing a check get the exact per-row check."""
    n = len(fields)
    bad = np.zeros(n, dtype=bool)
    suspect = [i for i, f in enumerate(fields) if f.count(b" ") != N_PIXELS - 1]
    joined = np.frombuffer(b"".join(fields), dtype=np.uint8)
    n_ok = np.count_nonzero((joined - np.uint8(48)) < 10) + np.count_nonzero(joined == 32)
    if n_ok != joined.size:  # some field has other characters: find which
        suspect = sorted(set(suspect) | {i for i, f in enumerate(fields)
                                         if f.translate(None, _DIGITS_SPACE)})
    for i in suspect:
        bad[i] = explain_pixels(fields[i]) is not None
    good = np.flatnonzero(~bad)
    clean = [fields[i] if i not in suspect else b" ".join(fields[i].split()) for i in good]
    values = _fast_values(clean)
    too_big = (values > 255).any(axis=1)
    if too_big.any():
        bad[good[too_big]] = True
        values = values[~too_big]
    return values.astype(np.uint8), bad


def _parse_fields(line: bytes, cols: tuple[int, int, int, int]) -> tuple[int, int, bytes] | str:
    """One data line -> (FER2013 label code, usage code, pixels field), or why it is bad (the
    pixels themselves are checked a chunk at a time, in `parse_pixels`)."""
    ie, ip, iu, ncols = cols
    parts = line.split(b",")
    if len(parts) != ncols:
        return f"expected {ncols} comma-separated fields, got {len(parts)}"
    e = parts[ie].strip().strip(b'"')
    u = parts[iu].strip().strip(b'"').strip()
    if not e.isdigit() or int(e) > 6:
        return (f"unknown emotion label {e.decode(errors='replace')!r} (expected 0-6: angry, "
                "disgust, fear, happy, sad, surprise, neutral)")
    if u not in USAGE:
        return (f"unknown Usage {u.decode(errors='replace')!r} (expected Training, PublicTest or "
                "PrivateTest)")
    return int(e), USAGE[u], parts[ip].strip().strip(b'"')


class _RowBuffer:
    """The output arrays, preallocated for every line of the file and filled a chunk of rows at
    a time; each chunk's problems are reported in line order."""

    def __init__(self, cap: int, path: Path, bad: BadRows) -> None:
        self.path, self.bad = path, bad
        self.images = np.empty((cap, N_PIXELS), dtype=np.uint8)
        self.codes = np.empty(cap, dtype=np.int64)
        self.usage = np.empty(cap, dtype=np.int8)
        self.rows = np.empty(cap, dtype=np.int64)
        self.k = 0
        self.batch: list[tuple[int, int, int, int, bytes]] = []  # line, row, code, usage, pixels
        self.problems: list[tuple[int, str]] = []

    def add(self, line: int, row: int, fields: tuple[int, int, bytes] | str) -> None:
        if isinstance(fields, str):
            self.problems.append((line, fields))
            return
        self.batch.append((line, row, *fields))
        if len(self.batch) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        batch, k = self.batch, self.k
        if batch:
            pix, bad_mask = parse_pixels([b[4] for b in batch])
            good = [b for b, is_bad in zip(batch, bad_mask, strict=True) if not is_bad]
            for b, is_bad in zip(batch, bad_mask, strict=True):
                if is_bad:
                    self.problems.append((b[0], explain_pixels(b[4]) or "malformed pixels"))
            g = len(good)
            self.images[k:k + g] = pix
            self.codes[k:k + g] = [b[2] for b in good]
            self.usage[k:k + g] = [b[3] for b in good]
            self.rows[k:k + g] = [b[1] for b in good]
            self.k = k + g
        for line, msg in sorted(self.problems):
            self.bad.add(self.path, line, msg)
        batch.clear()
        self.problems.clear()

    def result(self, n_rows: int) -> Fer2013Rows:
        k = self.k
        return Fer2013Rows(self.images[:k].reshape(k, 48, 48), self.codes[:k], self.usage[:k],
                           self.rows[:k], n_rows)


def read_fer2013_csv(path: Path, bad: BadRows) -> Fer2013Rows:
    """All rows of a FER2013 CSV; every malformed row is reported (file + line) or skipped."""
    with path.open("rb") as fh:
        cols = parse_header(fh.readline(), path)
        out = _RowBuffer(_count_lines(path), path, bad)
        n_rows = 0
        for line_no, raw in enumerate(fh, start=2):
            line = raw.strip()
            if line:
                out.add(line_no, n_rows, _parse_fields(line, cols))
                n_rows += 1
        out.flush()
    if n_rows == 0:
        raise DataError(f"{path}: no data rows after the header")
    return out.result(n_rows)
