"""Checked data files: strict pydantic types for TOML values and one error format for all of
them (benchmark files, [train] settings, backbone cards). One line per wrong key:

    benchmarks/x.toml: train.lr: expected a number > 0, got 'abc'
    backbones/y.toml: unknown key preprocess.size (did you mean 'input_size'?)

TOML gives typed values, so the checks are strict (no "3" for 3, no 1 for true); an integer
passes for a float."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from .errors import ConfigError

Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Float = Annotated[float, Strict()]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]


class Table(BaseModel):
    """A TOML table: strict types, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid")


# --------------------------------------------------------------------------- error messages
_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
             "dict_type": "a table", "model_type": "a table", "dataclass_type": "a table",
             "model_attributes_type": "a table"}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


def key_path(loc: Iterable[str | int]) -> str:
    """('overrides', 0, 'train', 'lr') -> 'overrides[0].train.lr'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(loc: tuple, keys: Mapping[str, Iterable[str]]) -> str:
    parent, key = loc[:-1], str(loc[-1])
    section = next((p for p in reversed(parent) if isinstance(p, str)), "")
    known = list(keys.get(section, ()))
    close = difflib.get_close_matches(key, known, n=1)
    hint = (f" (did you mean {close[0]!r}?)" if close else
            f" (expected: {', '.join(known)})" if known else "")
    if not parent:
        return f"unknown top-level key {key}{hint}"
    if parent == ("axes",):
        return f"unknown axis {key}{hint}"
    return f"unknown key {key_path(loc)}{hint}"


def _message(err: Mapping[str, Any], loc: tuple, keys: Mapping[str, Iterable[str]]) -> str:
    kind, ctx, path = err["type"], err.get("ctx") or {}, key_path(loc)
    where = f"{path}: " if path else ""
    if kind in _UNKNOWN:
        return _unknown(loc, keys)
    if kind in ("value_error", "assertion_error"):
        return f"{where}{ctx.get('error', err['msg'])}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return f"{path} is empty"
    if kind == "missing":
        return f"{where}is required"
    if kind == "literal_error":
        expected = f"one of {ctx['expected']}"
    elif kind in _BOUNDS:
        name, op = _BOUNDS[kind]
        bound = ctx[name]
        expected = f"{'an integer' if isinstance(bound, int) else 'a number'} {op} {bound:g}"
    else:
        expected = _EXPECTED.get(kind, err["msg"].removeprefix("Input should be "))
    return f"{where}expected {expected}, got {_got(err.get('input'))}"


def config_error(where: str, error: ValidationError, prefix: tuple = (),
                 keys: Mapping[str, Iterable[str]] | None = None) -> ConfigError:
    """One line per wrong key: `where: key.path: what was expected, got what`. `prefix` is the
    validated value's own place in the file (('train',) for a [train] table); `keys` the known
    keys per table name, for "did you mean"."""
    keys = keys or {}
    lines = []
    for err in error.errors():
        line = f"{where}: {_message(err, prefix + tuple(err['loc']), keys)}"
        if line not in lines:
            lines.append(line)
    return ConfigError("\n".join(lines))
