"""FER-specific image encoders, built in and registered like any user's own (dogfooding
`register_backbone`). Each is our own code after its paper's description; module names follow
the authors' released code so their checkpoints load as local files (`ir50@/path/ir50.pth`).
Each returns pooled features (its classifier is left to the heads)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import FerBenchError
from ..weights import is_local_file, load_state_file
from .registration import register_backbone

FER_MEAN, FER_STD = (0.5,), (0.25,)


def load_local_weights(model: nn.Module, weights: str, name: str,
                       key_map=None, optional_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """`@none`/`@default`: random init (no public weights are downloaded for our own nets); a
    file: a state dict loaded safely (weights_only / safetensors). `key_map` renames the
    checkpoint's keys; keys under `optional_prefixes` (a classifier, say) may be absent or
    extra, everything else must match exactly."""
    if weights in ("none", "default"):
        return model
    if not is_local_file(weights):
        raise FerBenchError(f"backbone {name!r}: weights must be 'none' or a local file "
                            f"(.pt/.pth/.safetensors), got {weights!r}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FerBenchError(f"backbone {name!r}: weights file {path} does not exist")
    return fit_state(model, load_state_file(path), name, str(path), key_map, optional_prefixes)


def fit_state(model: nn.Module, state: dict[str, torch.Tensor], name: str, where: str,
              key_map=None, optional_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """Load `state` into `model` strictly: after `key_map`, only keys under
    `optional_prefixes` (the classifier) may be missing or extra; shapes must match."""
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    if key_map is not None:
        state = key_map(state)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(optional_prefixes)}
    missing = [k for k in own if k not in state and not k.startswith(optional_prefixes)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", wrong)) if keys]
        raise FerBenchError(f"{where}: weights do not fit {name!r} ({'; '.join(parts)})")
    model.load_state_dict(state, strict=False)
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


# --- VGG-style FER2013 net -------------------------------------------------------------------

class VggFer(nn.Module):
    """Khaireddin & Chen, "Facial Emotion Recognition: State of the Art Performance on FER2013"
    (arXiv:2105.03588, 2021): 4 stages of two 3x3 conv-BN-ReLU blocks and a max-pool (64, 128,
    256, 512 channels) on 40x40 crops of the 48x48 faces, then two 4096-unit fully connected
    layers (the features; their third layer is the 7-way classifier). 73.28% on FER2013."""

    def __init__(self, drop: float = 0.2) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        cin = 1
        for i, w in enumerate(widths, 1):
            setattr(self, f"conv{i}a", nn.Conv2d(cin, w, 3, padding=1))
            setattr(self, f"conv{i}b", nn.Conv2d(w, w, 3, padding=1))
            setattr(self, f"bn{i}a", nn.BatchNorm2d(w))
            setattr(self, f"bn{i}b", nn.BatchNorm2d(w))
            cin = w
        self.pool = nn.MaxPool2d(2, 2)
        self.lin1 = nn.Linear(512 * 2 * 2, 4096)
        self.lin2 = nn.Linear(4096, 4096)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = torch.relu(getattr(self, f"bn{i}a")(getattr(self, f"conv{i}a")(x)))
            x = torch.relu(getattr(self, f"bn{i}b")(getattr(self, f"conv{i}b")(x)))
            x = self.pool(x)
        x = self.drop(torch.relu(self.lin1(x.flatten(1))))
        return self.drop(torch.relu(self.lin2(x)))


@register_backbone("vgg_fer2013", input_size=40, in_chans=1, mean=(0.0,), std=(1.0,),
                   family="fer", feature_dim=4096, fixed_input_size=True,
                   notes="VGG-style FER2013 net (Khaireddin & Chen 2021, arXiv:2105.03588)")
def vgg_fer2013(weights: str = "none") -> nn.Module:
    """VGG-style FER2013 net, Khaireddin & Chen 2021."""
    return load_local_weights(VggFer(), weights, "vgg_fer2013", optional_prefixes=("lin3.",))


# --- Residual Masking Network ----------------------------------------------------------------

class BasicBlock(nn.Module):
    """ResNet basic block (torchvision's layout and names)."""

    def __init__(self, cin: int, cout: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def _block(cin: int, cout: int, stride: int = 1) -> BasicBlock:
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride, down)


class MaskingBlock(nn.Module):
    """A small U-Net of residual blocks producing a soft mask over the channels of a stage's
    output (`depth` encoder levels, each doubling the width). Module names follow the authors'
    `masking.py` (conv1..convN, up_poolN) so their checkpoints load."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        widths = [channels * 2 ** i for i in range(depth + 1)]
        for i in range(depth):  # encoder: c -> 2c -> ... (max-pool between levels)
            setattr(self, f"conv{i + 1}", _block(widths[i], widths[i + 1]))
        self.down_pooling = nn.MaxPool2d(2)
        n = depth
        for i in range(depth - 1, 0, -1):  # decoder: up-sample, concatenate the skip, fuse
            n += 1
            setattr(self, f"up_pool{n}", nn.Sequential(
                nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2), nn.BatchNorm2d(widths[i]),
                nn.ReLU(inplace=True)))
            setattr(self, f"conv{n}", _block(widths[i + 1], widths[i]))
        setattr(self, f"conv{n + 1}", _block(widths[1], widths[0]))
        self._last = n + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(1, self.depth + 1):
            x = getattr(self, f"conv{i}")(x)
            if i < self.depth:
                skips.append(x)
                x = self.down_pooling(x)
        for n in range(self.depth + 1, self._last):
            x = getattr(self, f"up_pool{n}")(x)
            x = getattr(self, f"conv{n}")(torch.cat([x, skips.pop()], 1))
        return torch.softmax(getattr(self, f"conv{self._last}")(x), dim=1)


class ResMaskingNet(nn.Module):
    """Pham, Vu & Tran, "Facial Expression Recognition using Residual Masking Network" (ICPR
    2020): a ResNet-34 whose four stages are each re-weighted by a masking block, x * (1 + mask),
    with U-Nets of depth 4, 3, 2, 1. 224x224 input (gray faces as RGB). 74.14% on FER2013.
    137.8 M unique parameters; the published 142.9 M counts each masking shortcut twice (the
    authors' modules register it as both `downsampleN` and `convK.downsample`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (w, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), 1):
            blocks = [_block(cin, w, 1 if i == 1 else 2)] + [_block(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            setattr(self, f"mask{i}", MaskingBlock(w, depth=5 - i))
            cin = w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            x = x * (1 + getattr(self, f"mask{i}")(x))
        return x.mean((2, 3))


@register_backbone("resmasking", input_size=224, in_chans=3, mean=(0.0,) * 3, std=(1.0,) * 3,
                   family="fer", feature_dim=512, fixed_input_size=True,
                   notes="Residual Masking Network (Pham, Vu & Tran, ICPR 2020)")
def resmasking(weights: str = "none") -> nn.Module:
    """Residual Masking Network, Pham et al. 2020."""
    return load_local_weights(ResMaskingNet(), weights, "resmasking", key_map=map_resmasking_keys,
                              optional_prefixes=("fc.",))


def map_resmasking_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' masking blocks also register each block's shortcut as `downsampleN` (the
    same tensors as `convK.downsample`): drop those duplicates and a DataParallel prefix."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not re.match(r"mask\d\.downsample\d", k)}


# --- mini-Xception ---------------------------------------------------------------------------

class SeparableConv(nn.Module):
    """Keras SeparableConv2D: a depthwise 3x3 then a pointwise 1x1, no bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionModule(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False),
                                      nn.BatchNorm2d(cout))
        self.body = nn.Sequential(
            SeparableConv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            SeparableConv(cout, cout), nn.BatchNorm2d(cout), nn.MaxPool2d(3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.residual(x)


class MiniXception(nn.Module):
    """Arriaga, Valdenegro-Toro & Ploeger, "Real-time Convolutional Neural Networks for Emotion
    and Gender Classification" (arXiv:1710.07557, 2017): two 3x3 convs (8 channels) and four
    depthwise-separable residual modules (16, 32, 64, 128); ~60 k parameters with its 7-way
    conv classifier, 66% on FER2013. Features: the last module, globally averaged."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(XceptionModule(a, b) for a, b in
                                      ((8, 16), (16, 32), (32, 64), (64, 128))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean((2, 3))


@register_backbone("mini_xception", input_size=64, in_chans=1, mean=(0.5,), std=(0.5,),
                   family="fer", feature_dim=128,
                   notes="mini-Xception (Arriaga et al. 2017, arXiv:1710.07557)")
def mini_xception(weights: str = "none") -> nn.Module:
    """mini-Xception, Arriaga et al. 2017."""
    return load_local_weights(MiniXception(), weights, "mini_xception")


# --- IR-50 -----------------------------------------------------------------------------------

class BottleneckIR(nn.Module):
    """The improved residual unit of ArcFace (BN-conv-PReLU-conv-BN), face.evoLVe's names."""

    def __init__(self, cin: int, depth: int, stride: int) -> None:
        super().__init__()
        if cin == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IR50(nn.Module):
    """IR-50: the face-recognition ResNet-50 of ArcFace (Deng et al. 2019) as implemented by
    face.evoLVe, whose MS-Celeb-1M weights POSTER (Zheng et al. 2023) and APViT (Xue et al.
    2022) start from. 112x112 RGB faces in [-1, 1]; output: the 512-d face embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(64), nn.PReLU(64))
        blocks, cin = [], 64
        for depth, n in ((64, 3), (128, 4), (256, 14), (512, 3)):
            for i in range(n):
                blocks.append(BottleneckIR(cin, depth, 2 if i == 0 else 1))
                cin = depth
        self.body = nn.Sequential(*blocks)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


IR50_PREFIXES = ("module.", "backbone.", "ir_back.", "face_back.", "model.")


def map_ir50_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Face-recognition checkpoints wrap IR-50 in DataParallel (`module.`) or in the FER model
    that used it (POSTER's `ir_back.`, APViT's `backbone.`): strip those prefixes."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in IR50_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return {k: v for k, v in out.items() if k.startswith(("input_layer.", "body.",
                                                           "output_layer."))}


@register_backbone("ir50", input_size=112, in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3,
                   family="fer", feature_dim=512, fixed_input_size=True,
                   notes="IR-50 face-recognition ResNet (ArcFace / face.evoLVe), the backbone "
                         "of POSTER and APViT; load MS-Celeb-1M weights with ir50@/path/ir50.pth")
def ir50(weights: str = "none") -> nn.Module:
    """IR-50 face-recognition ResNet (face.evoLVe), as used by POSTER and APViT."""
    return load_local_weights(IR50(), weights, "ir50", key_map=map_ir50_keys)


# --- DAN's ResNet-18 -------------------------------------------------------------------------

def _torchvision_resnet18() -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18()
    model.fc = nn.Identity()  # the 512-d pooled features; DAN's heads sit on the feature map
    return model


@register_backbone("dan_resnet18", input_size=224, in_chans=3, mean=(0.485, 0.456, 0.406),
                   std=(0.229, 0.224, 0.225), family="fer", feature_dim=512,
                   fixed_input_size=True,
                   notes="torchvision ResNet-18, the backbone of DAN (Wen et al. 2023), which "
                         "starts from MS-Celeb-1M weights (resnet18_msceleb.pth)")
def dan_resnet18(weights: str = "none") -> nn.Module:
    """ResNet-18 in torchvision's layout (DAN loads resnet18_msceleb.pth into it strictly)."""
    return load_local_weights(_torchvision_resnet18(), weights, "dan_resnet18",
                              key_map=lambda s: {k.removeprefix("module."): v
                                                 for k, v in s.items()},
                              optional_prefixes=("fc.",))
