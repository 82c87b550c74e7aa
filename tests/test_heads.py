import math

import pytest
import torch
import torch.nn.functional as F

from fer_bench.heads import clip_loss, lasted_loss


def lasted_reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Straight from the method description, one class at a time."""
    n_classes = logits.shape[1]
    image_axis = F.cross_entropy(logits, labels)
    present = [k for k in range(n_classes) if (labels == k).any()]
    terms = []
    for c in present:
        # vector over classes k: mean logit of text c over the images of class k
        vec = torch.stack([logits[labels == k, c].mean() for k in present])
        target = present.index(c)
        terms.append(-torch.log_softmax(vec, 0)[target])
    return (image_axis + torch.stack(terms).mean()) / 2


@pytest.mark.parametrize("seed", range(5))
def test_lasted_loss_mask_matches_per_class_reference(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(24, 7, generator=g) * 5
    labels = torch.randint(0, 7, (24,), generator=g)
    torch.testing.assert_close(lasted_loss(logits, labels, absent_classes="mask"),
                               lasted_reference(logits, labels))


def test_lasted_loss_masks_classes_missing_from_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 7, generator=g) * 3
    labels = torch.tensor([0, 0, 2, 2, 2, 5, 5, 6, 6, 6])  # 1, 3, 4 absent
    loss = lasted_loss(logits, labels, absent_classes="mask")
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, lasted_reference(logits, labels))
    # mask keeps the text term (the published rule drops it): differs from image-only
    assert not math.isclose(loss.item(), F.cross_entropy(logits, labels).item() / 2, rel_tol=1e-4)


def test_lasted_loss_gradient_flows_and_prefers_correct_scores():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    good = F.one_hot(labels, 7).float() * 10
    bad = torch.roll(good, 1, dims=1)
    assert lasted_loss(good, labels) < lasted_loss(bad, labels)
    x = torch.randn(8, 7, requires_grad=True)
    lasted_loss(x, labels).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_clip_loss_reference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 7, generator=g)
    labels = torch.randint(0, 4, (12,), generator=g)
    text_terms = []
    for c in labels.unique():
        members = (labels == c).float()
        logp = torch.log_softmax(logits[:, c], 0)
        text_terms.append(-(members / members.sum() * logp).sum())
    ref = (F.cross_entropy(logits, labels) + torch.stack(text_terms).mean()) / 2
    torch.testing.assert_close(clip_loss(logits, labels), ref)
