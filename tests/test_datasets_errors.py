"""Malformed input stops loading with file + line + what was expected (or is skipped with
skip_bad and reported); the on-disk cache hits, misses, and never trusts a corrupt file."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from fer_bench.data.cache import cache_dir
from fer_bench.errors import ConfigError, DataError

from .test_datasets_fixtures import (
    _cache_dir,  # noqa: F401  (autouse: cache under tmp_path)
    entries,
    load,
    pixels,
    write_affectnet_lists,
    write_fer_csv,
    write_ferplus,
    write_generic_folder,
    write_rafdb,
)


def fer_with_line(tmp_path, bad_line: str, at: int = 3):
    """A fer2013.csv whose data row `at` (editor line at + 1) is replaced."""
    path = write_fer_csv(tmp_path / "fer2013.csv")
    lines = path.read_text().splitlines()
    lines[at] = bad_line
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad, expected", [
    ("0," + " ".join(["7"] * 2303) + ",Training", r"line 4: expected 2304 pixel values .*2303"),
    ("0," + " ".join(["7"] * 2000 + ["x7"] + ["7"] * 303) + ",Training",
     r"line 4: pixel 2001 is 'x7', not a number 0-255"),
    ("0," + " ".join(["7"] * 2303 + ["256"]) + ",Training", r"line 4: pixel 2304 is 256"),
    ("9," + pixels("fear") + ",Training", r"line 4: unknown emotion label '9' \(expected 0-6"),
    ("2," + pixels("fear") + ",Train", r"line 4: unknown Usage 'Train'"),
    ("2," + pixels("fear"), r"line 4: expected 3 comma-separated fields, got 2"),
])
def test_fer2013_bad_rows_name_file_and_line(tmp_path, bad, expected):
    path = fer_with_line(tmp_path, bad)
    with pytest.raises(DataError, match=re.escape(str(path)) + " " + expected):
        load(f"fer2013:{path}")


def test_fer2013_bad_header(tmp_path):
    path = fer_with_line(tmp_path, "label,pixels,Usage", at=0)
    with pytest.raises(DataError, match=r"fer2013.csv line 1: header .* lacks emotion"):
        load(f"fer2013:{path}")
    path.write_text("emotion,pixels\n0," + pixels("fear") + "\n")
    with pytest.raises(DataError, match="train.csv"):
        load(f"fer2013:{path}")


def test_skip_bad_skips_and_reports(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    lines = path.read_text().splitlines()
    lines[2] = "9," + pixels("fear") + ",Training"
    lines[5] = "0,1 2 3,Training"
    path.write_text("\n".join(lines) + "\n")
    ds = load(f"fer2013:{path}#skip_bad=2")
    assert len(ds.splits["train"]) == len(entries(("train",))) - 2
    assert [s.split(": ", 1)[0] for s in ds.meta["skipped"]] == [f"{path} line 3",
                                                                  f"{path} line 6"]
    with pytest.raises(DataError, match=r"more than skip_bad=1 bad rows; the next one is .*"
                                         r"line 6"):
        load(f"fer2013:{path}#skip_bad=1")


def test_rafdb_missing_image_and_bad_label(tmp_path):
    root = write_rafdb(tmp_path)
    img = next((root / "basic" / "Image" / "aligned").glob("train_00002_aligned.jpg"))
    img.unlink()
    with pytest.raises(DataError, match=r"list_patition_label.txt line 2: image .*"
                                        r"train_00002_aligned.jpg: not found"):
        load(f"rafdb:{root}")
    label = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    label.write_text(label.read_text().replace("train_00001.jpg 6", "train_00001.jpg 0"))
    with pytest.raises(DataError, match=r"line 1: unknown label '0' \(expected 1-7"):
        load(f"rafdb:{root}")


def test_undecodable_image(tmp_path):
    root = write_generic_folder(tmp_path)
    bad = next((root / "test" / "fearful").iterdir())
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=re.escape(str(bad)) + ": cannot decode"):
        load(f"folder:{root}")
    ds = load(f"folder:{root}#skip_bad=1")
    assert len(ds.meta["skipped"]) == 1


def test_affectnet_unknown_code_and_header(tmp_path):
    root = write_affectnet_lists(tmp_path)
    val = root / "Manually_Annotated_file_lists" / "validation.csv"
    lines = val.read_text().splitlines()
    fields = lines[1].split(",")
    fields[6] = "12"                                   # the expression column
    lines[1] = ",".join(fields)
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"validation.csv line 2: unknown expression '12'"):
        load(f"affectnet:{root}")
    train = root / "Manually_Annotated_file_lists" / "training.csv"
    train.write_text("subDirectory_filePath,face_x\n0/a.jpg,1\n")
    with pytest.raises(DataError, match=r"training.csv line 1: header lacks expression"):
        load(f"affectnet:{root}")


def test_folder_unknown_class_names_listed(tmp_path):
    root = write_generic_folder(tmp_path)
    (root / "train" / "boredom").mkdir()
    (root / "train" / "misc").mkdir()
    with pytest.raises(DataError, match=r"unknown class folder\(s\) boredom, misc"):
        load(f"folder:{root}")


def test_folder_of_class_dirs_is_explained(tmp_path):
    root = write_generic_folder(tmp_path) / "train"
    with pytest.raises(DataError, match="look like class folders"):
        load(f"folder:{root}")


def test_ferplus_files_must_pair(tmp_path):
    votes, fer = write_ferplus(tmp_path)
    lines = fer.read_text().splitlines()
    fer.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"has \d+ data rows but .* has \d+; FERPlus pairs"):
        load(f"ferplus:{votes}")


def test_bad_options(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    with pytest.raises(ConfigError, match="bad option 'colour=1'"):
        load(f"fer2013:{path}#colour=1")
    with pytest.raises(ConfigError, match=r"mode='soft' is not a valid label mode"):
        load(f"ferplus:{tmp_path}#mode=soft")
    with pytest.raises(DataError, match="does not exist"):
        load(f"fer2013:{tmp_path}/nope.csv")


@pytest.mark.parametrize("spec, message", [
    ("synfer:n=100", "dataset 'synfer:n=100': option n='100' is not a valid integer >= 500 "
                     "(every class in every split needs images)"),
    ("synfer:n=many", "option n='many' is not a valid integer >= 500"),
    ("synfer:label_noise=1", "option label_noise='1' is not a valid number in [0, 1)"),
    ("synfer:nn=3", "dataset 'synfer:nn=3': bad option 'nn=3' (did you mean 'n'?); expected "
                    "key=value with key one of: n, seed, label_noise, test_n"),
])
def test_synfer_options_name_spec_option_and_what_was_expected(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(spec)


@pytest.mark.parametrize("opts, message", [
    ("size=8", "option size='8' is not a valid integer in [16, 1024]"),
    ("channels=2", "option channels='2' is not a valid channel count (1 | 3)"),
    ("cache=maybe", "option cache='maybe' is not a valid flag (1/0, on/off, true/false)"),
    ("val_fraction=0.6", "option val_fraction='0.6' is not a valid number in (0, 0.5]"),
    ("sise=32", "bad option 'sise=32' (did you mean 'size'?)"),
])
def test_on_disk_options_name_spec_option_and_what_was_expected(tmp_path, opts, message):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    with pytest.raises(ConfigError, match=re.escape(f"dataset 'fer2013:{path}#{opts}': ")
                       + re.escape(message)):
        load(f"fer2013:{path}#{opts}")


def test_plugin_converters_still_work():
    from fer_bench.data import parse_options

    def even(v: str) -> int:
        if int(v) % 2:
            raise ValueError(v)
        return int(v)

    even.expected = "even integer"  # type: ignore[attr-defined]
    assert parse_options("k=4,s=x", "p", {"k": even, "s": str}) == {"k": 4, "s": "x"}
    with pytest.raises(ConfigError, match=r"option k='3' is not a valid even integer"):
        parse_options("k=3", "p", {"k": even})


def test_path_with_hash_is_a_path(tmp_path):
    path = write_fer_csv(tmp_path / "a#b" / "fer2013.csv")
    assert len(load(f"fer2013:{path}").splits["test"]) == 7


# --- cache ---------------------------------------------------------------------------------------

def test_cache_miss_hit_and_source_change(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    first = load(f"fer2013:{path}")
    assert first.meta["cache"] == "miss"
    (cached,) = cache_dir().glob("fer2013-*.npz")
    second = load(f"fer2013:{path}")
    assert second.meta["cache"] == "hit"
    for s in first.splits:
        assert torch.equal(first.splits[s].images, second.splits[s].images)
        assert torch.equal(first.splits[s].labels, second.splits[s].labels)
    # an edited source (new size/mtime) is rebuilt, in the same cache file
    write_fer_csv(path, rows=entries(("train", "test")))
    os.utime(path, ns=(1, 1))
    third = load(f"fer2013:{path}")
    assert third.meta["cache"] == "rebuilt (source changed)" and "val" not in third.splits
    assert list(cache_dir().glob("fer2013-*.npz")) == [cached]
    assert load(f"fer2013:{path}#cache=0").meta["cache"] == "off"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_is_rebuilt(tmp_path, damage):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    good = load(f"fer2013:{path}")
    (cached,) = cache_dir().glob("fer2013-*.npz")
    blob = bytearray(cached.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:  # one byte inside the image data: only the CRC can tell
        blob[len(blob) // 3] ^= 0xFF
    cached.write_bytes(bytes(blob))
    again = load(f"fer2013:{path}")
    assert again.meta["cache"].startswith("rebuilt (unreadable cache")
    assert torch.equal(again.splits["train"].images, good.splits["train"].images)
    assert load(f"fer2013:{path}").meta["cache"] == "hit"   # rewritten whole


def test_cache_has_no_pickle(tmp_path):
    path = write_fer_csv(tmp_path / "fer2013.csv")
    load(f"fer2013:{path}#skip_bad=3")
    (cached,) = cache_dir().glob("fer2013-*.npz")
    with np.load(cached, allow_pickle=False) as z:   # would raise on object arrays
        assert all(z[k].dtype != object for k in z.files)


def test_image_dataset_cache(tmp_path):
    root = write_generic_folder(tmp_path / "data")
    assert load(f"folder:{root}").meta["cache"] == "miss"
    assert load(f"folder:{root}").meta["cache"] == "hit"
    os.utime(next((root / "test" / "fearful").iterdir()), ns=(1, 1))
    assert load(f"folder:{root}").meta["cache"] == "rebuilt (source changed)"
