"""`make bench`: every speed target of fer-bench, each measured side by side by its own script
(in its own process, one after the other, so none disturbs another's timing). Prints a table and
writes `$BENCH_OUT` (default runs/bench.json): {name: {"value", "target", "pass", ...}}.
Exit status 1 when a target that ran failed; GPU targets are skipped without CUDA.

    .venv/bin/python benchmarks/perf/run_all.py [--only matrix_reuse,mfu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("matrix_reuse", "loop_overhead", "data_path", "mfu", "csv_memory", "gpu_rn50x64")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated script names")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(SCRIPTS)
    out = Path(os.environ.get("BENCH_OUT") or "runs/bench.json")
    results: dict[str, dict] = {}
    failed_scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp) / "parts.jsonl"
        for name in names:
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            env = {**os.environ, "BENCH_PARTS": str(parts), "HF_HUB_OFFLINE": "1",
                   "FER_BENCH_CACHE": str(Path(tmp) / "cache")}
            proc = subprocess.run([sys.executable, str(HERE / f"{name}.py")], env=env)
            print(f"   ({time.perf_counter() - t:.0f} s)", flush=True)
            if proc.returncode not in (0, 1):  # 1: a target missed (reported); else crashed
                failed_scripts.append(name)
        if parts.is_file():
            for line in parts.read_text().splitlines():
                results.update(json.loads(line))
    for name in failed_scripts:
        results[f"{name} (script)"] = {"value": None, "target": None, "pass": False,
                                        "error": "the script crashed; see its output above"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'target':<32} {'value':>10} {'target':>10}  result")
    for name, r in results.items():
        op = "" if r.get("target") is None else (">=" if r.get("higher_is_better", True)
                                                  else "<=")
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        verdict = {True: "pass", False: "FAIL", None: f"skipped ({r.get('skipped', '')})"}
        print(f"{name:<32} {value:>10} {op:>2}{r.get('target') or '-':>8}  {verdict[r['pass']]}")
    print(f"\nwrote {out}")
    return 1 if any(r["pass"] is False for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
