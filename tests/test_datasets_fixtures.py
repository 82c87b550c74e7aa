"""Writers for tiny fixture datasets in every real on-disk format (no tests here).

Every image is a constant patch whose gray value encodes its canonical class (`VALUE`), so a test
can check that EVERY image arrived with the right label, whatever order the format uses."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench.classes import CANONICAL8
from fer_bench.data import load_dataset

VALUE = {c: 20 + 30 * i for i, c in enumerate(CANONICAL8)}   # angry 20 ... contempt 230
SEVEN = CANONICAL8[:7]
# Known counts per split: every class, different per split so mix-ups show.
COUNTS = {"train": 3, "val": 2, "test": 1}
FER_CODE = {c: i for i, c in enumerate(SEVEN)}                 # FER2013 order
RAF_CODE = {"surprise": 1, "fear": 2, "disgust": 3, "happy": 4, "sad": 5, "angry": 6,
            "neutral": 7}
AFFECT_CODE = {"neutral": 0, "happy": 1, "sad": 2, "surprise": 3, "fear": 4, "disgust": 5,
               "angry": 6, "contempt": 7}
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))


def load(spec: str):
    """Load afresh (not the process's cached copy): each test writes its own files."""
    return load_dataset(spec, reuse=False)


def entries(splits=("train", "val", "test"), classes=SEVEN) -> list[tuple[str, str]]:
    return [(s, c) for s in splits for c in classes for _ in range(COUNTS[s])]


def pixels(cls: str) -> str:
    return " ".join([str(VALUE[cls])] * 2304)


def write_fer_csv(path: Path, icml: bool = False, rows=None) -> Path:
    rows = entries() if rows is None else rows
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        if icml:
            fh.write("emotion, Usage, pixels\n")
            for s, c in rows:
                fh.write(f"{FER_CODE[c]},{USAGE[s]},{pixels(c)}\n")
        else:
            fh.write("emotion,pixels,Usage\n")
            for s, c in rows:
                fh.write(f"{FER_CODE[c]},{pixels(c)},{USAGE[s]}\n")
    return path


def save_image(path: Path, cls: str, size: int = 48, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size, 3) if rgb else (size, size), VALUE[cls], dtype=np.uint8)
    Image.fromarray(arr).save(path)


def write_fer_folder(root: Path, prefixes: bool = True) -> Path:
    for k, (s, c) in enumerate(entries()):
        folder = "train" if s == "train" else "test"
        name = f"{USAGE[s]}_{k}.jpg" if prefixes or s == "train" else f"img_{k}.jpg"
        save_image(root / folder / c / name, c)
    return root


# FERPlus: votes in fer2013new.csv column order; (votes, expected majority class or None=dropped)
FP_COLS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
           "contempt", "unknown", "NF")
FP_NAME = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise",
           "sadness": "sad", "anger": "angry", "disgust": "disgust", "fear": "fear",
           "contempt": "contempt"}


def votes_for(cls: str) -> list[int]:
    v = [0] * 10
    col = next(k for k, n in FP_NAME.items() if n == cls)
    v[FP_COLS.index(col)] = 8
    v[FP_COLS.index("neutral") if cls != "neutral" else 1] += 2
    return v


def _v(**kw: int) -> list[int]:
    return [kw.get(c, 0) for c in FP_COLS]


# Edge cases (all in Training): votes -> majority label (None: dropped).
FP_EDGE = [
    (_v(fear=5, surprise=5), None),                                    # tie: no > 50% -> unknown
    (_v(fear=6, surprise=1, anger=1, sadness=1, neutral=1), "fear"),   # singles dropped: 6/6
    (_v(neutral=1, happiness=1, surprise=1, sadness=1, anger=1, disgust=1, fear=1, contempt=1,
        unknown=1, NF=1), None),                                       # only single votes
    (_v(NF=10), None),                                                 # not a face
    (_v(unknown=7, fear=3), None),                                     # unknown wins
    (_v(fear=6, surprise=4), "fear"),                                  # probability: .6/.4
    (_v(contempt=8, neutral=2), "contempt"),                           # dropped by ferplus7
    (_v(disgust=5, anger=4, fear=1), "disgust"),                       # 5/9 after single drop
]


