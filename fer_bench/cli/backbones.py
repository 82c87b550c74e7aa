"""`fer-bench backbones ...`: image encoders (cards, specs, registered factories)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FerBenchError
from .common import Fmt, Format, backbones_app, console, load_plugins

Plugins = Annotated[list[Path] | None, typer.Option("--plugin", help="Python file registering "
                                                   "backbones (repeatable).")]
Pattern = Annotated[str, typer.Argument(help="Filter on the name: wildcards (clip_*), or a "
                                        "substring.")]


def _matching(pattern: str) -> list[str]:
    """Card names, then registered names without a card, that match the filter."""
    from ..backbones import BACKBONES, cards, parse_spec

    parse_spec("fer_cnn")  # loads the built-in families and FER nets
    names = list(cards())
    names += [n for n in BACKBONES.names() if n not in names]
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def _fmt_size(v) -> str:
    return "x".join(str(s) for s in v) if v else "?"


@backbones_app.command("list")
def backbones_list(pattern: Pattern = "*", fmt: Fmt = Format.table, plugin: Plugins = None) -> None:
    """Backbone cards and registered encoders, with dims, params and GMACs.

    Nothing is downloaded or loaded: values come from each card's [measured] table, or from
    building the architecture on PyTorch's meta device (no memory, no weights)."""
    from rich.table import Table

    from ..backbones import describe

    load_plugins(plugin)
    rows = []
    for name in _matching(pattern):
        try:
            rows.append(describe(name).summary())
        except FerBenchError as e:  # one broken user card must not hide the others
            rows.append({"name": name, "error": str(e)})
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    cols = ("name", "family", "input", "dim", "params (M)", "GMACs", "text tower", "weights")
    for col in cols:
        table.add_column(col, overflow="fold",
                         justify="right" if col in ("dim", "params (M)", "GMACs") else "left")
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "[red]error[/red]", "", "", "", "", "", r["error"])
            continue
        gmacs = "?" if r["gmacs"] is None else f"{r['gmacs']:.2f}"
        table.add_row(r["name"], r["family"], _fmt_size(r["input_size"]), str(r["feature_dim"]),
                      f"{r['params_m']:.2f}", gmacs, "yes" if r["text_tower"] else "no",
                      r["weights"])
    console.print(table)


@backbones_app.command("show")
def backbones_show(
    name: Annotated[str, typer.Argument(help="Card name or spec (timm:resnet18@none).")],
    fmt: Fmt = Format.table,
    load: Annotated[bool, typer.Option("--load", help="Build it for real with its weights "
                                       "(checks they are available).")] = False,
    no_pretrained: Annotated[bool, typer.Option(
        "--no-pretrained", help="Build it for real with random init.")] = False,
    plugin: Plugins = None,
) -> None:
    """The full resolved config: preprocessing, dims, params, GMACs, weights.

    By default the architecture is built on the meta device (nothing downloaded); --load
    builds it with its weights, --no-pretrained with random init."""
    from ..backbones import create_backbone

    load_plugins(plugin)
    if load or no_pretrained:
        bb = create_backbone(name, pretrained=not no_pretrained)
    else:
        bb = create_backbone(name, device="meta", use_cache=False)
    cfg = bb.config.to_dict()
    cfg["weights_loaded"] = bool(load and not no_pretrained and cfg["weights"] != "none")
    if fmt is Format.json:
        typer.echo(json.dumps(cfg, indent=2, default=str))
        return
    for k, v in cfg.items():
        console.print(f"[bold]{k:>16}[/bold]  {v}")


@backbones_app.command("measure")
def backbones_measure(
    pattern: Pattern = "*",
    write: Annotated[bool, typer.Option("--write", help="Store the values in each card's "
                                        "[measured] table.")] = False,
    plugin: Plugins = None,
) -> None:
    """Measure cards afresh (meta device: params, feature dim, GMACs at input size)."""
    from rich.table import Table

    from ..backbones import cards, describe
    from ..backbones.cards import write_measured

    load_plugins(plugin)
    card_files = cards()
    table = Table()
    for col in ("name", "input", "dim", "params (M)", "text (M)", "GMACs", "card"):
        table.add_column(col)
    for name in _matching(pattern):
        if name not in card_files:
            continue
        cfg = describe(name, cached=False)
        if write:
            write_measured(card_files[name], cfg)
        table.add_row(name, _fmt_size(cfg.input_size), str(cfg.feature_dim),
                      f"{cfg.params_m:.2f}", f"{cfg.text_params_m:.2f}", f"{cfg.gmacs:.2f}",
                      str(card_files[name]) + (" (written)" if write else ""))
    console.print(table)
