"""The leaderboard: result files -> ranked rows (seeds aggregated to mean and std), ranked on
fear/disgust by default, with bootstrap intervals and paired tests against the top row (and an
optional baseline), rendered as a terminal table, Markdown, CSV, JSON or HTML.

Rows keep the foundation's JSON fields (rank, identity, n_seeds, metrics, per_class_accuracy,
std, train_s, params_m, cell_ids) and add `ci`, `p_vs_top`, `vs_top`, `tied_with_top`, cost
columns and, with a baseline, `p_vs_baseline` / `vs_baseline`. Keys starting with `_` are
internal (the member results) and never rendered."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FerBenchError
from . import stats
from .store import read_results

METRICS = ("fear_disgust", "accuracy", "balanced_accuracy", "macro_f1")
IDENTITY = ("backbone", "prompts", "head", "text_encoder", "dataset")
COST = ("params_m", "trainable_m", "gmacs", "train_s", "images_per_s", "train_images_per_s")
BENCH = ("bench_train_per_s", "bench_infer_per_s", "bench_mfu")  # from `fer-bench bench --out`
ASCENDING = {"params_m", "trainable_m", "gmacs", "train_s"}  # cost: cheapest first
PREDICTIONS_FILE = "predictions.npz"


@dataclass(frozen=True)
class StatsOptions:
    """Bootstrap settings; n_resamples = 0 turns statistics off (fast, no p-values)."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    alpha: float = 0.05


# ---------------------------------------------------------------------------------------------
# Loading


def load_results(run_dirs: list[Path]) -> tuple[list[dict], list[str]]:
    """Results of several run directories, each tagged with its cell directory (`_dir`) so its
    predictions can be found. A cell id seen twice (the same config in two runs) is kept once,
    first directory first; the duplicates' ids are returned."""
    seen: dict[str, dict] = {}
    dups: list[str] = []
    for d in run_dirs:
        for r in read_results(Path(d)):
            cid = r.get("cell_id")
            if not isinstance(cid, str):
                raise FerBenchError(f"{d}: a result without a cell_id")
            if cid in seen:
                dups.append(cid)
                continue
            r["_dir"] = str(Path(d) / "cells" / cid)
            seen[cid] = r
    return list(seen.values()), dups


def dataset_slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec)


def predictions_path(result: dict, dataset: str | None = None) -> Path | None:
    """Where a cell's per-image predictions live: `predictions.npz` for its own test split; for
    a cross-dataset view the file the cross block names (`predictions`), else
    `predictions-<slug>.npz`."""
    if "_dir" not in result:
        return None
    cdir = Path(result["_dir"])
    if dataset is None or dataset == result.get("dataset"):
        return cdir / PREDICTIONS_FILE
    block = (result.get("cross") or {}).get(dataset) or {}
    name = block.get("predictions") if isinstance(block.get("predictions"), str) else None
    name = name or f"predictions-{dataset_slug(dataset)}.npz"
    path = (cdir / name).resolve()
    return path if path.parent == cdir.resolve() else None  # never a file outside the cell


_PRED_CACHE: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}


def load_predictions(path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, preds) from a predictions file, or None when it is missing or unreadable."""
    if path is None:
        return None
    key = str(path)
    if key not in _PRED_CACHE:
        try:
            with np.load(path, allow_pickle=False) as z:
                _PRED_CACHE[key] = (np.asarray(z["labels"]), np.asarray(z["preds"]))
        except (OSError, KeyError, ValueError):
            _PRED_CACHE[key] = None
    return _PRED_CACHE[key]


def eval_datasets(results: list[dict]) -> list[str]:
    """Every dataset a leaderboard view exists for: training datasets, then cross datasets."""
    own = sorted({r["dataset"] for r in results if r.get("status") == "ok"})
    cross = sorted({d for r in results if r.get("status") == "ok"
                    for d in (r.get("cross") or {})} - set(own))
    return own + cross


def _view(result: dict, dataset: str | None) -> dict | None:
    """The metrics block a result contributes to a dataset's view."""
    if dataset is None or dataset == result.get("dataset"):
        return result.get("metrics")
    block = (result.get("cross") or {}).get(dataset)
    return block if isinstance(block, dict) and "accuracy" in block else None


