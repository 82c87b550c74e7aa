"""`fer-bench run`: a matrix with a progress display, then its leaderboard."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FerBenchError
from .common import Format, app, console, csv_list, err_console, load_plugins


class Executor(str, Enum):
    local = "local"
    ray = "ray"
    slurm = "slurm"


AXES, TRAINING, OUTPUT, CLUSTERS = "Axes", "Training", "Output", "Clusters"


def _opt(*names: str, panel: str, metavar: str | None = None, **kw):
    return typer.Option(*names, rich_help_panel=panel, metavar=metavar, **kw)


@app.command()
def run(
    # -- the matrix: what is compared --
    benchmark: Annotated[str | None, _opt(
        "--benchmark", "-b", panel=AXES, metavar="FILE", help="Benchmark TOML (path or name "
        "in benchmarks/). Default: demo when no axis flag is given.")] = None,
    backbones: Annotated[str | None, _opt(
        "--backbones", panel=AXES, metavar="LIST", help="Comma-separated backbones (cards, "
        "timm:NAME, open_clip:MODEL@TAG).")] = None,
    prompts: Annotated[str | None, _opt("--prompts", panel=AXES, metavar="LIST",
                                        help="Comma-separated prompt sets.")] = None,
    heads: Annotated[str | None, _opt("--heads", panel=AXES, metavar="LIST",
                                      help="Comma-separated heads.")] = None,
    text_encoders: Annotated[str | None, _opt(
        "--text-encoders", "--text-encoder", panel=AXES, metavar="LIST",
        help="Comma-separated text encoders (default: the backbone's paired tower, "
        "else minilm).")] = None,
    dataset: Annotated[str | None, _opt(
        "--dataset", "--datasets", panel=AXES, metavar="LIST",
        help="Comma-separated dataset specs (synfer, synfer:n=8000, fer2013:PATH).")] = None,
    seeds: Annotated[str | None, _opt("--seeds", panel=AXES, metavar="LIST",
                                      help="Comma-separated integer seeds.")] = None,
    # -- training --
    epochs: Annotated[int | None, _opt("--epochs", panel=TRAINING, metavar="N",
                                       help="Training epochs.")] = None,
    batch_size: Annotated[int | None, _opt("--batch-size", panel=TRAINING, metavar="N",
                                           help="Batch size.")] = None,
    lr: Annotated[float | None, _opt("--lr", panel=TRAINING, metavar="LR",
                                     help="Learning rate.")] = None,
    train: Annotated[str | None, _opt(
        "--train", panel=TRAINING, metavar="REGIME",
        help="Which towers train, and how: full | image | text | frozen | partial:N | "
        "lora:r=R[,OPTS] | adapter[:OPTS] | vpt:N. LoRA OPTS: alpha=A, dropout=P, "
        "targets=attn|mlp|conv|all|NAME+NAME, tower=image|text|both; adapter OPTS: dim=D, "
        "ratio=A, on=image|text|both (fer_bench/adaptation/spec.py).")] = None,
    image_size: Annotated[int | None, _opt(
        "--image-size", panel=TRAINING, metavar="PX",
        help="Resize inputs to this size (backbones without a fixed input size).")] = None,
    settings: Annotated[list[str] | None, _opt(
        "--set", panel=TRAINING, metavar="KEY=VALUE",
        help="Any training setting in TOML syntax, repeatable: --set weight_decay=0.05 "
        "--set amp=off --set balance=sampler.")] = None,
    no_pretrained: Annotated[bool, _opt(
        "--no-pretrained", panel=TRAINING,
        help="Random init for every backbone (recorded in results).")] = False,
    device: Annotated[str | None, _opt("--device", panel=TRAINING, metavar="DEVICE",
                                       help="auto | cpu | cuda | cuda:N")] = None,
    plugin: Annotated[list[Path] | None, _opt(
        "--plugin", panel=TRAINING, metavar="FILE",
        help="Python file registering backbones/heads/datasets (repeatable).")] = None,
    # -- output --
    out: Annotated[Path | None, _opt("--out", panel=OUTPUT, metavar="DIR",
                                     help="Output directory (default runs/<name>).")] = None,
    dry_run: Annotated[bool, _opt(
        "--dry-run/--no-dry-run", panel=OUTPUT,
        help="Print the plan (cells, configs, cost estimates); load and train nothing.")
    ] = False,
    fmt: Annotated[Format, _opt("--format", panel=OUTPUT, help="Dry-run output.")
                   ] = Format.table,
    rerun: Annotated[bool, _opt("--rerun/--no-rerun", panel=OUTPUT,
                                help="Re-run cells that already have a result.")] = False,
    quiet: Annotated[bool, _opt("--quiet", "-q", panel=OUTPUT, help="No progress display.")
                     ] = False,
    plain: Annotated[bool, _opt(
        "--plain", panel=OUTPUT,
        help="Plain log lines instead of the live display (batch jobs).")] = False,
    keep_checkpoints: Annotated[bool, _opt(
        "--keep-checkpoints", panel=OUTPUT, help="Save each cell's best-on-validation weights "
        "(cells/<id>/checkpoint.safetensors).")] = False,
    # -- where the cells run (fer_bench/executors, docs/clusters.md) --
    executor: Annotated[Executor, _opt("--executor", panel=CLUSTERS,
                                       help="Where the cells run.")] = Executor.local,
    isolate: Annotated[bool, _opt("--isolate", panel=CLUSTERS,
                                  help="local: each cell in its own subprocess.")] = False,
    gpus_per_cell: Annotated[float, _opt("--gpus-per-cell", panel=CLUSTERS, metavar="N",
                                         help="ray: GPUs per cell (0.5 packs two).")] = 0.0,
    cpus_per_cell: Annotated[float, _opt("--cpus-per-cell", panel=CLUSTERS, metavar="N",
                                         help="ray/slurm: CPUs per cell.")] = 1.0,
    ray_address: Annotated[str | None, _opt(
        "--ray-address", panel=CLUSTERS, metavar="ADDR",
        help="ray: cluster address (default: start a local instance).")] = None,
    max_retries: Annotated[int, _opt("--max-retries", panel=CLUSTERS, metavar="N",
                                     help="ray: retries of a failed cell.")] = 2,
    slurm_partition: Annotated[str | None, _opt("--slurm-partition", panel=CLUSTERS,
                                                metavar="NAME", help="slurm: partition.")
                               ] = None,
    slurm_time: Annotated[str, _opt("--slurm-time", panel=CLUSTERS, metavar="HH:MM:SS",
                                    help="slurm: time limit per cell.")] = "24:00:00",
    slurm_mem: Annotated[str | None, _opt("--slurm-mem", panel=CLUSTERS, metavar="SIZE",
                                          help="slurm: memory per cell (64G).")] = None,
    slurm_gpus: Annotated[int, _opt("--slurm-gpus", panel=CLUSTERS, metavar="N",
                                    help="slurm: GPUs per cell.")] = 1,
    slurm_array_parallelism: Annotated[int, _opt(
        "--slurm-array-parallelism", panel=CLUSTERS, metavar="N",
        help="slurm: cells running at once.")] = 64,
    shard: Annotated[str | None, _opt(
        "--shard", panel=CLUSTERS, metavar="I/N",
        help="Run only shard I of N (I from 0): deterministic, disjoint, complete.")] = None,
    nproc: Annotated[int, _opt(
        "--nproc", panel=CLUSTERS, metavar="N",
        help="Run each cell on N processes/GPUs (relaunches under torchrun, DDP).")] = 1,
) -> None:
    """Run a backbone x prompt x head x seed matrix and print its leaderboard.

    [b]fer-bench run[/b] runs the demo; [b]fer-bench run -b FILE --dry-run[/b] shows a plan
    and its cost; axis flags replace a benchmark file's axes, training flags its \\[train]."""
    from ..plan import expand, train_config

    load_plugins(plugin)
    bench = _benchmark(benchmark, {"backbones": backbones, "prompts": prompts, "heads": heads,
                                   "text_encoders": text_encoders, "datasets": dataset}, seeds)
    flags = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "regime": train,
             "image_size": image_size, "device": device}
    flags = {k: v for k, v in flags.items() if v is not None} | parse_settings(settings or [])
    if no_pretrained:
        flags["pretrained"] = False
    if "regime" in flags:  # --train / --set regime=...: one regime for every cell
        bench.regimes = None
    bench.train = train_config(flags, "command line", base=bench.train)
    bench.explicit |= set(flags)
    out = out or Path("runs") / bench.name

    # Executors (docs/clusters.md): the shard, torchrun, and cells run in other processes.
    from ..executors import ExecOptions, all_plugins
    from . import executors as ex

    cells = ex.select_shard(expand(bench), shard)
    executor_name, fmt_name = Executor(executor).value, Format(fmt).value
    opts = ExecOptions(executor_name, isolate, cpus_per_cell, gpus_per_cell, ray_address,
                       max_retries, slurm_partition, slurm_time, slurm_mem, slurm_gpus,
                       slurm_array_parallelism, all_plugins(plugin))
    opts.validate()
    if dry_run:
        _dry_run(cells, out, fmt_name, bench, opts)
        return
    if executor_name == "local" and not ex.under_torchrun():
        _preflight_weights(cells)  # before any work: every missing weight once, then stop
    ex.relaunch(nproc, opts)
    keep = keep_checkpoints or bench.keep_checkpoints
    if ex.under_torchrun():  # one cell across ranks: rank 0 runs the matrix, the rest follow
        ex.on_ranks(lambda: _run_with_progress(cells, out, rerun, quiet, bench.name, keep,
                                               plain), bench.train.device)
    elif executor_name != "local" or isolate:
        print_summary(cells, out, ex.run_and_report(cells, out, opts, rerun, quiet), bench.name,
                      executor_name)
    else:
        _run_with_progress(cells, out, rerun, quiet, bench.name, keep, plain)


