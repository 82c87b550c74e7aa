"""`ferplus:PATH` / `ferplus7:PATH`: FERPlus's 10 annotator votes per FER2013 image.

Sources: `fer2013new.csv` paired BY ROW with `fer2013.csv` (pixels; found next to it, in
`fer2013/`, in the parent folder, or given as `#pixels=FILE`), or the folders FERPlus's
generate_training_data.py writes (`FER2013Train/`, `FER2013Valid/`, `FER2013Test/`, each with
`label.csv` rows `image,box,<10 votes>` and the PNGs).

Label modes (the reference code's, src/ferplus.py) decide the TRAINING targets; validation and
test always use `majority`, as the reference does, so every mode is scored on the same images:
- majority: zero out single votes; the top class if it has > 50% of the remaining votes, else
  unknown; unknown and NF (not a face) are dropped. `labels` only.
- probability: soft targets over up to 3 top classes covering >= 75% of the votes (the
  reference loop); `targets` rows sum to 1; `labels` = argmax.
- multi_target: classes with >= 30% of the votes; `targets` multi-hot; `labels` = argmax.
`ferplus7` drops images whose label is contempt and the contempt column of `targets`."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..classes import CANONICAL, CANONICAL8
from ..errors import DataError
from .bad_rows import BadRows
from .cache import DatasetCache, cached, files_digest, source_stamp
from .dataset import FERDataset
from .fer2013 import find_csv
from .fer2013_csv import USAGE, USAGE_SPLIT, read_fer2013_csv
from .images import ImageJob, decode_images
from .labels import FERPLUS_COLUMNS, code_table
from .options import choice
from .splits import make_split

MODES = ("majority", "probability", "multi_target")
N_EMOTIONS = 8                    # columns before unknown, NF
UNKNOWN = 8
FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


OPTIONS: dict[str, Callable] = {"mode": choice(*MODES, what="label mode"), "pixels": str}


# --- the reference label rules, on one row of 10 votes ------------------------------------------

def _drop_single_votes(votes: np.ndarray) -> np.ndarray:
    raw = votes.astype(np.float64).copy()
    raw[raw < 1.0 + sys.float_info.epsilon] = 0.0
    return raw


def process_votes(votes: np.ndarray, mode: str) -> np.ndarray:
    """10 votes -> 10 weights (unknown = index 8); argmax >= 8 means drop the image."""
    raw = _drop_single_votes(votes)
    size, total = raw.size, raw.sum()
    unknown = np.zeros(size)
    unknown[UNKNOWN] = 1.0
    emotion = np.zeros(size)
    if mode == "majority":
        top = raw.max()
        if top > 0.5 * total:
            emotion[int(np.argmax(raw))] = top
        else:
            return unknown
    elif mode == "probability":
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            top = raw.max()
            for i in range(size):
                if raw[i] == top:
                    emotion[i] = top
                    raw[i] = 0
                    part += emotion[i]
                    count += 1
                    if i >= UNKNOWN:  # unknown / NF tie with the top emotion
                        valid = False
                        if emotion.sum() > top:
                            emotion[i] = 0
                            count -= 1
                        break
        if emotion.sum() <= 0.5 * total or count > 3:
            return unknown
    else:  # multi_target
        keep = raw >= 0.3 * total
        emotion[keep] = raw[keep]
        if emotion.sum() <= 0.5 * total:
            return unknown
    return emotion / emotion.sum()


def labels_from_votes(votes: np.ndarray, mode: str, classes: tuple[str, ...]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(kept row indices, labels into `classes`, targets or None) for N x 10 votes."""
    weights = np.stack([process_votes(v, mode) for v in votes]) if len(votes) else np.zeros(
        (0, 10))
    top = weights.argmax(1) if len(votes) else np.zeros(0, dtype=np.int64)
    table = code_table(FERPLUS_COLUMNS[:N_EMOTIONS], classes)   # column -> class (-1: dropped)
    keep = np.flatnonzero(top < N_EMOTIONS)
    keep = keep[table[top[keep]] >= 0]                          # ferplus7: contempt dropped
    labels = table[top[keep]]
    if mode == "majority":
        return keep, labels, None
    cols = np.flatnonzero(table >= 0)
    targets = np.zeros((keep.size, len(classes)), dtype=np.float32)
    targets[:, table[cols]] = weights[keep][:, cols]
    if mode == "multi_target":
        targets = (targets > 0).astype(np.float32)
    else:
        targets /= targets.sum(1, keepdims=True)
    return keep, labels, targets


