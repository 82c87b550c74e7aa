"""Ablation behind `train.absent_classes`'s default: LASTED's loss on batches that miss some
class ("image_only", the original's rule: drop the text axis for the whole batch) vs masking only
the undefined entries ("mask"). Batch 48 on FER2013's class balance, as in the study: about half
the batches hold no disgust image, so the rule decides the text axis's share of training.

    python benchmarks/ablations/absent_classes.py [--n 6000] [--epochs 4] [--seeds 0,1,2]

Runs the two settings x seeds into one run directory and prints the leaderboard (seeds
aggregated, bootstrap intervals, paired test of each row against the top row)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--backbone", default="fer_cnn")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation_absent_classes"))
    a = ap.parse_args()
    fer_bench = [sys.executable, "-m", "fer_bench"]
    common = ["run", "--backbones", a.backbone, "--heads", "lasted", "--prompts", "classnames",
              "--text-encoder", "minilm", "--dataset", f"synfer:n={a.n}", "--seeds", a.seeds,
              "--epochs", str(a.epochs), "--batch-size", "48", "--out", str(a.out), "--quiet",
              "--set", "pretrained=false", "--set", "regime=image", "--set", "lr=2e-3"]
    for mode in ("mask", "image_only"):
        subprocess.run([*fer_bench, *common, "--set", f"absent_classes={mode}"], check=True)
    board = subprocess.run([*fer_bench, "leaderboard", str(a.out), "--format", "json"],
                           check=True, capture_output=True, text=True).stdout
    print_table(json.loads(board), a.out)
    return 0


def print_table(board, out: Path) -> None:
    """The leaderboard's rows named by the setting that tells them apart."""
    rows = board["rows"] if isinstance(board, dict) else board
    mode = {}
    for f in (out / "cells").glob("*/result.json"):
        r = json.loads(f.read_text())
        mode[r["cell_id"]] = r["config"]["train"]["absent_classes"]
    print("| absent_classes | seeds | fear/disgust [95% CI] | fear | disgust | accuracy | "
          "p vs top |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = (r.get("ci") or {}).get("fear_disgust") or (None, None)
        ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else ""
        p = r.get("p_vs_top")
        print(f"| {mode[r['cell_ids'][0]]} | {r['n_seeds']} | "
              f"{100 * r['fear_disgust']:.1f}{ci} | {100 * r['per_class_accuracy']['fear']:.1f} "
              f"| {100 * r['per_class_accuracy']['disgust']:.1f} | {100 * r['accuracy']:.1f} | "
              f"{'-' if p is None else f'{p:.3f}'} |")


if __name__ == "__main__":
    sys.exit(main())