# ---------------------------------------------------------------------------------------------
# Rows


def group_key(result: dict) -> str:
    """Cells that differ only by seed form one row."""
    cfg = {k: v for k, v in result["config"].items() if k not in ("seed", "resolved")}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


_mean_std = stats.mean_std


def metric_value(row: dict, key: str) -> float | None:
    if key.startswith("recall:"):
        return row["per_class_accuracy"].get(key[7:])
    if key in row.get("per_class_accuracy", {}):
        return row["per_class_accuracy"][key]
    v = row.get(key)
    return v if isinstance(v, int | float) else None


def sort_value(row: dict, key: str) -> float:
    v = metric_value(row, key)
    if v is None:
        return -np.inf
    return -float(v) if key in ASCENDING else float(v)


def normalise_key(key: str, classes: set[str]) -> str:
    """A sort/test key in canonical form (a bare class name means its recall)."""
    return f"recall:{key}" if key in classes else key


def _check_sort(sort: str, rows: list[dict]) -> None:
    known = set(METRICS) | set(COST) | {"n_seeds"}
    classes = {c for r in rows for c in r["per_class_accuracy"]}
    if sort not in known and sort.removeprefix("recall:") not in classes and rows:
        raise ConfigError(f"--sort {sort!r}: expected one of {', '.join(sorted(known))}, a class "
                          f"name or recall:CLASS (classes: {', '.join(sorted(classes))})")


def _cost(member: dict, view: dict) -> dict:
    backbone = (member.get("config", {}).get("resolved", {}) or {}).get("backbone", {}) or {}
    timing = member.get("timing") or {}
    ips = timing.get("images_per_s")
    if ips is None and timing.get("eval_s") and view.get("n_test"):
        ips = view["n_test"] / timing["eval_s"]  # test-set evaluation throughput
    regime = (member.get("config", {}).get("resolved", {}) or {}).get("regime", {}) or {}
    trainable = regime.get("trainable_params")  # the whole cell: towers, adaptation, head
    return {"params_m": backbone.get("params_m"), "gmacs": backbone.get("gmacs"),
            "trainable_m": trainable / 1e6 if isinstance(trainable, int) else None,
            "train_s": timing.get("train_s"), "images_per_s": ips,
            # the training loop's own throughput (last epoch), as measured in the run
            "train_images_per_s": timing.get("train_images_per_s")}


