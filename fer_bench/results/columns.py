"""Leaderboard columns: the keys `--columns` takes, their titles, the default choice, and
each cell as text (metrics in %, ± std over seeds, [interval], † when tied with the top), with
the caption that says what the numbers mean."""

from __future__ import annotations

from ..errors import ConfigError
from .rows import BENCH, COST, IDENTITY, METRICS, LeaderboardRow, metric_value, normalise_key

TITLES = {"rank": "#", "label": "model", "backbone": "backbone", "head": "head",
          "prompts": "prompts", "text_encoder": "text encoder", "dataset": "dataset",
          "eval_dataset": "eval dataset", "fear_disgust": "fear/disgust",
          "accuracy": "accuracy", "balanced_accuracy": "bal. acc", "macro_f1": "macro-F1",
          "n_seeds": "seeds", "params_m": "params (M)", "trainable_m": "trainable (M)",
          "regime": "regime", "gmacs": "GMACs",
          "train_s": "train (s)", "images_per_s": "img/s",
          "train_images_per_s": "train img/s", "bench_train_per_s": "bench train/s",
          "bench_infer_per_s": "bench infer/s", "bench_mfu": "MFU", "p_vs_top": "p vs top",
          "p_vs_baseline": "p vs base", "mcnemar_vs_top": "McNemar p", "cell_id": "cell",
          "precision": "precision"}
FD_COLUMNS = ("recall:fear", "recall:disgust")
TEXT_KEYS = {*IDENTITY, "label", "eval_dataset", "cell_id", "precision", "regime"}
DEFAULT_COLUMNS = ["rank", "backbone", "head", "prompts", "text_encoder", "dataset",
                   "fear_disgust", "recall:fear", "recall:disgust", "accuracy",
                   "balanced_accuracy", "macro_f1", "n_seeds"]


def column_title(key: str) -> str:
    return TITLES.get(key, key[7:] if key.startswith("recall:") else key)


def header(key: str, rows: list[LeaderboardRow]) -> str:
    """A column's title in a rendered table: a recall column also says how many test images
    it rests on (`disgust (n=9)`) when every row was tested on the same number."""
    title = column_title(key)
    if key.startswith("recall:"):
        counts = {(r.test_counts or {}).get(key[7:]) for r in rows}
        if len(counts) == 1 and None not in counts:
            title += f" (n={counts.pop()})"
    return title


def constant_identity(rows: list[LeaderboardRow]) -> dict[str, str]:
    """Identity columns with one value across several rows (said once in the caption instead)."""
    if len(rows) < 2:
        return {}
    out = {}
    for k in ("prompts", "text_encoder", "dataset"):
        values = {getattr(r, k) for r in rows}
        if len(values) == 1:
            out[k] = next(iter(values))
    return out


def default_columns(rows: list[LeaderboardRow], compact: bool = False) -> list[str]:
    """Identity (one `model` column when compact, for the terminal), metrics, seeds, the costs
    the results have (eval images/s is opt-in: on small test sets it mostly measures start-up),
    and the p-values when tested."""
    same = constant_identity(rows)
    cols = [c for c in DEFAULT_COLUMNS if c not in same]
    if any(r.regime not in (None, "full") for r in rows):
        cols.insert(cols.index("fear_disgust"), "regime")  # (the compact label carries it)
    costs = ["params_m", "trainable_m", "gmacs", "train_s"]
    if compact:  # fits a 160-column terminal; everything else is a --columns away
        cols = ["rank", "label", *(c for c in cols if c not in IDENTITY[:-1]
                                   and c not in ("rank", "balanced_accuracy", "regime"))]
        costs = ["params_m", "trainable_m"]
    cols += [k for k in costs if any(r.value(k) is not None for r in rows)]
    cols += [k for k in BENCH if any(r.value(k) is not None for r in rows)]  # when --bench given
    if any(r.p_vs_top is not None for r in rows):
        cols.append("p_vs_top")
    if any(r.baseline is not None for r in rows):
        cols.append("p_vs_baseline")
    return cols


def parse_columns(spec: str | None, rows: list[LeaderboardRow], compact: bool = False) -> list[str]:
    """`--columns`: comma-separated keys; a leading `+` adds to the defaults (`+gmacs`)."""
    if not spec:
        return default_columns(rows, compact)
    items = [c.strip() for c in spec.split(",") if c.strip()]
    add = items and items[0].startswith("+")
    items = [c.lstrip("+") for c in items]
    classes = {c for r in rows for c in r.per_class_accuracy}
    known = set(TITLES) | {f"recall:{c}" for c in classes}
    out = []
    for c in items:
        c = normalise_key(c, classes)
        if c not in known:
            raise ConfigError(f"--columns {c!r}: expected some of {', '.join(sorted(known))}")
        out.append(c)
    base = default_columns(rows, compact)
    return [*base, *(c for c in out if c not in base)] if add else out


def _p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def raw_value(row: LeaderboardRow, key: str):
    if key == "cell_id":
        return ";".join(row.cell_ids)
    if key == "mcnemar_vs_top":
        return (row.vs_top or {}).get("mcnemar_p")
    if key in TEXT_KEYS or key in ("rank", "n_seeds"):
        return row.value(key)
    return metric_value(row, key)


def is_metric(key: str) -> bool:
    return key in METRICS or key.startswith("recall:")


