"""The `fer-bench` command: run matrices, rank them, and inspect what can go in them.

One module per command group; each registers its commands on the shared Typer apps below."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup


def _flags_without_type(params: list) -> list:
    """Flags take no value, so help shows no type for them (typer printed `--help <bool>`)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class Command(TyperCommand):
    def get_params(self, ctx):  # type: ignore[override]
        return _flags_without_type(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx):  # type: ignore[override]
        return _flags_without_type(super().get_params(ctx))


class App(typer.Typer):
    """A Typer whose commands and groups render help as above."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cls=Group, **kwargs)

    def command(self, *args, cls=None, **kwargs):  # type: ignore[override]
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(help="Which image encoder, with which prompts, recognises fear and disgust "
                  "best? Run backbone x prompt x head matrices and rank them.",
                  no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode="rich")
data_app = App(help="Datasets: list, stats, and SynFER written in real on-disk formats.")
backbones_app = App(help="Image encoders: cards, timm/open_clip specs and plugins.")
prompts_app = App(help="Prompt sets (prompts/*.toml).")
app.add_typer(data_app, name="data")
app.add_typer(backbones_app, name="backbones")
app.add_typer(prompts_app, name="prompts")

# Piped output (CI logs, batch jobs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

class Format(str, Enum):
    """What a listing command prints (Typer checks the choice and lists them on a typo)."""
    table = "table"
    json = "json"


Fmt = Annotated[Format, typer.Option("--format", "-f", help="A table, or JSON for scripts.")]


def csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def load_plugins(plugins: list[Path] | None) -> None:
    from ..registry import load_plugin

    for p in [*(plugins or []), *filter(None, os.environ.get("FER_BENCH_PLUGINS", "")
                                        .split(os.pathsep))]:
        load_plugin(p)
