"""Zero-shot against CLIP_benchmark's own code (the `clip-benchmark` package, test-only): the
same random-init open_clip checkpoint file, the same exported image files, fp32. fer-bench's
path -- dataset loader, uint8 storage, batched eval preprocessing, open_clip family, prompt set
`clip_benchmark`, class text ensembling, zero-shot head -- must give the same features and
predictions as CLIP_benchmark's PIL transform + zero_shot_classifier + run_classification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fer_bench.data import load_dataset
from fer_bench.data.synfer import generate
from fer_bench.plan import Cell, TrainConfig
from fer_bench.train.engine import pick_device, prepare, run_cell

from .tiny_clip import MODEL, register

cb_models = pytest.importorskip("clip_benchmark.models.open_clip")
cb_zs = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")

# Kaggle FER2013 folder names: alphabetical, the order of CLIP_benchmark's fer2013 class names
FOLDERS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _cb_classnames_templates() -> tuple[list[str], list[str]]:
    import clip_benchmark

    root = Path(clip_benchmark.__file__).parent / "datasets"
    names = json.loads((root / "en_classnames.json").read_text())["fer2013"]
    templates = json.loads((root / "en_zeroshot_classification_templates.json").read_text())
    return names, templates["fer2013"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("oracle_model")
    register()
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL)
    _remove_common_direction(model)
    path = d / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


@torch.no_grad()
def _remove_common_direction(model) -> None:
    """A random-init tower maps every face to nearly one direction (position and class
    embeddings dominate), so one class would win every image. Projecting that direction out of
    the visual projection leaves a random model whose predictions depend on the face."""
    faces = generate(700, seed=5).split("train").images[:64].float() / 255
    x = F.interpolate(faces, size=96, mode="bilinear").expand(-1, 3, -1, -1)
    proj = model.visual.proj
    model.visual.proj = torch.nn.Parameter(torch.eye(proj.shape[0]))
    u = F.normalize(model.encode_image((x - 0.45) / 0.27).mean(0), dim=0)
    model.visual.proj = torch.nn.Parameter(proj - torch.outer(u, u @ proj))


def _export(root: Path, size: tuple[int, int], colour: bool, n_per_class: int = 12) -> Path:
    """SynFER faces written as image files in a split/class tree, resized to `size` (w, h)."""
    ds = generate(700, seed=3)
    tint = np.array([1.0, 0.85, 0.7])
    for split in ("train", "val", "test"):
        part = ds.split(split)
        for c, folder in enumerate(FOLDERS):
            out = root / split / folder
            out.mkdir(parents=True)
            canon = ds.classes.index(folder)
            idx = torch.nonzero(part.labels == canon).flatten()[:n_per_class]
            for i in idx.tolist():
                face = part.images[i, 0].numpy()
                im = Image.fromarray(face).resize(size, Image.Resampling.BICUBIC)
                if colour:
                    arr = np.asarray(im, dtype=np.float32)[..., None] * tint
                    im = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
                im.save(out / f"{split}_{c}_{i}.png")
    return root


def _clip_benchmark(checkpoint: Path, test_dir: Path):
    from torchvision.datasets import ImageFolder

    model, transform, tokenizer = cb_models.load_open_clip(MODEL, str(checkpoint))
    model.eval()
    names, templates = _cb_classnames_templates()
    data = ImageFolder(str(test_dir), transform=transform)
    assert data.classes == list(FOLDERS)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=False)
    classifier = cb_zs.zero_shot_classifier(model, tokenizer, names, templates, "cpu", amp=False)
    logits, target = cb_zs.run_classification(model, classifier, loader, "cpu", amp=False)
    with torch.no_grad():
        feats = torch.cat([model.encode_image(x) for x, _ in loader])
    return logits.argmax(1), target, feats


@pytest.mark.parametrize("size,colour", [((48, 48), False), ((60, 44), True)],
                         ids=["square-gray", "non-square-rgb"])
def test_zeroshot_matches_clip_benchmark(tmp_path: Path, checkpoint: Path, size, colour):
    root = _export(tmp_path / "export", size, colour)
    ref_pred, ref_target, ref_feats = _clip_benchmark(checkpoint, root / "test")

    cell = Cell(f"open_clip:{MODEL}@{checkpoint}", "zeroshot", f"folder:{root}", 0,
                "clip_benchmark", "default", TrainConfig(device="cpu"))
    dataset = load_dataset(cell.dataset)
    test = dataset.split("test")
    assert tuple(test.images.shape[-2:]) == (size[1], size[0])  # stored as exported, unsquashed
    ours = prepare(cell, dataset, pick_device("cpu"))
    feats = ours.inputs.features(test.images)
    out = run_cell(cell)
    assert out.resolved["compute"]["amp"] == "off"  # fp32 by default on the CPU
    pred = torch.from_numpy(out.predictions["preds"])
    labels = torch.from_numpy(out.predictions["labels"])

    # Both sides list class folders alphabetically and files sorted within each: the same
    # image order. Labels: CLIP_benchmark's index into FOLDERS, fer-bench's canonical index.
    to_canon = torch.tensor([dataset.classes.index(f) for f in FOLDERS])
    assert to_canon[ref_target].tolist() == labels.tolist()
    cos = F.cosine_similarity(feats, ref_feats, dim=1)
    assert cos.min() >= 0.999, f"min feature cosine {cos.min():.5f}"
    agree = (pred == to_canon[ref_pred]).float().mean()
    assert agree >= 0.99, f"predictions agree on {agree:.1%}"
    assert len(set(pred.tolist())) >= 3  # non-degenerate: several classes predicted


def test_clip_benchmark_prompt_set_is_theirs():
    from fer_bench.text import load_prompt_set

    names, templates = _cb_classnames_templates()
    ours = load_prompt_set("clip_benchmark")
    for folder, name in zip(FOLDERS, names, strict=True):
        expected = tuple(t.format(c=name) for t in templates)
        assert ours.prompts[folder] == expected, folder
