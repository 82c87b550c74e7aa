"""`--executor local --isolate`: each cell in its own Python process, one after another, so a
crash (segfault, OOM kill) or a leak in one cell cannot take the matrix down with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..plan import Cell
from ..run import is_complete
from .cells import make_payload, record_crash


def _why(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the OOM killer sends SIGKILL: try a smaller batch_size)" if -code == 9 else ""
        return f"the cell's process was killed by {name}{hint}"
    return f"the cell's process exited with code {code}"


def run_isolated(cells: list[Cell], out: Path, opts, *, rerun: bool, on_result) -> None:
    for cell in cells:
        if not rerun and is_complete(out, cell):
            on_result(cell, {"cell_id": cell.cell_id, "status": "skipped", "error": None})
            continue
        payload = make_payload(cell, out, plugins=opts.plugins, rerun=rerun, executor="local")
        with tempfile.TemporaryDirectory(prefix="fer-bench-cell-") as tmp:
            pfile, rfile = Path(tmp) / "payload.json", Path(tmp) / "report.json"
            pfile.write_text(json.dumps(payload))
            proc = subprocess.run([sys.executable, "-m", "fer_bench.executors.worker",
                                   str(pfile), str(rfile)],
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode == 0 and rfile.is_file():
                report = json.loads(rfile.read_text())
            else:
                reason = _why(proc.returncode)
                tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout else []
                if tail and proc.returncode > 0:
                    reason += f": {tail[0][:300]}"
                record_crash(out, cell, reason, "local")
                report = {"cell_id": cell.cell_id, "status": "failed", "error": reason}
        on_result(cell, report)
