"""The dataset registry and spec syntax.

A spec is `NAME`, `NAME:ARG` or `NAME:PATH#key=value,key=value`:

- synthetic data takes options directly: `synfer:n=8000,seed=1,test_n=2000` (or `synfer#n=8000`);
- datasets on disk take a path, then options after `#` (a shell-safe character, unlike `?`):
  `ferplus:/data/FERPlus#mode=probability,skip_bad=5`. A path that itself contains `#` works as
  long as what follows the last `#` is not `key=value` options.

A loader is `fn(arg: str | None, spec: str) -> FERDataset`; the loaders for real datasets live in
one module each (fer2013, ferplus, rafdb, affectnet, folder) and are registered below; the
option syntax and converters are in `options`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..classes import CANONICAL, CANONICAL8
from ..errors import DataError, FerBenchError
from ..registry import Registry
from .dataset import FERDataset
from .options import (
    IMAGE_OPTIONS,
    integer,
    number,
    parse_options,
    path_options,
    split_path_arg,
)
from .options import with_options as with_options  # where cli.data imports it from

DATASETS: Registry[Callable[..., FERDataset]] = Registry("dataset", "fer_bench.datasets")
_LOADED: dict[str, FERDataset] = {}  # per-process: a matrix loads each dataset once

SYNFER_OPTIONS = {"n": integer(500, why="every class in every split needs images"),
                  "seed": integer(),
                  "label_noise": number(0, 1, hi_open=True),
                  "test_n": integer(100, why="every class needs test images")}


# One small loader per dataset name, alike on purpose: each one's docstring is what `fer-bench
# data list` shows, each declares its classes for planning, and each imports its reader only
# when called, so listing or planning imports no reader (and no PIL) at all.

@DATASETS.register("synfer", classes=CANONICAL)
def synfer(arg: str | None = None, spec: str = "synfer") -> FERDataset:
    """SynFER: procedural 48x48 grayscale faces with FER2013's splits and class proportions."""
    from . import synfer as gen

    return gen.generate(**parse_options((arg or "").lstrip("#"), spec, SYNFER_OPTIONS))


@DATASETS.register("fer2013", takes_path=True, classes=CANONICAL)
def fer2013(arg: str | None = None, spec: str = "fer2013") -> FERDataset:
    """FER2013: fer2013.csv, icml_face_data.csv, a folder holding one, or train/ test/ folders."""
    from .fer2013 import load_fer2013

    path, opts = path_options(arg, spec, IMAGE_OPTIONS)
    return load_fer2013(path, opts, spec)


@DATASETS.register("ferplus", takes_path=True, classes=CANONICAL8)
def ferplus(arg: str | None = None, spec: str = "ferplus") -> FERDataset:
    """FERPlus, 8 classes (with contempt): fer2013new.csv + fer2013.csv, or FER2013Train/..."""
    from .ferplus import OPTIONS, load_ferplus

    path, opts = path_options(arg, spec, OPTIONS)
    return load_ferplus(path, opts, spec, with_contempt=True)


@DATASETS.register("ferplus7", takes_path=True, classes=CANONICAL)
def ferplus7(arg: str | None = None, spec: str = "ferplus7") -> FERDataset:
    """FERPlus, 7 classes (contempt dropped): same files as ferplus."""
    from .ferplus import OPTIONS, load_ferplus

    path, opts = path_options(arg, spec, OPTIONS)
    return load_ferplus(path, opts, spec, with_contempt=False)


@DATASETS.register("rafdb", takes_path=True, classes=CANONICAL)
def rafdb(arg: str | None = None, spec: str = "rafdb") -> FERDataset:
    """RAF-DB basic: basic/EmoLabel/list_patition_label.txt + basic/Image/{aligned,original}/."""
    from .rafdb import OPTIONS, load_rafdb

    path, opts = path_options(arg, spec, OPTIONS)
    return load_rafdb(path, opts, spec)


@DATASETS.register("affectnet", takes_path=True, classes=CANONICAL)
def affectnet(arg: str | None = None, spec: str = "affectnet") -> FERDataset:
    """AffectNet, 7 classes: Manually_Annotated file lists + images, or train_set/ val_set/."""
    from .affectnet import OPTIONS, load_affectnet

    path, opts = path_options(arg, spec, OPTIONS)
    return load_affectnet(path, opts, spec, with_contempt=False)


@DATASETS.register("affectnet8", takes_path=True, classes=CANONICAL8)
def affectnet8(arg: str | None = None, spec: str = "affectnet8") -> FERDataset:
    """AffectNet, 8 classes (with contempt): same files as affectnet."""
    from .affectnet import OPTIONS, load_affectnet

    path, opts = path_options(arg, spec, OPTIONS)
    return load_affectnet(path, opts, spec, with_contempt=True)


@DATASETS.register("folder", takes_path=True)
def folder(arg: str | None = None, spec: str = "folder") -> FERDataset:
    """Any split/class/*.jpg tree; class folder names mapped by name (angry/anger, ...)."""
    from .folder import load_folder

    path, opts = path_options(arg, spec, IMAGE_OPTIONS)
    return load_folder(path, opts, spec)


def split_spec(spec: str) -> tuple[str, str]:
    """`NAME[:ARG]` or `NAME#opts` -> (NAME, ARG), ARG keeping any `#opts`."""
    name, colon, arg = spec.strip().partition(":")
    if not colon and "#" in name:
        name, _, arg = name.partition("#")
        arg = "#" + arg
    return name, arg


def dataset_entry(spec: str):
    """The registry entry a spec names (unknown names fail with the closest known ones)."""
    return DATASETS.get(split_spec(spec)[0], hint="Datasets: `fer-bench data list`")


def dataset_path(spec: str) -> Path | None:
    """The file or folder a dataset read from disk points at; None for generated datasets."""
    if not dataset_entry(spec).meta.get("takes_path"):
        return None
    return split_path_arg(split_spec(spec)[1], spec)[0]


def load_dataset(spec: str, *, reuse: bool = True) -> FERDataset:
    """Load a dataset by spec; `reuse` returns the copy this process already loaded."""
    spec = spec.strip()
    if reuse and spec in _LOADED:
        return _LOADED[spec]
    arg = split_spec(spec)[1]
    entry = dataset_entry(spec)
    try:
        ds = entry.obj(arg or None, spec=spec)
    except FerBenchError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"dataset {spec!r}: {e}") from e
    _LOADED[spec] = ds
    return ds