def _benchmark(benchmark: str | None, axis_flags: dict[str, str | None], seeds: str | None):
    """The benchmark file (demo when no axis is given) with the axes the flags replace."""
    from ..plan import Benchmark, find_benchmark, load_benchmark

    axes = {axis: csv_list(v) for axis, v in axis_flags.items()}
    if seeds:
        try:
            axes["seeds"] = [int(s) for s in csv_list(seeds) or []]
        except ValueError:
            raise FerBenchError(f"--seeds {seeds!r}: expected comma-separated integers") from None
    if benchmark is None and not axes["backbones"]:
        benchmark = "demo"
    bench = load_benchmark(find_benchmark(benchmark)) if benchmark else Benchmark()
    for axis, values in axes.items():
        if values is not None:
            if not values:
                raise FerBenchError(f"--{axis.replace('_', '-')} is empty")
            setattr(bench, axis, values)
    if not bench.backbones:
        raise FerBenchError("no backbones: pass --backbones or a --benchmark file")
    return bench


def _dry_run(cells, out: Path, fmt: str, bench, opts) -> None:
    """The plan, checked; nothing loaded. Data may live on the machine that will run it, so
    paths are only warned about."""
    from ..run import validate_cells
    from . import executors as ex

    validate_cells(cells, check_paths=False)
    _warn_missing_paths(cells)
    _print_plan(cells, out, fmt)
    if fmt != "json":
        _print_weights_plan(cells, bench)
    ex.print_dry_run(cells, out, opts, bench.name, fmt)


