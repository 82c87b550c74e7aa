"""Target 1, matrix reuse: one backbone x 4 prompt sets with a frozen image encoder costs at most
1.5x one cell (a tool that recomputes per cell pays 4x).

Both runs are the real `fer-bench run` in a fresh process with an empty feature cache: the same
random-init resnet18 at 112 px, `lasted` head, regime `frozen` (image and text towers frozen:
the head's projection and temperature train), all-MiniLM-L6-v2 class text, SynFER n=2000,
3 epochs. Each run starts with an empty cache (dataset and features): all costs included.

    .venv/bin/python benchmarks/perf/matrix_reuse.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import report

PROMPTS = ["classnames", "clip_fer2013", "facs", "lasted_labels"]
DATASET = "synfer:n=2000"


def run(prompts: list[str], out: Path, cache: Path) -> float:
    env = {**os.environ, "FER_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "fer_bench", "run", "--backbones", "timm:resnet18@none",
            "--heads", "lasted", "--prompts", ",".join(prompts), "--text-encoders", "minilm",
            "--dataset", DATASET, "--seeds", "0", "--epochs", "3", "--image-size", "112",
            "--set", "regime=frozen", "--no-pretrained", "--out", str(out), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"fer-bench run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = run(PROMPTS[:1], tmp / "one", tmp / "cache-one")
        four = run(PROMPTS, tmp / "four", tmp / "cache-four")
    ratio = four / one
    print(f"1 cell: {one:.1f} s; 4 cells (4 prompt sets): {four:.1f} s; ratio {ratio:.2f} "
          "(naive 4.00)")
    ok = report("matrix_reuse_4_prompts", ratio, 1.5, higher_is_better=False,
                one_cell_s=round(one, 1), four_cells_s=round(four, 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
