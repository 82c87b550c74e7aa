"""fer-bench's `lasted` head against the original LASTED loss, re-derived here from the paper and
its code (HighwayWu/LASTED main.py:163-179) as a per-class loop: the image axis is a C-way CE;
for each text c, the vector [mean logit of text c over class-c images, then over each other
class's images] is a CE with target 0; loss = (image + text) / 2, or the image axis alone when the
text term is NaN (some class absent from the batch). Logits are CLIP's: exp(logit_scale) x cosine,
never clamped in forward."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.heads.contrastive import MAX_LOGIT_SCALE, ContrastiveHead, lasted_loss

C, D = 7, 16


def original_lasted(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    image_axis = F.cross_entropy(logits, labels)
    rows = []
    for c in range(C):
        own = [logits[labels == c, c].mean().unsqueeze(0)]
        others = [logits[labels == k, c].mean().unsqueeze(0) for k in range(C) if k != c]
        rows.append(torch.cat(own + others))
    text_axis = F.cross_entropy(torch.stack(rows), torch.zeros(C, dtype=torch.long))
    return image_axis if torch.isnan(text_axis).any() else (image_axis + text_axis) / 2


class FixedText(nn.Module):
    """Stands in for ClassText: trainable class text embeddings, unit rows."""

    def __init__(self, text: torch.Tensor) -> None:
        super().__init__()
        self.text = nn.Parameter(text.clone())
        self.encoder = SimpleNamespace(dim=text.shape[1])

    def forward(self) -> torch.Tensor:
        return F.normalize(self.text, dim=-1)


LABELS = {
    "all classes": torch.tensor([0, 1, 2, 3, 4, 5, 6, 3, 3, 6, 0, 5, 4, 2, 1, 3]),
    "absent classes": torch.tensor([0, 3, 3, 6, 0, 5, 4, 3, 6, 6, 0, 4]),   # 1, 2 absent
    "single class": torch.tensor([3, 3, 3, 3, 3]),
}


def _inputs(labels: torch.Tensor, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(labels), D, generator=g), torch.randn(C, D, generator=g)


def _grads(loss_fn, feats, text, scale):
    f = feats.clone().requires_grad_(True)
    t = text.clone().requires_grad_(True)
    s = torch.tensor(scale, requires_grad=True)
    logits = s.exp() * F.normalize(f, dim=-1) @ F.normalize(t, dim=-1).T
    loss = loss_fn(logits)
    loss.backward()
    return loss.detach(), f.grad, t.grad, s.grad


@pytest.mark.parametrize("case", list(LABELS))
@pytest.mark.parametrize("scale", [MAX_LOGIT_SCALE, math.log(1 / 0.07)], ids=["at-cap", "below"])
def test_image_only_matches_original(case, scale):
    labels = LABELS[case]
    feats, text = _inputs(labels)
    ref = _grads(lambda z: original_lasted(z, labels), feats, text, scale)

    head = ContrastiveHead(D, FixedText(text), "lasted", identity_projection=True,
                           logit_scale=nn.Parameter(torch.tensor(scale)),
                           absent_classes="image_only")
    f = feats.clone().requires_grad_(True)
    loss = head.loss(head(f), labels)
    loss.backward()
    assert loss.item() == pytest.approx(ref[0].item(), abs=1e-5)
    for ours, theirs, what in ((f.grad, ref[1], "image features"),
                               (head.class_text.text.grad, ref[2], "text embeddings"),
                               (head.logit_scale.grad, ref[3], "logit scale")):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5, msg=what)
    assert head.logit_scale.grad.abs() > 0  # no zero-gradient clamp, even at the cap


def test_mask_mode_never_halves_and_masks_absent_classes():
    logits = torch.randn(12, C) * 3
    single = LABELS["single class"]
    one = logits[:len(single)]
    # one class present: no text term exists; the image axis alone, not halved
    assert lasted_loss(one, single, absent_classes="mask") == pytest.approx(
        F.cross_entropy(one, single).item())
    full = LABELS["all classes"]
    z = torch.randn(len(full), C) * 3
    assert lasted_loss(z, full, absent_classes="mask").item() == pytest.approx(
        original_lasted(z, full).item(), abs=1e-6)  # nothing absent: the two rules agree
    absent = LABELS["absent classes"]
    z = torch.randn(len(absent), C) * 3
    present = sorted(set(absent.tolist()))
    terms = []
    for c in present:  # the text axis over present classes only
        vec = torch.stack([z[absent == k, c].mean() for k in present])
        terms.append(torch.logsumexp(vec, 0) - z[absent == c, c].mean())
    expected = (F.cross_entropy(z, absent) + torch.stack(terms).mean()) / 2
    assert lasted_loss(z, absent, absent_classes="mask").item() == pytest.approx(
        expected.item(), abs=1e-6)
    assert lasted_loss(z, absent, absent_classes="image_only").item() == pytest.approx(
        F.cross_entropy(z, absent).item(), abs=1e-6)


def test_scale_value_clamped_after_the_step():
    head = ContrastiveHead(D, FixedText(torch.randn(C, D)), "lasted", identity_projection=True,
                           logit_scale=nn.Parameter(torch.tensor(5.0)))
    head.after_step()
    assert head.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)
    assert head.describe()["logit_scale"] == pytest.approx(100.0, rel=1e-4)
    with torch.no_grad():
        head.logit_scale.fill_(2.0)
    head.after_step()
    assert head.logit_scale.item() == 2.0  # below the cap: untouched
