"""The adaptation regimes end to end on SynFER with a random-init small CLIP ViT
(`open_clip:fer-ViT-Ti-8@none`: 4 layers, width 192, 48 px, with its paired text tower):
regimes {full, image, lora, adapter, vpt} x heads {lasted, linear}, each cell in a fresh process
that records its peak RSS above the process's baseline (as benchmarks/perf/memory_estimate.py),
then a table of fear/disgust, accuracy, trainable parameters and peak memory.

    .venv/bin/python benchmarks/perf/adaptation_matrix.py [--out runs/adaptation_synfer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from fer_bench.plan import Benchmark, TrainConfig, expand

BACKBONE = "open_clip:fer-ViT-Ti-8@none"
REGIMES = ["full", "image", "lora:r=8", "adapter", "vpt:8"]
CHILD = r"""
import json, sys
from pathlib import Path
from fer_bench.train.throughput import _rss_reset, _status_kb
from fer_bench.data import load_dataset
from fer_bench.plan import Benchmark, TrainConfig, expand
from fer_bench.run import run_plan
import open_clip, peft, torch  # noqa: F401  (imported before the baseline)
spec = json.loads(sys.argv[1])
bench = Benchmark(**{**spec["bench"], "train": TrainConfig(**spec["train"])})
cell = [c for c in expand(bench) if c.cell_id == spec["cell_id"]][0]
load_dataset(cell.dataset)
base = _rss_reset()
summary = run_plan([cell], Path(spec["out"]))
print(json.dumps({"peak_mb": (_status_kb("VmHWM") - base) / 1024, "failed": summary.failed}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/adaptation_synfer"))
    ap.add_argument("--dataset", default="synfer:n=1500")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    train = {"epochs": args.epochs, "batch_size": 64, "lr": 1e-3, "pretrained": False,
             "amp": "off", "device": "cpu"}
    bench = {"name": "adaptation_synfer", "backbones": [BACKBONE], "heads": ["lasted", "linear"],
             "prompts": ["classnames"], "datasets": [args.dataset], "regimes": REGIMES}
    cells = expand(Benchmark(**bench, train=TrainConfig(**train)))
    rows = []
    for cell in cells:
        spec = json.dumps({"bench": bench, "train": train, "cell_id": cell.cell_id,
                           "out": str(args.out)})
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True,
                              text=True, env=env, check=False)
        if proc.returncode != 0:
            print(f"{cell.label}: failed\n{proc.stderr[-1500:]}")
            continue
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        result = json.loads((args.out / "cells" / cell.cell_id / "result.json").read_text())
        m, reg = result["metrics"] or {}, result["config"]["resolved"]["regime"]
        pc = m.get("per_class_accuracy", {})
        rows.append((cell.train.regime, cell.head, m.get("fear_disgust"), pc.get("fear"),
                     pc.get("disgust"), m.get("accuracy"), reg["trainable_params"],
                     got["peak_mb"]))
        print(f"{rows[-1]}", flush=True)
    print("\n| regime | head | fear/disgust | fear | disgust | accuracy | trainable params "
          "| peak MB |\n|---|---|---|---|---|---|---|---|")
    for rg, head, fd, fear, dis, acc, n, peak in rows:
        pct = [f"{100 * v:.1f}" if v is not None else "-" for v in (fd, fear, dis, acc)]
        print(f"| {rg} | {head} | {' | '.join(pct)} | {n:,} | {peak:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
