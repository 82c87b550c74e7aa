"""The shape of a benchmark file and of training settings, checked by pydantic.

Types and the error format are fer_bench.schema's. Errors name the file and the key, and an
unknown key the closest known one:

    benchmarks/x.toml: train.lr: expected a number > 0, got 'abc'
    benchmarks/x.toml: unknown key train.epochz (did you mean 'epochs'?)

TrainConfig (in plan) is annotated with the field types below and validated by the same rules;
this module holds the tables around it: [axes], [[overrides]], [[skip]], [eval]."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from .adaptation.spec import parse_regime
from .errors import ConfigError
from .schema import (  # noqa: F401  (re-exported: plan annotates TrainConfig with them)
    Flag,
    Float,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Table,
    Text,
)
from .schema import config_error as schema_error


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


Regime = Annotated[str, Strict(), AfterValidator(_checked_regime)]
NonNegativeNumbers = Annotated[tuple[Annotated[Any, AfterValidator(_non_negative_number)], ...],
                               Field(min_length=1)]


Names = Annotated[list[Text], Field(min_length=1)]


class Axes(Table):
    """[axes]: the matrix; every combination of the values is a cell."""
    backbones: Names | None = None
    prompts: Names | None = None
    heads: Names | None = None
    text_encoders: Names | None = None
    datasets: Names | None = None
    seeds: Annotated[list[Int], Field(min_length=1)] | None = None
    regimes: Annotated[list[Regime], Field(min_length=1)] | None = None  # train.regime values


class Match(Table):
    """[[skip]] (and the matching part of [[overrides]]): globs on a cell's axes."""
    # the singular of each [axes] key (a cell has one of each): alike by design
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


class Eval(Table):
    cross_datasets: list[Text] = []   # extra test datasets, classes mapped by name
    keep_checkpoints: Flag = False


class BenchmarkFile(Table):
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


def config_error(where: str, error: ValidationError, prefix: tuple = (),
                 keys: Mapping[str, Iterable[str]] | None = None) -> ConfigError:
    """`schema.config_error` knowing a benchmark file's tables."""
    return schema_error(where, error, prefix, {**TABLE_KEYS, **(keys or {})})
