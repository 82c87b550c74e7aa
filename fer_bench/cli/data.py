"""`fer-bench data ...`: datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FerBenchError
from .common import Fmt, console, data_app


@data_app.command("list")
def data_list() -> None:
    """Registered datasets."""
    from ..data import DATASETS

    for e in DATASETS:
        console.print(f"[bold]{e.name}[/bold]  {e.doc}")


@data_app.command("stats")
def data_stats(spec: Annotated[str, typer.Argument(help="Dataset spec, e.g. synfer:n=8000")],
               fmt: Fmt = "table") -> None:
    """Per split, per canonical class image counts."""
    from rich.table import Table

    from ..data import load_dataset

    stats = load_dataset(spec).stats()
    if fmt == "json":
        typer.echo(json.dumps(stats, indent=2))
        return
    table = Table(title=f"{spec}", title_justify="left")
    table.add_column("class")
    for s in stats["splits"]:
        table.add_column(s, justify="right")
    for c in stats["classes"]:
        table.add_row(c, *(str(stats["splits"][s][c]) for s in stats["splits"]))
    table.add_row("total", *(str(sum(v.values())) for v in stats["splits"].values()),
                  style="bold")
    console.print(table)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="Output file (fer2013-csv) or directory (folder).")],
    fmt: Annotated[str, typer.Option("--format", help="fer2013-csv | folder")] = "fer2013-csv",
    n: Annotated[int, typer.Option(help="Number of images.")] = 35887,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Write SynFER in a real on-disk format (fer2013.csv, or train/ test/ class folders)."""
    from ..data import synfer

    if n < 500:
        raise FerBenchError("--n must be at least 500")
    ds = synfer.generate(n=n, seed=seed)
    if fmt == "fer2013-csv":
        path = out / "fer2013.csv" if out.is_dir() else out
        synfer.write_fer2013_csv(ds, path)
    elif fmt == "folder":
        path = synfer.write_folder(ds, out)
    else:
        raise FerBenchError(f"--format {fmt!r}: expected fer2013-csv or folder")
    console.print(f"wrote {n} SynFER images (seed {seed}) to {path}")


