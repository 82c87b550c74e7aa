"""Image trees: `folder:PATH` (any split/class/*.jpg tree) and FER2013's folder variant.

Class folders are mapped by NAME (`fer_bench.classes.canonical_name`: angry/anger,
happy/happiness, ...), never by alphabetical position: an ImageFolder would number
neutral/sad/surprise differently from FER2013's CSV."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..classes import CANONICAL, CANONICAL8, SYNONYMS, canonical_name
from ..errors import DataError
from .bad_rows import BadRows
from .cache import DatasetCache, cached, files_digest
from .dataset import FERDataset
from .images import IMAGE_SUFFIXES, ImageJob, decode_images
from .splits import holdout, make_split

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}


def list_images(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder)
                  if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))


def scan_classes(split_dir: Path) -> dict[str, list[Path]]:
    """Canonical class -> sorted image paths; unknown class folder names are one error."""
    out: dict[str, list[Path]] = {}
    unknown = []
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        canon = canonical_name(d.name)
        if canon is None:
            unknown.append(d.name)
            continue
        out.setdefault(canon, []).extend(list_images(d))
    if unknown:
        raise DataError(f"{split_dir}: unknown class folder(s) {', '.join(unknown)}; expected "
                        f"expression names such as {', '.join(sorted(SYNONYMS))}")
    if not out:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/*.jpg)")
    return out


def classes_for(found: set[str]) -> tuple[str, ...]:
    return CANONICAL8 if "contempt" in found else CANONICAL


def decode_tree(split_files: dict[str, dict[str, list[Path]]], classes: tuple[str, ...],
                opts: dict, bad: BadRows) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (uint8 images, labels): one parallel decode over every file of every split."""
    jobs, owner = [], []
    for s, by_class in split_files.items():
        for c, files in by_class.items():
            jobs.extend(ImageJob(p) for p in files)
            owner.extend((s, classes.index(c)) for _ in files)
    images, keep = decode_images(jobs, bad, opts.get("size"), opts.get("channels"),
                                 opts.get("workers"))
    split_of = np.array([s for s, _ in owner])[keep]
    labels = np.array([c for _, c in owner], dtype=np.int64)[keep]
    return {s: (images[split_of == s], labels[split_of == s]) for s in split_files}


def assemble(name: str, classes: tuple[str, ...], parts: dict[str, tuple[np.ndarray, np.ndarray]],
             opts: dict, meta: dict) -> FERDataset:
    """Splits from decoded parts; a missing val split is held out of train (recorded)."""
    if "val" not in parts and "train" in parts:
        images, labels = parts["train"]
        keep, out = holdout(labels, opts["val_fraction"])
        parts = {**parts, "train": (images[keep], labels[keep]),
                 "val": (images[out], labels[out])}
        meta["val_split"] = (f"held out {opts['val_fraction']:g} of train per class "
                             "(seed 0): the dataset has no validation split")
    splits = {s: make_split(*parts[s]) for s in ("train", "val", "test") if s in parts}
    return FERDataset(name, classes, splits, meta)


def tree_cache(name: str, root: Path, opts: dict, files: list[Path]) -> DatasetCache | None:
    if not opts["cache"]:
        return None
    identity = {"loader": name, "root": str(root.resolve()),
                **{k: opts.get(k) for k in ("size", "channels", "skip_bad", "val_fraction")}}
    return DatasetCache(name, identity, files_digest(files))


def load_folder(root: Path, opts: dict, spec: str) -> FERDataset:
    if not root.is_dir():
        raise DataError(f"dataset {spec!r}: {root} is not a directory (expected "
                        "PATH/<split>/<class>/*.jpg)")
    split_dirs = {}
    unknown = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        s = SPLIT_NAMES.get(d.name.lower())
        if s is None:
            unknown.append(d.name)
        elif s in split_dirs:
            raise DataError(f"{root}: both {split_dirs[s].name}/ and {d.name}/ name the {s} split")
        else:
            split_dirs[s] = d
    # Other folders beside train/ val/ test/ (notes, __MACOSX, ...) are ignored.
    if "train" not in split_dirs or "test" not in split_dirs:
        hint = ""
        if any(canonical_name(u) for u in unknown):
            hint = " (these look like class folders: put them under PATH/train/ and PATH/test/)"
        raise DataError(f"{root}: expected split folders train/ and test/ (val/ optional) "
                        f"holding <class>/*.jpg; found {', '.join(unknown or ['no split'])}"
                        f"{' folders' if unknown else ''}{hint}")
    split_files = {s: scan_classes(d) for s, d in split_dirs.items()}
    classes = classes_for({c for by in split_files.values() for c in by})
    all_files = [p for by in split_files.values() for fs in by.values() for p in fs]
    bad = BadRows(opts["skip_bad"])

    def build() -> FERDataset:
        parts = decode_tree(split_files, classes, opts, bad)
        meta = {"source": str(root), "format": "folder", "skipped": bad.skipped}
        return assemble("folder", classes, parts, opts, meta)

    return cached(tree_cache("folder", root, opts, all_files), build)