PRECISION_NAMES = {"off": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def precision_of(result: dict) -> str:
    """The precision a cell trained and evaluated in, from its resolved config."""
    resolved = (result.get("config") or {}).get("resolved") or {}
    amp = (resolved.get("compute") or {}).get("amp", resolved.get("amp"))
    return PRECISION_NAMES.get(str(amp), str(amp)) if amp is not None else "?"


def mark_precision(rows: list[dict]) -> None:
    """Rows whose precision differs from the most common one are marked: bf16 and fp32 figures
    are not comparable to the last digit (bf16 kernels round differently per CPU family)."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["precision"]] += 1
    common = max(counts, key=lambda k: (counts[k], k == "fp32")) if counts else None
    for r in rows:
        r["precision_differs"] = len(counts) > 1 and r["precision"] != common


def _label(row: dict) -> str:
    parts = [row["backbone"], row["head"], row["prompts"], row["text_encoder"]]
    if row.get("regime") not in (None, "full"):  # the training regime, when not the default
        parts.append(row["regime"])
    return " · ".join(str(p) for p in parts if p)


def _test_counts(view: dict) -> dict[str, int] | None:
    """Test images per class (the confusion matrix's row sums), for reading a recall's weight."""
    conf, classes = view.get("confusion"), view.get("classes")
    if conf is None or not classes or len(conf) != len(classes):
        return None
    return {c: int(sum(r)) for c, r in zip(classes, conf, strict=True)}


def _split_sizes(result: dict) -> dict[str, int] | None:
    resolved = (result.get("config") or {}).get("resolved") or {}
    sizes = (resolved.get("dataset") or {}).get("split_sizes")
    return sizes if isinstance(sizes, dict) else None


def _make_row(members: list[tuple[dict, dict]], dataset: str | None) -> dict:
    members.sort(key=lambda m: m[0]["seed"])
    first, fview = members[0]
    row: dict = {k: first.get(k) for k in IDENTITY}
    row["eval_dataset"] = dataset or first.get("dataset")
    row["n_seeds"] = len(members)
    row["regime"] = ((first.get("config") or {}).get("train") or {}).get("regime", "full")
    row["seeds"] = [m["seed"] for m, _ in members]
    row["std"] = {}
    for k in METRICS:
        row[k], row["std"][k] = _mean_std([v.get(k) for _, v in members])
    classes = list(fview.get("classes") or fview.get("per_class_accuracy", {}))
    row["classes"] = classes
    row["per_class_accuracy"] = {}
    for c in classes:
        row["per_class_accuracy"][c], row["std"][f"recall:{c}"] = _mean_std(
            [(v.get("per_class_accuracy") or {}).get(c) for _, v in members])
    costs = [_cost(m, v) for m, v in members]
    for k in COST:
        row[k] = _mean_std([c[k] for c in costs])[0]
    confs = [np.asarray(v["confusion"]) for _, v in members if v.get("confusion") is not None]
    row["confusion"] = (np.sum(confs, 0).astype(int).tolist()
                        if len(confs) == len(members) and len({c.shape for c in confs}) == 1
                        else None)
    row["precision"] = "/".join(sorted({precision_of(m) for m, _ in members}))
    row["test_counts"] = _test_counts(fview)
    row["split_sizes"] = (_split_sizes(first) if row["eval_dataset"] == first.get("dataset")
                          else None)
    row["cell_ids"] = [m["cell_id"] for m, _ in members]
    row["group"] = group_key(first)
    row["label"] = _label(row)
    row["_members"] = [m for m, _ in members]
    row["_views"] = [v for _, v in members]
    return row


def build_rows(results: list[dict], sort: str = "fear_disgust", *, dataset: str | None = None,
               options: StatsOptions | None = None, baseline: str | None = None,
               test_metric: str | None = None) -> list[dict]:
    """Rank ok results (seeds aggregated). `dataset` picks a view: a training dataset or a
    cross-dataset spec (rows without that evaluation are left out); None = each cell's own test
    split. Statistics (intervals, paired tests against the top row and the baseline) run unless
    `options.n_resamples == 0`. The paired test uses `test_metric`, by default the sort key when
    it is a metric, else fear_disgust."""
    options = options or StatsOptions()
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = defaultdict(list)
    for r in results:
        if r.get("status") != "ok" or not r.get("metrics"):
            continue
        view = _view(r, dataset)
        if view is not None:
            groups[(group_key(r), dataset or r["dataset"])].append((r, view))
    rows = [_make_row(members, dataset) for members in groups.values()]
    mark_precision(rows)
    _check_sort(sort, rows)
    classes_all = {c for r in rows for c in r["per_class_accuracy"]}
    sort = normalise_key(sort, classes_all)
    rows.sort(key=lambda r: (sort_value(r, sort), sort_value(r, "accuracy")), reverse=True)
    labels = defaultdict(list)
    for r in rows:
        labels[r["label"]].append(r)
    for same in labels.values():  # same identity, different settings: tell them apart
        if len(same) > 1:
            for r in same:
                r["label"] += f" #{r['group'][:6]}"
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    if test_metric is None:
        test_metric = sort if sort in METRICS or sort.startswith("recall:") else "fear_disgust"
    test_metric = normalise_key(test_metric, classes_all)
    base = find_baseline(rows, baseline) if baseline else None
    for r in rows:
        r["sort_key"], r["test_metric"] = sort, test_metric
        r["ci"] = _row_intervals(r, dataset, options) if options.n_resamples else None
        r["vs_top"] = r["p_vs_top"] = r["tied_with_top"] = None
        if base is not None:
            r["vs_baseline"] = r["p_vs_baseline"] = None
    if options.n_resamples and rows:
        for r in rows[1:]:
            r["vs_top"] = compare(r, rows[0], test_metric, dataset, options)
            if r["vs_top"] and r["vs_top"]["p"] is not None:
                r["p_vs_top"] = r["vs_top"]["p"]
                r["tied_with_top"] = r["p_vs_top"] >= options.alpha
        if base is not None:
            for r in rows:
                if r is not base:
                    r["vs_baseline"] = compare(r, base, test_metric, dataset, options)
                    r["p_vs_baseline"] = (r["vs_baseline"] or {}).get("p")
    if base is not None:
        for r in rows:
            r["baseline"] = base["label"]
    return rows


def attach_bench(rows: list[dict], bench_rows: list[dict]) -> None:
    """Add `fer-bench bench` figures to the rows of the same backbone (the same head when
    benchmarked, else any): training and inference samples/s and training MFU."""
    for row in rows:
        mine = [b for b in bench_rows if b.get("backbone") == row["backbone"]]
        same_head = [b for b in mine if b.get("head") == row["head"]]
        for b in same_head or mine:
            if b.get("mode") == "train":
                row.setdefault("bench_train_per_s", b.get("samples_per_s"))
                row.setdefault("bench_mfu", b.get("mfu"))
            elif b.get("mode") == "infer":
                row.setdefault("bench_infer_per_s", b.get("samples_per_s"))


def find_baseline(rows: list[dict], spec: str) -> dict:
    """A row named by a cell id, a unique cell-id prefix (>= 4 characters), or identity values
    separated by `/` or `,` (e.g. `fer_cnn/linear`) that all belong to exactly one row."""
    exact = [r for r in rows if spec in r["cell_ids"]]
    if exact:
        return exact[0]
    if len(spec) >= 4:
        pref = [r for r in rows if any(c.startswith(spec) for c in r["cell_ids"])]
        if len(pref) == 1:
            return pref[0]
    tokens = [t.strip() for t in re.split(r"[/,]", spec) if t.strip()]
    named = [r for r in rows if tokens and all(
        t in {str(r[k]) for k in IDENTITY if r[k] is not None} for t in tokens)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ConfigError(f"--baseline {spec!r} matches {len(named)} rows ("
                          + "; ".join(r["label"] for r in named[:5])
                          + "); add a prompt set, head or text encoder, or give a cell id")
    raise ConfigError(f"--baseline {spec!r}: no row has that cell id or those names; rows: "
                      + "; ".join(f"{r['label']} ({r['cell_ids'][0]})" for r in rows[:8]))


def _stacked(row: dict, dataset: str | None,
             seeds: list[int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(seeds x images) labels and predictions of a row's members (the given seeds, in order),
    or None when any is missing or they are not on the same test images."""
    by_seed = dict(zip(row["seeds"], row["_members"], strict=True))
    chosen = [by_seed[s] for s in (seeds if seeds is not None else row["seeds"])]
    loaded = [load_predictions(predictions_path(m, dataset)) for m in chosen]
    if any(x is None for x in loaded):
        return None
    labels = loaded[0][0]
    if any(x[0].shape != labels.shape or not np.array_equal(x[0], labels) for x in loaded):
        return None
    return np.stack([x[0] for x in loaded]), np.stack([x[1] for x in loaded])


def _row_intervals(row: dict, dataset: str | None, o: StatsOptions) -> dict | None:
    classes = row["classes"]
    views = row["_views"]
    if len(views) == 1:
        stored = views[0].get("ci")
        if (isinstance(stored, dict) and stored.get("n_resamples") == o.n_resamples
                and stored.get("level") == o.level and stored.get("seed") == o.seed):
            return stored
    data = _stacked(row, dataset)
    if data is not None:
        return stats.intervals(*data, classes, o.n_resamples, o.seed, o.level)
    if row["confusion"] is not None:  # no predictions: image order is not needed for intervals
        return stats.intervals_from_confusion(row["confusion"], classes, o.n_resamples,
                                              o.seed, o.level)
    return None


def _seed_pairs(row: dict, ref: dict) -> list[tuple[int, int]]:
    """Seeds compared: those both rows ran (matched by seed); with none in common, the i-th
    smallest seed of each (matched by order)."""
    common = sorted(set(row["seeds"]) & set(ref["seeds"]))
    if common:
        return [(s, s) for s in common]
    return list(zip(row["seeds"], ref["seeds"], strict=False))


def compare(row: dict, ref: dict, metric: str, dataset: str | None,
            o: StatsOptions) -> dict | None:
    """Paired bootstrap of metric(row) - metric(ref) and McNemar's test for accuracy on the
    same test images, over matched seeds; None when predictions are missing or the test images
    differ."""
    if row["classes"] != ref["classes"]:
        return None
    pairs = _seed_pairs(row, ref)
    a = _stacked(row, dataset, [p[0] for p in pairs])
    b = _stacked(ref, dataset, [p[1] for p in pairs])
    if a is None or b is None or a[0].shape != b[0].shape or not np.array_equal(a[0], b[0]):
        return None
    boot = stats.paired_bootstrap(a[0], a[1], b[1], row["classes"], metric, o.n_resamples,
                                  o.seed, o.level)
    mc = stats.mcnemar(a[0], a[1], b[1])
    return {"metric": boot["metric"], "diff": boot["diff"], "ci": boot["ci"], "p": boot["p"],
            "mcnemar_p": mc["p"], "discordant": [mc["a_only"], mc["b_only"]],
            "seed_pairs": [list(p) for p in pairs], "n_resamples": o.n_resamples}


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------------
# Columns and cell text

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


def header(key: str, rows: list[dict]) -> str:
    """A column's title in a rendered table: a recall column also says how many test images
    it rests on (`disgust (n=9)`) when every row was tested on the same number."""
    title = column_title(key)
    if key.startswith("recall:"):
        counts = {(r.get("test_counts") or {}).get(key[7:]) for r in rows}
        if len(counts) == 1 and None not in counts:
            title += f" (n={counts.pop()})"
    return title


def constant_identity(rows: list[dict]) -> dict[str, str]:
    """Identity columns with one value across several rows (said once in the caption instead)."""
    if len(rows) < 2:
        return {}
    out = {}
    for k in ("prompts", "text_encoder", "dataset"):
        values = {r[k] for r in rows}
        if len(values) == 1:
            out[k] = next(iter(values))
    return out


def default_columns(rows: list[dict], compact: bool = False) -> list[str]:
    """Identity (one `model` column when compact, for the terminal), metrics, seeds, the costs
    the results have (eval images/s is opt-in: on small test sets it mostly measures start-up),
    and the p-values when tested."""
    same = constant_identity(rows)
    cols = [c for c in DEFAULT_COLUMNS if c not in same]
    if any(r.get("regime") not in (None, "full") for r in rows):
        cols.insert(cols.index("fear_disgust"), "regime")  # (the compact label carries it)
    costs = ["params_m", "trainable_m", "gmacs", "train_s"]
    if compact:  # fits a 160-column terminal; everything else is a --columns away
        cols = ["rank", "label", *(c for c in cols if c not in IDENTITY[:-1]
                                   and c not in ("rank", "balanced_accuracy", "regime"))]
        costs = ["params_m", "trainable_m"]
    cols += [k for k in costs if any(r.get(k) is not None for r in rows)]
    cols += [k for k in BENCH if any(r.get(k) is not None for r in rows)]  # when --bench given
    if any(r.get("p_vs_top") is not None for r in rows):
        cols.append("p_vs_top")
    if any("p_vs_baseline" in r for r in rows):
        cols.append("p_vs_baseline")
    return cols


def parse_columns(spec: str | None, rows: list[dict], compact: bool = False) -> list[str]:
    """`--columns`: comma-separated keys; a leading `+` adds to the defaults (`+gmacs`)."""
    if not spec:
        return default_columns(rows, compact)
    items = [c.strip() for c in spec.split(",") if c.strip()]
    add = items and items[0].startswith("+")
    items = [c.lstrip("+") for c in items]
    classes = {c for r in rows for c in r["per_class_accuracy"]}
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


def raw_value(row: dict, key: str):
    if key == "cell_id":
        return ";".join(row["cell_ids"])
    if key == "mcnemar_vs_top":
        return (row.get("vs_top") or {}).get("mcnemar_p")
    if key in TEXT_KEYS or key in ("rank", "n_seeds"):
        return row.get(key)
    return metric_value(row, key)


def is_metric(key: str) -> bool:
    return key in METRICS or key.startswith("recall:")


def cell_text(row: dict, key: str, ci: str = "sort", sort: str = "fear_disgust",
              mark: bool = True) -> str:
    """A cell as text: metrics in %, ± std over seeds, [interval] when `ci` covers the column
    (`all`, `sort` = only the sort key, `none`), and † on the test metric of rows not
    significantly different from the top."""
    if key in ("rank", "n_seeds"):
        return str(row[key])
    if key in TEXT_KEYS:
        v = raw_value(row, key)
        text = str(v) if v is not None else "-"
        if key in ("label", "backbone") and row.get("precision_differs"):
            text += f" [{row['precision']}]"  # not comparable to the others' last digit
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
    s = _fmt(v, row["std"].get(key), row["n_seeds"])
    interval = (row.get("ci") or {}).get(key)
    if interval and v is not None and (ci == "all" or (ci == "sort" and key == sort)):
        s += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    if mark and key == row.get("test_metric") and row.get("tied_with_top"):
        s += " †"
    return s


def _fmt(v: float | None, std: float | None = None, n: int = 1) -> str:
    if v is None:
        return "-"
    s = f"{100 * v:.1f}"
    return f"{s} ± {100 * std:.1f}" if n > 1 and std is not None else s


def footnote(rows: list[dict], sort: str = "fear_disgust") -> str:
    """What the numbers mean, for the table's caption."""
    where = "test split"
    if rows and rows[0].get("eval_dataset") not in (None, rows[0].get("dataset")):
        where = f"evaluated on {rows[0]['eval_dataset']}"
    parts = [f"Ranked by {column_title(sort)} ({where}, %)."]
    same = constant_identity(rows)
    if same:
        parts.append("All rows: " + ", ".join(f"{column_title(k)} {v if v is not None else '-'}"
                                              for k, v in same.items()) + ".")
    if any(r["n_seeds"] > 1 for r in rows):
        parts.append("± is the std over seeds.")
    ci = next((r["ci"] for r in rows if r.get("ci")), None)
    if ci:
        parts.append(f"[lo, hi]: {100 * ci['level']:.0f}% bootstrap interval over test images "
                     f"({ci['n_resamples']} resamples).")
    if any(r.get("p_vs_top") is not None for r in rows):
        m = rows[0]["test_metric"]
        parts.append(f"† not significantly different from the top row (paired bootstrap on "
                     f"{column_title(m)}, p ≥ 0.05); p vs top: two-sided p of that test.")
    parts += tied_note(rows)
    if rows and rows[0].get("baseline"):
        parts.append(f"p vs base: the same test against {rows[0]['baseline']}.")
    odd = sorted({r["precision"] for r in rows if r.get("precision_differs")})
    if odd:
        rest = next(r["precision"] for r in rows if not r.get("precision_differs"))
        parts.append(f"[{'/'.join(odd)}]: ran in {'/'.join(odd)}, the other rows in {rest}; "
                     "precision changes figures (bf16 rounding differs between CPU families).")
    parts += dataset_notes(rows)
    return " ".join(parts)


FEW_IMAGES = 20  # below this, one test image moves a class's recall by more than 5 points


def dataset_notes(rows: list[dict]) -> list[str]:
    """What the rows were tested on, per evaluated dataset: split sizes, test images per class,
    and a warning for each class whose recall rests on a handful of images."""
    out = []
    for ds in dict.fromkeys(r["eval_dataset"] for r in rows):
        mine = [r for r in rows if r["eval_dataset"] == ds and r.get("test_counts")]
        if not mine:
            continue
        counts, sizes = mine[0]["test_counts"], mine[0].get("split_sizes")
        splits = (", ".join(f"{k} {v:,}" for k, v in sizes.items()) if sizes
                  else f"test {sum(counts.values()):,}")
        out.append(f"Dataset {ds}: {splits} images; test images per class: "
                   + ", ".join(f"{c} {n}" for c, n in counts.items()) + ".")
        few = [f"{c} recall rests on {n} test image{'s' * (n != 1)} (one image = "
               f"{100 / n:.1f} points)" for c, n in counts.items() if 0 < n < FEW_IMAGES]
        if few:
            out.append("; ".join(few) + ".")
    return out


def tied_note(rows: list[dict]) -> list[str]:
    """Which rows the paired test could not tell from the top, by rank."""
    tested = [r for r in rows[1:] if r.get("p_vs_top") is not None]
    if not tested:
        return []
    tied = [f"#{r['rank']}" for r in tested if r.get("tied_with_top")]
    if not tied:
        return [f"No row is tied with the top: #1 is significantly ahead of all "
                f"{len(tested)} tested rows."]
    apart = len(tested) - len(tied)
    return [f"Tied with the top (†): {', '.join(tied)}; significantly below it: {apart} "
            f"row{'s' * (apart != 1)}."]


# ---------------------------------------------------------------------------------------------
# Rendering

CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1f2328;background:#fff;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;
 border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
.sub{color:#59636e;margin-top:0}
table.lb{border-collapse:collapse;width:100%;font-size:.86rem;font-variant-numeric:tabular-nums}
table.lb th{background:#f6f8fa;text-align:right;padding:.45rem .55rem;border-bottom:2px solid
 #d0d7de;white-space:nowrap;position:sticky;top:0}
table.lb td{text-align:right;padding:.38rem .55rem;border-bottom:1px solid #eaeef2;
 white-space:nowrap}
table.lb th.t,table.lb td.t{text-align:left}
table.lb tr:hover td{background:#f3f8ff}
table.lb tr.top td{background:#fff8e1;font-weight:600}
table.lb tr.tied td.m-sort{color:#9a6700}
td.m-sort{font-weight:600;color:#8250df}
.ci{color:#6e7781;font-size:.78em;font-weight:400}
.std{color:#6e7781;font-size:.85em}
.caption{color:#59636e;font-size:.82rem;margin:.5rem 0 0}
.fd{color:#cf222e}
"""


def _html_cell(row: dict, key: str, ci: str, sort: str) -> str:
    cls = ["t"] if key in TEXT_KEYS else []
    if key == sort:
        cls.append("m-sort")
    if is_metric(key) and metric_value(row, key) is not None:
        v = metric_value(row, key)
        body = f"{100 * v:.1f}"
        std = row["std"].get(key)
        if row["n_seeds"] > 1 and std is not None:
            body += f' <span class="std">± {100 * std:.1f}</span>'
        if key == row.get("test_metric") and row.get("tied_with_top"):
            body += ' <span title="not significantly different from the top row">†</span>'
        interval = (row.get("ci") or {}).get(key)
        if interval and (ci == "all" or (ci == "sort" and key == sort)):
            body += (f' <span class="ci">[{100 * interval[0]:.1f}, '
                     f'{100 * interval[1]:.1f}]</span>')
    else:
        body = html.escape(cell_text(row, key, ci, sort, mark=False))
    return f'<td class="{" ".join(cls)}">{body}</td>'


def html_table(rows: list[dict], columns: list[str], ci: str = "sort",
               sort: str = "fear_disgust") -> str:
    """The ranked table as an HTML fragment (used by `--format html` and the report)."""
    def th(c: str) -> str:
        cls = ("t" if c in TEXT_KEYS else "") + (" fd" if c in FD_COLUMNS else "")
        return f'<th class="{cls.strip()}">{html.escape(header(c, rows))}</th>'

    head = "".join(th(c) for c in columns)
    body = []
    for r in rows:
        cls = "top" if r["rank"] == 1 else "tied" if r.get("tied_with_top") else ""
        body.append(f'<tr class="{cls}">'
                    + "".join(_html_cell(r, c, ci, sort) for c in columns) + "</tr>")
    return (f'<table class="lb" id="leaderboard"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>"
            + f'<p class="caption">{html.escape(footnote(rows, sort))}</p>')


def csv_text(rows: list[dict], columns: list[str] | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    if columns:  # chosen columns, raw values (fractions)
        w.writerow(columns)
        for r in rows:
            w.writerow([raw_value(r, c) for c in columns])
        return buf.getvalue()
    classes = list(rows[0]["per_class_accuracy"]) if rows else []
    keys = [*METRICS, *(f"recall:{c}" for c in classes)]
    head = ["rank", *IDENTITY, "n_seeds", *METRICS, *(f"std_{m}" for m in METRICS),
            *(f"recall_{c}" for c in classes), "train_s", "params_m", "gmacs", "images_per_s",
            "train_images_per_s", *(f"ci_lo_{k}" for k in keys), *(f"ci_hi_{k}" for k in keys),
            "test_metric", "p_vs_top", "mcnemar_vs_top", "tied_with_top", "p_vs_baseline",
            "eval_dataset", "cell_ids", "regime", "trainable_m"]
    w.writerow(head)
    for r in rows:
        ci = r.get("ci") or {}
        w.writerow([r["rank"], *(r[k] for k in IDENTITY), r["n_seeds"],
                    *(r[m] for m in METRICS), *(r["std"][m] for m in METRICS),
                    *(r["per_class_accuracy"].get(c) for c in classes), r["train_s"],
                    r["params_m"], r["gmacs"], r["images_per_s"], r["train_images_per_s"],
                    *((ci.get(k) or [None, None])[0] for k in keys),
                    *((ci.get(k) or [None, None])[1] for k in keys),
                    r.get("test_metric"), r.get("p_vs_top"),
                    (r.get("vs_top") or {}).get("mcnemar_p"), r.get("tied_with_top"),
                    r.get("p_vs_baseline"), r.get("eval_dataset"), ";".join(r["cell_ids"]),
                    r.get("regime"), r.get("trainable_m")])
    return buf.getvalue()


def md_text(rows: list[dict], columns: list[str], title_text: str = "", ci: str = "sort",
            sort: str = "fear_disgust") -> str:
    lines = [f"**{title_text}**\n" if title_text else "",
             "| " + " | ".join(header(c, rows) for c in columns) + " |",
             "|" + "|".join("---" if c in TEXT_KEYS else "---:" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell_text(r, c, ci, sort).replace("|", "\\|") for c in columns)
              + " |" for r in rows]
    lines.append("\n" + footnote(rows, sort))
    return "\n".join(x for x in lines if x)


def html_page(sections: list[tuple[str, str]], heading: str) -> str:
    body = "".join(f"<h2>{html.escape(t)}</h2>{frag}" if t else frag for t, frag in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>'
            f'{html.escape(heading)}</title><style>{CSS}</style></head><body><h1>'
            f'{html.escape(heading)}</h1>{body}</body></html>\n')


def render(rows: list[dict], fmt: str, title: str = "", columns: list[str] | None = None,
           ci: str = "sort", sort: str = "fear_disgust") -> str:
    """One leaderboard as text. `columns` applies to table-like formats (and csv, where it
    picks raw columns); json always holds full rows."""
    if fmt == "json":
        return json.dumps([public(r) for r in rows], indent=2)
    if fmt == "csv":
        return csv_text(rows, columns)
    cols = columns or default_columns(rows)
    if fmt == "md":
        return md_text(rows, cols, title, ci, sort)
    if fmt == "html":
        return html_page([("", html_table(rows, cols, ci, sort))], title or "fer-bench leaderboard")
    raise ConfigError(f"--format {fmt!r}: expected table, md, csv, json or html")


def rich_table(rows: list[dict], title: str = "", columns: list[str] | None = None,
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
                         min_width=min(30, max((len(r["label"]) for r in rows), default=5))
                         if key == "label" else None)
    for r in rows:
        table.add_row(*(escape(cell_text(r, k, ci, sort)) for k in cols),
                      style="bold" if r["rank"] == 1 else None)
    return table
