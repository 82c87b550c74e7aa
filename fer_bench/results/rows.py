"""Leaderboard rows: result files -> one typed row per configuration (seeds aggregated to mean
and std), ranked on fear/disgust by default; the baseline a row is tested against; `fer-bench
bench` figures joined in. Statistics (intervals, paired tests) are added by compare.py."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FerBenchError
from . import stats
from .store import CellResult, read_results

METRICS = ("fear_disgust", "accuracy", "balanced_accuracy", "macro_f1")
IDENTITY = ("backbone", "prompts", "head", "text_encoder", "dataset")
COST = ("params_m", "trainable_m", "gmacs", "train_s", "images_per_s", "train_images_per_s")
BENCH = ("bench_train_per_s", "bench_infer_per_s", "bench_mfu")  # from `fer-bench bench --out`
ASCENDING = {"params_m", "trainable_m", "gmacs", "train_s"}  # cost: cheapest first
PRECISION_NAMES = {"off": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}
_BASELINE_KEYS = ("vs_baseline", "p_vs_baseline", "baseline")


@dataclass
class LeaderboardRow:
    """One configuration's row. Its JSON (`to_json`, the `--format json` rows) keeps the field
    order below; the baseline keys appear only when a baseline was given, the bench keys only
    when `--bench` matched, and the member results never. (A flat list of typed fields on
    purpose: one per column a user can ask for.)"""

    backbone: str | None = None
    prompts: str | None = None
    head: str | None = None
    text_encoder: str | None = None
    dataset: str | None = None
    eval_dataset: str | None = None
    n_seeds: int = 1
    regime: str | None = "full"
    seeds: list[int] = field(default_factory=list)
    std: dict[str, float | None] = field(default_factory=dict)
    fear_disgust: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    classes: list[str] = field(default_factory=list)
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)
    params_m: float | None = None
    trainable_m: float | None = None
    gmacs: float | None = None
    train_s: float | None = None
    images_per_s: float | None = None
    train_images_per_s: float | None = None
    confusion: list[list[int]] | None = None  # seeds summed
    precision: str = "?"
    test_counts: dict[str, int] | None = None
    split_sizes: dict[str, int] | None = None
    cell_ids: list[str] = field(default_factory=list)
    group: str = ""
    label: str = ""
    precision_differs: bool = False
    rank: int = 0
    sort_key: str = "fear_disgust"
    test_metric: str = "fear_disgust"
    ci: dict | None = None
    vs_top: dict | None = None
    p_vs_top: float | None = None
    tied_with_top: bool | None = None
    vs_baseline: dict | None = None
    p_vs_baseline: float | None = None
    baseline: str | None = None  # the baseline row's label, when tested against one
    bench: dict[str, float | None] = field(default_factory=dict)
    members: list[CellResult] = field(default_factory=list, repr=False)
    views: list[dict] = field(default_factory=list, repr=False)  # each member's metrics block

    def value(self, key: str) -> Any:
        """A column's raw value: a field or a bench figure (None when absent)."""
        if key in self.bench:
            return self.bench[key]
        return getattr(self, key) if key in _JSON_FIELDS else None

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in _JSON_FIELDS
               if self.baseline is not None or k not in _BASELINE_KEYS}
        return {**out, **self.bench}


_JSON_FIELDS = tuple(f.name for f in fields(LeaderboardRow)
                     if f.name not in ("bench", "members", "views"))


# ---------------------------------------------------------------------------------- loading


def load_results(run_dirs: list[Path]) -> tuple[list[CellResult], list[str]]:
    """Results of several run directories. A cell id seen twice (the same config in two runs)
    is kept once, first directory first; the duplicates' ids are returned."""
    seen: dict[str, CellResult] = {}
    dups: list[str] = []
    for d in run_dirs:
        for r in read_results(Path(d)):
            if not isinstance(r.cell_id, str):
                raise FerBenchError(f"{d}: a result without a cell_id")
            if r.cell_id in seen:
                dups.append(r.cell_id)
                continue
            seen[r.cell_id] = r
    return list(seen.values()), dups


def eval_datasets(results: list[CellResult]) -> list[str]:
    """Every dataset a leaderboard view exists for: training datasets, then cross datasets."""
    own = sorted({r.dataset for r in results if r.ok})
    cross = sorted({d for r in results if r.ok for d in r.cross} - set(own))
    return own + cross


