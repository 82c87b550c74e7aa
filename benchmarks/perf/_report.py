"""How every benchmark script reports a target: one printed line, and (under `run_all.py`) one
JSON record appended to the file named by $BENCH_PARTS."""

from __future__ import annotations

import json
import os


def report(name: str, value: float | None, target: float, higher_is_better: bool = True,
           skipped: str | None = None, **details: object) -> bool:
    """Print `name: value (target >= / <= target) pass|FAIL`; returns whether it passed."""
    if skipped is not None or value is None:
        passed = None
        print(f"{name}: skipped ({skipped})")
    else:
        passed = value >= target if higher_is_better else value <= target
        op = ">=" if higher_is_better else "<="
        print(f"{name}: {value:.3f} (target {op} {target}) {'pass' if passed else 'FAIL'}")
    record = {"value": None if value is None else round(float(value), 4), "target": target,
              "pass": passed, "higher_is_better": higher_is_better, **details}
    if skipped is not None:
        record["skipped"] = skipped
    parts = os.environ.get("BENCH_PARTS")
    if parts:
        with open(parts, "a") as fh:
            fh.write(json.dumps({name: record}) + "\n")
    return passed is not False
