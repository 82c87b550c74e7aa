"""Dataset options: the `NAME:PATH#key=value,...` part of a spec, typed and checked.

A loader declares its options as `{key: converter}`; a converter turns the text after `=` into
a value or raises ValueError, and its `expected` attribute says what it takes (for messages)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, DataError

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
