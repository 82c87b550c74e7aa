"""`fer-bench weights ...`: the published weights named by backbone cards ([source] tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FerBenchError
from .common import Fmt, Format, app, console, err_console

weights_app = typer.Typer(help="Published weights of FER/face encoders: list, fetch, verify, "
                          "convert (into $FER_BENCH_CACHE/weights).")
app.add_typer(weights_app, name="weights")

Names = Annotated[list[str] | None, typer.Argument(help="Card names (default: every card with "
                                                   "published weights).")]


def _sources(names: list[str] | None) -> list:
    from ..backbones import cards
    from ..backbones.cards import read_card
    from ..errors import UnknownNameError

    found = {}
    for name, path in cards().items():
        src = read_card(path).weight_source()
        if src is not None:
            found[name] = src
    if not names:
        return list(found.values())
    for n in names:
        if n not in found:
            raise UnknownNameError("card with published weights", n, found,
                                   hint="`fer-bench weights list` shows them")
    return [found[n] for n in names]


def _mb(size: int | None) -> str:
    return f"{size / 1e6:.1f} MB" if size else "?"


@weights_app.command("list")
def weights_list(fmt: Fmt = Format.table) -> None:
    """Each published encoder: source, size, licence, checksum, and whether it is cached."""
    from rich.table import Table

    rows = [{"name": s.name, "file": s.file, "url": s.url, "size": s.size,
             "sha256": s.sha256, "licence": s.licence, "paper": s.paper, "layout": s.layout,
             "direct": s.direct, "cached": s.cached(), "path": str(s.load_path)}
            for s in _sources(None)]
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="published weights (cache: "
                  f"{Path(rows[0]['path']).parent if rows else '?'})", title_justify="left")
    for col in ("card", "file", "size", "licence", "sha256", "cached", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["file"], _mb(r["size"]), r["licence"],
                      r["sha256"][:12] if r["sha256"] else "[yellow]none published[/yellow]",
                      "[green]yes[/green]" if r["cached"] else "no",
                      r["url"] if r["direct"] else f"by hand: {r['url']}")
    console.print(table)


@weights_app.command("fetch")
def weights_fetch(names: Names = None,
                  quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False) -> None:
    """Download into the cache (resuming a partial file), check size and sha256, convert."""
    from ..backbones.download import fetch
    from ..backbones.sources import MissingWeightsError, resolve

    failed = 0
    for src in _sources(names):
        try:
            path = fetch(src, show_progress=not quiet)
            resolve(src)  # timm pickles are converted here, once
            console.print(f"[green]ok[/green] {src.name}: {path}")
        except MissingWeightsError as e:
            failed += 1
            err_console.print(f"[red]missing[/red] {e}")
    if failed:
        raise typer.Exit(1)


@weights_app.command("verify")
def weights_verify(names: Names = None) -> None:
    """Check cached files against the card: ok, unverified (no published sha256), mismatch,
    missing. Exit 1 on a mismatch."""
    from ..backbones.sources import verify

    bad = 0
    for src in _sources(names):
        status = verify(src)
        colour = {"ok": "green", "unverified": "yellow", "mismatch": "red"}.get(status, "dim")
        console.print(f"[{colour}]{status}[/{colour}] {src.name}: {src.path}"
                      + (" (no sha256 published for it)" if status == "unverified" else ""))
        bad += status == "mismatch"
    if bad:
        raise typer.Exit(1)


@weights_app.command("convert")
def weights_convert(
    name: Annotated[str, typer.Argument(help="A card whose release is a pickled timm model "
                                        "(hsemotion_b0), or a .pt file with --arch.")],
    arch: Annotated[str | None, typer.Option(help="timm architecture (for a file).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output .safetensors.")] = None,
) -> None:
    """A whole pickled timm model -> safetensors, never unpickling code (a restricted
    loader that stands inert stubs in for timm/torch classes and refuses anything else)."""
    from ..backbones.convert import convert_timm_pickle

    path = Path(name).expanduser()
    if path.is_file():
        if not arch:
            raise FerBenchError("--arch is needed to convert a file (e.g. tf_efficientnet_b0)")
        dst = out or path.with_suffix(".safetensors")
    else:
        src = _sources([name])[0]
        if src.layout != "timm_pickle":
            raise FerBenchError(f"{name}: its release is a plain state dict; nothing to convert")
        if not src.path.is_file():
            raise FerBenchError(f"{name}: {src.path} is not there (`fer-bench weights fetch "
                                f"{name}`, or put {src.file} there)")
        path, arch, dst = src.path, arch or src.arch, out or src.load_path
    dropped = convert_timm_pickle(path, dst, arch)
    console.print(f"[green]wrote[/green] {dst} (timm {arch}; dropped "
                  f"{', '.join(dropped) or 'nothing'})")
