"""The leaderboard: result files -> ranked rows (seeds aggregated to mean and std), ranked on
fear/disgust by default, rendered as a terminal table, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import defaultdict

import numpy as np

from ..errors import ConfigError

METRICS = ("fear_disgust", "accuracy", "balanced_accuracy", "macro_f1")
IDENTITY = ("backbone", "prompts", "head", "text_encoder", "dataset")


def group_key(result: dict) -> str:
    """Cells that differ only by seed form one row."""
    cfg = {k: v for k, v in result["config"].items() if k not in ("seed", "resolved")}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def sort_value(row: dict, key: str) -> float:
    if key.startswith("recall:"):
        v = row["per_class_accuracy"].get(key.split(":", 1)[1])
    elif key in row["per_class_accuracy"]:
        v = row["per_class_accuracy"][key]
    else:
        v = row.get(key)
    return -np.inf if v is None else float(v)


def build_rows(results: list[dict], sort: str = "fear_disgust") -> list[dict]:
    ok = [r for r in results if r.get("status") == "ok" and r.get("metrics")]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        groups[group_key(r)].append(r)
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: r["seed"])
        first = members[0]
        row = {k: first.get(k) for k in IDENTITY}
        row["n_seeds"] = len(members)
        row["seeds"] = [m["seed"] for m in members]
        row["std"] = {}
        for m in METRICS:
            row[m], row["std"][m] = _mean_std([x["metrics"][m] for x in members])
        classes = first["metrics"]["classes"]
        row["per_class_accuracy"] = {}
        for c in classes:
            row["per_class_accuracy"][c], row["std"][f"recall:{c}"] = _mean_std(
                [x["metrics"]["per_class_accuracy"].get(c) for x in members])
        row["train_s"] = float(np.mean([x["timing"]["train_s"] for x in members]))
        row["params_m"] = (first["config"].get("resolved", {}).get("backbone", {})
                           .get("params_m"))
        row["cell_ids"] = [m["cell_id"] for m in members]
        rows.append(row)
    known = set(METRICS) | {"train_s", "params_m"}
    classes_all = {c for r in rows for c in r["per_class_accuracy"]}
    if sort not in known and sort.removeprefix("recall:") not in classes_all and rows:
        raise ConfigError(f"--sort {sort!r}: expected one of {', '.join(sorted(known))}, a class "
                          f"name or recall:CLASS")
    rows.sort(key=lambda r: (sort_value(r, sort), sort_value(r, "accuracy")), reverse=True)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _fmt(v: float | None, std: float | None = None, n: int = 1) -> str:
    if v is None:
        return "-"
    s = f"{100 * v:.1f}"
    return f"{s} ± {100 * std:.1f}" if n > 1 and std is not None else s


COLUMNS = [("#", "rank"), ("backbone", "backbone"), ("head", "head"), ("prompts", "prompts"),
           ("text encoder", "text_encoder"), ("dataset", "dataset"),
           ("fear/disgust", "fear_disgust"), ("fear", "recall:fear"),
           ("disgust", "recall:disgust"), ("accuracy", "accuracy"),
           ("bal. acc", "balanced_accuracy"), ("macro-F1", "macro_f1"), ("seeds", "n_seeds")]


def cell_text(row: dict, key: str) -> str:
    if key in ("rank", "n_seeds"):
        return str(row[key])
    if key in IDENTITY:
        return str(row[key]) if row[key] is not None else "-"
    value = row["per_class_accuracy"].get(key[7:]) if key.startswith("recall:") else row[key]
    return _fmt(value, row["std"].get(key), row["n_seeds"])


def render(rows: list[dict], fmt: str, title: str = "") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        classes = list(rows[0]["per_class_accuracy"]) if rows else []
        head = ["rank", *IDENTITY, "n_seeds", *METRICS, *(f"std_{m}" for m in METRICS),
                *(f"recall_{c}" for c in classes), "train_s", "params_m"]
        w = csv.writer(buf)
        w.writerow(head)
        for r in rows:
            w.writerow([r["rank"], *(r[k] for k in IDENTITY), r["n_seeds"],
                        *(r[m] for m in METRICS), *(r["std"][m] for m in METRICS),
                        *(r["per_class_accuracy"][c] for c in classes), r["train_s"],
                        r["params_m"]])
        return buf.getvalue()
    if fmt == "md":
        lines = [f"**{title}** (test split; recall and accuracy in %, ranked by fear/disgust)\n"
                 if title else "",
                 "| " + " | ".join(c for c, _ in COLUMNS) + " |",
                 "|" + "|".join("---:" if k not in IDENTITY else "---" for _, k in COLUMNS) + "|"]
        lines += ["| " + " | ".join(cell_text(r, k) for _, k in COLUMNS) + " |" for r in rows]
        return "\n".join(x for x in lines if x)
    raise ConfigError(f"--format {fmt!r}: expected table, md, csv or json")


def rich_table(rows: list[dict], title: str = ""):
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    for name, key in COLUMNS:
        style = "bold magenta" if key in ("fear_disgust",) else None
        table.add_column(name, justify="left" if key in IDENTITY else "right", style=style,
                         no_wrap=key == "backbone")
    for r in rows:
        table.add_row(*(cell_text(r, k) for _, k in COLUMNS))
    return table