def view_of(result: CellResult, dataset: str | None) -> dict | None:
    """The metrics block a result contributes to a dataset's view."""
    if dataset is None or dataset == result.dataset:
        return result.metrics
    block = result.cross.get(dataset)
    return block if isinstance(block, dict) and "accuracy" in block else None


# ---------------------------------------------------------------------------------- rows


def group_key(result: CellResult) -> str:
    """Cells that differ only by seed form one row."""
    cfg = {k: v for k, v in (result.config or {}).items() if k not in ("seed", "resolved")}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def metric_value(row: LeaderboardRow, key: str) -> float | None:
    if key.startswith("recall:"):
        return row.per_class_accuracy.get(key[7:])
    if key in row.per_class_accuracy:
        return row.per_class_accuracy[key]
    v = row.value(key)
    return v if isinstance(v, int | float) else None


def sort_value(row: LeaderboardRow, key: str) -> float:
    v = metric_value(row, key)
    if v is None:
        return -np.inf
    return -float(v) if key in ASCENDING else float(v)


def normalise_key(key: str, classes: set[str]) -> str:
    """A sort/test key in canonical form (a bare class name means its recall)."""
    return f"recall:{key}" if key in classes else key


def check_sort(sort: str, rows: list[LeaderboardRow]) -> None:
    known = set(METRICS) | set(COST) | {"n_seeds"}
    classes = {c for r in rows for c in r.per_class_accuracy}
    if sort not in known and sort.removeprefix("recall:") not in classes and rows:
        raise ConfigError(f"--sort {sort!r}: expected one of {', '.join(sorted(known))}, a class "
                          f"name or recall:CLASS (classes: {', '.join(sorted(classes))})")


def _cost(member: CellResult, view: dict) -> dict:
    backbone = member.resolved.get("backbone") or {}
    timing = member.timing or {}
    ips = timing.get("images_per_s")
    if ips is None and timing.get("eval_s") and view.get("n_test"):
        ips = view["n_test"] / timing["eval_s"]  # test-set evaluation throughput
    trainable = (member.resolved.get("regime") or {}).get("trainable_params")  # whole cell
    return {"params_m": backbone.get("params_m"), "gmacs": backbone.get("gmacs"),
            "trainable_m": trainable / 1e6 if isinstance(trainable, int) else None,
            "train_s": timing.get("train_s"), "images_per_s": ips,
            # the training loop's own throughput (last epoch), as measured in the run
            "train_images_per_s": timing.get("train_images_per_s")}


def precision_of(result: CellResult) -> str:
    """The precision a cell trained and evaluated in, from its resolved config."""
    resolved = result.resolved
    amp = (resolved.get("compute") or {}).get("amp", resolved.get("amp"))
    return PRECISION_NAMES.get(str(amp), str(amp)) if amp is not None else "?"


