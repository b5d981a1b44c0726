"""The PyTorch side of fnn.models' equivalence checks (make_fixtures.py, compare.py).

torchvision's own classes at torchvision's sizes (compare.py), and at tiny sizes
for the suite's fixtures (make_fixtures.py): ``ResNet.__init__``, ``VGG.__init__``
and ``MobileNetV2.__init__`` fix their widths, so the tiny models subclass them to
keep torchvision's blocks (``BasicBlock``, ``Bottleneck``, ``InvertedResidual``,
``make_layers``, ``_make_layer``) and ``forward`` and change only the widths.
LeNet-5 has no torchvision model: :class:`LeNet5` is the usual PyTorch one.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def import_torchvision() -> types.ModuleType:
    """``import torchvision``, also where its C++ operators cannot load.

    A torchvision wheel built for CUDA next to a CPU-only torch cannot load its
    ``_C`` extension, and its import then fails registering fake kernels for
    ``torchvision::nms`` and friends. The classification models use none of those
    operators, so the two registration modules are skipped in that case.
    """
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in list(sys.modules):
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        import torchvision
    return torchvision


torchvision = import_torchvision()
from torchvision.models.mobilenetv2 import MobileNetV2  # noqa: E402
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet  # noqa: E402
from torchvision.models.vgg import VGG, make_layers  # noqa: E402
from torchvision.ops.misc import Conv2dNormActivation  # noqa: E402

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "LeNet5",
    "TinyResNet",
    "TinyVGG",
    "randomize",
    "tiny_mobilenet_v2",
    "torchvision",
]


class LeNet5(nn.Module):
    """The usual PyTorch LeNet-5: ``conv1``, ``conv2`` (5x5, tanh, 2x2 average pools), ``fc1``..``fc3``."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, ...] = (6, 16, 120, 84), in_channels: int = 1
    ):
        super().__init__()
        c1, c2, f1, f2 = widths
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * 5 * 5, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc3 = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.tanh(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.tanh(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        return self.fc3(x)


class TinyResNet(ResNet):
    """torchvision's ``ResNet`` (its ``_make_layer`` and ``forward``) with ``width`` channels for its 64."""

    def __init__(self, block: type, layers: list[int], width: int, num_classes: int):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)


class TinyVGG(VGG):
    """torchvision's ``VGG`` (``make_layers(cfg)`` and its ``forward``) with ``hidden`` classifier units for its 4096."""

    def __init__(self, cfg: list, hidden: int, num_classes: int, dropout: float = 0.5):
        nn.Module.__init__(self)
        self.features = make_layers(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        channels = [v for v in cfg if v != "M"][-1]
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )


def tiny_mobilenet_v2(
    num_classes: int, width_mult: float, setting: list, round_nearest: int, last_channel: int
) -> MobileNetV2:
    """torchvision's ``MobileNetV2`` with its last 1x1 convolution narrowed to ``last_channel`` (its 1280 is fixed)."""
    model = MobileNetV2(num_classes, width_mult, setting, round_nearest)
    before = model.features[-1][0].in_channels
    model.features[-1] = Conv2dNormActivation(
        before, last_channel, kernel_size=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6
    )
    model.classifier[1] = nn.Linear(last_channel, num_classes)
    return model


def randomize(
    module: nn.Module,
    rng: np.random.Generator,
    *,
    calibrate: torch.Tensor | None = None,
    library_init: bool = False,
) -> None:
    """Random weights on the scale of trained ones, so outputs stay O(1) through deep models.

    Conv/Linear weights ``N(0, 1/fan_in)``, biases and BatchNorm shifts
    ``N(0, 0.1)``, BatchNorm scales ``U(0.5, 1.5)``; with ``library_init``, the
    Conv/Linear weights and biases keep the library's own random initialisation
    (torchvision's ``weights=None``) and only the BatchNorm layers change.
    Running statistics are random too: ``N(0, 0.1)`` means and ``U(0.5, 1.5)``
    variances, or, with ``calibrate``, those of a training-mode pass over that
    batch (so that a 50-layer network's activations stay bounded), scaled by
    ``U(0.8, 1.25)``.
    """
    norm_names = {f"{n}.{k}" for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)
                  for k in ("weight", "bias", "running_mean", "running_var")}  # fmt: skip
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.dtype.is_floating_point or (library_init and name not in norm_names):
                continue
            if name.endswith("running_mean"):
                value = rng.normal(0, 0.1, t.shape)
            elif name.endswith("running_var"):
                value = rng.uniform(0.5, 1.5, t.shape)
            elif name in norm_names and name.endswith("weight"):
                value = rng.uniform(0.5, 1.5, t.shape)
            elif t.ndim == 1:  # biases
                value = rng.normal(0, 0.1, t.shape)
            else:  # Conv/Linear weight (out, in/groups, *kernel)
                value = rng.normal(0, 1 / np.sqrt(np.prod(t.shape[1:])), t.shape)
            t.copy_(torch.from_numpy(value.astype(np.float32)))
        if calibrate is None:
            return
        norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch gives its statistics
        module.train()
        module(calibrate)
        module.eval()
        for m in norms:
            m.momentum = 0.1
            m.running_var.mul_(
                torch.from_numpy(rng.uniform(0.8, 1.25, m.running_var.shape).astype(np.float32))
            )
