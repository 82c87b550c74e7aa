"""Decode image files into one uint8 N x C x H x W array, in parallel threads.

Pillow releases the GIL while decoding and resizing, so a thread pool scales across cores without
pickling images between processes; each worker writes straight into its slot of the preallocated
array (no second copy). JPEGs are decoded at reduced scale when the target size allows (draft)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .bad_rows import BadRows

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass
class ImageJob:
    """One image to load; `origin` (file, line) is where it was listed, for error messages."""

    path: Path
    origin: tuple[str | Path, int | None] | None = None
    box: tuple[int, int, int, int] | None = None   # face crop: x, y, width, height


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _open(job: ImageJob, mode: str | None, size: tuple[int, int] | None) -> Image.Image:
    with Image.open(job.path) as im:
        if mode is None:
            mode = "L" if im.mode in _GRAY_MODES else "RGB"
        if size is not None and job.box is None:
            im.draft(mode, size)   # JPEG: decode at 1/2, 1/4, 1/8 scale when that is enough
        im = im.convert(mode)
    if job.box is not None:
        x, y, w, h = job.box
        im = im.crop((x, y, x + w, y + h))
    if size is not None and im.size != size:
        im = _centre_to_aspect(im, size).resize(size, Image.Resampling.BILINEAR)
    return im


def _centre_to_aspect(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The largest centred region of `size`'s aspect ratio: an image stored at another aspect
    than its own is never squashed. Shortest-side-and-centre-crop evaluation (timm, open_clip)
    looks only inside that region, so no pixel it would use is lost."""
    w, h = im.size
    tw, th = size
    if w * th == h * tw:
        return im
    if w * th > h * tw:  # too wide
        cw = round(h * tw / th)
        left = (w - cw) // 2
        return im.crop((left, 0, left + cw, h))
    ch = round(w * th / tw)
    top = (h - ch) // 2
    return im.crop((0, top, w, top + ch))


def _probe(jobs: list[ImageJob], n: int = 32) -> tuple[int, tuple[int, int]]:
    """Channels and size from the first readable images: colour if any of them is colour."""
    channels, size = 1, None
    for job in jobs[:n]:
        try:
            with Image.open(job.path) as im:
                if im.mode not in _GRAY_MODES:
                    channels = 3
                if size is None:
                    size = im.size if job.box is None else job.box[2:]
        except (OSError, UnidentifiedImageError):
            continue
    return channels, size or (48, 48)


def _describe(job: ImageJob) -> tuple[str | Path, int | None, str]:
    if job.origin is None:
        return job.path, None, ""
    return job.origin[0], job.origin[1], f"image {job.path}: "


def decode_images(jobs: list[ImageJob], bad: BadRows, size: int | None = None,
                  channels: int | None = None, workers: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """-> (uint8 k x C x H x W of the readable images, indices of those jobs). Missing or
    undecodable images are bad rows (reported in listing order, or skipped with skip_bad)."""
    problems: dict[int, str] = {}
    for i, job in enumerate(jobs):
        if not job.path.is_file():
            problems[i] = "not found"
    # Fail fast on a missing file before spending minutes decoding the rest.
    for i in sorted(problems):
        file, line, prefix = _describe(jobs[i])
        bad.add(file, line, f"{prefix}{problems[i]}" if prefix else problems[i])
    probe_c, probe_size = _probe([j for i, j in enumerate(jobs) if i not in problems])
    c = channels or probe_c
    wh = (size, size) if size else probe_size
    mode = "L" if c == 1 else "RGB"
    out = np.empty((len(jobs), wh[1], wh[0], c), dtype=np.uint8)
    decoded = np.zeros(len(jobs), dtype=bool)

    def work(i: int) -> None:
        if i in problems:
            return
        try:
            im = _open(jobs[i], mode, wh)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            problems[i] = f"cannot decode ({type(e).__name__}: {e})"
            return
        out[i] = np.asarray(im).reshape(wh[1], wh[0], c)
        decoded[i] = True

    n_workers = workers or default_workers()
    if n_workers > 1 and len(jobs) > 64:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(work, range(len(jobs)), chunksize=64))
    else:
        for i in range(len(jobs)):
            work(i)
    for i in sorted(problems):
        if not decoded[i] and problems[i] != "not found":
            file, line, prefix = _describe(jobs[i])
            bad.add(file, line, f"{prefix}{problems[i]}" if prefix else problems[i])
    keep = np.flatnonzero(decoded)
    images = out[keep] if keep.size != len(jobs) else out
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), keep


def list_images_recursive(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
