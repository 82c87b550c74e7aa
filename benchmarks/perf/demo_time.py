"""Time `fer-bench run` on the demo benchmark (the README's number): a fresh output directory,
the real CLI in a subprocess, wall time against the 3-minute budget. Also prints the CPU time
the run used and the load average before and after, since on a shared machine the wall time
says as much about the neighbours as about the demo. Prints one JSON line too.

    .venv/bin/python benchmarks/perf/demo_time.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 180.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fer_bench", "run", "--out", str(out),
                               "--quiet"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s, load_after = usage.ru_utime + usage.ru_stime, os.getloadavg()[0]
        cells = len(list(out.glob("cells/*/result.json")))
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
        return proc.returncode
    ratio = wall / BUDGET_S
    print(f"demo: {cells} cells in {wall:.1f} s = {ratio:.2f} x the {BUDGET_S:.0f} s budget "
          f"({'pass' if ratio <= 1 else 'FAIL'}); CPU {cpu_s:.0f} s on {os.cpu_count()} "
          f"cores; 1-min load average {load_before:.1f} before, {load_after:.1f} after")
    print(json.dumps({"demo_wall_s": {"value": round(wall, 1), "target": BUDGET_S,
                                      "pass": ratio <= 1, "cpu_s": round(cpu_s, 1),
                                      "load_before": load_before, "load_after": load_after}}))
    return 0 if ratio <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
