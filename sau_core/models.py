"""Model registry: ``create_model(name, info)`` builds a classifier whose first layer normalises.

Every model takes images in [0, 1] (normalisation is inside, so attacks, PGD and saliency work in
pixel space) and returns logits (B, K). Registered models (one dict entry each):

- ``small_cnn``: a compact conv net, cheap enough for digits on a laptop CPU.
- ``wide_cnn``: the small CNN downsampling in its first conv and twice as wide (206k parameters).
- ``preact_resnet18``: PreAct-ResNet18, the CIFAR variant used in the SAU paper (He et al. 2016).
- ``preact_resnet10``: the same family with one block per stage at half width (1.2M parameters).
- ``vgg19_bn``: torchvision's VGG19-BN layers with a small-image head.
- ``resnet18``: torchvision's ResNet-18 adapted to small images (3x3 stem, no max-pool).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .data import DatasetInfo

__all__ = [
    "MODELS",
    "Classifier",
    "Normalize",
    "PreActResNet",
    "PreActResNet18",
    "create_model",
    "list_models",
]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; buffers, so they follow the model's device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``net(normalize(x))``, remembering its architecture name and data set geometry."""

    def __init__(self, arch: str, info: DatasetInfo, net: nn.Module, feature_layer: str) -> None:
        super().__init__()
        self.arch = arch
        self.info = info
        self.normalize = Normalize(info.mean, info.std)
        self.net = net
        self.feature_layer = feature_layer  # dotted name of the last conv block (Grad-CAM)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) in [0, 1] -> (B, K)
        return self.net(self.normalize(x))


# ----------------------------------------------------------------------------------- small CNN
def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU x2, max-pool) and a two-layer head; ``width`` channels first."""

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.features, out = self._features(channels, width)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * out, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    @staticmethod
    def _features(channels: int, w: int) -> tuple[nn.Sequential, int]:
        """The conv layers and their output channels."""
        block = _conv_bn_relu
        features = nn.Sequential(
            *block(channels, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
        )  # fmt: skip
        return features, 2 * w

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)))


class WideCNN(SmallCNN):
    """The small CNN's plan, but downsampling in its first conv (stride 2) and twice as wide:
    conv-BN-ReLU x3 at half resolution (``width``, ``width``, ``2 * width`` channels), max-pool,
    conv-BN-ReLU x2 (``2 * width``, ``4 * width``), and the small CNN's 2x2-pool + two-layer
    head. On 16x16 digits (upsampled from 8x8) the strided stem works at the data's native
    resolution, so the extra width costs little."""

    def __init__(self, channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__(channels, num_classes, width)

    @staticmethod
    def _features(channels: int, w: int) -> tuple[nn.Sequential, int]:
        block = _conv_bn_relu
        features = nn.Sequential(
            *block(channels, w, stride=2), *block(w, w), *block(w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 2 * w), *block(2 * w, 4 * w),
        )  # fmt: skip
        return features, 4 * w


# ----------------------------------------------------------------------------- PreAct-ResNet18
class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for small inputs (He et al., "Identity Mappings in Deep Residual
    Networks"): a 3x3 stem, four stages of ``blocks[i]`` basic blocks with ``width * 2**i``
    channels (stride 2 from the second stage on), BN-ReLU, global average pooling, one linear
    layer. ``blocks=(2, 2, 2, 2), width=64`` is PreAct-ResNet18."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 64,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1 or width < 1:
            raise ValueError(
                f"PreActResNet takes 4 stages of >= 1 block and width >= 1, got {blocks}, {width}"
            )
        self.conv1 = nn.Conv2d(channels, width, 3, stride=1, padding=1, bias=False)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout, stride = width * 2**i, 1 if i == 0 else 2
            stage = [PreActBlock(cin, cout, stride)] + [
                PreActBlock(cout, cout, 1) for _ in range(n - 1)
            ]
            layers.append(nn.Sequential(*stage))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = self.pool(torch.relu(self.bn(out)))
        return self.linear(out.flatten(1))


class PreActResNet18(PreActResNet):
    """PreAct-ResNet18 for 32x32 inputs, the SAU paper's CIFAR-10 model (11M parameters)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(channels, num_classes, (2, 2, 2, 2), 64)


# -------------------------------------------------------------------------- torchvision models
def _max_pools(size: int) -> int:
    """How many 2x2 max-pools an input of ``size`` pixels can take (down to 1 pixel)."""
    return max(0, int(math.log2(size)))


def _vgg19_bn(info: DatasetInfo) -> tuple[nn.Module, str]:
    from torchvision.models import vgg19_bn

    net = vgg19_bn(weights=None, num_classes=info.num_classes)
    if info.channels != 3:
        net.features[0] = nn.Conv2d(info.channels, 64, 3, padding=1)
    # Small images cannot take VGG's five max-pools: keep as many as the size allows.
    keep = _max_pools(info.size)
    for i, layer in enumerate(net.features):
        if isinstance(layer, nn.MaxPool2d):
            if keep > 0:
                keep -= 1
            else:
                net.features[i] = nn.Identity()
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(512, info.num_classes)
    return net, "net.features.51"  # last conv-BN-ReLU output


def _resnet18(info: DatasetInfo) -> tuple[nn.Module, str]:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=info.num_classes)
    net.conv1 = nn.Conv2d(info.channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net, "net.layer4"


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[DatasetInfo], tuple[nn.Module, str]]
    help: str


MODELS: dict[str, ModelEntry] = {
    "small_cnn": ModelEntry(
        lambda info: (SmallCNN(info.channels, info.num_classes), "net.features"),
        "Small CNN (4 conv layers, ~34k parameters): the cheapest model here.",
    ),
    "wide_cnn": ModelEntry(
        lambda info: (WideCNN(info.channels, info.num_classes), "net.features"),
        "Wide small CNN (5 conv layers, 206k parameters): strided first conv, 32-128 channels; "
        "about 2.4x the small CNN's compute. On digits SAU removes Blended from it where it does "
        "not from the small CNN.",
    ),
    "preact_resnet18": ModelEntry(
        lambda info: (PreActResNet18(info.channels, info.num_classes), "net.layer4"),
        "PreAct-ResNet18 (11M parameters), the SAU paper's CIFAR-10 model. Wants a GPU.",
    ),
    "preact_resnet10": ModelEntry(
        lambda info: (
            PreActResNet(info.channels, info.num_classes, (1, 1, 1, 1), 32),
            "net.layer4",
        ),
        "Half-width PreAct-ResNet10 (1.2M parameters): one block per stage, 32-256 channels. "
        "About 10x the small CNN's compute; on digits it unlearns Blended where the small CNN "
        "does not.",
    ),
    "vgg19_bn": ModelEntry(_vgg19_bn, "VGG19 with batch norm (torchvision), small-image head."),
    "resnet18": ModelEntry(_resnet18, "ResNet-18 (torchvision) with a 3x3 stem for small images."),
}


def list_models() -> list[str]:
    return list(MODELS)


def create_model(name: str, info: DatasetInfo, seed: int | None = None) -> Classifier:
    """Build a freshly initialised model for a data set's geometry.

    Args:
        name: a key of :data:`MODELS`.
        info: the data set's :class:`~sau_core.data.DatasetInfo` (channels, size, classes, mean/std).
        seed: seeds the initial weights without touching the global random state (None: unseeded).

    Returns:
        A :class:`Classifier` mapping (B, C, H, W) images in [0, 1] to (B, K) logits.
    """
    try:
        entry = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    if seed is None:
        net, feature_layer = entry.build(info)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net, feature_layer = entry.build(info)
    return Classifier(name, info, net, feature_layer)