def parse_settings(items: list[str]) -> dict:
    """`--set KEY=VALUE` -> {KEY: value}; VALUE is TOML (numbers, true/false, "strings", [lists]),
    and a bare word is taken as a string. Keys and types are checked like a [train] table."""
    import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FerBenchError(f"--set {item!r}: expected KEY=VALUE, e.g. --set weight_decay=0.05")
        key = key.strip().removeprefix("train.")
        try:
            out[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()  # a bare word: balance=sampler
    return out


def _print_weights_plan(cells, bench) -> None:
    """Per backbone: the weights a run loads (and whether they are here), input size, and the
    lr / warmup its cells train with, with where each came from."""
    from rich.table import Table

    from ..backbones import describe
    from ..backbones.preflight import missing_weights
    from ..plan import card_defaults

    table = Table(title="backbones: weights and training defaults", title_justify="left")
    for col in ("backbone", "weights", "here", "input", "lr", "warmup", "lr from"):
        table.add_column(col)
    for bb in dict.fromkeys(c.backbone for c in cells):
        cfg = describe(bb)
        train = next(c.train for c in cells if c.backbone == bb)
        card = card_defaults(bb)[0] if train.pretrained else {}
        origin = ("benchmark/flags" if "lr" in bench.explicit else
                  "card" if "lr" in card else "fer-bench default")
        random = not train.pretrained or cfg.weights == "none"
        here = "-" if random else (
            "no" if missing_weights([bb], is_online=False) else "yes")
        weights = "random init (from scratch)" if random else cfg.weights
        if cfg.weights == "published":
            from ..backbones import parse_spec
            from ..backbones.cards import read_card

            weights = "published: " + read_card(parse_spec(bb).card).weight_source().file
        table.add_row(bb, weights, here, "x".join(map(str, cfg.input_size)), f"{train.lr:g}",
                      f"{train.warmup_epochs:g}", origin)
    console.print(table)


def _preflight_weights(cells) -> None:
    """Resolve every cell's pretrained weights; published ones are fetched when online. Any
    still missing: one message per file, exit 2, nothing trained and no result written."""
    from ..backbones.download import fetch
    from ..backbones.preflight import missing_weights, online
    from ..plan import cell_text_encoders

    pretrained = [c.backbone for c in cells if c.train.pretrained]
    missing = missing_weights(pretrained, cell_text_encoders(cells))
    if missing and any(m.source is not None for m in missing) and online():
        for m in [m for m in missing if m.source is not None and m.source.direct]:
            fetch(m.source)
        missing = missing_weights(pretrained, cell_text_encoders(cells))
    if not missing:
        return
    for m in missing:
        err_console.print(f"[bold red]missing weights:[/bold red] {m}")
    err_console.print(f"{len(missing)} pretrained weight file(s) missing for {len(cells)} cells; "
                      "nothing was run. (`fer-bench weights list` shows the published ones.)")
    raise typer.Exit(2)


def _warn_missing_paths(cells) -> None:
    from ..data.sources import dataset_path, split_spec

    for spec in dict.fromkeys(c.dataset for c in cells):
        if not split_spec(spec)[1]:  # no path given: nothing to look for here
            continue
        path = dataset_path(spec)
        if path is not None and not path.exists():
            err_console.print(f"[yellow]warning:[/yellow] dataset {spec!r}: {path} does "
                              "not exist here (a real run checks it before any work)")


def _print_plan(cells, out: Path, fmt: str) -> None:
    """The plan without loading weights or data: cells, resolved configs, cost estimates, and
    per cell the input size, precision, weights and (where cells differ) the schedule."""
    from dataclasses import asdict

    from ..plan import resolve
    from ..run import is_complete
    from ..train.estimate import estimate
    from . import plan_table as pt

    varying = pt.varying_schedule_keys(cells)
    rows = []
    for c in cells:
        rc = resolve(c)
        est = estimate(rc)
        rows.append({"cell_id": c.cell_id, "status": "done" if is_complete(out, c) else "to run",
                     "config": c.config(), "estimate": asdict(est), "plan": pt.plan_fields(rc),
                     "_estimate_row": est.row(), "_text": pt.text_encoder_text(rc)})
    if fmt == "json":
        typer.echo(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")}
                               for r in rows], indent=2))
        return
    table = _plan_table(cells, rows, out, varying)
    if not console.is_terminal:  # a file or pipe gets every column whole, however wide
        from rich.console import Console

        Console(width=max(Console(width=1000).measure(table).maximum, 160)).print(table)
    else:
        console.print(table)
    console.print("px = input size; state GB = fp32 weights + gradients + optimizer moments of "
                  "what trains; act GB = activations saved for backward at batch_size (halved "
                  "under amp); peak GB = estimated peak (fer_bench/train/estimate.py); GMACs = "
                  "image encoder forward per image at its card's input size; precision as "
                  "resolved on "
                  "this machine's device.")
    configs = [asdict(c.train) for c in cells]  # only what every cell shares is "shared"
    shared = {k: v for k, v in configs[0].items() if all(t[k] == v for t in configs)}
    console.print("shared training config: " + json.dumps(shared))


