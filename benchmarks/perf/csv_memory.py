"""Target 5, memory: loading a FER2013-sized CSV (35,887 rows, ~290 MB of text) peaks at
<= 2x the size of its uint8 pixel array above the process's baseline.

The CSV is SynFER written in fer2013.csv's exact format. The load runs in a fresh process that
first imports everything, then resets the kernel's peak-RSS mark (/proc/self/clear_refs) and
measures VmHWM - VmRSS around `load_dataset` -- the default path, which parses and also writes
the dataset cache. Linux only (it reads /proc).

    .venv/bin/python benchmarks/perf/csv_memory.py [--n 35887]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import report

CHILD = r"""
import json, sys
from fer_bench.train.throughput import _rss_reset, _status_kb
from fer_bench.data import load_dataset
import numpy, torch  # noqa: F401  (imported before the baseline)
base = _rss_reset()
ds = load_dataset("fer2013:" + sys.argv[1], reuse=False)
peak = _status_kb("VmHWM")
nbytes = sum(s.images.numel() for s in ds.splits.values())
print(json.dumps({"base_kb": base, "peak_kb": peak, "array_bytes": nbytes,
                  "cache": ds.meta.get("cache")}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=35887)
    args = ap.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        return 0 if report("csv_load_peak_memory", None, 2.0, higher_is_better=False,
                           skipped="needs Linux /proc") else 1
    from fer_bench.data.synfer import generate, write_fer2013_csv

    with tempfile.TemporaryDirectory() as tmp:
        csv = write_fer2013_csv(generate(n=args.n), Path(tmp) / "fer2013.csv")
        env = {**os.environ, "FER_BENCH_CACHE": str(Path(tmp) / "cache")}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(csv)], env=env,
                              capture_output=True, text=True, check=True)
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        size_mb = csv.stat().st_size / 1e6
    extra = (m["peak_kb"] - m["base_kb"]) * 1024
    ratio = extra / m["array_bytes"]
    print(f"CSV {size_mb:.0f} MB -> {m['array_bytes'] / 1e6:.1f} MB uint8; peak above baseline "
          f"{extra / 1e6:.1f} MB (cache: {m['cache']})")
    ok = report("csv_load_peak_memory", ratio, 2.0, higher_is_better=False,
                peak_extra_mb=round(extra / 1e6, 1), array_mb=round(m["array_bytes"] / 1e6, 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
