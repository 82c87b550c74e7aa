"""Where data files (backbone cards, prompt sets, benchmark matrices) are found.

Search order: directories the user names (FER_BENCH_<KIND>_PATH, os.pathsep-separated),
then the repository checkout's top-level folder (editable installs), then the copies a wheel
carries inside the package (fer_bench/_data/<kind>)."""

from __future__ import annotations

import os
from pathlib import Path

import tomllib

from .errors import ConfigError

_PKG = Path(__file__).resolve().parent


def search_dirs(kind: str) -> list[Path]:
    env = os.environ.get(f"FER_BENCH_{kind.upper()}_PATH", "")
    dirs = [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [_PKG.parent / kind, _PKG / "_data" / kind]
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def data_files(kind: str, suffix: str = ".toml") -> dict[str, Path]:
    """name (file stem) -> path; earlier directories shadow later ones."""
    found: dict[str, Path] = {}
    for d in search_dirs(kind):
        for f in sorted(d.glob(f"*{suffix}")):
            found.setdefault(f.stem, f)
    return found


def read_toml(path: Path) -> dict:
    """Parse a TOML file as data only; a syntax error names the file and line."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
