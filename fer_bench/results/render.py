"""Leaderboard renderers: a rich terminal table, Markdown, CSV and HTML. HTML comes from the
jinja2 templates in templates/ (autoescaped; the report extends the same base page), fed with
the plain view objects below, so no renderer builds markup by hand."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass, field

from ..classes import FEAR_DISGUST
from ..errors import ConfigError
from .columns import (
    FD_COLUMNS,
    FEW_IMAGES,
    TEXT_KEYS,
    cell_text,
    default_columns,
    footnote,
    header,
    is_metric,
    raw_value,
)
from .rows import IDENTITY, METRICS, LeaderboardRow, metric_value

FORMATS = ("table", "md", "csv", "json", "html")


@functools.cache
def environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("fer_bench.results", "templates"),
                              autoescape=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def render_template(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


# ---------------------------------------------------------------------------------- html views


@dataclass(frozen=True)
class HtmlCell:
    cls: str
    text: str
    std: str | None = None       # ± std over seeds
    tied: bool = False           # † on the test metric
    interval: str | None = None  # "lo, hi"


@dataclass(frozen=True)
class HtmlRow:
    cls: str
    cells: list[HtmlCell]


@dataclass(frozen=True)
class HtmlTable:
    heads: list[HtmlCell]
    rows: list[HtmlRow]
    caption: str


@dataclass(frozen=True)
class DatasetCounts:
    """Test images per class of one evaluated dataset, with the classes resting on few."""

    name: str
    splits: str
    counts: dict[str, int]
    few: list[tuple[str, int]] = field(default_factory=list)
    fear_disgust: tuple[str, ...] = tuple(FEAR_DISGUST)


def _html_cell(row: LeaderboardRow, key: str, ci: str, sort: str) -> HtmlCell:
    cls = " ".join((["t"] if key in TEXT_KEYS else []) + (["m-sort"] if key == sort else []))
    v = metric_value(row, key) if is_metric(key) else None
    if v is None:
        return HtmlCell(cls, cell_text(row, key, ci, sort, mark=False))
    std = row.std.get(key)
    interval = (row.ci or {}).get(key)
    show = interval and (ci == "all" or (ci == "sort" and key == sort))
    return HtmlCell(cls, f"{100 * v:.1f}",
                    f"{100 * std:.1f}" if row.n_seeds > 1 and std is not None else None,
                    key == row.test_metric and bool(row.tied_with_top),
                    f"{100 * interval[0]:.1f}, {100 * interval[1]:.1f}" if show else None)


def html_table(rows: list[LeaderboardRow], columns: list[str], ci: str = "sort",
               sort: str = "fear_disgust") -> HtmlTable:
    """The ranked table as a view for the templates (`--format html` and the report)."""
    heads = [HtmlCell((("t" if c in TEXT_KEYS else "") + (" fd" if c in FD_COLUMNS else ""))
                      .strip(), header(c, rows)) for c in columns]
    body = [HtmlRow("top" if r.rank == 1 else "tied" if r.tied_with_top else "",
                    [_html_cell(r, c, ci, sort) for c in columns]) for r in rows]
    return HtmlTable(heads, body, footnote(rows, sort))


def dataset_counts(rows: list[LeaderboardRow]) -> list[DatasetCounts]:
    """What the rows were tested on: split sizes and test images per class for each evaluated
    dataset, with the classes whose recall rests on a handful of images."""
    out = []
    for ds in dict.fromkeys(r.eval_dataset for r in rows):
        row = next((r for r in rows if r.eval_dataset == ds and r.test_counts), None)
        if row is None:
            continue
        counts, sizes = row.test_counts, row.split_sizes or {}
        splits = (", ".join(f"{k} {v:,}" for k, v in sizes.items())
                  or f"test {sum(counts.values()):,}")
        out.append(DatasetCounts(ds, splits, counts,
                                 [(c, n) for c, n in counts.items() if 0 < n < FEW_IMAGES]))
    return out


def html_page(boards: list[tuple[str, HtmlTable]], heading: str) -> str:
    """`--format html`: the tables (titled when there are several views) on one page."""
    return render_template("leaderboard.html.j2", heading=heading, boards=boards)


# ---------------------------------------------------------------------------------- text


def csv_text(rows: list[LeaderboardRow], columns: list[str] | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    if columns:  # chosen columns, raw values (fractions)
        w.writerow(columns)
        for r in rows:
            w.writerow([raw_value(r, c) for c in columns])
        return buf.getvalue()
    classes = list(rows[0].per_class_accuracy) if rows else []
    keys = [*METRICS, *(f"recall:{c}" for c in classes)]
    w.writerow(["rank", *IDENTITY, "n_seeds", *METRICS, *(f"std_{m}" for m in METRICS),
                *(f"recall_{c}" for c in classes), "train_s", "params_m", "gmacs",
                "images_per_s", "train_images_per_s", *(f"ci_lo_{k}" for k in keys),
                *(f"ci_hi_{k}" for k in keys), "test_metric", "p_vs_top", "mcnemar_vs_top",
                "tied_with_top", "p_vs_baseline", "eval_dataset", "cell_ids", "regime",
                "trainable_m"])
    for r in rows:
        ci = r.ci or {}
        w.writerow([r.rank, *(getattr(r, k) for k in IDENTITY), r.n_seeds,
                    *(getattr(r, m) for m in METRICS), *(r.std[m] for m in METRICS),
                    *(r.per_class_accuracy.get(c) for c in classes), r.train_s, r.params_m,
                    r.gmacs, r.images_per_s, r.train_images_per_s,
                    *((ci.get(k) or [None, None])[0] for k in keys),
                    *((ci.get(k) or [None, None])[1] for k in keys),
                    r.test_metric, r.p_vs_top, (r.vs_top or {}).get("mcnemar_p"),
                    r.tied_with_top, r.p_vs_baseline, r.eval_dataset, ";".join(r.cell_ids),
                    r.regime, r.trainable_m])
    return buf.getvalue()


def md_text(rows: list[LeaderboardRow], columns: list[str], title_text: str = "",
            ci: str = "sort", sort: str = "fear_disgust") -> str:
    lines = [f"**{title_text}**\n" if title_text else "",
             "| " + " | ".join(header(c, rows) for c in columns) + " |",
             "|" + "|".join("---" if c in TEXT_KEYS else "---:" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell_text(r, c, ci, sort).replace("|", "\\|") for c in columns)
              + " |" for r in rows]
    lines.append("\n" + footnote(rows, sort))
    return "\n".join(x for x in lines if x)


def render(rows: list[LeaderboardRow], fmt: str, title: str = "",
           columns: list[str] | None = None, ci: str = "sort", sort: str = "fear_disgust") -> str:
    """One leaderboard as Markdown or CSV (`columns` picks raw CSV columns; without, the full
    CSV). The terminal table is `rich_table`; JSON and HTML pages hold every view at once."""
    if fmt == "csv":
        return csv_text(rows, columns)
    if fmt == "md":
        return md_text(rows, columns or default_columns(rows), title, ci, sort)
    raise ConfigError(f"--format {fmt!r}: expected md or csv here")


def rich_table(rows: list[LeaderboardRow], title: str = "", columns: list[str] | None = None,
               ci: str = "sort", sort: str = "fear_disgust"):
    from rich.markup import escape
    from rich.table import Table

    cols = columns or default_columns(rows, compact=True)
    table = Table(title=escape(title) or None, title_justify="left",
                  caption=escape(footnote(rows, sort)) if rows else None,
                  caption_justify="left")
    for key in cols:
        style = "bold magenta" if key == sort else None
        # long titles of unwrapped number columns on two lines keep wide tables on the screen
        title = header(key, rows).replace(" (n=", "\n(n=")
        if key not in TEXT_KEYS and "\n" not in title and len(title) > 10 and " " in title:
            title = "\n".join(title.rsplit(" ", 1))
        table.add_column(title, justify="left" if key in TEXT_KEYS else "right",
                         style=style, no_wrap=key not in TEXT_KEYS or key == "backbone",
                         min_width=min(30, max((len(r.label) for r in rows), default=5))
                         if key == "label" else None)
    for r in rows:
        table.add_row(*(escape(cell_text(r, k, ci, sort)) for k in cols),
                      style="bold" if r.rank == 1 else None)
    return table
