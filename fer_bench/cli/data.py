"""`fer-bench data ...`: datasets."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .common import Fmt, Format, console, data_app, err_console


class SynthFormat(str, Enum):
    fer2013_csv = "fer2013-csv"
    folder = "folder"


SkipBad = Annotated[int | None, typer.Option(
    "--skip-bad", help="Skip (and report) at most N malformed rows/images instead of stopping.")]


def _spec_with(spec: str, **opts: object) -> str:
    """Add options (only datasets read from disk take skip_bad/cache)."""
    from ..data.sources import dataset_entry, with_options

    if not dataset_entry(spec).meta.get("takes_path"):
        return spec
    return with_options(spec, **{k: v for k, v in opts.items() if v is not None})


def _notes(ds) -> list[str]:
    notes = [f"{k}: {ds.meta[k]}" for k in ("format", "source", "pixels", "label_mode",
                                             "eval_label_mode", "test_split", "val_split",
                                             "dropped", "cache") if ds.meta.get(k)]
    return notes


def _warn_skipped(ds) -> None:
    skipped = ds.meta.get("skipped") or []
    if skipped:
        err_console.print(f"[yellow]warning:[/yellow] skipped {len(skipped)} bad row(s):",
                          highlight=False)
        for s in skipped:
            err_console.print(f"  {s}", highlight=False, markup=False)


@data_app.command("list")
def data_list() -> None:
    """Registered datasets (spec: NAME:PATH#key=value,...; see docs/datasets.md)."""
    from ..data import DATASETS

    for e in DATASETS:
        path = ":PATH" if e.meta.get("takes_path") else ""
        console.print(f"[bold]{e.name}[/bold]{path}  {e.doc}", highlight=False)


@data_app.command("stats")
def data_stats(spec: Annotated[str, typer.Argument(help="Dataset spec, e.g. synfer:n=8000 or "
                                                   "fer2013:/data/fer2013.csv")],
               fmt: Fmt = Format.table, skip_bad: SkipBad = None) -> None:
    """Per split, per canonical class image counts (JSON: {dataset, classes, splits})."""
    from rich.table import Table

    from ..data import load_dataset

    ds = load_dataset(_spec_with(spec, skip_bad=skip_bad))
    _warn_skipped(ds)
    stats = {**ds.stats(), "dataset": spec}
    if fmt is Format.json:
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
    for note in _notes(ds):
        console.print(f"  {note}", highlight=False, markup=False)


@data_app.command("verify")
def data_verify(spec: Annotated[str, typer.Argument(help="Dataset spec, e.g. "
                                                    "rafdb:/data/RAF-DB")]) -> None:
    """Check a dataset completely (every row, every image; no cache) and print what was found.
    Exit 1 when any row or image is malformed."""
    from ..data import load_dataset
    from ..data.synfer import FER2013_COUNTS

    full = _spec_with(spec, skip_bad=10**9, cache=False)
    ds = load_dataset(full, reuse=False)
    console.print(f"[bold]{spec}[/bold]: {len(ds.classes)} classes ({', '.join(ds.classes)})",
                  highlight=False)
    for note in _notes(ds):
        if not note.startswith("cache"):
            console.print(f"  {note}", highlight=False, markup=False)
    stats = ds.stats()
    empty = []
    for s, counts in stats["splits"].items():
        sp = ds.splits[s]
        shape = "x".join(map(str, sp.images.shape[1:]))
        soft = " + soft targets" if sp.targets is not None else ""
        console.print(f"  {s}: {len(sp)} images ({shape} uint8{soft}): "
                      + ", ".join(f"{c} {n}" for c, n in counts.items()), highlight=False)
        empty += [f"{s}/{c}" for c, n in counts.items() if n == 0]
    if empty:
        console.print(f"  [yellow]no images for[/yellow] {', '.join(empty)}", highlight=False)
    if ds.name == "fer2013":
        official = {s: dict(zip(ds.classes, v, strict=True)) for s, v in FER2013_COUNTS.items()}
        same = all(stats["splits"].get(s) == official[s] for s in official)
        console.print("  counts " + ("match the official FER2013 release" if same else
                                     "differ from the official FER2013 release (35,887 images)"))
    problems = ds.meta.get("skipped") or []
    if problems:
        console.print(f"[red]{len(problems)} problem(s):[/red]")
        for p in problems:
            console.print(f"  {p}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print("[green]ok[/green]: every row and image is well-formed")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="Output file (fer2013-csv) or directory (folder).")],
    fmt: Annotated[SynthFormat, typer.Option(
        "--format", help="fer2013.csv, or train/ test/ class folders.")] = SynthFormat.fer2013_csv,
    n: Annotated[int, typer.Option(min=500, help="Number of images.")] = 35887,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Write SynFER in a real on-disk format (fer2013.csv, or train/ test/ class folders)."""
    from ..data import synfer

    ds = synfer.generate(n=n, seed=seed)
    if fmt is SynthFormat.fer2013_csv:
        path = out / "fer2013.csv" if out.is_dir() else out
        synfer.write_fer2013_csv(ds, path)
    else:
        path = synfer.write_folder(ds, out)
    console.print(f"wrote {n} SynFER images (seed {seed}) to {path}")
