"""`python -m fer_bench.executors.worker PAYLOAD.json [REPORT.json]`: run one job (a cell) in
this process -- the unit of `--isolate`, and of a multi-GPU Ray/SLURM job under torchrun. The
payload is JSON written by fer-bench (`cells.make_payload`); the report is `run_job`'s dict.

Exit code: 0 when the job ran to a report (the cell itself may have failed: see the report),
2 for bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import FerBenchError
from .cells import run_job


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m fer_bench.executors.worker PAYLOAD.json [REPORT.json]",
              file=sys.stderr)
        return 2
    try:
        payload = json.loads(Path(argv[0]).read_text())
        from ..train import distributed

        if distributed.env_world_size() > 1:  # one cell as N ranks (torchrun)
            from ..registry import load_plugin
            from .torchrun import on_ranks

            for p in payload.get("plugins") or []:
                load_plugin(p)  # the followers build the same models
            report = on_ranks(lambda: run_job(payload), payload["cell"]["train"]["device"])
        else:
            report = run_job(payload)
    except FerBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report is not None:  # rank 0 (or the only process)
        text = json.dumps(report)
        if len(argv) == 2:
            Path(argv[1]).write_text(text)
        else:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
