"""`fer-bench report`: one self-contained HTML file for a run (or several merged runs).

Everything is inline: CSS, and the plots as base64 PNG, so the file opens anywhere without a
network; the same PNGs are also written beside it (`<name>_plots/`) for papers and slides."""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import FEAR_DISGUST
from ..errors import FerBenchError
from . import leaderboard as lb
from . import render
from .render import dataset_counts, render_template
from .rows import LeaderboardRow
from .store import CellResult

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c"]
FD_RED = "#cf222e"
FD_SHADE = "#fde7e9"
PAIRS = (("fear", "surprise"), ("disgust", "angry"))  # the confusions LASTED set out to fix


@dataclass
class Figure:
    name: str  # file stem
    png: bytes
    alt: str
    caption: str = ""  # plain text

    @property
    def b64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg: no display needed)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.color": "#e5e7eb",
        "grid.linewidth": 0.7, "axes.axisbelow": True, "figure.dpi": 110,
        "savefig.bbox": "tight", "savefig.pad_inches": 0.12, "legend.frameon": False,
    })
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    _plt().close(fig)
    return buf.getvalue()


def _short(row: LeaderboardRow, width: int = 38) -> str:
    return textwrap.shorten(f"#{row.rank} {row.label}", width, placeholder="…")


def _color_fd_ticks(labels) -> None:
    for t in labels:
        if t.get_text() in FEAR_DISGUST:
            t.set_color(FD_RED)
            t.set_fontweight("bold")


def confusion_figure(row: LeaderboardRow) -> bytes:
    """Row-normalised confusion heatmap with percent and count in each cell."""
    plt = _plt()
    cm = np.asarray(row.confusion, dtype=np.float64)
    classes = row.classes
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(cm.sum(1, keepdims=True) > 0, cm / cm.sum(1, keepdims=True), 0.0)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(0.55 * k + 1.6, 0.5 * k + 1.3))
    ax.grid(False)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            color = "white" if norm[i, j] > 0.55 else "#1f2328"
            ax.text(j, i - 0.12, f"{100 * norm[i, j]:.0f}%", ha="center", va="center",
                    fontsize=7.5, color=color, fontweight="bold" if i == j else "normal")
            ax.text(j, i + 0.22, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                    color=color, alpha=0.85)
    ax.set_xticks(range(k), classes, rotation=40, ha="right")
    ax.set_yticks(range(k), classes)
    _color_fd_ticks(ax.get_xticklabels())
    _color_fd_ticks(ax.get_yticklabels())
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    seeds = f", {row.n_seeds} seeds summed" if row.n_seeds > 1 else ""
    fd = row.fear_disgust
    ax.set_title(textwrap.fill(f"#{row.rank} {row.label}", 44) + "\n"
                 + (f"fear/disgust {100 * fd:.1f}%  " if fd is not None else "")
                 + f"acc {100 * row.accuracy:.1f}%{seeds}", fontsize=8.5)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    return _png(fig)


def recall_figure(rows: list[LeaderboardRow]) -> bytes:
    """Per-class recall of the top rows, with bootstrap intervals; fear and disgust shaded."""
    plt = _plt()
    classes = rows[0].classes
    k, m = len(classes), len(rows)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.25 * k), 3.9))
    width = 0.8 / m
    for j, c in enumerate(classes):
        if c in FEAR_DISGUST:
            ax.axvspan(j - 0.45, j + 0.45, color=FD_SHADE, zorder=0)
    for i, r in enumerate(rows):
        vals = np.array([100 * (r.per_class_accuracy.get(c) or 0.0) for c in classes])
        x = np.arange(k) - 0.4 + width * (i + 0.5)
        err = None
        ci = r.ci or {}
        if all(ci.get(f"recall:{c}") for c in classes):
            lo = np.array([100 * ci[f"recall:{c}"][0] for c in classes])
            hi = np.array([100 * ci[f"recall:{c}"][1] for c in classes])
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.bar(x, vals, width * 0.92, color=PALETTE[i % len(PALETTE)], label=_short(r, 48),
               yerr=err, error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "#444"},
               zorder=2)
    ax.set_xticks(range(k), classes)
    _color_fd_ticks(ax.get_xticklabels())
    ax.set_ylim(0, 105)
    ax.set_ylabel("recall (%)")
    ax.set_xlim(-0.55, k - 0.45)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(3, m), fontsize=8)
    return _png(fig)


