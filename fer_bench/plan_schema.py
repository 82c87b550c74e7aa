"""The shape of a benchmark file and of training settings, checked by pydantic.

TOML gives typed values, so the checks are strict (no "3" for 3, no 1 for true); an integer
passes for a float. Errors name the file and the key, and an unknown key the closest known one:

    benchmarks/x.toml: train.lr: expected a number > 0, got 'abc'
    benchmarks/x.toml: unknown key train.epochz (did you mean 'epochs'?)

TrainConfig (in plan) is annotated with the field types below and validated by the same rules;
this module holds the tables around it: [axes], [[overrides]], [[skip]], [eval]."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from .adaptation.spec import parse_regime
from .errors import ConfigError


def _checked_regime(value: str) -> str:
    try:
        parse_regime(value)
    except ConfigError as e:  # as a ValueError, pydantic reports it at its key
        raise ValueError(str(e)) from None
    return value


def _non_negative_number(value: Any) -> Any:
    # ints stay ints: a cell's id hashes the values as given (0 and 0.0 differ in JSON)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return value


Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Float = Annotated[float, Strict()]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Regime = Annotated[str, Strict(), AfterValidator(_checked_regime)]
NonNegativeNumbers = Annotated[tuple[Annotated[Any, AfterValidator(_non_negative_number)], ...],
                               Field(min_length=1)]


class _Table(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


Names = Annotated[list[Text], Field(min_length=1)]


class Axes(_Table):
    """[axes]: the matrix; every combination of the values is a cell."""
    backbones: Names | None = None
    prompts: Names | None = None
    heads: Names | None = None
    text_encoders: Names | None = None
    datasets: Names | None = None
    seeds: Annotated[list[Int], Field(min_length=1)] | None = None
    regimes: Annotated[list[Regime], Field(min_length=1)] | None = None  # train.regime values


class Match(_Table):
    """[[skip]] (and the matching part of [[overrides]]): globs on a cell's axes."""
    backbone: Text | None = None
    head: Text | None = None
    prompts: Text | None = None
    text_encoder: Text | None = None
    dataset: Text | None = None
    regime: Text | None = None

    @model_validator(mode="after")
    def _matches_something(self) -> Match:
        if not self.globs():
            raise ValueError(f"needs at least one of {', '.join(MATCH_KEYS)} as a string "
                             "(globs allowed: \"clip_*\")")
        return self

    def globs(self) -> dict[str, str]:
        return {k: v for k in MATCH_KEYS if (v := getattr(self, k)) is not None}


MATCH_KEYS = tuple(Match.model_fields)


def _non_empty(values: dict) -> dict:
    if not values:
        raise ValueError("needs a non-empty 'train' table of settings to override")
    return values


class Override(Match):
    """[[overrides]]: training settings for the cells it matches (checked by plan, against the
    benchmark's own [train])."""
    train: Annotated[dict[str, Any], AfterValidator(_non_empty)] = Field(
        default_factory=dict, validate_default=True)


class Eval(_Table):
    cross_datasets: list[Text] = []   # extra test datasets, classes mapped by name
    keep_checkpoints: Flag = False


class BenchmarkFile(_Table):
    name: Text | None = None          # default: the file's stem
    description: Text = ""
    axes: Axes = Axes()
    train: dict[str, Any] = {}        # TrainConfig's keys (checked by plan)
    overrides: list[Override] = []
    skip: list[Match] = []
    eval: Eval = Eval()


AXES = tuple(Axes.model_fields)
# the known keys per table, for "did you mean" (train: TrainConfig's, given by plan)
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "": tuple(BenchmarkFile.model_fields), "axes": AXES, "overrides": tuple(Override.model_fields),
    "skip": MATCH_KEYS, "eval": tuple(Eval.model_fields)}


def read_benchmark_file(data: Mapping[str, Any], where: str) -> BenchmarkFile:
    try:
        return BenchmarkFile.model_validate(data)
    except ValidationError as e:
        raise config_error(where, e) from None


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
    validated value's own place in the file (('train',) for a [train] table)."""
    keys = {**TABLE_KEYS, **(keys or {})}
    lines = []
    for err in error.errors():
        line = f"{where}: {_message(err, prefix + tuple(err['loc']), keys)}"
        if line not in lines:
            lines.append(line)
    return ConfigError("\n".join(lines))
