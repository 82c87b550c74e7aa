"""The dataset registry and spec syntax.

A spec is `NAME`, `NAME:ARG` or `NAME:PATH#key=value,key=value`:

- synthetic data takes options directly: `synfer:n=8000,seed=1,test_n=2000` (or `synfer#n=8000`);
- datasets on disk take a path, then options after `#` (a shell-safe character, unlike `?`):
  `ferplus:/data/FERPlus#mode=probability,skip_bad=5`. A path that itself contains `#` works as
  long as what follows the last `#` is not `key=value` options.

A loader is `fn(arg: str | None, spec: str) -> FERDataset`; the loaders for real datasets live in
one module each (fer2013, ferplus, rafdb, affectnet, folder) and are registered below."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..classes import CANONICAL, CANONICAL8
from ..errors import ConfigError, DataError, FerBenchError
from ..registry import Registry
from .dataset import FERDataset

DATASETS: Registry[Callable[..., FERDataset]] = Registry("dataset", "fer_bench.datasets")
_LOADED: dict[str, FERDataset] = {}  # per-process: a matrix loads each dataset once
_OPTIONS_RE = re.compile(r"^\s*[A-Za-z_]\w*\s*=[^,]*(,\s*[A-Za-z_]\w*\s*=[^,]*)*$")


def _expected(conv: Callable) -> str:
    return getattr(conv, "expected", getattr(conv, "__name__", "value"))


def parse_options(arg: str | None, spec: str, allowed: dict[str, Callable]) -> dict:
    """`k=v,k=v` -> typed dict; unknown keys and bad values name the spec and what was expected."""
    out: dict = {}
    if not arg:
        return out
    for part in arg.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ConfigError(f"dataset {spec!r}: bad option {part!r}; expected key=value with "
                              f"key one of: {', '.join(allowed)}")
        try:
            out[key] = allowed[key](value.strip())
        except ValueError:
            raise ConfigError(f"dataset {spec!r}: option {key}={value.strip()!r} is not a valid "
                              f"{_expected(allowed[key])}") from None
    return out


def choice(*values: str) -> Callable[[str], str]:
    def conv(v: str) -> str:
        if v not in values:
            raise ValueError(v)
        return v

    conv.expected = "choice (" + " | ".join(values) + ")"  # type: ignore[attr-defined]
    return conv


def flag(v: str) -> bool:
    low = v.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


flag.expected = "flag (1/0, on/off, true/false)"  # type: ignore[attr-defined]


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    def conv(v: str) -> int:
        n = int(v)
        if not lo <= n <= hi:
            raise ValueError(v)
        return n

    conv.expected = f"integer in [{lo}, {hi}]"  # type: ignore[attr-defined]
    return conv


def fraction(v: str) -> float:
    x = float(v)
    if not 0.0 < x <= 0.5:
        raise ValueError(v)
    return x


fraction.expected = "fraction in (0, 0.5]"  # type: ignore[attr-defined]

# Options every on-disk dataset takes; loaders add their own.
COMMON_OPTIONS: dict[str, Callable] = {
    "skip_bad": int_range(0, 10**9),   # skip (and report) at most N malformed rows/images
    "cache": flag,                     # on-disk cache (default on)
    "val_fraction": fraction,          # held-out val share of train, where a dataset has no val
}
IMAGE_OPTIONS: dict[str, Callable] = {
    "size": int_range(16, 1024),       # decode image files to size x size
    "channels": int_range(1, 3),       # 1 (gray) or 3 (RGB); default: what the files are
    "workers": int_range(1, 64),       # decoding threads
}


def split_path_arg(arg: str | None, spec: str) -> tuple[Path, str]:
    """`PATH#opts` -> (PATH, opts)."""
    if not arg:
        raise ConfigError(f"dataset {spec!r}: expected NAME:PATH (see `fer-bench data list`)")
    path, sep, opts = arg.rpartition("#")
    if not sep or not _OPTIONS_RE.match(opts):
        path, opts = arg, ""
    return Path(path).expanduser(), opts


def path_options(arg: str | None, spec: str, extra: dict[str, Callable] | None = None
                 ) -> tuple[Path, dict]:
    """Path and typed options (with defaults) of an on-disk dataset spec."""
    path, raw = split_path_arg(arg, spec)
    allowed = {**COMMON_OPTIONS, **(extra or {})}
    opts = {"skip_bad": 0, "cache": True, "val_fraction": 0.1, **parse_options(raw, spec, allowed)}
    if not path.exists():
        raise DataError(f"dataset {spec!r}: {path} does not exist")
    if "channels" in opts and opts["channels"] == 2:
        raise ConfigError(f"dataset {spec!r}: channels must be 1 or 3")
    return path, opts


def with_options(spec: str, **opts: object) -> str:
    """`spec` plus options (for CLI flags such as --skip-bad) in the spec syntax."""
    if not opts:
        return spec
    extra = ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in opts.items())
    name, colon, arg = spec.partition(":")
    if not colon:
        return f"{spec}#{extra}"
    _, raw = split_path_arg(arg, spec) if arg else (None, "")
    return f"{spec},{extra}" if raw else f"{spec}#{extra}"


@DATASETS.register("synfer", classes=CANONICAL)
def synfer(arg: str | None = None, spec: str = "synfer") -> FERDataset:
    """SynFER: procedural 48x48 grayscale faces with FER2013's splits and class proportions."""
    from . import synfer as gen

    opts = parse_options((arg or "").lstrip("#"), spec,
                         {"n": int, "seed": int, "label_noise": float, "test_n": int})
    if opts.get("n", 1000) < 500:
        raise ConfigError(f"dataset {spec!r}: n must be at least 500 (every class in every "
                          "split needs images)")
    if not 0.0 <= opts.get("label_noise", 0.0) < 1.0:
        raise ConfigError(f"dataset {spec!r}: label_noise must be in [0, 1)")
    if opts.get("test_n", 100) < 100:
        raise ConfigError(f"dataset {spec!r}: test_n must be at least 100 (every class needs "
                          "test images)")
    return gen.generate(**opts)


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
