"""The HTML report of a real synfer run, rendered in headless Chromium: every image loads and the
ranked table is there. Also the PNGs beside it and the CLI."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fer_bench.cli import app
from fer_bench.errors import FerBenchError
from fer_bench.results.report import pareto_front

from .test_leaderboard import make_runs

pytestmark = pytest.mark.slow  # shares the leaderboard tests' tiny runs; starts a browser
runner = CliRunner()
CHROMIUM = "/usr/bin/chromium"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Injected into a copy of the report: after the load event, record whether every image decoded.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var m = document.createElement('div');
  m.id = 'probe';
  m.setAttribute('data-images', ok + '/' + imgs.length);
  m.setAttribute('data-rows', document.querySelectorAll('#leaderboard tbody tr').length);
  document.body.appendChild(m);
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (the report must render in a real
    browser); fails with the reason when it cannot be installed."""
    if not Path(CHROMIUM).exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install it")
        for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends",
                                       "chromium"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                  env={"DEBIAN_FRONTEND": "noninteractive",
                                       "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            if proc.returncode != 0:
                pytest.fail(f"could not install chromium ({' '.join(cmd)} exited "
                            f"{proc.returncode}): {proc.stderr[-800:]}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"apt-get install chromium finished but {CHROMIUM} is still missing")
    return CHROMIUM


def browse(chromium: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}", *extra,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path, Path]:
    a, b = make_runs(tmp_path_factory)
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = runner.invoke(app, ["report", str(a), str(b), "-o", str(out), "--resamples", "500"])
    assert res.exit_code == 0, res.output
    return out, a, b


def test_report_renders_in_chromium(report, chromium, tmp_path):
    out, _, _ = report
    page = tmp_path / "probe.html"
    page.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    proc = browse(chromium, page, tmp_path, "--dump-dom", "--virtual-time-budget=10000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    probe = re.search(r'id="probe" data-images="(\d+)/(\d+)" data-rows="(\d+)"', dom)
    assert probe, dom[-2000:]
    ok, total, rows = map(int, probe.groups())
    # recall bars, fear/disgust confusions, accuracy vs cost (train time differs), one
    # confusion matrix per row
    assert total == 3 + 2 and ok == total
    assert rows == 2
    assert "fear/disgust" in dom and "Confusion matrices" in dom
    shot = tmp_path / "report.png"
    proc = browse(chromium, out, tmp_path, f"--screenshot={shot}", "--window-size=1300,2400",
                  "--hide-scrollbars")
    assert proc.returncode == 0 and shot.read_bytes()[:8] == PNG_MAGIC, proc.stderr[-2000:]


def test_report_is_self_contained_and_writes_pngs(report):
    out, a, b = report
    text = out.read_text()
    # Nothing fetched over the network or from disk: images inline, CSS inline.
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert "<link" not in text and "@import" not in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 5
    assert all(base64.b64decode(i)[:8] == PNG_MAGIC for i in images)
    pngs = sorted((out.parent / "report_plots").glob("*.png"))
    assert {p.stem.split("_0")[0] for p in pngs} >= {"recall_per_class", "accuracy_vs_cost",
                                                     "fear_disgust_confusions", "confusion"}
    assert len(pngs) == 5
    assert {base64.b64encode(p.read_bytes()).decode() for p in pngs} == set(images)
    # The ranked table with intervals, and every cell's config (collapsible).
    assert '<table class="lb" id="leaderboard">' in text
    assert text.count('class="ci"') >= 2 * 6  # intervals for every metric column of both rows
    cells = [json.loads(p.read_text()) for run in (a, b) for p in run.glob("cells/*/result.json")]
    assert text.count("<details>") == 2
    for c in cells:
        assert c["cell_id"] in text


def test_report_cli_errors(tmp_path):
    (tmp_path / "cells").mkdir()
    res = runner.invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert isinstance(res.exception, FerBenchError) and "no completed cells" in str(
        res.exception)
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert isinstance(res.exception, FerBenchError) and "does not exist" in str(res.exception)


def test_pareto_front():
    # (cost, score): lower cost and higher score are better.
    pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9), (1.0, 0.4)]
    assert sorted(pareto_front(pts)) == [0, 1, 3]
    assert sorted(pareto_front([(10.0, 0.5), (20.0, 0.7), (5.0, 0.9)], True)) == [1, 2]
