"""Prompt sets: data files in prompts/*.toml mapping each class to one or more prompts.

    description = "..."
    templates = ["a photo of a {} looking face."]   # optional; each {} gets each class word
    [classes]
    fear = ["fearful", "scared"]                     # words (with templates) or full sentences

Extra classes (contempt) are ignored for 7-class data; a missing class is an error naming the
class and the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, UnknownNameError
from ..resources import data_files, read_toml

ALLOWED_KEYS = {"description", "templates", "classes", "source"}


@dataclass(frozen=True)
class PromptSet:
    name: str
    description: str
    prompts: dict[str, tuple[str, ...]]  # class -> filled prompts
    path: Path | None = None
    learned_context: int = 0             # N learnable context vectors (CoOp), 0 for file sets

    def for_classes(self, classes: tuple[str, ...]) -> list[list[str]]:
        """Prompts per class, in `classes` order; every class must be covered."""
        missing = [c for c in classes if c not in self.prompts]
        if missing:
            where = f" ({self.path})" if self.path else ""
            raise ConfigError(f"prompt set {self.name!r}{where} has no prompts for class(es) "
                              f"{', '.join(missing)}")
        return [list(self.prompts[c]) for c in classes]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description,
                "classes": {c: list(p) for c, p in self.prompts.items()}}


def prompt_sets() -> dict[str, Path]:
    return data_files("prompts")


def parse_prompt_set(name: str, data: dict, path: Path | None = None) -> PromptSet:
    where = str(path) if path else f"prompt set {name!r}"
    unknown = set(data) - ALLOWED_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                          f"(expected: {', '.join(sorted(ALLOWED_KEYS))})")
    templates = data.get("templates", ["{}"])
    if not isinstance(templates, list) or not templates or not all(
            isinstance(t, str) and "{}" in t for t in templates):
        raise ConfigError(f"{where}: 'templates' must be a non-empty list of strings, each "
                          "containing '{}'")
    classes = data.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise ConfigError(f"{where}: needs a [classes] table mapping class -> list of prompts")
    prompts: dict[str, tuple[str, ...]] = {}
    for cls, words in classes.items():
        if isinstance(words, str):
            words = [words]
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip()
                                                               for w in words):
            raise ConfigError(f"{where}: classes.{cls} must be a non-empty list of strings")
        prompts[cls] = tuple(t.replace("{}", w.strip()) for t in templates for w in words)
    return PromptSet(name, str(data.get("description", "")), prompts, path)


def learned_prompt_set(name: str) -> PromptSet:
    """`learned:N`: N placeholder tokens, replaced by learnable vectors, before each class name
    (CoOp, Zhou et al. 2022); trained with the head and saved with the cell."""
    n = name.split(":", 1)[1]
    if not n.isdigit() or not 1 <= int(n) <= 32:
        raise ConfigError(f"prompt set {name!r}: expected learned:N with N in 1..32")
    words = load_prompt_set("classnames").prompts
    placeholder = " ".join(["X"] * int(n))
    return PromptSet(name, f"{n} learned context vectors before each class name (CoOp)",
                     {c: (f"{placeholder} {w[0]}.",) for c, w in words.items()},
                     learned_context=int(n))


def load_prompt_set(name: str) -> PromptSet:
    if name.startswith("learned:"):
        return learned_prompt_set(name)
    files = prompt_sets()
    if name not in files:
        raise UnknownNameError("prompt set", name, files,
                               hint="Prompt sets are prompts/*.toml (`fer-bench prompts list`) "
                                    "or learned:N")
    return parse_prompt_set(name, read_toml(files[name]), files[name])