def cell_text(row: LeaderboardRow, key: str, ci: str = "sort", sort: str = "fear_disgust",
              mark: bool = True) -> str:
    """A cell as text: metrics in %, ± std over seeds, [interval] when `ci` covers the column
    (`all`, `sort` = only the sort key, `none`), and † on the test metric of rows not
    significantly different from the top."""
    if key in ("rank", "n_seeds"):
        return str(row.value(key))
    if key in TEXT_KEYS:
        v = raw_value(row, key)
        text = str(v) if v is not None else "-"
        if key in ("label", "backbone") and row.precision_differs:
            text += f" [{row.precision}]"  # not comparable to the others' last digit
        return text
    if key in ("p_vs_top", "p_vs_baseline", "mcnemar_vs_top"):
        return _p_text(raw_value(row, key))
    v = metric_value(row, key)
    if key == "bench_mfu":
        return "-" if v is None else f"{100 * v:.1f}%"
    if key in COST or key in BENCH:
        if v is None:
            return "-"
        if key == "trainable_m":  # LoRA / adapters: thousands of parameters
            return f"{v:.3f}" if v < 10 else f"{v:.1f}"
        return f"{v:.2f}" if key in ("params_m", "gmacs") else f"{v:.0f}" if v >= 10 \
            else f"{v:.1f}"
    s = _fmt(v, row.std.get(key), row.n_seeds)
    interval = (row.ci or {}).get(key)
    if interval and v is not None and (ci == "all" or (ci == "sort" and key == sort)):
        s += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    if mark and key == row.test_metric and row.tied_with_top:
        s += " †"
    return s


def _fmt(v: float | None, std: float | None = None, n: int = 1) -> str:
    if v is None:
        return "-"
    s = f"{100 * v:.1f}"
    return f"{s} ± {100 * std:.1f}" if n > 1 and std is not None else s


def footnote(rows: list[LeaderboardRow], sort: str = "fear_disgust") -> str:
    """What the numbers mean, for the table's caption."""
    where = "test split"
    if rows and rows[0].eval_dataset not in (None, rows[0].dataset):
        where = f"evaluated on {rows[0].eval_dataset}"
    parts = [f"Ranked by {column_title(sort)} ({where}, %)."]
    same = constant_identity(rows)
    if same:
        parts.append("All rows: " + ", ".join(f"{column_title(k)} {v if v is not None else '-'}"
                                              for k, v in same.items()) + ".")
    if any(r.n_seeds > 1 for r in rows):
        parts.append("± is the std over seeds.")
    ci = next((r.ci for r in rows if r.ci), None)
    if ci:
        parts.append(f"[lo, hi]: {100 * ci['level']:.0f}% bootstrap interval over test images "
                     f"({ci['n_resamples']} resamples).")
    if any(r.p_vs_top is not None for r in rows):
        m = rows[0].test_metric
        parts.append(f"† not significantly different from the top row (paired bootstrap on "
                     f"{column_title(m)}, p ≥ 0.05); p vs top: two-sided p of that test.")
    parts += tied_note(rows)
    if rows and rows[0].baseline:
        parts.append(f"p vs base: the same test against {rows[0].baseline}.")
    odd = sorted({r.precision for r in rows if r.precision_differs})
    if odd:
        rest = next(r.precision for r in rows if not r.precision_differs)
        parts.append(f"[{'/'.join(odd)}]: ran in {'/'.join(odd)}, the other rows in {rest}; "
                     "precision changes figures (bf16 rounding differs between CPU families).")
    parts += dataset_notes(rows)
    return " ".join(parts)


FEW_IMAGES = 20  # below this, one test image moves a class's recall by more than 5 points


def dataset_notes(rows: list[LeaderboardRow]) -> list[str]:
    """What the rows were tested on, per evaluated dataset: split sizes, test images per class,
    and a warning for each class whose recall rests on a handful of images."""
    out = []
    for ds in dict.fromkeys(r.eval_dataset for r in rows):
        mine = [r for r in rows if r.eval_dataset == ds and r.test_counts]
        if not mine:
            continue
        counts, sizes = mine[0].test_counts, mine[0].split_sizes
        splits = (", ".join(f"{k} {v:,}" for k, v in sizes.items()) if sizes
                  else f"test {sum(counts.values()):,}")
        out.append(f"Dataset {ds}: {splits} images; test images per class: "
                   + ", ".join(f"{c} {n}" for c, n in counts.items()) + ".")
        few = [f"{c} recall rests on {n} test image{'s' * (n != 1)} (one image = "
               f"{100 / n:.1f} points)" for c, n in counts.items() if 0 < n < FEW_IMAGES]
        if few:
            out.append("; ".join(few) + ".")
    return out


def tied_note(rows: list[LeaderboardRow]) -> list[str]:
    """Which rows the paired test could not tell from the top, by rank."""
    tested = [r for r in rows[1:] if r.p_vs_top is not None]
    if not tested:
        return []
    tied = [f"#{r.rank}" for r in tested if r.tied_with_top]
    if not tied:
        return [f"No row is tied with the top: #1 is significantly ahead of all "
                f"{len(tested)} tested rows."]
    apart = len(tested) - len(tied)
    return [f"Tied with the top (†): {', '.join(tied)}; significantly below it: {apart} "
            f"row{'s' * (apart != 1)}."]