def mark_precision(rows: list[LeaderboardRow]) -> None:
    """Rows whose precision differs from the most common one are marked: bf16 and fp32 figures
    are not comparable to the last digit (bf16 kernels round differently per CPU family)."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.precision] += 1
    common = max(counts, key=lambda k: (counts[k], k == "fp32")) if counts else None
    for r in rows:
        r.precision_differs = len(counts) > 1 and r.precision != common


def _label(row: LeaderboardRow) -> str:
    parts = [row.backbone, row.head, row.prompts, row.text_encoder]
    if row.regime not in (None, "full"):  # the training regime, when not the default
        parts.append(row.regime)
    return " · ".join(str(p) for p in parts if p)


def _test_counts(view: dict) -> dict[str, int] | None:
    """Test images per class (the confusion matrix's row sums), for reading a recall's weight."""
    conf, classes = view.get("confusion"), view.get("classes")
    if conf is None or not classes or len(conf) != len(classes):
        return None
    return {c: int(sum(r)) for c, r in zip(classes, conf, strict=True)}


def _split_sizes(result: CellResult) -> dict[str, int] | None:
    sizes = (result.resolved.get("dataset") or {}).get("split_sizes")
    return sizes if isinstance(sizes, dict) else None


def _summed_confusion(views: list[dict]) -> list[list[int]] | None:
    confs = [np.asarray(v["confusion"]) for v in views if v.get("confusion") is not None]
    if len(confs) != len(views) or len({c.shape for c in confs}) != 1:
        return None
    return np.sum(confs, 0).astype(int).tolist()


def make_row(members: list[tuple[CellResult, dict]], dataset: str | None) -> LeaderboardRow:
    """One row from a configuration's (result, metrics view) pairs, one per seed."""
    members = sorted(members, key=lambda m: m[0].seed)
    results, views = [m for m, _ in members], [v for _, v in members]
    first, fview = members[0]
    row = LeaderboardRow(**{k: getattr(first, k) for k in IDENTITY}, members=results,
                         views=views, eval_dataset=dataset or first.dataset,
                         n_seeds=len(members), seeds=[m.seed for m in results],
                         regime=((first.config or {}).get("train") or {}).get("regime", "full"))
    for k in METRICS:
        mean, row.std[k] = stats.mean_std([v.get(k) for v in views])
        setattr(row, k, mean)
    row.classes = list(fview.get("classes") or fview.get("per_class_accuracy", {}))
    for c in row.classes:
        row.per_class_accuracy[c], row.std[f"recall:{c}"] = stats.mean_std(
            [(v.get("per_class_accuracy") or {}).get(c) for v in views])
    costs = [_cost(m, v) for m, v in members]
    for k in COST:
        setattr(row, k, stats.mean_std([c[k] for c in costs])[0])
    row.confusion = _summed_confusion(views)
    row.precision = "/".join(sorted({precision_of(m) for m in results}))
    row.test_counts = _test_counts(fview)
    row.split_sizes = _split_sizes(first) if row.eval_dataset == first.dataset else None
    row.cell_ids = [m.cell_id for m in results]
    row.group = group_key(first)
    row.label = _label(row)
    return row


def rank_rows(results: list[CellResult], sort: str, dataset: str | None
              ) -> tuple[list[LeaderboardRow], str]:
    """The ok results of a view grouped into rows, ranked by `sort` (ties by accuracy), each
    label unique; returns the rows and the sort key in canonical form."""
    groups: dict[tuple[str, str], list[tuple[CellResult, dict]]] = defaultdict(list)
    for r in results:
        if not r.ok or not r.metrics:
            continue
        view = view_of(r, dataset)
        if view is not None:
            groups[(group_key(r), dataset or r.dataset)].append((r, view))
    rows = [make_row(members, dataset) for members in groups.values()]
    mark_precision(rows)
    check_sort(sort, rows)
    sort = normalise_key(sort, {c for r in rows for c in r.per_class_accuracy})
    rows.sort(key=lambda r: (sort_value(r, sort), sort_value(r, "accuracy")), reverse=True)
    labels = defaultdict(list)
    for r in rows:
        labels[r.label].append(r)
    for same in labels.values():  # same identity, different settings: tell them apart
        if len(same) > 1:
            for r in same:
                r.label += f" #{r.group[:6]}"
    for i, r in enumerate(rows, 1):
        r.rank = i
    return rows, sort


def attach_bench(rows: list[LeaderboardRow], bench_rows: list[dict]) -> None:
    """Add `fer-bench bench` figures to the rows of the same backbone (the same head when
    benchmarked, else any): training and inference samples/s and training MFU."""
    for row in rows:
        mine = [b for b in bench_rows if b.get("backbone") == row.backbone]
        same_head = [b for b in mine if b.get("head") == row.head]
        for b in same_head or mine:
            if b.get("mode") == "train":
                row.bench.setdefault("bench_train_per_s", b.get("samples_per_s"))
                row.bench.setdefault("bench_mfu", b.get("mfu"))
            elif b.get("mode") == "infer":
                row.bench.setdefault("bench_infer_per_s", b.get("samples_per_s"))


def find_baseline(rows: list[LeaderboardRow], spec: str) -> LeaderboardRow:
    """A row named by a cell id, a unique cell-id prefix (>= 4 characters), or identity values
    separated by `/` or `,` (e.g. `fer_cnn/linear`) that all belong to exactly one row."""
    exact = [r for r in rows if spec in r.cell_ids]
    if exact:
        return exact[0]
    if len(spec) >= 4:
        pref = [r for r in rows if any(c.startswith(spec) for c in r.cell_ids)]
        if len(pref) == 1:
            return pref[0]
    tokens = [t.strip() for t in re.split(r"[/,]", spec) if t.strip()]
    named = [r for r in rows if tokens and all(
        t in {str(getattr(r, k)) for k in IDENTITY if getattr(r, k) is not None}
        for t in tokens)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ConfigError(f"--baseline {spec!r} matches {len(named)} rows ("
                          + "; ".join(r.label for r in named[:5])
                          + "); add a prompt set, head or text encoder, or give a cell id")
    raise ConfigError(f"--baseline {spec!r}: no row has that cell id or those names; rows: "
                      + "; ".join(f"{r.label} ({r.cell_ids[0]})" for r in rows[:8]))
