"""Bad input is rejected before any work starts: one clear line naming the name, key, file or
flag (with the closest known names), exit code 2, nothing trained, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_bench.data import DATASETS

from .conftest import PLUGIN, cli

BENCH_OK = """
name = "bad"
[axes]
backbones = ["rel_tiny"]
heads = ["linear"]
datasets = ["relfer"]
[train]
epochs = 1
device = "cpu"
"""


@pytest.fixture
def no_work(monkeypatch):
    """Any attempt to build or train a cell fails the test."""
    from fer_bench.train import engine

    def trained(*_a, **_k):
        raise AssertionError("a cell was started despite bad input")

    monkeypatch.setattr(engine, "run_cell", trained)


def rejected(monkeypatch, capsys, out: Path, args: list[str], *needles: str) -> str:
    code, _, err = cli(monkeypatch, capsys, ["run", "--plugin", str(PLUGIN), "--epochs", "1",
                                             "--device", "cpu", "--out", str(out), "--quiet",
                                             *args])
    flat = " ".join(err.split())  # rich wraps long lines
    assert code == 2, err
    assert flat.startswith("error:") and "Traceback" not in err
    for needle in needles:
        assert needle in flat, flat
    assert not (out / "cells").exists()  # nothing was written
    return flat


UNKNOWN_NAMES = {
    "backbone": (["--backbones", "rel_tinny", "--heads", "linear", "--dataset", "relfer"],
                 ["unknown backbone 'rel_tinny'", "closest: rel_tiny"]),
    "timm model": (["--backbones", "timm:resnet181", "--heads", "linear", "--dataset", "relfer"],
                   ["unknown timm model 'resnet181'", "resnet18"]),
    "head": (["--backbones", "rel_tiny", "--heads", "lineer", "--dataset", "relfer"],
             ["unknown head 'lineer'", "closest: linear"]),
    "prompt set": (["--backbones", "rel_tiny", "--heads", "lasted", "--prompts", "clip_fer2031",
                    "--dataset", "relfer"], ["unknown prompt set 'clip_fer2031'", "clip_fer2013"]),
    "dataset": (["--backbones", "rel_tiny", "--heads", "linear", "--dataset", "relferr"],
                ["unknown dataset 'relferr'", "closest: relfer"]),
    "text encoder": (["--backbones", "rel_tiny", "--heads", "lasted", "--prompts", "classnames",
                      "--text-encoder", "minlm", "--dataset", "relfer"],
                     ["unknown text encoder 'minlm'", "minilm"]),
    "dataset option": (["--backbones", "rel_tiny", "--heads", "linear", "--dataset",
                        "relfer,synfer:nn=700"], ["synfer:nn=700", "bad option"]),
}


@pytest.mark.parametrize("what", UNKNOWN_NAMES)
def test_unknown_names_with_closest_matches(tmp_path, plugin, monkeypatch, capsys, no_work,
                                            what):
    args, needles = UNKNOWN_NAMES[what]
    rejected(monkeypatch, capsys, tmp_path / "run", args, *needles)


BENCH_FILES = {
    "typo'd top-level key": (BENCH_OK.replace("[axes]", "[axis]"), ["axis", "axes"]),
    "typo'd axis": (BENCH_OK.replace("heads =", "head ="), ["unknown axis head"]),
    "typo'd train key": (BENCH_OK.replace("epochs =", "epoch ="),
                         ["unknown key train.epoch", "did you mean 'epochs'"]),
    "wrong type": (BENCH_OK.replace("epochs = 1", 'epochs = "1"'),
                   ["train.epochs: expected an integer, got '1'"]),
    "wrong axis type": (BENCH_OK.replace('heads = ["linear"]', 'heads = "linear"'),
                        ["axes.heads: expected a list, got 'linear'"]),
    "empty axis": (BENCH_OK.replace('heads = ["linear"]', "heads = []"),
                   ["axes.heads is empty"]),
    "bad value": (BENCH_OK.replace("epochs = 1", "epochs = 0"),
                  ["train.epochs: expected an integer >= 1, got 0"]),
    "invalid TOML": (BENCH_OK + "\nepochs = = 2\n", ["invalid TOML"]),
}


@pytest.mark.parametrize("what", BENCH_FILES)
def test_bad_benchmark_file_names_key_and_file(tmp_path, plugin, monkeypatch, capsys, no_work,
                                              what):
    text, needles = BENCH_FILES[what]
    path = tmp_path / "bench.toml"
    path.write_text(text)
    code, _, err = cli(monkeypatch, capsys, ["run", "--plugin", str(PLUGIN), "--benchmark",
                                             str(path), "--out", str(tmp_path / "run")])
    flat = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert str(path) in flat  # the file is named ...
    for needle in needles:  # ... and the key
        assert needle in flat, flat


@pytest.fixture
def partial_prompts(tmp_path, monkeypatch) -> Path:
    """A prompt set `partial` that forgets disgust, found through FER_BENCH_PROMPTS_PATH."""
    d = tmp_path / "prompts"
    d.mkdir()
    classes = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
    (d / "partial.toml").write_text("[classes]\n" + "".join(f'{c} = ["{c}"]\n' for c in classes))
    monkeypatch.setenv("FER_BENCH_PROMPTS_PATH", str(d))
    return d / "partial.toml"


@pytest.mark.parametrize("dry_run", [False, True])
def test_prompt_set_missing_a_class(tmp_path, plugin, monkeypatch, capsys, no_work,
                                    partial_prompts, dry_run):
    args = ["--backbones", "rel_tiny", "--heads", "linear,lasted", "--prompts", "partial",
            "--text-encoder", "minilm", "--dataset", "relfer"] + (["--dry-run"] if dry_run else [])
    rejected(monkeypatch, capsys, tmp_path / "run", args, "partial", str(partial_prompts),
             "disgust", "relfer")


def test_prompt_set_missing_a_class_of_a_loaded_dataset(tmp_path, plugin, monkeypatch, capsys,
                                                        no_work, partial_prompts, tiny_dataset):
    # synfer declares no class list: its classes are checked after loading it, before training
    from ..conftest import TINY

    rejected(monkeypatch, capsys, tmp_path / "run",
             ["--backbones", "rel_tiny", "--heads", "lasted", "--prompts", "partial",
              "--text-encoder", "minilm", "--dataset", TINY], "disgust", TINY)


INCOMPATIBLE = {
    "text regime without text": (["--backbones", "rel_tiny", "--heads", "linear", "--train",
                                  "text"], ["regime 'text'", "'linear'"]),
    "zeroshot without a text tower": (["--backbones", "rel_tiny", "--heads", "zeroshot",
                                       "--prompts", "classnames"],
                                      ["'zeroshot' needs the backbone's paired CLIP text tower",
                                       "has no text tower"]),
    "zeroshot with an unaligned text encoder": (
        ["--backbones", "open_clip:RN50@none", "--heads", "zeroshot", "--prompts", "classnames",
         "--text-encoder", "minilm"], ["'zeroshot' needs", "'minilm' is not aligned"]),
    "paired text without a tower": (["--backbones", "timm:resnet18@none", "--heads", "lasted",
                                     "--prompts", "classnames", "--text-encoder", "paired"],
                                    ["no paired text tower"]),
}


@pytest.mark.parametrize("what", INCOMPATIBLE)
def test_incompatible_combinations(tmp_path, plugin, monkeypatch, capsys, no_work, what):
    from fer_bench.heads import HEADS

    if "zeroshot" in what and "zeroshot" not in HEADS:
        pytest.skip("no zeroshot head in this build")
    args, needles = INCOMPATIBLE[what]
    rejected(monkeypatch, capsys, tmp_path / "run", [*args, "--dataset", "relfer"], *needles)


def test_dataset_with_wrong_shape(tmp_path, plugin, monkeypatch, capsys, no_work):
    rejected(monkeypatch, capsys, tmp_path / "run",
             ["--backbones", "rel_tiny", "--heads", "linear", "--dataset", "relfer:wrong-shape"],
             "relfer:wrong-shape", "uint8 N x C x H x W")


def test_dataset_path_missing(tmp_path, plugin, monkeypatch, capsys, no_work):
    missing = tmp_path / "nowhere" / "fer2013.csv"
    rejected(monkeypatch, capsys, tmp_path / "run",
             ["--backbones", "rel_tiny", "--heads", "linear", "--dataset", f"fer2013:{missing}"],
             str(missing), "does not exist")


def test_dry_run_plans_with_data_elsewhere(tmp_path, plugin, monkeypatch, capsys, no_work):
    """A dry run plans a matrix whose data lives on the machine that will run it: a missing
    path is a warning there (names are still checked), and nothing is written."""
    missing = tmp_path / "nowhere" / "fer2013.csv"
    out = tmp_path / "run"
    code, _, err = cli(monkeypatch, capsys, [
        "run", "--plugin", str(PLUGIN), "--out", str(out), "--dry-run", "--backbones",
        "rel_tiny", "--heads", "linear", "--dataset", f"fer2013:{missing}"])
    flat = " ".join(err.split())
    assert code == 0 and "warning:" in flat and str(missing) in flat, err
    assert not (out / "cells").exists()


@pytest.mark.skipif("fer2013" not in DATASETS, reason="no fer2013 loader in this build")
def test_dataset_file_with_malformed_rows(tmp_path, plugin, monkeypatch, capsys, no_work):
    csv = tmp_path / "fer2013.csv"
    csv.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    rejected(monkeypatch, capsys, tmp_path / "run",
             ["--backbones", "rel_tiny", "--heads", "linear", "--dataset", f"fer2013:{csv}"],
             f"{csv} line 2", "2304")


def test_out_that_is_a_file(tmp_path, plugin, monkeypatch, capsys, no_work):
    out = tmp_path / "run"
    out.write_text("not a directory")
    code, _, err = cli(monkeypatch, capsys, ["run", "--plugin", str(PLUGIN), "--backbones",
                                             "rel_tiny", "--heads", "linear", "--dataset",
                                             "relfer", "--out", str(out), "--quiet"])
    assert code == 2 and "is not a directory" in err and out.read_text() == "not a directory"


def newer_result(out: Path) -> Path:
    path = out / "cells" / "0123456789abcdef" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 99, "cell_id": "0123456789abcdef", "status": "ok"}))
    return path


def test_results_from_a_newer_schema_are_refused(tmp_path, plugin, monkeypatch, capsys,
                                                 no_work):
    out = tmp_path / "run"
    path = newer_result(out)
    before = path.read_bytes()
    code, _, err = cli(monkeypatch, capsys, ["run", "--plugin", str(PLUGIN), "--backbones",
                                             "rel_tiny", "--heads", "linear", "--dataset",
                                             "relfer", "--out", str(out), "--quiet"])
    flat = " ".join(err.split())
    assert code == 2 and "newer fer-bench" in flat and "schema 99" in flat and str(path) in flat
    assert path.read_bytes() == before and [p.name for p in (out / "cells").iterdir()] == [
        "0123456789abcdef"]
    code, _, err = cli(monkeypatch, capsys, ["leaderboard", str(out)])
    assert code == 2 and "newer fer-bench" in " ".join(err.split())


def test_a_newer_result_for_a_planned_cell_is_not_overwritten(tmp_path, plugin):
    from fer_bench.errors import FerBenchError
    from fer_bench.run import is_complete, run_plan

    from .test_kill import tiny_cells

    cell = tiny_cells((0,))[0]
    path = tmp_path / "cells" / cell.cell_id / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 2, "cell_id": cell.cell_id, "status": "ok"}))
    with pytest.raises(FerBenchError, match="newer"):
        is_complete(tmp_path, cell)
    with pytest.raises(FerBenchError, match="newer"):
        run_plan([cell], tmp_path)
    assert json.loads(path.read_text())["schema"] == 2
