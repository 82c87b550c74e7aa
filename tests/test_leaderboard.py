"""The leaderboard on real small synfer runs: statistics, every format, merged directories, sort
keys, columns, baseline and the per-dataset (cross-evaluation) view."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fer_bench.classes import CANONICAL
from fer_bench.cli import app
from fer_bench.errors import FerBenchError
from fer_bench.results import stats

from .conftest import TINY

pytestmark = pytest.mark.slow  # trains 3 tiny cells once (~30-60 s on 2 cores)
runner = CliRunner()


def make_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real runs, made once per session: A = fer_cnn+linear, seeds 0 and 1; B =
    fer_cnn+lasted (classnames, MiniLM), seed 0. Frozen random-init features, one epoch."""
    base = tmp_path_factory.getbasetemp() / "leaderboard_runs"
    a, b = base / "a", base / "b"
    if not (base / "done").exists():
        common = ["--backbones", "fer_cnn", "--dataset", TINY, "--epochs", "1", "--train",
                  "frozen", "--quiet"]
        for out, extra in ((a, ["--heads", "linear", "--seeds", "0,1"]),
                           (b, ["--heads", "lasted", "--prompts", "classnames",
                                "--text-encoder", "minilm", "--seeds", "0"])):
            res = runner.invoke(app, ["run", *common, *extra, "--out", str(out)])
            assert res.exit_code == 0, res.output
        (base / "done").touch()
    return a, b


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    return make_runs(tmp_path_factory)


def lb(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["leaderboard", *args])
    return res.exit_code, res.stdout, res.stderr


def lb_error(*args: str) -> str:
    """The message of the user error a leaderboard call raises (`main` prints it, exit 2)."""
    res = runner.invoke(app, ["leaderboard", *args])
    assert isinstance(res.exception, FerBenchError), (res.exception, res.output)
    return str(res.exception)


def lb_json(*args: str):
    code, out, err = lb(*args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def cell_preds(run: Path, cell_id: str) -> tuple[np.ndarray, np.ndarray]:
    z = np.load(run / "cells" / cell_id / "predictions.npz")
    return z["labels"], z["preds"]


def test_merged_json_rows_with_intervals_and_paired_tests(runs):
    a, b = runs
    rows = lb_json(str(a), str(b))
    assert [r["rank"] for r in rows] == [1, 2]
    assert {r["head"] for r in rows} == {"linear", "lasted"}
    foundation = {"rank", "backbone", "prompts", "head", "dataset", "n_seeds", "fear_disgust",
                  "accuracy", "balanced_accuracy", "macro_f1", "per_class_accuracy"}
    assert foundation | {"ci", "p_vs_top", "vs_top", "tied_with_top"} <= set(rows[0])
    fd = [r["fear_disgust"] for r in rows]
    assert fd == sorted(fd, reverse=True)
    linear = next(r for r in rows if r["head"] == "linear")
    assert linear["n_seeds"] == 2 and linear["seeds"] == [0, 1]
    for r in rows:
        ci = r["ci"]
        assert (ci["n_resamples"], ci["seed"], ci["level"]) == (1000, 0, 0.95)
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "recall:happy"):
            v = r[k] if ":" not in k else r["per_class_accuracy"][k[7:]]
            assert ci[k][0] - 1e-9 <= v <= ci[k][1] + 1e-9, (k, v, ci[k])
    top, other = rows
    assert top["p_vs_top"] is None and top["vs_top"] is None
    assert 0 < other["p_vs_top"] <= 1
    assert other["tied_with_top"] == (other["p_vs_top"] >= 0.05)
    vs = other["vs_top"]
    assert vs["metric"] == "fear_disgust" and vs["seed_pairs"] == [[0, 0]]  # matched by seed

    # Recompute the test from the saved predictions of the matched seed-0 cells.
    def seed0(row):
        run = a if row["head"] == "linear" else b
        cid = row["cell_ids"][row["seeds"].index(0)]
        return cell_preds(run, cid)

    (y, p_other), (y_top, p_top) = seed0(other), seed0(top)
    assert np.array_equal(y, y_top)
    ref = stats.paired_bootstrap(y, p_other, p_top, CANONICAL, "fear_disgust", 1000, 0)
    assert other["p_vs_top"] == pytest.approx(ref["p"])
    assert vs["diff"] == pytest.approx(ref["diff"])
    assert vs["mcnemar_p"] == pytest.approx(stats.mcnemar(y, p_other, p_top)["p"])

    # The multi-seed row's intervals pool both seeds on the same test images.
    ys, ps = zip(*(cell_preds(a, c) for c in linear["cell_ids"]), strict=True)
    pooled = stats.intervals(np.stack(ys), np.stack(ps), CANONICAL, 1000, 0)
    assert linear["ci"]["accuracy"] == pytest.approx(pooled["accuracy"])
    assert linear["accuracy"] == pytest.approx(np.mean([np.mean(y_ == p_) for y_, p_
                                                        in zip(ys, ps, strict=True)]))


