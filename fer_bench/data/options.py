"""Dataset options: the `NAME:PATH#key=value,...` part of a spec, typed and checked.

A loader declares its options as `{key: Option}`: the type pydantic parses the text after `=`
as (`integer(16, 1024)`, `choice("aligned", "original")`, `flag`, ...) and what it takes, for
messages. A plain callable (`str`, or a plugin's converter raising ValueError, with an optional
`expected` attribute) works too."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter

from ..errors import ConfigError, DataError

_OPTIONS_RE = re.compile(r"^\s*[A-Za-z_]\w*\s*=[^,]*(,\s*[A-Za-z_]\w*\s*=[^,]*)*$")


@dataclass(frozen=True)
class Option:
    """One `key=value` option: pydantic parses the text as `type`; `expected` (and `why`)
    say what it takes when it does not parse."""
    type: Any
    expected: str
    why: str = ""

    def __call__(self, text: str) -> Any:
        return _adapter(self.type).validate_strings(text)  # ValidationError is a ValueError


@functools.cache
def _adapter(typ: Any) -> TypeAdapter:
    return TypeAdapter(typ)


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    return f" {'<' if hi_open else '<='} {hi}" if hi is not None else ""


def integer(lo: int | None = None, hi: int | None = None, why: str = "") -> Option:
    return Option(Annotated[int, Field(ge=lo, le=hi)], "integer" + _bounds(lo, hi, False, False),
                  why)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, why: str = "") -> Option:
    limits = Field(gt=lo if lo_open else None, ge=None if lo_open else lo,
                   lt=hi if hi_open else None, le=None if hi_open else hi)
    return Option(Annotated[float, limits], "number" + _bounds(lo, hi, lo_open, hi_open), why)


def choice(*values: str, what: str = "choice") -> Option:
    return Option(Literal[values], f"{what} ({' | '.join(values)})")


def one_of(*values: int, what: str = "integer") -> Option:
    def check(n: int) -> int:
        if n not in values:
            raise ValueError(n)
        return n

    return Option(Annotated[int, AfterValidator(check)], f"{what} ({' | '.join(map(str, values))})")


flag = Option(bool, "flag (1/0, on/off, true/false)")
fraction = number(0, 0.5, lo_open=True)

# Options every on-disk dataset takes; loaders add their own.
COMMON_OPTIONS: dict[str, Option] = {
    "skip_bad": integer(0, 10**9),     # skip (and report) at most N malformed rows/images
    "cache": flag,                     # on-disk cache (default on)
    "val_fraction": fraction,          # held-out val share of train, where a dataset has no val
}
IMAGE_OPTIONS: dict[str, Option] = {
    "size": integer(16, 1024),         # decode image files to size x size
    # 1 (gray) or 3 (RGB); default: what the files are
    "channels": one_of(1, 3, what="channel count"),
    "workers": integer(1, 64),         # decoding threads
}


def parse_options(arg: str | None, spec: str, allowed: Mapping[str, Option | Callable]) -> dict:
    """`k=v,k=v` -> typed dict; unknown keys and bad values name the spec and what was expected."""
    out: dict = {}
    if not arg:
        return out
    for part in arg.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1) if sep else []
            raise ConfigError(f"dataset {spec!r}: bad option {part!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; expected key=value with key one of: {', '.join(allowed)}")
        conv = allowed[key]
        try:
            out[key] = conv(value)
        except ValueError:
            expected = getattr(conv, "expected", getattr(conv, "__name__", "value"))
            why = getattr(conv, "why", "")
            raise ConfigError(f"dataset {spec!r}: option {key}={value!r} is not a valid "
                              f"{expected}" + (f" ({why})" if why else "")) from None
    return out


def split_path_arg(arg: str | None, spec: str) -> tuple[Path, str]:
    """`PATH#opts` -> (PATH, opts)."""
    if not arg:
        raise ConfigError(f"dataset {spec!r}: expected NAME:PATH (see `fer-bench data list`)")
    path, sep, opts = arg.rpartition("#")
    if not sep or not _OPTIONS_RE.match(opts):
        path, opts = arg, ""
    return Path(path).expanduser(), opts


def path_options(arg: str | None, spec: str, extra: Mapping[str, Option | Callable] | None = None
                 ) -> tuple[Path, dict]:
    """Path and typed options (with defaults) of an on-disk dataset spec."""
    path, raw = split_path_arg(arg, spec)
    allowed = {**COMMON_OPTIONS, **(extra or {})}
    opts = {"skip_bad": 0, "cache": True, "val_fraction": 0.1, **parse_options(raw, spec, allowed)}
    if not path.exists():
        raise DataError(f"dataset {spec!r}: {path} does not exist")
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
