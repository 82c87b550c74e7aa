"""What every image encoder carries (like timm's pretrained_cfg) and the module wrapper the
engine trains. The data pipeline takes preprocessing from here, never from a global default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The fields `fer-bench backbones list --format json` prints, in order.
SUMMARY_FIELDS = ("name", "family", "input_size", "feature_dim", "params_m", "gmacs", "mean",
                  "std", "interpolation", "crop_pct", "resize_mode", "text_tower", "weights")


@dataclass(frozen=True)
class BackboneConfig:
    name: str                      # what the user typed (card name or spec)
    family: str                    # timm | open_clip | hf | fer | custom
    model: str                     # the family's model name
    weights: str                   # "none" (random init), a pretrained tag, or a local file
    input_size: tuple[int, int]    # (H, W) the encoder expects
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3              # 1: grayscale in; 3: gray faces are replicated to RGB
    interpolation: str = "bilinear"
    fixed_input_size: bool = False
    # Evaluation resize as the library does it: "shortest" side to input/crop_pct, then a
    # centre crop (timm's crop_pct, open_clip's "shortest"), or "squash" both sides.
    crop_pct: float = 1.0
    resize_mode: str = "shortest"
    feature_dim: int = 0
    text_tower: bool = False       # a paired CLIP text tower exists
    params_m: float = 0.0          # image encoder only
    gmacs: float | None = None     # image encoder, one image at input_size (None: not measured)
    text_params_m: float = 0.0     # the paired text tower, if any
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def summary(self) -> dict:
        d = self.to_dict()
        return {k: d[k] for k in SUMMARY_FIELDS}


class Backbone(nn.Module):
    """An image encoder: B x C x H x W float (already normalised) -> B x feature_dim."""

    def __init__(self, encoder: nn.Module, config: BackboneConfig,
                 text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config
        # A paired text tower (CLIP) is owned by the backbone so `--text-encoder paired` finds it.
        self.paired_text = text_encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return pool_features(self.encoder(images))


def pool_features(out: torch.Tensor) -> torch.Tensor:
    """Encoders returning maps (B x D x H x W) or tokens (B x T x D) are averaged to B x D."""
    if out.ndim == 2:
        return out
    if out.ndim == 4:
        return out.flatten(2).mean(-1)
    if out.ndim == 3:
        return out.mean(1)
    raise ValueError(f"encoder output has shape {tuple(out.shape)}; expected B x D "
                     "(or B x D x H x W / B x T x D, which are pooled)")


def count_params_m(module: nn.Module | None) -> float:
    if module is None:
        return 0.0
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 6)


def measure(encoder: nn.Module, in_chans: int, input_size: tuple[int, int]) -> tuple[int, float]:
    """(feature dim, GMACs for one image) from a dry forward that computes nothing: on the meta
    device for a model built there, else with fake tensors standing in for the weights.

    MACs are torch.utils.flop_counter's FLOPs / 2 (convolutions and matmuls, the usual
    convention). Attention runs on the math path and the grad-enabled slow path of
    nn.MultiheadAttention so its matmuls are visible to the counter on every device."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    first = next(iter(encoder.parameters()), None)
    on_meta = first is not None and first.is_meta
    was_training = encoder.training
    encoder.eval()
    try:
        try:
            mode = torch.device("meta") if on_meta else FakeTensorMode(allow_non_fake_inputs=True)
            with sdpa_kernel(SDPBackend.MATH), torch.enable_grad(), mode:
                x = torch.empty(1, in_chans, *input_size)
                with FlopCounterMode(display=False) as counter:
                    out = pool_features(encoder(x))
        except Exception:
            if on_meta:
                raise
            # Some user modules cannot run on fake tensors (data-dependent Python): run for real.
            with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
                x = torch.zeros(1, in_chans, *input_size, dtype=first.dtype if first is not None
                                else torch.float32, device=first.device if first is not None
                                else "cpu")
                with FlopCounterMode(display=False) as counter:
                    out = pool_features(encoder(x))
    finally:
        encoder.train(was_training)
    return int(out.shape[1]), round(counter.get_total_flops() / 2e9, 6)

