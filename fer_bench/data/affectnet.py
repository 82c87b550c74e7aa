"""`affectnet:PATH` (7 classes) / `affectnet8:PATH` (+ contempt).

Two layouts:
- the file lists: `Manually_Annotated_file_lists/training.csv` and `validation.csv` (also found
  directly in PATH), columns `subDirectory_filePath,face_x,face_y,face_width,face_height,
  facial_landmarks,expression,valence,arousal` -- header present or not (some validation.csv
  copies lack it) -- with images under `Manually_Annotated_Images/` (or
  `Manually_Annotated/Manually_Annotated_Images/`, or `#images=DIR`);
- the newer release: `train_set/` and `val_set/`, each `images/<n>.jpg` +
  `annotations/<n>_exp.npy`.
Codes: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 angry, 7 contempt; 8 none,
9 uncertain, 10 no-face are always dropped (contempt too for 7 classes). The validation set is
the test split; val is held out of train (`val_fraction`). Images decode to `size` (default
112); `#crop=1` crops the file lists' face boxes first."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..classes import CANONICAL, CANONICAL8
from ..errors import DataError
from .bad_rows import BadRows
from .cache import DatasetCache, cached, files_digest, source_stamp
from .dataset import FERDataset
from .folder import assemble
from .images import ImageJob, decode_images, list_images_recursive
from .labels import AFFECTNET_DROPPED, AFFECTNET_ORDER, code_table
from .options import IMAGE_OPTIONS, flag

OPTIONS: dict[str, Callable] = {**IMAGE_OPTIONS, "crop": flag, "images": str}
DEFAULT_SIZE = 112
COLUMNS = ("subdirectory_filepath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
LIST_FILES = {"train": "training.csv", "test": "validation.csv"}


def find_lists(path: Path) -> Path | None:
    for d in (path / "Manually_Annotated_file_lists", path):
        if all((d / f).is_file() for f in LIST_FILES.values()):
            return d
    return None


def find_image_root(path: Path, given: str | None) -> Path:
    if given:
        p = Path(given).expanduser()
        if not p.is_dir():
            raise DataError(f"#images={given}: not a directory")
        return p
    for cand in (path / "Manually_Annotated_Images",
                 path / "Manually_Annotated" / "Manually_Annotated_Images", path):
        if cand.is_dir() and cand.name != "Manually_Annotated_file_lists":
            return cand
    return path


class _Rows:
    """Parsed list/annotation entries of one split."""

    def __init__(self) -> None:
        self.jobs: list[ImageJob] = []
        self.codes: list[int] = []
        self.dropped: Counter[str] = Counter()


def _code(text: str) -> int:
    v = float(text)
    if v != int(v) or not 0 <= v <= 10:
        raise ValueError(text)
    return int(v)


def read_list(path: Path, image_root: Path, crop: bool, keep_codes: set[int], bad: BadRows
              ) -> _Rows:
    out = _Rows()
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        if first is None:
            raise DataError(f"{path}: empty file")
        has_header = first[0].strip().lower() == COLUMNS[0]
        if has_header:
            names = [h.strip().lower() for h in first]
            missing = [c for c in ("subdirectory_filepath", "expression") if c not in names]
            if missing:
                raise DataError(f"{path} line 1: header lacks {', '.join(missing)}; expected "
                                f"{','.join(COLUMNS)}")
            idx = {c: names.index(c) for c in COLUMNS if c in names}
            rows = reader
        else:
            idx = {c: i for i, c in enumerate(COLUMNS)}
            rows = _chain(first, reader)
        for row in rows:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) <= idx["expression"]:
                bad.add(path, line, f"expected {len(COLUMNS)} fields ({','.join(COLUMNS)}), "
                                    f"got {len(row)}")
                continue
            try:
                code = _code(row[idx["expression"]])
            except ValueError:
                bad.add(path, line, f"unknown expression {row[idx['expression']]!r} (expected "
                                    "0-10: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, "
                                    "5 disgust, 6 angry, 7 contempt, 8-10 dropped)")
                continue
            if code not in keep_codes:
                out.dropped[AFFECTNET_DROPPED.get(code, AFFECTNET_ORDER.get(code, str(code)))] += 1
                continue
            box = None
            if crop:
                try:
                    box = tuple(int(float(row[idx[c]])) for c in COLUMNS[1:5])
                except (ValueError, KeyError, IndexError):
                    bad.add(path, line, "face_x, face_y, face_width, face_height must be numbers "
                                        "for #crop=1")
                    continue
            out.jobs.append(ImageJob(image_root / row[idx["subdirectory_filepath"]].strip(),
                                     origin=(path, line), box=box))  # type: ignore[arg-type]
            out.codes.append(code)
    return out


def _chain(first: list[str], rest):
    yield first
    yield from rest


def read_npy_split(split_dir: Path, keep_codes: set[int], bad: BadRows) -> _Rows:
    out = _Rows()
    images_dir, ann = split_dir / "images", split_dir / "annotations"
    if not images_dir.is_dir() or not ann.is_dir():
        raise DataError(f"{split_dir}: expected images/ and annotations/ folders")
    for img in list_images_recursive(images_dir):
        exp = ann / f"{img.stem}_exp.npy"
        try:
            code = _code(str(np.load(exp, allow_pickle=False).reshape(-1)[0]))
        except FileNotFoundError:
            bad.add(img, None, f"annotation {exp} not found")
            continue
        except (ValueError, OSError, IndexError) as e:
            bad.add(exp, None, f"expected one expression code 0-10 ({type(e).__name__}: {e})")
            continue
        if code not in keep_codes:
            out.dropped[AFFECTNET_DROPPED.get(code, AFFECTNET_ORDER.get(code, str(code)))] += 1
            continue
        out.jobs.append(ImageJob(img))
        out.codes.append(code)
    return out


def load_affectnet(path: Path, opts: dict, spec: str, with_contempt: bool) -> FERDataset:
    name = "affectnet8" if with_contempt else "affectnet"
    classes = CANONICAL8 if with_contempt else CANONICAL
    table = code_table(AFFECTNET_ORDER, classes)
    keep_codes = {c for c in range(len(table)) if table[c] >= 0}
    bad = BadRows(opts["skip_bad"])
    size = opts.get("size") or DEFAULT_SIZE
    lists = find_lists(path)
    if lists is not None:
        root = find_image_root(path, opts.get("images"))
        sources = [lists / f for f in LIST_FILES.values()]
        fmt = "affectnet-lists"
        parts = {s: read_list(lists / f, root, bool(opts.get("crop")), keep_codes, bad)
                 for s, f in LIST_FILES.items()}
    elif (path / "train_set").is_dir() and (path / "val_set").is_dir():
        fmt, sources = "affectnet-npy", []
        parts = {"train": read_npy_split(path / "train_set", keep_codes, bad),
                 "test": read_npy_split(path / "val_set", keep_codes, bad)}
    else:
        raise DataError(f"dataset {spec!r}: expected {path}/Manually_Annotated_file_lists/"
                        "training.csv + validation.csv (with Manually_Annotated_Images/), or "
                        f"{path}/train_set/ + val_set/ (images/, annotations/)")

    def build() -> FERDataset:
        decoded = {}
        for s, rows in parts.items():
            images, kept = decode_images(rows.jobs, bad, size, opts.get("channels"),
                                         opts.get("workers"))
            decoded[s] = (images, table[np.array(rows.codes, dtype=np.int64)][kept])
        meta = {"source": str(path), "format": fmt, "size": size, "crop": bool(opts.get("crop")),
                "dropped": {s: dict(r.dropped) for s, r in parts.items()},
                "skipped": bad.skipped}
        return assemble(name, classes, decoded, opts, meta)

    cache = None
    if opts["cache"]:
        identity = {"loader": name, "root": str(path.resolve()), "format": fmt, "size": size,
                    **{k: opts.get(k) for k in ("channels", "skip_bad", "val_fraction", "crop",
                                                "images")}}
        files = [j.path for r in parts.values() for j in r.jobs if j.path.is_file()]
        cache = DatasetCache(name, identity, [source_stamp(*sources) if sources else [],
                                              files_digest(files), len(files)])
    return cached(cache, build)
