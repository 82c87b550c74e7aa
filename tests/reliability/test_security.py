"""Nothing runs that the user did not ask for, and nothing is written outside the output
directory: pickles needing code are refused, cards cannot import code, ids cannot escape, and
no module of fer-bench loads untrusted data in an unsafe way."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

import fer_bench
from fer_bench.backbones import create_backbone
from fer_bench.errors import FerBenchError
from fer_bench.results.store import cell_dir


def evil_checkpoint(path: Path, marker: Path) -> Path:
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"conv.weight": Boom()}, path)
    return path


@pytest.mark.parametrize("spec", ["fer_cnn@{}", "timm:resnet18@{}"])
def test_checkpoint_pickle_needing_code_is_refused(tmp_path: Path, spec: str):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "weights.pth", marker)
    with pytest.raises(FerBenchError) as e:
        create_backbone(spec.format(path))
    assert str(path) in str(e.value) or "weights_only" in str(e.value)
    assert not marker.exists()  # the payload never ran


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch) -> Path:
    """An importable module whose import leaves a marker: proof that something imported it."""
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                         "def make(**kw):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


CARDS = {  # card text, whether it is refused (else built from the registered name, no import)
    "registered module path": ('family = "registered"\nmodel = "evilmod:make"\n', True),
    "dotted registered path": ('family = "registered"\nmodel = "evilmod.make"\n', True),
    "module as family": ('family = "evilmod"\nmodel = "make"\n', True),
    "import key": ('family = "registered"\nmodel = "fer_cnn"\nimport = "evilmod"\n'
                   'factory = "evilmod:make"\n', True),
}


@pytest.mark.parametrize("what", CARDS)
def test_cards_cannot_import_code(tmp_path: Path, monkeypatch, evil_module: Path, what: str):
    cards = tmp_path / "cards"
    cards.mkdir()
    text, refused = CARDS[what]
    (cards / "evil_card.toml").write_text(text)
    monkeypatch.setenv("FER_BENCH_BACKBONES_PATH", str(cards))
    try:
        bb = create_backbone("evil_card")
    except FerBenchError as e:
        assert refused, e
        assert "evil_card" in str(e) or "evilmod" in str(e)
    else:
        assert not refused and bb.config.model == "fer_cnn"
    assert not evil_module.exists()


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "/etc", "x\x00y",
                                 "caf\u00e9", "ab cd", "~root"])
def test_cell_ids_cannot_name_paths(tmp_path: Path, bad: str):
    with pytest.raises(FerBenchError, match="invalid cell id"):
        cell_dir(tmp_path, bad)


def test_names_with_paths_stay_inside_the_output_directory(tmp_path: Path, plugin,
                                                           monkeypatch):
    """Backbone specs, datasets and prompts with path characters only ever reach a hashed id."""
    from dataclasses import replace

    from fer_bench.plan import Benchmark, TrainConfig, expand
    from fer_bench.run import run_plan
    from fer_bench.train import engine

    evil_weights = tmp_path / "outside" / ".." / ".." / "escape.pth"

    def fake(cell, progress=None, **_):
        raise RuntimeError("not built")  # the cell fails; its files must still stay inside

    monkeypatch.setattr(engine, "run_cell", fake)
    bench = Benchmark(backbones=["rel_tiny", f"timm:resnet18@{evil_weights}"], heads=["linear"],
                      datasets=["relfer"], seeds=[0],
                      train=replace(TrainConfig(), epochs=1, device="cpu"))
    out = tmp_path / "out"
    before = {p for p in tmp_path.rglob("*")}
    run_plan(expand(bench), out)
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p.resolve().is_relative_to(out.resolve()) for p in created)
    assert len(list(out.glob("cells/*/result.json"))) == 2


UNSAFE = [
    (r"torch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
    (r"(?:np|numpy)\.load\((?![^)]*allow_pickle\s*=\s*False)", "np.load without allow_pickle"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
    (r"weights_only\s*=\s*False", "weights_only=False"),
    (r"^\s*import pickle|^\s*from pickle|\bpickle\.loads?\(", "pickle"),
    (r"\byaml\.(?:load|unsafe_load)\(", "yaml.load (use yaml.safe_load)"),
    (r"(?<![.\w])(?:eval|exec)\(", "eval/exec"),
    (r"trust_remote_code\s*=\s*True", "trust_remote_code=True"),
]


def test_no_unsafe_loading_in_fer_bench():
    """A guard for future code: every loader of files a user or stranger supplies is safe."""
    root = Path(fer_bench.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for pattern, what in UNSAFE:
            for m in re.finditer(pattern, text, flags=re.MULTILINE):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path.relative_to(root.parent)}:{line}: {what}")
    assert not found, "\n".join(found)
