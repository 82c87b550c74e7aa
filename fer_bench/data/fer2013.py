"""`fer2013:PATH`: fer2013.csv, icml_face_data.csv, a folder holding one, or the folder variant
(train/<class>/, test/<class>/ with PublicTest_/PrivateTest_ file-name prefixes).
Splits: train = Training, val = PublicTest, test = PrivateTest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..classes import CANONICAL
from ..errors import DataError
from .bad_rows import BadRows
from .cache import DatasetCache, cached, source_stamp
from .dataset import FERDataset
from .fer2013_csv import USAGE_SPLIT, read_fer2013_csv
from .folder import assemble, decode_tree, scan_classes, tree_cache
from .labels import FER2013_ORDER, code_table
from .splits import make_split

CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")
_PREFIX = {"PublicTest_": "val", "PrivateTest_": "test"}


def find_csv(path: Path) -> Path | None:
    """The FER2013 CSV at or under `path` (torchvision also looks in `path/fer2013/`)."""
    if path.is_file():
        return path
    for d in (path, path / "fer2013"):
        for name in CSV_NAMES:
            if (d / name).is_file():
                return d / name
    return None


def load_fer2013(path: Path, opts: dict, spec: str) -> FERDataset:
    csv_path = find_csv(path)
    if csv_path is not None:
        return load_fer2013_csv(csv_path, opts)
    if (path / "train").is_dir() and (path / "test").is_dir():
        return load_fer2013_folder(path, opts)
    hint = ""
    if (path / "train.csv").is_file():
        hint = ("; train.csv/test.csv (Kaggle's competition files) lack the Usage column and "
                "the test labels -- use fer2013.csv or icml_face_data.csv")
    raise DataError(f"dataset {spec!r}: found neither {' nor '.join(CSV_NAMES)} in {path} (or "
                    f"{path}/fer2013/), nor train/ and test/ class folders{hint}")


def split_rows(images: np.ndarray, labels: np.ndarray, usage: np.ndarray
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """By Usage; FER2013 is stored Training, PublicTest, PrivateTest, so these are views."""
    if usage.size and not np.all(usage[1:] >= usage[:-1]):
        order = np.argsort(usage, kind="stable")
        images, labels, usage = images[order], labels[order], usage[order]
    bounds = np.searchsorted(usage, np.arange(len(USAGE_SPLIT) + 1))
    return {s: (images[bounds[i]:bounds[i + 1]], labels[bounds[i]:bounds[i + 1]])
            for i, s in enumerate(USAGE_SPLIT) if bounds[i + 1] > bounds[i]}


def load_fer2013_csv(path: Path, opts: dict) -> FERDataset:
    def build() -> FERDataset:
        bad = BadRows(opts["skip_bad"])
        rows = read_fer2013_csv(path, bad)
        labels = code_table(FER2013_ORDER, CANONICAL)[rows.codes]
        parts = split_rows(rows.images[:, None], labels, rows.usage)
        splits = {s: make_split(*p) for s, p in parts.items()}
        meta = {"source": str(path), "format": "fer2013-csv", "rows": rows.n_rows,
                "skipped": bad.skipped}
        return FERDataset("fer2013", CANONICAL, splits, meta)

    cache = None
    if opts["cache"]:
        identity = {"loader": "fer2013-csv", "path": str(path.resolve()),
                    "skip_bad": opts["skip_bad"]}
        cache = DatasetCache("fer2013", identity, source_stamp(path))
    return cached(cache, build)


def load_fer2013_folder(root: Path, opts: dict) -> FERDataset:
    """train/ -> train; test/ -> val (PublicTest_*) and test (PrivateTest_*). Without those
    prefixes test/ stays the test split and val is held out of train (recorded in meta)."""
    train = scan_classes(root / "train")
    test = scan_classes(root / "test")
    by_prefix: dict[str, dict[str, list[Path]]] = {"val": {}, "test": {}}
    unprefixed = []
    for c, files in test.items():
        for p in files:
            s = next((s for pre, s in _PREFIX.items() if p.name.startswith(pre)), None)
            if s is None:
                unprefixed.append(p)
            else:
                by_prefix[s].setdefault(c, []).append(p)
    total = sum(len(f) for f in test.values())
    meta: dict = {"source": str(root), "format": "fer2013-folder"}
    if not unprefixed:
        split_files = {"train": train, **{s: v for s, v in by_prefix.items() if v}}
        meta["test_split"] = ("test/ split by file-name prefix: PublicTest_ -> val, "
                              "PrivateTest_ -> test")
    elif len(unprefixed) == total:
        split_files = {"train": train, "test": test}
        meta["test_split"] = ("test/ has no PublicTest_/PrivateTest_ file-name prefixes: all of "
                              "it (PublicTest + PrivateTest) is the test split")
    else:
        raise DataError(f"{root / 'test'}: {len(unprefixed)} of {total} files lack a "
                        f"PublicTest_/PrivateTest_ prefix (e.g. {unprefixed[0]}); either all "
                        "test files carry the prefix (split into val/test) or none does")
    all_files = [p for by in (train, test) for fs in by.values() for p in fs]
    bad = BadRows(opts["skip_bad"])

    def build() -> FERDataset:
        parts = decode_tree(split_files, CANONICAL, opts, bad)
        return assemble("fer2013", CANONICAL, parts, opts, {**meta, "skipped": bad.skipped})

    return cached(tree_cache("fer2013-folder", root, opts, all_files), build)
