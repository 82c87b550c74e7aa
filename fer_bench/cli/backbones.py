"""`fer-bench backbones ...`: image encoders."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Annotated

import typer

from .common import Fmt, backbones_app, console, load_plugins


@backbones_app.command("list")
def backbones_list(
    pattern: Annotated[str, typer.Argument(help="Filter, wildcards allowed.")] = "*",
    fmt: Fmt = "table",
) -> None:
    """Backbone cards and registered encoders (without building them)."""
    from rich.table import Table

    from ..backbones import BACKBONES, cards, parse_spec
    from ..resources import read_toml

    rows = []
    for name, path in cards().items():
        card = read_toml(path)
        rows.append({"name": name, "family": card.get("family"), "model": card.get("model"),
                     "weights": card.get("weights", "default"), "notes": card.get("notes", "")})
    parse_spec("fer_cnn")  # loads the built-in families
    for e in BACKBONES:
        if e.name not in {r["name"] for r in rows}:
            rows.append({"name": e.name, "family": e.meta.get("family"), "model": e.name,
                         "weights": "none", "notes": e.meta.get("notes") or e.doc})
    rows = [r for r in rows if fnmatch.fnmatch(r["name"], pattern)]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("name", "family", "model", "weights", "notes"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("name", "family", "model", "weights", "notes")))
    console.print(table)


@backbones_app.command("show")
def backbones_show(
    name: Annotated[str, typer.Argument(help="Card name or spec (timm:resnet18@none).")],
    fmt: Fmt = "table",
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained")] = False,
    plugin: Annotated[list[Path] | None, typer.Option(help="Plugin file (repeatable).")] = None,
) -> None:
    """Build a backbone and print its resolved config (preprocessing, dims, params)."""
    from ..backbones import create_backbone

    load_plugins(plugin)
    cfg = create_backbone(name, pretrained=not no_pretrained).config.to_dict()
    if fmt == "json":
        typer.echo(json.dumps(cfg, indent=2, default=str))
    else:
        for k, v in cfg.items():
            console.print(f"[bold]{k:>16}[/bold]  {v}")


