"""The dataset registry. A spec is `NAME` or `NAME:ARG`; ARG is a path for datasets on disk and
`key=value,...` options for the synthetic one (`synfer:n=8000,seed=1`)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError, FerBenchError
from ..registry import Registry
from .dataset import FERDataset

DATASETS: Registry[Callable[..., FERDataset]] = Registry("dataset", "fer_bench.datasets")
_LOADED: dict[str, FERDataset] = {}  # per-process: a matrix loads each dataset once


def parse_options(arg: str | None, spec: str, allowed: dict[str, type]) -> dict:
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
            raise ConfigError(f"dataset {spec!r}: option {key}={value!r} is not a valid "
                              f"{allowed[key].__name__}") from None
    return out


@DATASETS.register("synfer")
def synfer(arg: str | None = None, spec: str = "synfer") -> FERDataset:
    """SynFER: procedural 48x48 grayscale faces with FER2013's splits and class proportions."""
    from . import synfer as gen

    opts = parse_options(arg, spec, {"n": int, "seed": int, "label_noise": float})
    if opts.get("n", 1000) < 500:
        raise ConfigError(f"dataset {spec!r}: n must be at least 500 (every class in every "
                          "split needs images)")
    if not 0.0 <= opts.get("label_noise", 0.0) < 1.0:
        raise ConfigError(f"dataset {spec!r}: label_noise must be in [0, 1)")
    return gen.generate(**opts)


def load_dataset(spec: str) -> FERDataset:
    spec = spec.strip()
    if spec in _LOADED:
        return _LOADED[spec]
    name, _, arg = spec.partition(":")
    entry = DATASETS.get(name, hint="Datasets: `fer-bench data list`")
    try:
        ds = entry.obj(arg or None, spec=spec)
    except FerBenchError:
        raise
    except FileNotFoundError as e:
        raise FerBenchError(f"dataset {spec!r}: {e}") from e
    _LOADED[spec] = ds
    return ds