def _plan_table(cells, rows: list[dict], out: Path, varying: tuple[str, ...]):
    """The dry-run table; columns with one value across several cells go into the caption."""
    from rich.table import Table

    from . import plan_table as pt

    def plan(key):
        return lambda c, r: r["plan"][key]

    columns = [("cell id", lambda c, r: c.cell_id), ("backbone", lambda c, r: c.backbone),
               ("head", lambda c, r: c.head), ("prompts", lambda c, r: c.prompts or "-"),
               ("text encoder", lambda c, r: r["_text"]),
               ("dataset", lambda c, r: c.dataset), ("regime", lambda c, r: c.train.regime),
               ("seed", lambda c, r: str(c.seed)),
               ("px", plan("input_size")), ("precision", plan("precision")),
               *([("schedule", lambda c, r: pt.schedule_text(c.train, varying))]
                 if varying else []),
               ("weights", plan("weights"))]
    columns += [(t, lambda c, r, i=i: r["_estimate_row"][i])
                for i, t in enumerate(("params M", "train M", "GMACs/img", "state GB",
                                          "act GB", "peak GB"))]
    columns.append(("status", lambda c, r: "done (skip)" if r["status"] == "done"
                    else "to run"))
    values = {t: [get(c, r) for c, r in zip(cells, rows, strict=True)] for t, get in columns}
    constant = {t: v[0] for t, v in values.items() if len(cells) > 1 and len(set(v)) == 1
                and t in ("prompts", "text encoder", "dataset", "regime", "seed", "px",
                          "precision", "weights")}
    table = Table(title=f"{len(cells)} cells -> {out}", title_justify="left",
                  caption=("all cells: " + ", ".join(f"{t} {v}" for t, v in constant.items()))
                  if constant else None, caption_justify="left")
    shown = [t for t, _ in columns if t not in constant]
    numeric = ("seed", "px", "params M", "train M", "GMACs/img", "state GB", "act GB",
               "peak GB")
    for t in shown:
        table.add_column(t, justify="right" if t in numeric else "left",
                         no_wrap=t == "cell id")  # ids are copied from here
    for i in range(len(cells)):
        table.add_row(*(values[t][i] for t in shown))
    return table