# --- fer2013new.csv + fer2013.csv --------------------------------------------------------------

def read_votes_csv(path: Path, bad: BadRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (votes N x 10 float, usage codes N, row ok mask N) for every data row, in file order."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        want = ["usage", "image name", *(c.lower() for c in FERPLUS_COLUMNS)]
        missing = [w for w in want if w not in header]
        if missing:
            raise DataError(f"{path} line 1: header lacks {', '.join(missing)}; expected "
                            "'Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,"
                            "fear,contempt,unknown,NF'")
        iu = header.index("usage")
        iv = [header.index(c.lower()) for c in FERPLUS_COLUMNS]
        votes, usage, ok = [], [], []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            v = np.zeros(10)
            u = USAGE.get(row[iu].strip().encode(), -1) if len(row) > iu else -1
            good = True
            if len(row) != len(header):
                bad.add(path, line, f"expected {len(header)} fields, got {len(row)}")
                good = False
            elif u < 0:
                bad.add(path, line, f"unknown Usage {row[iu]!r} (expected Training, PublicTest "
                                    "or PrivateTest)")
                good = False
            else:
                try:
                    v = np.array([float(row[i] or 0) for i in iv])
                    if (v < 0).any() or not np.isfinite(v).all():
                        raise ValueError
                except ValueError:
                    bad.add(path, line, "vote counts must be numbers >= 0, got "
                                        f"{[row[i] for i in iv]}")
                    good = False
            votes.append(v)
            usage.append(u)
            ok.append(good)
    return np.array(votes).reshape(-1, 10), np.array(usage, dtype=np.int8), np.array(ok, bool)


def find_pixels(votes_csv: Path, given: str | None) -> Path:
    if given:
        p = Path(given).expanduser()
        found = find_csv(p) if p.exists() else None
        if found is None:
            raise DataError(f"#pixels={given}: no fer2013.csv or icml_face_data.csv there")
        return found
    d = votes_csv.parent
    for cand in (d, d.parent, d / "fer2013", d.parent / "fer2013"):
        found = find_csv(cand) if cand.is_dir() else None
        if found is not None:
            return found
    raise DataError(f"{votes_csv}: FERPlus votes pair by row with FER2013's pixels; no "
                    f"fer2013.csv or icml_face_data.csv next to it, in its parent folder or in "
                    f"fer2013/ -- pass #pixels=/path/to/fer2013.csv")


def _from_csv(votes_csv: Path, opts: dict, name: str, classes: tuple[str, ...]) -> FERDataset:
    pixels_csv = find_pixels(votes_csv, opts.get("pixels"))

    def build() -> FERDataset:
        bad = BadRows(opts["skip_bad"])
        votes, usage, ok = read_votes_csv(votes_csv, bad)
        px = read_fer2013_csv(pixels_csv, bad)
        if px.n_rows != len(votes):
            raise DataError(f"{votes_csv} has {len(votes)} data rows but {pixels_csv} has "
                            f"{px.n_rows}; FERPlus pairs the two files by row")
        mismatch = np.flatnonzero((usage[px.rows] != px.usage) & ok[px.rows])
        if mismatch.size:
            r = int(px.rows[mismatch[0]])
            raise DataError(f"{votes_csv} data row {r + 1} has Usage "
                            f"{USAGE_SPLIT[usage[r]]} but {pixels_csv} data row {r + 1} has "
                            f"{USAGE_SPLIT[px.usage[mismatch[0]]]}: the files are not paired "
                            "row by row")
        both = ok[px.rows]
        images, rows_usage = px.images[both][:, None], px.usage[both]
        row_votes = votes[px.rows[both]]
        splits = {}
        for code, s in enumerate(USAGE_SPLIT):
            sel = np.flatnonzero(rows_usage == code)
            if sel.size:
                mode = opts["mode"] if s == "train" else "majority"
                keep, labels, targets = labels_from_votes(row_votes[sel], mode, classes)
                splits[s] = make_split(images[sel[keep]], labels, targets)
        meta = {"source": str(votes_csv), "pixels": str(pixels_csv), "format": "ferplus-csv",
                **_mode_meta(opts), "skipped": bad.skipped}
        return FERDataset(name, classes, splits, meta)

    cache = None
    if opts["cache"]:
        identity = {"loader": name, "votes": str(votes_csv.resolve()),
                    "pixels": str(pixels_csv.resolve()), "mode": opts["mode"],
                    "skip_bad": opts["skip_bad"]}
        cache = DatasetCache(name, identity, source_stamp(votes_csv, pixels_csv))
    return cached(cache, build)


def _mode_meta(opts: dict) -> dict:
    meta = {"label_mode": opts["mode"],
            "eval_label_mode": "majority (val and test, as in the reference code)"}
    if opts["mode"] != "majority":
        meta["targets"] = opts["mode"]
    return meta


# --- FERPlus generated folders ------------------------------------------------------------------

def _from_folders(root: Path, opts: dict, name: str, classes: tuple[str, ...]) -> FERDataset:
    label_files = {s: root / d / "label.csv" for s, d in FOLDERS.items()
                   if (root / d / "label.csv").is_file()}
    if "train" not in label_files or "test" not in label_files:
        raise DataError(f"{root}: expected FER2013Train/label.csv and FER2013Test/label.csv "
                        "(FER2013Valid/ optional)")
    bad = BadRows(opts["skip_bad"])
    entries: dict[str, tuple[list[ImageJob], list[np.ndarray]]] = {}
    for s, lf in label_files.items():
        jobs, votes = [], []
        with lf.open(newline="") as fh:
            reader = csv.reader(fh)
            for row in reader:
                if not row or not row[0].strip():
                    continue
                line = reader.line_num
                try:
                    if len(row) != 12:
                        raise ValueError(f"expected 12 fields (image, box, 10 votes), got "
                                         f"{len(row)}")
                    v = np.array([float(x) for x in row[2:]])
                except ValueError as e:
                    msg = str(e) if "expected" in str(e) else f"vote counts must be numbers: {e}"
                    bad.add(lf, line, msg)
                    continue
                jobs.append(ImageJob(lf.parent / row[0].strip(), origin=(lf, line)))
                votes.append(v)
        entries[s] = (jobs, votes)
    all_images = [j.path for jobs, _ in entries.values() for j in jobs]

    def build() -> FERDataset:
        splits = {}
        for s, (jobs, votes) in entries.items():
            images, kept = decode_images(jobs, bad, None, 1, opts.get("workers"))
            mode = opts["mode"] if s == "train" else "majority"
            v = np.array(votes).reshape(-1, 10)[kept]
            keep, labels, targets = labels_from_votes(v, mode, classes)
            splits[s] = make_split(images[keep], labels, targets)
        meta = {"source": str(root), "format": "ferplus-folders", **_mode_meta(opts),
                "skipped": bad.skipped}
        if "val" not in splits:
            raise DataError(f"{root}: FER2013Valid/label.csv is missing")
        return FERDataset(name, classes, splits, meta)

    cache = None
    if opts["cache"]:
        identity = {"loader": name + "-folders", "root": str(root.resolve()),
                    "mode": opts["mode"], "skip_bad": opts["skip_bad"]}
        cache = DatasetCache(name, identity, [source_stamp(*label_files.values()),
                                              files_digest(all_images)])
    return cached(cache, build)


def load_ferplus(path: Path, opts: dict, spec: str, with_contempt: bool) -> FERDataset:
    opts = {"mode": "majority", **opts}
    name = "ferplus" if with_contempt else "ferplus7"
    classes = CANONICAL8 if with_contempt else CANONICAL
    if path.is_file():
        return _from_csv(path, opts, name, classes)
    for root in (path, path / "data"):
        if (root / "fer2013new.csv").is_file():
            return _from_csv(root / "fer2013new.csv", opts, name, classes)
        if (root / FOLDERS["train"]).is_dir():
            return _from_folders(root, opts, name, classes)
    raise DataError(f"dataset {spec!r}: expected {path}/fer2013new.csv (with fer2013.csv) or "
                    f"the generated folders {path}/FER2013Train/ FER2013Valid/ FER2013Test/")
