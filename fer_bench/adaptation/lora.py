"""LoRA on an encoder: peft where its layers fit, a small parametrization where they do not.

peft (`inject_adapter_in_model`) wraps nn.Linear and nn.Conv2d modules that are *called*, and
nn.MultiheadAttention (open_clip's ViT and text towers; peft merges the low-rank update into
`in_proj_weight` / `out_proj.weight` around each call, so the base tensors are never written).
CLIP ResNets' attention pool (open_clip `AttentionPool2d`) never calls its q/k/v/c projections:
it hands their `.weight` tensors to `F.multi_head_attention_forward`, so a wrapped module would
be bypassed (peft's `target_parameters` is likewise only active inside the owner's forward).
There, `LoRAWeight` is registered with torch.nn.utils.parametrize: reading `.weight` returns
W + (alpha / r) B A, with W the frozen original."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError

ATTN_WORDS = ("attn", "attention", "self_attn")
MLP_WORDS = ("mlp", "ffn", "feed_forward", "intermediate")


class LoRAWeight(nn.Module):
    """A parametrization W -> W + scale * B @ A (B starts at zero: the model starts unchanged)."""

    def __init__(self, shape: torch.Size, r: int, alpha: float) -> None:
        super().__init__()
        out_f, in_f = shape
        self.lora_A = nn.Parameter(torch.empty(r, in_f))
        self.lora_B = nn.Parameter(torch.zeros(out_f, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft / the LoRA paper
        self.scale = alpha / r

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.lora_B @ self.lora_A).to(weight.dtype) * self.scale


def _is_attention_pool(module: nn.Module) -> bool:
    """open_clip's (and OpenAI CLIP's) ResNet attention pool: weights read, never called."""
    return (type(module).__name__ == "AttentionPool2d"
            and all(isinstance(getattr(module, n, None), nn.Linear)
                    for n in ("q_proj", "k_proj", "v_proj", "c_proj")))


def _words(name: str) -> list[str]:
    return name.lower().split(".")


def _in_attention(name: str, parent: nn.Module | None) -> bool:
    return (any(w in ATTN_WORDS for w in _words(name)[:-1])
            or (parent is not None and "attention" in type(parent).__name__.lower()))


def _in_mlp(name: str, parent: nn.Module | None) -> bool:
    return (any(w in MLP_WORDS for w in _words(name)[:-1])
            or (parent is not None and "mlp" in type(parent).__name__.lower()))


def _candidates(encoder: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, module, how) for every LoRA-able module: how = 'mha' (peft's
    MultiheadAttention), 'pool' (our parametrization) or 'layer' (peft Linear / Conv2d)."""
    mods = dict(encoder.named_modules())
    skip: set[str] = set()
    out = []
    for name, m in mods.items():
        if isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim:
            out.append((name, m, "mha"))
            skip.update(f"{name}.{c}" for c, _ in m.named_modules() if c)
        elif _is_attention_pool(m):
            out += [(f"{name}.{p}", getattr(m, p), "pool")
                    for p in ("q_proj", "k_proj", "v_proj", "c_proj")]
            skip.update(f"{name}.{p}" for p in ("q_proj", "k_proj", "v_proj", "c_proj"))
    for name, m in mods.items():
        if name not in skip and isinstance(m, nn.Linear | nn.Conv2d) and name:
            out.append((name, m, "layer"))
    return out


def _selected(name: str, module: nn.Module, how: str, parent: nn.Module | None,
              target: str) -> bool:
    if target == "all":
        return True
    if target == "attn":
        return how in ("mha", "pool") or (isinstance(module, nn.Linear)
                                          and _in_attention(name, parent))
    if target == "mlp":
        return (how == "layer" and isinstance(module, nn.Linear) and _in_mlp(name, parent)
                and not _in_attention(name, parent))
    if target == "conv":
        return isinstance(module, nn.Conv2d)
    return name == target or name.endswith("." + target)


def resolve_targets(encoder: nn.Module, targets: str, who: str) -> list[tuple[str, str]]:
    """(qualified module name, how) for each module the targets select; ConfigError naming
    what the encoder has when a target selects nothing."""
    mods = dict(encoder.named_modules())
    found: dict[str, str] = {}
    cands = _candidates(encoder)
    for target in targets.split("+"):
        hit = [(n, how) for n, m, how in cands
               if _selected(n, m, how, mods.get(n.rpartition(".")[0]), target)]
        if not hit:
            kinds = sorted({type(m).__name__ for _, m, _ in cands})
            examples = ", ".join(n for n, _, _ in cands[:6]) or "none"
            raise ConfigError(
                f"{who}: LoRA target {target!r} matches no module of the "
                f"{type(encoder).__name__} encoder (LoRA-able modules: {len(cands)} of "
                f"types {', '.join(kinds) or 'none'}, e.g. {examples}); use targets=attn, mlp, "
                "conv, all or module names joined by '+'")
        found.update(dict(hit))
    return sorted(found.items())


def apply_lora(encoder: nn.Module, opts: dict, who: str) -> tuple[list[nn.Parameter], dict]:
    """Inject LoRA into `encoder` in place; returns (the new parameters, a record)."""
    targets = resolve_targets(encoder, opts["targets"], who)
    r, alpha = int(opts["r"]), float(opts["alpha"])
    peft_names = [n for n, how in targets if how in ("mha", "layer")]
    if peft_names:
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=float(opts["dropout"]),
                         target_modules=peft_names)
        inject_adapter_in_model(cfg, encoder)
    mods = dict(encoder.named_modules())
    pool_names = [n for n, how in targets if how == "pool"]
    for n in pool_names:
        lin = mods[n]
        parametrize.register_parametrization(lin, "weight", LoRAWeight(lin.weight.shape, r, alpha))
    # by name: peft re-registers MultiheadAttention's base weights as new Parameter objects
    new = [p for n, p in encoder.named_parameters() if "lora_" in n]
    counts = {"peft": len(peft_names), "parametrized": len(pool_names)}
    return new, {"modules": len(targets), **counts,
                 "module_names": [n for n, _ in targets][:50]}
