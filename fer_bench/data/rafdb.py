"""`rafdb:PATH`: RAF-DB basic. PATH is the folder holding `basic/` or `basic/` itself.

`basic/EmoLabel/list_patition_label.txt` (sic) lists `train_00001.jpg 5`: labels are 1-based and
surprise first (1 surprise, 2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral). Images come
from `basic/Image/aligned/<stem>_aligned.jpg` (default when present; 100x100) or
`basic/Image/original/<name>` (`#images=original`), decoded to `size` (default 100). RAF-DB has no
validation split: val is held out of train (`val_fraction`, default 0.1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..classes import CANONICAL
from ..errors import DataError
from .bad_rows import BadRows
from .cache import DatasetCache, cached, files_digest, source_stamp
from .dataset import FERDataset
from .folder import assemble
from .images import ImageJob, decode_images
from .labels import RAFDB_ORDER, code_table
from .options import IMAGE_OPTIONS, choice

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
OPTIONS: dict[str, Callable] = {**IMAGE_OPTIONS, "images": choice("aligned", "original")}
DEFAULT_SIZE = 100


def find_basic(path: Path, spec: str) -> Path:
    for cand in (path, path / "basic", path / "RAF-DB" / "basic"):
        if (cand / LABEL_FILE).is_file():
            return cand
    raise DataError(f"dataset {spec!r}: expected {path}/basic/{LABEL_FILE} (RAF-DB basic)")


def read_label_file(path: Path, bad: BadRows) -> list[tuple[int, str, int, str]]:
    """-> (line, image name, label code 1-7, split) per good line."""
    out = []
    with path.open() as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                bad.add(path, line_no, f"expected '<image> <label 1-7>', got {line.strip()!r}")
                continue
            name, code = parts
            if not code.isdigit() or int(code) not in RAFDB_ORDER:
                bad.add(path, line_no, f"unknown label {code!r} (expected 1-7: 1 surprise, "
                                       "2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral)")
                continue
            split = "train" if name.startswith("train_") else (
                "test" if name.startswith("test_") else None)
            if split is None:
                bad.add(path, line_no, f"image name {name!r} starts with neither train_ nor test_")
                continue
            out.append((line_no, name, int(code), split))
    return out


def load_rafdb(path: Path, opts: dict, spec: str) -> FERDataset:
    basic = find_basic(path, spec)
    label_file = basic / LABEL_FILE
    kind = opts.get("images") or ("aligned" if (basic / "Image" / "aligned").is_dir()
                                  else "original")
    image_dir = basic / "Image" / kind
    size = opts.get("size") or DEFAULT_SIZE
    bad = BadRows(opts["skip_bad"])
    rows = read_label_file(label_file, bad)
    if not rows:
        raise DataError(f"{label_file}: no labelled images")

    def image_path(name: str) -> Path:
        if kind == "aligned":
            stem = name.rsplit(".", 1)[0]
            return image_dir / f"{stem}_aligned.jpg"
        return image_dir / name

    jobs = [ImageJob(image_path(name), origin=(label_file, line)) for line, name, _, _ in rows]

    def build() -> FERDataset:
        images, kept = decode_images(jobs, bad, size, opts.get("channels"), opts.get("workers"))
        table = code_table(RAFDB_ORDER, CANONICAL)
        labels = table[np.array([r[2] for r in rows])][kept]
        split_of = np.array([r[3] for r in rows])[kept]
        parts = {s: (images[split_of == s], labels[split_of == s]) for s in ("train", "test")}
        meta = {"source": str(basic), "format": f"rafdb-{kind}", "size": size,
                "skipped": bad.skipped}
        return assemble("rafdb", CANONICAL, parts, opts, meta)

    cache = None
    if opts["cache"]:
        identity = {"loader": "rafdb", "root": str(basic.resolve()), "images": kind,
                    "size": size, **{k: opts.get(k) for k in ("channels", "skip_bad",
                                                              "val_fraction")}}
        existing = [j.path for j in jobs if j.path.is_file()]
        cache = DatasetCache("rafdb", identity, [source_stamp(label_file),
                                                 files_digest(existing), len(jobs)])
    return cached(cache, build)