def pair_rate(row: LeaderboardRow, src: str, dst: str) -> float | None:
    """Share of `src` test images predicted as `dst` (seeds summed)."""
    cls = row.classes
    if row.confusion is None or src not in cls or dst not in cls:
        return None
    cm = np.asarray(row.confusion)
    support = cm[cls.index(src)].sum()
    return float(cm[cls.index(src), cls.index(dst)] / support) if support else None


def pairs_figure(rows: list[LeaderboardRow]) -> bytes:
    """fear→surprise and disgust→angry confusion rates side by side for each row."""
    plt = _plt()
    n = len(rows)
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * n + 1.2))
    y = np.arange(n)
    h = 0.38
    for i, ((src, dst), color) in enumerate(zip(PAIRS, ("#8172b3", "#dd8452"), strict=True)):
        vals = [pair_rate(r, src, dst) for r in rows]
        v = np.array([100 * x if x is not None else 0.0 for x in vals])
        bars = ax.barh(y + (i - 0.5) * h, v, h * 0.92, color=color, label=f"{src} → {dst}",
                       zorder=2)
        for b, x in zip(bars, vals, strict=True):
            ax.text(b.get_width() + 0.6, b.get_y() + b.get_height() / 2,
                    "n/a" if x is None else f"{100 * x:.1f}%", va="center", fontsize=7)
    ax.set_yticks(y, [_short(r, 44) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("share of the true class's test images (%)")
    ax.grid(axis="y", visible=False)
    top = max([ax.get_xlim()[1], 10.0])
    ax.set_xlim(0, top * 1.12)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


# Eval images/s is left out: on small test sets it mostly measures start-up, not the model.
COST_AXES = (("params_m", "parameters (M)"), ("gmacs", "GMACs"), ("train_s", "train time (s)"))


def pareto_front(points: list[tuple[float, float]], higher_cost_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and score (higher)."""
    front = []
    for i, (c, s) in enumerate(points):
        dominated = False
        for j, (c2, s2) in enumerate(points):
            better_cost = c2 > c if higher_cost_better else c2 < c
            same_cost = c2 == c
            if j != i and s2 >= s and (better_cost or same_cost) and (better_cost or s2 > s):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def pareto_figure(rows: list[LeaderboardRow]) -> bytes | None:
    """Accuracy and fear/disgust against each available cost; Pareto-optimal rows connected."""
    plt = _plt()
    axes_avail = [(k, t) for k, t in COST_AXES  # a cost every row shares says nothing
                  if len({r.value(k) for r in rows if r.value(k) is not None}) >= 2]
    if not axes_avail:
        return None
    ys = [("accuracy", "accuracy (%)"), ("fear_disgust", "fear/disgust recall (%)")]
    nc = len(axes_avail)
    if nc == 1:  # one cost: accuracy and fear/disgust side by side
        fig, grid = plt.subplots(1, 2, figsize=(9.0, 3.6), squeeze=False)
        axs = [[grid[0][0]], [grid[0][1]]]
    else:
        fig, axs = plt.subplots(2, nc, figsize=(4.2 * nc + 0.6, 6.4), squeeze=False)
    fd_all = [100 * (r.fear_disgust or 0) for r in rows]
    norm = plt.Normalize(min(fd_all), max(max(fd_all), min(fd_all) + 1e-6))
    sc = None
    for ci, (ck, ctitle) in enumerate(axes_avail):
        for ri, (yk, ytitle) in enumerate(ys):
            ax = axs[ri][ci]
            pts = [(r, float(r.value(ck)), 100 * float(r.value(yk))) for r in rows
                   if r.value(ck) is not None and r.value(yk) is not None]
            if not pts:
                ax.set_visible(False)
                continue
            xs = np.array([p[1] for p in pts])
            vs = np.array([p[2] for p in pts])
            sc = ax.scatter(xs, vs, c=[100 * (p[0].fear_disgust or 0) for p in pts],
                            cmap="viridis", norm=norm, s=46, edgecolor="white", linewidth=0.8,
                            zorder=3)
            hib = ck in ("images_per_s", "train_images_per_s")
            front = sorted(pareto_front([(p[1], p[2]) for p in pts], hib),
                           key=lambda i: xs[i])
            ax.plot(xs[front], vs[front], "-", color=FD_RED, lw=1.2, alpha=0.7, zorder=2,
                    drawstyle="steps-post" if not hib else "steps-pre",
                    label="Pareto front")
            for i, (r, x, v) in enumerate(pts):
                if i in front or r.rank <= 3:
                    ax.annotate(f"#{r.rank}", (x, v), xytext=(4, 4),
                                textcoords="offset points", fontsize=7.5)
            if xs.max() > 0 and xs.min() > 0 and xs.max() / xs.min() > 20:
                ax.set_xscale("log")
            ax.set_xlabel(ctitle + (" (higher is cheaper)" if hib else ""))
            ax.set_ylabel(ytitle)
            if ri == 0 and ci == 0:
                ax.legend(loc="lower right", fontsize=7.5)
    if sc is not None:
        cbar = fig.colorbar(sc, ax=[a for row in axs for a in row], fraction=0.025, pad=0.02)
        cbar.set_label("fear/disgust recall (%)")
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# The page (templates/report.html.j2)


@dataclass(frozen=True)
class Card:
    key: str
    value: str
    detail: str = ""


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ci_text(row: LeaderboardRow, key: str) -> str:
    iv = (row.ci or {}).get(key)
    return f"95% CI [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]" if iv else ""


def dataset_html(rows: list[LeaderboardRow]) -> str:
    """What the rows were tested on (the report's section), as an HTML fragment."""
    parts = render.environment().get_template("_parts.html.j2").module
    return str(parts.datasets(dataset_counts(rows)))


def _configs(rows: list[LeaderboardRow]) -> list[dict]:
    """Each row's config and its cells (seed, directory, timing, environment), as JSON text."""
    out = []
    for r in rows:
        cells = [{"cell_id": m.cell_id, "seed": m.seed,
                  "dir": str(m.dir) if m.dir is not None else None, "timing": m.timing,
                  "checkpoint_epoch": (m.metrics or {}).get("checkpoint_epoch"), "env": m.env}
                 for m in r.members]
        body = json.dumps({"config": dict(r.members[0].config or {}), "cells": cells},
                          indent=2, default=str)
        out.append({"rank": r.rank, "label": r.label, "cell_ids": ", ".join(r.cell_ids),
                    "json": body})
    return out


def _cards(rows: list[LeaderboardRow], failed: list[CellResult]) -> list[Card]:
    best, sort_key = rows[0], rows[0].sort_key
    best_acc = max(rows, key=lambda r: r.accuracy)
    tied = [r for r in rows[1:] if r.tied_with_top]
    return [
        Card(f"top by {lb.column_title(sort_key)}", _pct(lb.metric_value(best, sort_key)),
             f"{best.label}  {_ci_text(best, sort_key)}"),
        Card("best accuracy", _pct(best_acc.accuracy), f"#{best_acc.rank} {best_acc.label}"),
        Card("rows tied with the top", str(len(tied)),
             (", ".join(f"#{r.rank}" for r in tied) + " · " if tied else "")
             + f"paired bootstrap on {lb.column_title(best.test_metric)}, p ≥ 0.05"),
        Card("cells", f"{sum(len(r.cell_ids) for r in rows)} ok"
             + (f", {len(failed)} failed" if failed else ""),
             f"{len(rows)} rows; datasets: {', '.join(sorted({r.dataset for r in rows}))}"),
    ]


def _figures(rows: list[LeaderboardRow], top: int) -> dict[str, Figure | None]:
    top_rows = rows[:top]
    pareto = pareto_figure(rows)
    return {
        "recall": Figure("recall_per_class", recall_figure(top_rows),  # caption: template
                         "per-class recall of the top cells"),
        "pairs": Figure("fear_disgust_confusions", pairs_figure(rows[:40]),
                        "fear to surprise and disgust to angry confusion rates",
                        "How often fear is called surprise and disgust is called angry "
                        "(lower is better); seeds summed."),
        "pareto": None if pareto is None else Figure(
            "accuracy_vs_cost", pareto, "accuracy versus cost",
            "Each point is a row (colour: fear/disgust recall); the red line joins the "
            "Pareto-optimal rows (nothing cheaper does better)."),
    }


def _write_plots(plot_dir: Path, figures: list[Figure]) -> list[Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in figures:
        p = plot_dir / f"{f.name}.png"
        p.write_bytes(f.png)
        written.append(p)
    return written


def _report_columns(rows: list[LeaderboardRow]) -> list[str]:
    """The default columns with the identity folded into one `model` column."""
    cols = lb.default_columns(rows)
    if "label" not in cols:
        cols = [c for c in cols if c not in ("backbone", "head", "prompts", "text_encoder")]
        cols.insert(1, "label")
    return cols


def build_report(run_dirs: list[Path], output: Path, *, sort: str = "fear_disgust",
                 top: int = 5, max_confusions: int = 24,
                 options: lb.StatsOptions | None = None, baseline: str | None = None) -> dict:
    """Write the HTML report and its PNGs; returns {"html": path, "plots": [paths], "rows": n}."""
    from .. import __version__

    results, dups = lb.load_results(run_dirs)
    rows = lb.build_rows(results, sort, options=options, baseline=baseline)
    if not rows:
        raise FerBenchError(f"no completed cells in {', '.join(map(str, run_dirs))}; nothing "
                            f"to report")
    if top < 1 or max_confusions < 0:
        raise FerBenchError("--top must be >= 1 and --max-confusions >= 0")
    sort_key = rows[0].sort_key
    failed = [r for r in results if not r.ok]
    figures = _figures(rows, top)
    confusions = [Figure(f"confusion_{i:02d}_{r.cell_ids[0]}", confusion_figure(r),
                         f"confusion matrix of {r.label}")
                  for i, r in enumerate(rows[:max_confusions], 1) if r.confusion]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    plot_dir = output.parent / f"{output.stem}_plots"
    written = _write_plots(plot_dir, [f for f in figures.values() if f] + confusions)
    cols = _report_columns(rows)
    own = {r.dataset for r in rows}
    cross = [(view, lb.html_table(lb.build_rows(results, sort, dataset=view, options=options),
                                  cols, "all", sort_key))
             for view in lb.eval_datasets(results) if view not in own]
    page = render_template(
        "report.html.j2", dirs=", ".join(str(d) for d in run_dirs), version=__version__,
        now=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), cards=_cards(rows, failed),
        board=lb.html_table(rows, cols, "all", sort_key), datasets=dataset_counts(rows),
        cross_boards=cross, figures=figures, n_top=len(rows[:top]), confusions=confusions,
        n_rows=len(rows), failed=failed, dups=dups, configs=_configs(rows),
        plot_dir=plot_dir.name, stats_note=lb.footnote(rows, sort_key))
    output.write_text(page, encoding="utf-8")
    return {"html": output, "plots": written, "rows": len(rows)}
