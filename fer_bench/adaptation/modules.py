"""CLIP-Adapter feature adapters and VPT visual prompts, attached without editing the encoders:
as child modules (so their parameters are in the state dict under stable names) plus forward
hooks that are bound methods (so a deep copy of the model hooks the copy, not the original)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class FeatureAdapter(nn.Module):
    """x -> (1 - ratio) x + ratio MLP(x), MLP = Linear(d, D) ReLU Linear(D, d) ReLU, without
    biases (Gao et al. 2021, CLIP-Adapter, their residual form and default ratio 0.2)."""

    def __init__(self, dim: int, hidden: int, ratio: float, renormalise: bool = False) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, dim, bias=False), nn.ReLU(inplace=True))
        self.ratio, self.renormalise = ratio, renormalise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (1 - self.ratio) * x + self.ratio * self.mlp(x.to(self.mlp[0].weight.dtype))
        return F.normalize(y, dim=-1) if self.renormalise else y

    def pre_hook(self, module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook of a head: adapt the image features it receives."""
        return (self(args[0].float()), *args[1:])

    def post_hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        """Forward hook of ClassText: adapt the (unit) class embeddings it returns."""
        return self(out)


class VisualPrompts(nn.Module):
    """N learned tokens inserted after the first `after` tokens (class / register tokens) of a
    ViT's token sequence, before its first block (VPT-shallow)."""

    def __init__(self, n: int, width: int, after: int) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n, width) * 0.02)
        self.after = after

    def hook(self, module: nn.Module, args: tuple, x: torch.Tensor) -> torch.Tensor:
        p = self.tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :self.after], p, x[:, self.after:]], dim=1)


def vit_kind(encoder: nn.Module) -> str | None:
    """'open_clip' / 'timm' for the ViTs VPT knows how to prompt, else None."""
    if (hasattr(encoder, "ln_pre") and hasattr(encoder, "class_embedding")
            and hasattr(encoder, "positional_embedding") and hasattr(encoder, "transformer")):
        return "open_clip"
    if (hasattr(encoder, "norm_pre") and hasattr(encoder, "patch_embed")
            and hasattr(encoder, "blocks") and hasattr(encoder, "num_prefix_tokens")):
        return "timm"
    return None


def check_vpt(encoder: nn.Module, who: str, n: int) -> str:
    kind = vit_kind(encoder)
    if kind is None:
        raise ConfigError(f"{who}: regime vpt:{n} inserts visual tokens into a ViT's token "
                          "sequence and needs a ViT image encoder (open_clip VisionTransformer "
                          f"or timm VisionTransformer); this encoder is a "
                          f"{type(encoder).__name__}. Use lora or adapter for it instead")
    return kind


def apply_vpt(encoder: nn.Module, n: int, who: str) -> tuple[list[nn.Parameter], dict]:
    kind = check_vpt(encoder, who, n)
    if kind == "open_clip":
        width, after, slot = int(encoder.class_embedding.shape[-1]), 1, encoder.ln_pre
    else:
        width, after, slot = int(encoder.embed_dim), int(encoder.num_prefix_tokens), \
            encoder.norm_pre
    prompts = VisualPrompts(n, width, after)
    encoder.vpt_prompts = prompts
    slot.register_forward_hook(prompts.hook)
    return [prompts.tokens], {"vit": kind, "tokens": n, "width": width, "inserted_after": after}


def apply_adapter(head: nn.Module, feature_dim: int, opts: dict, towers: set[str],
                  who: str) -> tuple[list[nn.Parameter], dict]:
    params: list[nn.Parameter] = []
    record: dict = {"ratio": opts["ratio"]}
    if "image" in towers:
        hidden = opts["dim"] or max(1, feature_dim // 4)
        adapter = FeatureAdapter(feature_dim, hidden, opts["ratio"])
        head.image_adapter = adapter
        head.register_forward_pre_hook(adapter.pre_hook)
        params += list(adapter.parameters())
        record["image"] = {"dim": feature_dim, "hidden": hidden}
    if "text" in towers:
        class_text = getattr(head, "class_text", None)
        if class_text is None:
            raise ConfigError(f"{who}: adapter on=text adapts the class text embeddings, but "
                              "this head uses no text (use on=image, or a text head: lasted, "
                              "clip)")
        dim = int(class_text.encoder.dim)
        hidden = opts["dim"] or max(1, dim // 4)
        adapter = FeatureAdapter(dim, hidden, opts["ratio"], renormalise=True)
        class_text.text_adapter = adapter
        class_text.register_forward_hook(adapter.post_hook)
        params += list(adapter.parameters())
        record["text"] = {"dim": dim, "hidden": hidden}
    return params, record