def test_same_directory_twice_is_deduplicated(runs):
    a, _ = runs
    code, out, err = lb(str(a), str(a), "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["n_seeds"] == 2
    assert "2 cell(s) found in more than one directory" in err


def test_every_format(runs, tmp_path):
    a, b = runs
    rows = lb_json(str(a), str(b))
    code, out, _ = lb(str(a), str(b), "--format", "md")
    assert code == 0
    lines = out.splitlines()
    header = next(x for x in lines if x.startswith("| #"))
    assert "| fear/disgust |" in header and "p vs top" in header
    body = [x for x in lines if x.startswith("| 1 ") or x.startswith("| 2 ")]
    assert len(body) == 2
    assert "[" in body[0] and "bootstrap interval over test images" in out
    assert "All rows: dataset synfer:n=700" in out  # constant columns said once

    code, out, _ = lb(str(a), str(b), "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert out.startswith("rank,backbone")
    assert [int(r["rank"]) for r in table] == [1, 2]
    for r, j in zip(table, rows, strict=True):
        assert float(r["fear_disgust"]) == pytest.approx(j["fear_disgust"])
        assert float(r["ci_lo_accuracy"]) == pytest.approx(j["ci"]["accuracy"][0])
        assert float(r["ci_hi_recall:fear"]) == pytest.approx(j["ci"]["recall:fear"][1])
    assert table[1]["p_vs_top"] and not table[0]["p_vs_top"]

    code, out, _ = lb(str(a), str(b), "--format", "html")
    assert code == 0 and out.lstrip().startswith("<!doctype html>")
    assert out.count('<tr class="top">') == 1 and "fear/disgust" in out
    assert out.count("</tr>") == 3  # header + 2 rows

    code, out, _ = lb(str(a), str(b))
    assert code == 0 and "fear/disgust" in out and "p vs top" in out

    dest = tmp_path / "lb.md"
    code, _, err = lb(str(a), str(b), "--format", "md", "-o", str(dest))
    assert code == 0 and "| fear/disgust |" in dest.read_text()


@pytest.mark.parametrize("key", ["accuracy", "recall:fear", "fear", "macro_f1", "recall:happy"])
def test_sort_by_any_metric(runs, key):
    a, b = runs
    rows = lb_json(str(a), str(b), "--sort", key)
    k = key if ":" in key or key not in CANONICAL else f"recall:{key}"
    vals = [r["per_class_accuracy"][k[7:]] if k.startswith("recall:") else r[k] for r in rows]
    assert vals == sorted(vals, reverse=True)
    assert rows[1]["vs_top"]["metric"] == k  # the paired test follows the sort metric


def test_sort_by_cost_is_cheapest_first(runs):
    a, b = runs
    rows = lb_json(str(a), str(b), "--sort", "train_s")
    assert [r["train_s"] for r in rows] == sorted(r["train_s"] for r in rows)
    assert rows[1]["vs_top"]["metric"] == "fear_disgust"  # costs are not tested; fear/disgust is
    assert all(r["params_m"] > 0 for r in rows)


def test_bad_sort_and_columns_are_one_line_errors(runs):
    a, _ = runs
    assert "--sort 'recall:feer'" in lb_error(str(a), "--sort", "recall:feer")
    assert "--columns 'accuracyy'" in lb_error(str(a), "--columns", "rank,accuracyy")
    assert "--ci 'some'" in lb_error(str(a), "--ci", "some")
    assert "--format 'xml'" in lb_error(str(a), "--format", "xml")
    assert "--resamples -1" in lb_error(str(a), "--resamples", "-1")
    # Through the real entry point: one line on stderr, exit 2, no traceback.
    proc = subprocess.run([sys.executable, "-m", "fer_bench", "leaderboard", str(a), "--sort",
                           "recall:feer"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--sort 'recall:feer'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_columns(runs):
    a, b = runs
    code, out, _ = lb(str(a), str(b), "--format", "csv", "--columns",
                      "rank,label,accuracy,fear,params_m,p_vs_top")
    table = [r for r in csv.reader(io.StringIO(out)) if r]
    assert table[0] == ["rank", "label", "accuracy", "recall:fear", "params_m", "p_vs_top"]
    assert len(table) == 3 and "fer_cnn" in table[1][1]
    code, out, _ = lb(str(a), str(b), "--format", "md", "--columns", "rank,head,recall:sad")
    header = out.splitlines()[2]
    assert header == "| # | head | sad (n=12) |"  # the recall's test-image count
    code, out, _ = lb(str(a), str(b), "--format", "md", "--columns", "+gmacs,cell_id")
    header = next(x for x in out.splitlines() if x.startswith("| #"))
    assert "| GMACs |" in header and "| cell |" in header and "| fear/disgust |" in header


def test_baseline_by_cell_id_and_by_name(runs):
    a, b = runs
    rows = lb_json(str(a), str(b))
    linear = next(r for r in rows if r["head"] == "linear")
    by_id = lb_json(str(a), str(b), "--baseline", linear["cell_ids"][1][:8])
    by_name = lb_json(str(a), str(b), "--baseline", "fer_cnn/linear")
    for rows_ in (by_id, by_name):
        base = next(r for r in rows_ if r["head"] == "linear")
        other = next(r for r in rows_ if r["head"] == "lasted")
        assert base["p_vs_baseline"] is None
        assert 0 < other["p_vs_baseline"] <= 1 and other["baseline"] == base["label"]
        assert other["vs_baseline"]["seed_pairs"] == [[0, 0]]
    assert "matches 2 rows" in lb_error(str(a), str(b), "--baseline", "fer_cnn")
    assert "no row has that cell id" in lb_error(str(a), str(b), "--baseline", "resnet")


def test_no_statistics_and_missing_predictions(runs, tmp_path):
    a, b = runs
    rows = lb_json(str(a), str(b), "--resamples", "0")
    assert all(r["ci"] is None and r["p_vs_top"] is None for r in rows)
    # Without predictions.npz: intervals still come from the confusion matrix, no paired test.
    b2 = tmp_path / "b2"
    shutil.copytree(b, b2)
    for p in b2.glob("cells/*/predictions.npz"):
        p.unlink()
    rows = lb_json(str(a), str(b2))
    lasted = next(r for r in rows if r["head"] == "lasted")
    assert lasted["ci"]["accuracy"][0] <= lasted["accuracy"] <= lasted["ci"]["accuracy"][1]
    assert all(r["p_vs_top"] is None for r in rows)


def test_failed_cells_are_listed_not_ranked(runs, tmp_path):
    a, _ = runs
    a2 = tmp_path / "a2"
    shutil.copytree(a, a2)
    res_path = next(a2.glob("cells/*/result.json"))
    r = json.loads(res_path.read_text())
    r.update(status="failed", error="RuntimeError: out of memory", metrics=None)
    res_path.write_text(json.dumps(r))
    code, out, err = lb(str(a2))
    assert code == 0 and "1 failed cell(s) not ranked" in err
    rows = lb_json(str(a2))
    assert rows[0]["n_seeds"] == 1


def add_cross(run: Path, dest: Path, spec: str) -> Path:
    """A copy of a run where each cell also has a cross-dataset block (as the runner writes it:
    a metrics block per dataset, predictions beside the cell's own)."""
    shutil.copytree(run, dest)
    for res_path in dest.glob("cells/*/result.json"):
        r = json.loads(res_path.read_text())
        cdir = res_path.parent
        z = np.load(cdir / "predictions.npz")
        labels, preds = z["labels"], np.roll(z["preds"], 1)  # a different "dataset"
        from fer_bench.results.metrics import compute_metrics

        r["cross"] = {spec: compute_metrics(labels, preds, CANONICAL)}
        np.savez(cdir / "predictions-synfer_n=900.npz", labels=labels, preds=preds)
        res_path.write_text(json.dumps(r))
    return dest


def test_per_dataset_view(runs, tmp_path):
    a, b = runs
    spec = "synfer:n=900"
    a2 = add_cross(a, tmp_path / "a2", spec)
    own = lb_json(str(a2), str(b))
    cross = lb_json(str(a2), str(b), "--dataset", spec)
    assert len(own) == 2 and len(cross) == 1  # only A was evaluated on it
    assert cross[0]["eval_dataset"] == spec and cross[0]["dataset"] == TINY
    cells = [json.loads(p.read_text()) for p in sorted(a2.glob("cells/*/result.json"))]
    acc = np.mean([c["cross"][spec]["accuracy"] for c in cells])
    assert cross[0]["accuracy"] == pytest.approx(acc)
    assert cross[0]["ci"]["accuracy"][0] <= acc <= cross[0]["ci"]["accuracy"][1]
    both = lb_json(str(a2), str(b), "--dataset", "all")
    assert set(both) == {TINY, spec} and len(both[TINY]) == 2
    code, out, err = lb(str(a2), str(b))
    assert "also evaluated on: synfer:n=900" in err
    code, out, _ = lb(str(a2), str(b), "--dataset", "all", "--format", "md")
    assert f"evaluated on {spec}" in out and f"evaluated on {TINY}" in out
    err = lb_error(str(a2), "--dataset", "fer2013")
    assert "no result was evaluated on it" in err and spec in err


def test_table_says_what_the_rows_were_tested_on(runs):
    a, b = runs
    code, out, _ = lb(str(a), str(b), "--format", "md")
    assert code == 0
    assert "Dataset synfer:n=700: train " in out and "test images per class: angry" in out
    assert "| disgust (n=" in out  # the recall column says how many images it rests on
    assert "Tied with the top" in out or "No row is tied with the top" in out


def test_real_result_files_round_trip(runs):
    """Every key of the result.json files a run writes survives CellResult, in order."""
    from fer_bench.results.store import read_cell

    for run in runs:
        for path in run.glob("cells/*/result.json"):
            data = json.loads(path.read_text())
            cell = read_cell(path)
            assert cell.to_json() == data and list(cell.to_json()) == list(data)
            assert cell.complete() and cell.dir == path.parent
