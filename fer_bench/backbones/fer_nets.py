"""FER-specific image encoders, built in and registered like any user's own (dogfooding
`register_backbone`). They take 48x48 grayscale faces, as FER2013 ships them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import FerBenchError
from . import register_backbone
from .weights import is_local_file

FER_MEAN, FER_STD = (0.5,), (0.25,)


def load_local_weights(model: nn.Module, weights: str, name: str) -> nn.Module:
    """`@none`/`@default`: random init (no public weights exist for our own nets); a file: a
    state dict loaded safely (weights_only / safetensors), with a clear error on mismatch."""
    if weights in ("none", "default"):
        return model
    if not is_local_file(weights):
        raise FerBenchError(f"backbone {name!r}: weights must be 'none' or a local file, "
                            f"got {weights!r}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FerBenchError(f"backbone {name!r}: weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickles needing code are refused by weights_only
            raise FerBenchError(f"{path}: not a plain tensor checkpoint (refused to unpickle "
                                f"code): {e}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise FerBenchError(f"{path}: weights do not fit {name!r}: {str(e)[:300]}") from e
    return model


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FerCNN(nn.Module):
    """A small 4-stage VGG-like CNN for 48x48 faces (0.29 M params, 30 MMACs): the quick FER
    baseline, sized to train in seconds on a laptop CPU."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            layers += [conv_bn(cin, w), conv_bn(w, w), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.num_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


@register_backbone("fer_cnn", input_size=48, in_chans=1, mean=FER_MEAN, std=FER_STD,
                   family="fer", feature_dim=128,
                   notes="small VGG-like CNN for 48x48 grayscale faces (fer-bench's own)")
def fer_cnn(weights: str = "none") -> nn.Module:
    return load_local_weights(FerCNN(), weights, "fer_cnn")
