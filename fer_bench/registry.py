"""One registry mechanism (name -> factory, with metadata) for backbones, text encoders,
heads and datasets. Unknown names fail with the closest known names; installed packages add
entries through entry points, and `--plugin FILE` imports a user's file (nothing else is
imported)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import FerBenchError, UnknownNameError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"

    @property
    def doc(self) -> str:
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """Names -> objects (usually factories). `kind` is used in messages ("backbone", "head")."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points_loaded = False

    def register(self, name: str, obj: T | None = None, *, source: str = "builtin",
                 overwrite: bool = False, **meta: Any) -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, return a decorator."""

        def add(o: T) -> T:
            if name in self._entries and not overwrite and self._entries[name].obj is not o:
                raise FerBenchError(f"{self.kind} {name!r} is already registered "
                                    f"(by {self._entries[name].source})")
            self._entries[name] = Entry(name, o, dict(meta), source)
            return o

        return add(obj) if obj is not None else add

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or not self.entry_point_group:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as e:  # a broken third-party package must not hide the others
                raise FerBenchError(f"entry point {ep.name!r} ({ep.value}) in group "
                                    f"{self.entry_point_group!r} failed to load: {e}") from e
            # A decorated factory registers itself on import; a bare callable is registered here.
            if ep.name not in self._entries:
                self.register(ep.name, obj, source=f"entry point {ep.value}")

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def get(self, name: str, extra_known: list[str] | None = None, hint: str = "") -> Entry[T]:
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._entries) + (extra_known or []),
                                   hint) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load_entry_points()
        return iter([self._entries[n] for n in sorted(self._entries)])


def load_plugin(path: str | Path) -> None:
    """Import a user's Python file so that its `@register_*` decorators run. Only files the user
    names on the command line (or in FER_BENCH_PLUGINS) are ever imported."""
    path = Path(path).expanduser().resolve()
    if not path.is_file() or path.suffix != ".py":
        raise FerBenchError(f"--plugin {path}: expected an existing .py file")
    mod_name = f"fer_bench_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except FerBenchError:
        raise
    except Exception as e:
        del sys.modules[mod_name]
        raise FerBenchError(f"--plugin {path} failed to import: {type(e).__name__}: {e}") from e
