"""`fer-bench bench`: training and inference speed, memory and MFU per backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .common import Fmt, Format, app, console, csv_list, load_plugins


@app.command("bench")
def bench(
    backbones: Annotated[str, typer.Argument(help="Comma-separated backbone names or specs "
                                             "(cards, timm:NAME, open_clip:MODEL@TAG, ...).")],
    head: Annotated[str, typer.Option(help="Head on top (linear, lasted, clip, ...).")] = "linear",
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size.")] = 64,
    train: Annotated[bool, typer.Option("--train", help="Only training steps.")] = False,
    infer: Annotated[bool, typer.Option("--infer", help="Only inference.")] = False,
    steps: Annotated[int, typer.Option(help="Timed steps (after as many warm-up steps).")] = 10,
    image_size: Annotated[int, typer.Option(help="Input size; 0: the backbone's own.")] = 0,
    amp: Annotated[str, typer.Option(help="auto | bf16 | fp16 | off")] = "auto",
    regime: Annotated[str, typer.Option(help="Which towers train (full, image, ...).")] = "full",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    pretrained: Annotated[bool, typer.Option(
        "--pretrained/--random", help="Load pretrained weights (speed does not depend on "
        "them; random init needs no download).")] = False,
    fmt: Fmt = Format.table,
    out: Annotated[Path | None, typer.Option(help="Also write the rows as JSON here (the "
                                             "leaderboard's --bench input).")] = None,
    plugin: Annotated[list[Path] | None, typer.Option(
        "--plugin", help="Python file registering backbones (repeatable).")] = None,
) -> None:
    """Samples/s, step time, parameters, GMACs, peak memory and model FLOPs utilisation.

    Training runs through fer-bench's own training loop on in-memory 48x48 faces (one warm-up
    epoch, one timed); MFU is measured FLOPs per second over the matmul peak this
    machine reaches (BLAS or, on the CPU, oneDNN, whichever is faster) in the same run and
    precision, sampled before and after each timed mode; the best sample counts, and a
    machine too noisy to trust is flagged (`?`)."""
    from ..train.engine import pick_device
    from ..train.throughput import MODES, BenchOptions, PeakMeter, bench_backbone

    load_plugins(plugin)
    if batch < 1 or steps < 1:
        raise ConfigError("--batch and --steps must be >= 1")
    if train and infer:
        raise ConfigError("--train and --infer together are the default (both); give one")
    modes = ("train",) if train else ("infer",) if infer else MODES
    opts = BenchOptions(head=head, batch=batch, steps=steps, image_size=image_size, amp=amp,
                        device=device, regime=regime, pretrained=pretrained)
    meter = PeakMeter(pick_device(device))
    rows = []
    for spec in csv_list(backbones) or []:
        with console.status(f"benchmarking {spec} ..."):
            rows += [r.to_dict() for r in bench_backbone(spec, modes, opts, meter)]
    if out is not None:
        from ..atomic import write_json_atomic

        write_json_atomic(out, rows)
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows)


def _print_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="fer-bench bench")
    cols = [("backbone", "backbone"), ("mode", "mode"), ("batch", "batch"),
            ("image_size", "px"), ("amp", "amp"), ("samples_per_s", "samples/s"),
            ("step_ms", "step ms"), ("params_m", "params (M)"), ("gmacs", "GMACs"),
            ("peak_mem_mb", "peak MB"), ("mfu", "MFU"), ("peak_tflops", "peak TFLOP/s")]
    for _, title in cols:
        table.add_column(title, justify="left" if title in ("backbone", "mode", "amp")
                         else "right")
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r[key]
            cells.append("-" if v is None else mfu_text(r) if key == "mfu" else str(v))
        table.add_row(*cells)
    console.print(table)
    noisy = [r for r in rows if r.get("mfu_noisy")]
    if noisy:
        spread = max(r.get("peak_spread", 0.0) for r in noisy)
        console.print(f"[yellow]? MFU not trustworthy here:[/yellow] the machine was too noisy "
                      f"(matmul peak samples around the timed steps differed by up to "
                      f"{spread:.0%}, or a step outran every peak sample; such MFU is capped "
                      "at 100%). Re-run on a quiet machine.")


def mfu_text(row: dict) -> str:
    """MFU as printed: never above 100%, and marked `?` when the machine was too noisy."""
    return f"{min(row['mfu'], 1.0):.1%}" + ("?" if row.get("mfu_noisy") else "")