def write_ferplus(root: Path) -> tuple[Path, Path]:
    """fer2013new.csv + fer2013.csv (paired by row): COUNTS per class + FP_EDGE rows."""
    rows = [(s, c, votes_for(c)) for s, c in entries()]
    rows[6:6] = [("train", cls or "neutral", v) for v, cls in FP_EDGE]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fer2013new.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", *FP_COLS])
        for i, (s, _, v) in enumerate(rows):
            w.writerow([USAGE[s], f"fer{i:07d}.png" if v[9] < 10 else "", *v])
    with (root / "fer2013.csv").open("w") as fh:
        fh.write("emotion,pixels,Usage\n")
        for s, c, _ in rows:
            fh.write(f"0,{pixels(c)},{USAGE[s]}\n")
    return root / "fer2013new.csv", root / "fer2013.csv"


def write_ferplus_folders(root: Path) -> Path:
    folder = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
    for s in COUNTS:
        d = root / folder[s]
        rows = []
        for k, (_, c) in enumerate(entries((s,), CANONICAL8)):
            name = f"fer{k:07d}.png"
            save_image(d / name, c)
            rows.append([name, "(0, 0, 48, 48)", *votes_for(c)])
        with (d / "label.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    return root


def write_rafdb(root: Path, kind: str = "aligned") -> Path:
    basic = root / "basic"
    lines = []
    n = {"train": 0, "test": 0}
    for s, c in entries(("train", "test")):
        n[s] += 1
        name = f"{s}_{n[s]:05d}.jpg"
        lines.append(f"{name} {RAF_CODE[c]}")
        img = (basic / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg" if kind == "aligned"
               else basic / "Image" / "original" / name)
        save_image(img, c, size=32, rgb=True)
    (basic / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


AFFECT_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                 "expression,valence,arousal")


def write_affectnet_lists(root: Path) -> Path:
    """training.csv with a header, validation.csv without; codes 8-10 rows must be dropped."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    k = 0
    for s, fname, header in (("train", "training.csv", True), ("test", "validation.csv", False)):
        lines = [AFFECT_HEADER] if header else []
        for _, c in entries((s,), CANONICAL8):
            k += 1
            rel = f"{k % 3}/img{k}.jpg"
            save_image(root / "Manually_Annotated_Images" / rel, c, size=40, rgb=True)
            lines.append(f"{rel},4,4,32,32,1.0;2.0;3.0,{AFFECT_CODE[c]},0.1,-0.2")
        for code in (8, 9, 10):
            lines.append(f"missing/none{code}.jpg,0,0,10,10,,{code},-2,-2")
        (lists / fname).write_text("\n".join(lines) + "\n")
    return root


def write_affectnet_npy(root: Path) -> Path:
    k = 0
    for s, d in (("train", "train_set"), ("test", "val_set")):
        (root / d / "annotations").mkdir(parents=True, exist_ok=True)
        for _, c in entries((s,), CANONICAL8):
            save_image(root / d / "images" / f"{k}.jpg", c, size=40, rgb=True)
            np.save(root / d / "annotations" / f"{k}_exp.npy", np.array(str(AFFECT_CODE[c])))
            k += 1
        save_image(root / d / "images" / f"{k}.jpg", "neutral", size=40, rgb=True)
        np.save(root / d / "annotations" / f"{k}_exp.npy", np.array("9"))   # uncertain: dropped
        k += 1
    return root


FOLDER_NAMES = {"angry": "anger", "disgust": "disgusted", "fear": "fearful",
                "happy": "happiness", "sad": "sadness", "surprise": "surprised",
                "neutral": "neutral"}


def write_generic_folder(root: Path, val: bool = True) -> Path:
    for k, (s, c) in enumerate(entries(("train", "val", "test") if val else ("train", "test"))):
        save_image(root / s / FOLDER_NAMES[c] / f"{k}.png", c, size=24)
    return root


def decoded_classes(images) -> np.ndarray:
    """The class each image's gray value encodes (index into CANONICAL8)."""
    mean = images.float().mean(dim=(1, 2, 3)).numpy()
    return np.rint((mean - 20) / 30).astype(int)