def _run_with_progress(cells, out: Path, rerun: bool, quiet: bool, name: str,
                       keep_checkpoints: bool = False, plain: bool = False) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..locks import describe_owner
    from ..run import run_plan

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        disable=quiet or plain, transient=False)
    matrix = progress.add_task("[bold]matrix", total=len(cells))
    current = progress.add_task("", total=1, visible=False)

    def start(cell, i):
        progress.update(current, description=f"  {cell.label}", completed=0, total=1,
                        visible=True)

    def step(info):
        if plain and not quiet and info["step"] == info["steps"]:  # batch jobs: epoch lines
            console.print(f"  epoch {info['epoch']}/{info['epochs']} loss {info['loss']:.4f}",
                          highlight=False)
        progress.update(current, total=info["steps"], completed=info["step"],
                        description=f"  epoch {info['epoch']}/{info['epochs']} "
                                    f"loss {info['loss']:.3f}")

    def end(cell, result):
        progress.advance(matrix)
        if result["status"] != "ok":
            progress.console.print(f"[red]failed[/red] {cell.label}: {result['error']}")
        elif not quiet:
            m = result["metrics"]
            progress.console.print(
                f"[green]done[/green] {cell.label}: fear/disgust "
                f"{100 * (m['fear_disgust'] or 0):.1f}  accuracy {100 * m['accuracy']:.1f}  "
                f"({result['timing']['train_s']:.0f} s)")

    with progress:
        summary = run_plan(
            cells, out, rerun=rerun, on_cell_start=start, on_progress=step,
            on_cell_end=lambda c, r: end(c, r), keep_checkpoints=keep_checkpoints,
            on_wait=lambda c, owner: progress.console.print(
                f"[yellow]waiting[/yellow] {c.label}: running in {describe_owner(owner)}"))
        progress.update(matrix, completed=len(cells))
        progress.update(current, visible=False)
    print_summary(cells, out, summary, name)


def print_summary(cells, out: Path, summary, name: str, where: str = "") -> None:
    """The leaderboard of this run's cells and one line of counts; exit 1 when a cell failed.
    Shared by every executor, so a run reads the same wherever its cells ran."""
    from ..results.leaderboard import build_rows, load_results, rich_table

    loaded, _ = load_results([out])  # with predictions, so rows carry p-values vs the top
    ids = {c.cell_id for c in cells}
    results = [r for r in loaded if r.cell_id in ids]
    console.print(rich_table(build_rows(results), f"{name}: ranked by fear/disgust (test, %)"))
    elsewhere = len(getattr(summary, "elsewhere", []))
    console.print(f"{len(summary.ran)} ran, {len(summary.skipped)} skipped (already complete"
                  + (f", {elsewhere} by another process" if elsewhere else "")
                  + f"), {len(summary.failed)} failed; results in {out}/cells/"
                  + (f" ({where})" if where else ""))
    if summary.failed:
        for cid, err in summary.failed.items():
            err_console.print(f"[red]failed[/red] {cid}: {err}")
        raise typer.Exit(1)
