"""The adaptation regimes end to end on SynFER with a small CLIP ViT (`fer-ViT-Ti-8`: 4 layers,
width 192, 48 px, with its paired text tower), as adaptation is meant to be used: from a base.

1. Base: the random-init model is trained whole (`full`, `lasted`) on one SynFER draw
   (`--base-dataset`, seed 1), and its best-on-validation weights are exported as an open_clip
   checkpoint (both towers). `--base-epochs 0` skips this and adapts the random init itself.
2. Adaptation: regimes {full, image, lora, adapter, vpt} x heads {lasted, linear} from that base
   on a disjoint draw (`--dataset`, seed 0), each cell in a fresh process that records its peak
   RSS above the process's baseline (as benchmarks/perf/memory_estimate.py), then a table of
   fear/disgust, accuracy, trainable parameters and peak memory.

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

MODEL = "fer-ViT-Ti-8"
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


def train_base(out: Path, dataset: str, epochs: int) -> Path:
    """Train the random-init model whole and export its best checkpoint for open_clip."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from fer_bench.run import run_plan
    from fer_bench.text.clip_models import build_clip

    train = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, pretrained=False, amp="off",
                        device="cpu", regime="full")
    [cell] = expand(Benchmark(name="adaptation_base", backbones=[f"open_clip:{MODEL}@none"],
                              heads=["lasted"], prompts=["classnames"], datasets=[dataset],
                              train=train))
    summary = run_plan([cell], out, keep_checkpoints=True)
    if summary.failed:
        raise SystemExit(f"base training failed: {summary.failed}")
    result = json.loads((out / "cells" / cell.cell_id / "result.json").read_text())
    m = result["metrics"]
    print(f"base ({dataset}, {epochs} epochs): accuracy {100 * m['accuracy']:.1f}, "
          f"fear/disgust {100 * (m['fear_disgust'] or 0):.1f}", flush=True)
    ckpt_path = out / "cells" / cell.cell_id / "checkpoint.safetensors"
    ckpt = load_file(ckpt_path)
    with safe_open(str(ckpt_path), "pt") as f:  # names stored once: the rest are aliases
        aliases = json.loads(f.metadata().get("aliases", "{}"))
    ckpt.update({alias: ckpt[name] for alias, name in aliases.items()})
    clip = build_clip(MODEL, "none", MODEL, load=False)[0]
    state = {}
    for key in clip.state_dict():  # the image tower is the backbone's encoder, the rest text
        if key.startswith("visual."):
            hits = [k for k in ckpt if k.startswith("backbone.") and "paired_text" not in k
                    and k.endswith("." + key.removeprefix("visual."))]
        else:
            hits = [k for k in ckpt if k.startswith("head.") and k.endswith(".clip." + key)]
        if len(hits) != 1:
            raise SystemExit(f"checkpoint: {len(hits)} matches for {key!r}: {hits[:4]}")
        state[key] = ckpt[hits[0]].to(torch.float32).contiguous()
    path = out / "base_fer-ViT-Ti-8.safetensors"
    save_file(state, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/adaptation_synfer"))
    ap.add_argument("--dataset", default="synfer:n=1500")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--base-dataset", default="synfer:n=6000,seed=1")
    ap.add_argument("--base-epochs", type=int, default=8)
    ap.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated")
    args = ap.parse_args()
    weights = "none"
    if args.base_epochs:
        weights = str(train_base(args.out / "base", args.base_dataset, args.base_epochs))
    backbone = f"open_clip:{MODEL}@{weights}"
    train = {"epochs": args.epochs, "batch_size": 64, "lr": 1e-3,
             "pretrained": weights != "none", "amp": "off", "device": "cpu"}
    bench = {"name": "adaptation_synfer", "backbones": [backbone], "heads": ["lasted", "linear"],
             "prompts": ["classnames"], "datasets": [args.dataset],
             "regimes": args.regimes.split(",")}
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
