from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fer_bench.classes import CANONICAL
from fer_bench.errors import ConfigError
from fer_bench.heads import ClassText
from fer_bench.text import create_text_encoder, load_prompt_set
from fer_bench.text.prompts import parse_prompt_set


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm")


def test_minilm_is_a_real_pretrained_encoder(minilm):
    emb = F.normalize(minilm(["a smiling face", "a happy face", "a sad face",
                              "a quarterly tax report"]), dim=-1)
    assert emb.shape == (4, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 3] + 0.2  # meaning, not random weights


def test_clip_fer2013_prompt_set_expands_templates():
    ps = load_prompt_set("clip_fer2013")
    prompts = ps.for_classes(CANONICAL)
    assert len(prompts[CANONICAL.index("fear")]) == 6
    assert "a photo of a fearful looking face." in prompts[CANONICAL.index("fear")]
    assert len(prompts[CANONICAL.index("surprise")]) == 18  # 3 synonyms x 6 templates


def test_prompt_set_missing_class_names_class_and_file(tmp_path: Path):
    ps = parse_prompt_set("x", {"classes": {"angry": ["angry"]}}, tmp_path / "x.toml")
    with pytest.raises(ConfigError, match=r"disgust.*|.*x\.toml"):
        ps.for_classes(CANONICAL)


def test_class_text_ensembles_are_unit_and_cached(minilm):
    prompts = load_prompt_set("clip_fer2013").for_classes(CANONICAL)
    ct = ClassText(minilm, prompts)
    for p in minilm.parameters():
        p.requires_grad_(False)
    e = ct()
    assert e.shape == (7, 384)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(7))
    assert ct() is e  # frozen: computed once
    manual = F.normalize(F.normalize(minilm(prompts[2]), dim=-1).mean(0), dim=0)
    torch.testing.assert_close(e[2], manual, atol=1e-5, rtol=1e-5)
