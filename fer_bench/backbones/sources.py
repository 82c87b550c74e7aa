"""Published weight sources declared on backbone cards, and the cache they are fetched into.

A card whose weights are `published` names its release in a [source] table:

    weights = "published"
    [source]
    url = "https://..."            # where the release lives
    file = "backbone_ir50_ms1m_epoch120.pth"   # the release's own file name
    sha256 = "..."                 # omitted when nobody has published one: verify says
                                   # "unverified" instead of inventing it
    size = 174_000_000             # bytes, when known
    licence = "MIT"
    paper = "Deng et al., ArcFace, CVPR 2019"
    layout = "state_dict"          # state_dict | timm_pickle (a whole pickled timm model,
                                   # converted to safetensors without unpickling code)
    arch = "tf_efficientnet_b0"    # timm_pickle: the timm architecture it is converted into
    direct = false                 # the url is a landing page: download by hand

Files live in $FER_BENCH_CACHE/weights/ (default ~/.cache/fer_bench/weights); nothing is
downloaded except by `fer-bench weights fetch`. `NAME@/path` still loads any local file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from ..errors import FerBenchError
from ..schema import Flag, NonNegativeInt, Table, Text

PUBLISHED = "published"


@dataclass(frozen=True)
class WeightSource:
    name: str                   # the card's name
    url: str
    file: str
    sha256: str | None = None   # None: no published checksum (verify reports "unverified")
    size: int | None = None
    licence: str = "unknown"
    paper: str = ""
    layout: str = "state_dict"
    arch: str = ""
    notes: str = ""
    direct: bool = True         # False: a landing page (Google Drive, Baidu), fetched by hand

    @property
    def path(self) -> Path:
        """The release file as downloaded."""
        return weights_dir() / self.file

    @property
    def load_path(self) -> Path:
        """What the backbone loads: the release file, or its safetensors conversion."""
        if self.layout == "timm_pickle":
            return self.path.with_name(Path(self.file).stem + ".safetensors")
        return self.path

    def cached(self) -> bool:
        return self.load_path.is_file()


def weights_dir() -> Path:
    from ..data.cache import cache_dir

    return cache_dir() / "weights"


def _sha256(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"expected 64 lowercase hex digits, got {value!r}")
    return value


def _bare_file(value: str) -> str:
    if not value or "/" in value or value.startswith("."):
        raise ValueError(f"expected a bare file name, got {value!r}")
    return value


class Source(Table):
    """A card's [source] table (the keys WeightSource takes besides the card's name)."""

    url: Annotated[Text, Field(min_length=1)]
    file: Annotated[Text, AfterValidator(_bare_file)]
    sha256: Annotated[Text, AfterValidator(_sha256)] | None = None
    size: NonNegativeInt | None = None
    licence: Text = "unknown"
    paper: Text = ""
    layout: Literal["state_dict", "timm_pickle"] = "state_dict"
    arch: Text = ""
    notes: Text = ""
    direct: Flag = True

    @model_validator(mode="after")
    def _pickle_names_its_arch(self) -> Source:
        if self.layout == "timm_pickle" and not self.arch:
            raise ValueError("a timm_pickle source needs source.arch (the timm model)")
        return self


class MissingWeightsError(FerBenchError):
    """Published weights that are not in the cache: where they come from and where they go."""

    def __init__(self, source: WeightSource, reason: str = "not in the cache") -> None:
        self.source = source
        how = (f"run `fer-bench weights fetch {source.name}` where there is internet, or "
               f"download {source.url}" if source.direct else
               f"download it by hand from {source.url} (no direct link)")
        local = (f"convert a local copy with `fer-bench weights convert FILE --arch "
                 f"{source.arch}` and load it with {source.name}@/path/to/FILE.safetensors"
                 if source.layout == "timm_pickle" else
                 f"load a local file with {source.name}@/path/to/{source.file}")
        super().__init__(
            f"backbone {source.name!r}: published weights {reason}. To get them, {how} "
            f"(file {source.file}) and put it at {source.path}; or {local}; or use "
            f"{source.name}@none for random init.")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(source: WeightSource) -> str:
    """missing | ok | unverified (no published sha256) | mismatch (size or sha256 differ)."""
    if not source.path.is_file():
        return "ok" if source.cached() else "missing"  # a converted file alone is fine
    if source.size is not None and source.path.stat().st_size != source.size:
        return "mismatch"
    if source.sha256 is None:
        return "unverified"
    return "ok" if sha256_file(source.path) == source.sha256 else "mismatch"


def resolve(source: WeightSource) -> Path:
    """The file to load; a cached timm pickle is converted on first use (safely)."""
    if source.cached():
        return source.load_path
    if source.layout == "timm_pickle" and source.path.is_file():
        from .convert import convert_timm_pickle

        convert_timm_pickle(source.path, source.load_path, source.arch)
        return source.load_path
    raise MissingWeightsError(source)
