"""The Head interface and the class-text module shared by the language-guided heads."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FerBenchError
from ..registry import Registry
from ..tensor_cache import TensorCache, autocast_state, module_digest, tensor_digest

TEXT_CACHE_VERSION = 2  # 2: key holds tokens, device and precision


class Head(nn.Module):
    """features (B x D) -> logits (B x C); `loss(logits, labels)` is what training minimises.
    What a head can do (text, training, ...) is declared once, in its `HeadSpec`."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(logits, labels, weight=weight)

    def own_parameters(self) -> list[nn.Parameter]:
        """The head's parameters that always train, whatever the regime freezes (not the text
        encoder's, which the regime decides)."""
        return [p for n, p in self.named_parameters() if not n.startswith("class_text.")]

    def after_step(self) -> None:
        """Called after every optimizer step (e.g. to clamp a parameter's value)."""

    def describe(self) -> dict:
        """What the results record about the trained head."""
        return {}


def encoding_parameters(encoder: nn.Module) -> list[nn.Parameter]:
    """The parameters a text encoder encodes with (`encoding_parameters()` where it says)."""
    own = getattr(encoder, "encoding_parameters", None)
    return list(own()) if own else list(encoder.parameters())


class LearnedContext(nn.Module):
    """CoOp-style learned prompt context: replaces the embeddings of the N placeholder tokens
    that follow the start token with N learnable vectors, shared by all classes."""

    def __init__(self, embedding: nn.Embedding, n_ctx: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(torch.randn(n_ctx, embedding.embedding_dim) * 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(ids)
        ctx = self.ctx.to(emb.dtype).unsqueeze(0).expand(emb.shape[0], -1, -1)
        return torch.cat([emb[:, :1], ctx, emb[:, 1 + self.n_ctx:]], dim=1)


class ClassText(nn.Module):
    """Class embeddings from a prompt set: per class, L2-normalised prompt embeddings averaged and
    renormalised (prompt ensembling). With a frozen encoder they are computed once and cached;
    with a trainable one (or learned context) they are recomputed on every training forward.
    `sample_prompts` trains with one prompt per class per step (evaluation always ensembles)."""

    def __init__(self, encoder: nn.Module, prompts: list[list[str]], sample_prompts: bool = False,
                 learned_context: int = 0, cache: TensorCache | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.cache = cache  # on-disk prompt embeddings of a frozen encoder, shared across cells
        self.context: LearnedContext | None = None
        if learned_context:
            parent, attr = encoder.embedding_slot()
            self.context = LearnedContext(getattr(parent, attr), learned_context)
            setattr(parent, attr, self.context)
        flat = [p for ps in prompts for p in ps]
        self.prompts = flat
        self.n_classes = len(prompts)
        self.sample_prompts = sample_prompts
        tokens = encoder.tokenize(flat)
        for k, v in tokens.items():
            self.register_buffer(f"tok_{k}", v, persistent=False)
        self._token_keys = list(tokens)
        owner = torch.tensor([c for c, ps in enumerate(prompts) for _ in ps])
        self.register_buffer("owner", owner, persistent=False)
        self._cache: torch.Tensor | None = None
        self._prompt_cache: torch.Tensor | None = None
        self._frozen: torch.Tensor | None = None

    @property
    def trainable(self) -> bool:
        """Whether the embeddings can change: a trainable logit scale kept beside a CLIP text
        tower does not count (it scales logits, it does not encode)."""
        return any(p.requires_grad for p in encoding_parameters(self.encoder))

    def _encode(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        tokens = {k: getattr(self, f"tok_{k}") for k in self._token_keys}
        if rows is not None:
            tokens = {k: v[rows] for k, v in tokens.items()}
        return F.normalize(self.encoder.encode(tokens).float(), dim=-1)

    @torch.no_grad()
    def _frozen_encode(self) -> torch.Tensor:
        """All prompt embeddings of the frozen encoder: from the text cache when there is one
        (keyed by the encoder's identity and weights and the exact prompts)."""
        if self.cache is None or self.context is not None or self.trainable:
            return self._encode()
        if self._frozen is None:  # the frozen weights cannot change within a cell: look up once
            describe = getattr(self.encoder, "describe", None)
            device = self.owner.device
            tokens = [getattr(self, f"tok_{k}") for k in self._token_keys]
            # Everything the embeddings depend on: weights, tokenizer output, and the precision
            # and device they are computed in (autocast state at the time of the lookup).
            key = {"kind": "text", "version": TEXT_CACHE_VERSION,
                   "encoder": describe() if describe else type(self.encoder).__name__,
                   "weights": module_digest(self.encoder), "prompts": self.prompts,
                   "tokens": tensor_digest(*tokens), "device": device.type,
                   "autocast": autocast_state(device)}
            self._frozen = self.cache.get(key, self._encode, "class text embeddings")
        return self._frozen.to(self.owner.device)

    def _ensemble(self, emb: torch.Tensor) -> torch.Tensor:
        summed = torch.zeros(self.n_classes, emb.shape[1], device=emb.device, dtype=emb.dtype)
        return F.normalize(summed.index_add(0, self.owner, emb), dim=-1)

    def _sampled_rows(self) -> torch.Tensor:
        """One random prompt index per class (uses the global, per-cell seeded RNG)."""
        r = torch.rand(len(self.owner), device=self.owner.device)
        # the max of uniform noise within each class's rows picks one row per class uniformly
        best = torch.full((self.n_classes,), -1.0, device=r.device).scatter_reduce(
            0, self.owner, r, reduce="amax")
        return torch.nonzero(r == best[self.owner]).flatten()[: self.n_classes]

    def forward(self) -> torch.Tensor:
        """C x T, unit rows."""
        sampling = self.sample_prompts and self.training and torch.is_grad_enabled()
        if self.trainable and torch.is_grad_enabled():
            self._cache = None
            if sampling:
                return self._encode(self._sampled_rows())
            return self._ensemble(self._encode())
        if sampling:
            if self._prompt_cache is None:
                self._prompt_cache = self._frozen_encode()
            return self._prompt_cache[self._sampled_rows()]
        if self._cache is None or self._cache.device != self.owner.device:
            with torch.no_grad():
                self._cache = self._ensemble(self._frozen_encode())
        return self._cache

    def invalidate(self) -> None:
        self._cache = self._prompt_cache = None


@dataclass(frozen=True)
class FeatureFit:
    """What a head fitted in closed form gets: frozen features of the train and val splits, and
    how the benchmark scores a validation prediction (so a head carries no metrics code)."""

    train: torch.Tensor                 # N x D
    train_labels: torch.Tensor          # N
    val: torch.Tensor                   # M x D
    n_classes: int
    weight_decays: tuple[float, ...]    # train.probe_weight_decays
    class_weight: torch.Tensor | None   # train.balance = "loss"
    score: Callable[[torch.Tensor], tuple[float, dict]]  # val predictions -> (score, record)


@dataclass(frozen=True)
class HeadSpec:
    """A head and everything the plan, the estimate and the engine need to know about it. The
    one place a head's capabilities are declared: code asks these fields, never the name."""

    name: str
    factory: Callable[..., Head]
    uses_text: bool = False           # needs prompts and a text encoder
    trains: bool = True               # trained by the SGD loop
    frozen_image: bool = False        # the image encoder never trains, whatever the regime
    needs_aligned_text: bool = False  # scores against the backbone's paired CLIP text tower
    batch_loss: bool = False          # the loss couples a batch's rows (DDP: the global batch)
    # fitted on frozen features instead of by SGD: fit(head, data) -> history
    fit: Callable[[Head, FeatureFit], list[dict]] | None = None

    def __post_init__(self) -> None:
        if not self.trains and not self.frozen_image:
            raise FerBenchError(f"head {self.name!r}: a head the SGD loop does not train "
                                "leaves the image encoder as it is: declare frozen_image=True")
        if self.fit is not None and self.trains:
            raise FerBenchError(f"head {self.name!r}: a head with `fit` is not trained by SGD: "
                                "declare trains=False")

    def create(self, **kwargs) -> Head:
        """Options the factory does not declare are not passed (plugin heads written before an
        option existed keep working)."""
        params = inspect.signature(self.factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        return self.factory(**kwargs)


HEADS: Registry[HeadSpec] = Registry("head", "fer_bench.heads")


def register_head(spec: HeadSpec, *, overwrite: bool = False) -> HeadSpec:
    """Add a head: `register_head(HeadSpec("mine", factory, uses_text=True))`, in a plugin file
    (`--plugin FILE`) or a package's `fer_bench.heads` entry point."""
    HEADS.register(spec.name, spec, overwrite=overwrite)
    return spec


def head_spec(name: str) -> HeadSpec:
    """The registered head's spec (unknown names fail with the closest known ones)."""
    entry = HEADS.get(name)
    if not isinstance(entry.obj, HeadSpec):
        raise FerBenchError(f"head {name!r} ({entry.source}) is registered as "
                            f"{type(entry.obj).__name__}, not a HeadSpec: register it with "
                            "fer_bench.heads.register_head(HeadSpec(...))")
    return entry.obj


def create_head(name: str, **kwargs) -> Head:
    return head_spec(name).create(**kwargs)
