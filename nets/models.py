"""The paper's two architectures, in a fully scale-invariant and a practical mode.

Both follow the paper (Lobacheva et al., NeurIPS 2021, Sec. 3 and App.; ``docs/paper_setup.md``):

* :class:`ConvNet` -- blocks Conv3x3 (no bias) -> BatchNorm2d -> ReLU -> MaxPool2d(2), the first
  block without pool (computed as BN -> MaxPool -> ReLU: the two commute exactly, values and
  gradients, and the ReLU then runs on a quarter of the elements), channels ``w, 2w, 4w, 8w``;
  head MaxPool over what is left of the image, Flatten, Linear(8w, classes). For inputs
  smaller than 32x32 a block pools only while the feature map is at least 2x2, and the head
  pool covers the remaining map (4x4 at 32x32, as in the paper; 2x2 at 16x16; none at 8x8).
* :class:`PreActResNet18` -- pre-activation ResNet-18 (blocks [2, 2, 2, 2]), convs without
  bias, an extra BN before the 1x1 downsampling shortcut conv, a final BN + ReLU before the
  average pool over the remaining map (4x4 at 32x32), Linear without bias.

Modes: ``"si"`` -- every BN without affine parameters and the last Linear rescaled to Frobenius
norm ``last_layer_norm`` (10) and frozen, so every trainable weight is scale-invariant;
``"practical"`` -- BN with affine parameters, everything trained, default init.

Normalisations of the ConvNet (``norm``; Lobacheva et al., 2021, App. "other normalisation
layers"): ``"bn"`` BatchNorm2d (the paper's); ``"ln"`` LayerNorm over (C, H, W) of each sample,
i.e. GroupNorm with one group (Wu & He, 2018); ``"gn"`` GroupNorm with ``gcd(channels, 4)``
groups; ``"wn"`` no normalisation layer, weight normalisation of every conv,
w = g v/||v|| per output channel (Salimans & Kingma, 2016), with the magnitudes g frozen in
``"si"`` mode (as BN's affine parameters are) so that only the SI directions v are trained.
Which weights are SI is never assumed from this list: :mod:`nets.monitor.si` finds them by testing.

Note on ResNet-18: each block's *first* conv is followed by a BN and is SI on its own; the
second conv, the stem and the shortcut convs feed the residual sum, so only their *joint*
rescaling (together with the rest) leaves the output unchanged. :mod:`nets.monitor.si` finds both kinds.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["ConvNet", "PreActResNet18", "build_model", "fix_last_layer", "pooled_size", "NORMS"]

NORMS = ("bn", "ln", "gn", "wn")
GN_GROUPS = 4


def _bn(channels: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine)


def _norm_layer(norm: str, channels: int, affine: bool) -> nn.Module:
    """The normalisation after a conv (module docstring); ``wn`` has none (it is in the conv)."""
    if norm == "bn":
        return _bn(channels, affine)
    if norm in ("ln", "gn"):
        groups = 1 if norm == "ln" else math.gcd(channels, GN_GROUPS)
        return nn.GroupNorm(groups, channels, affine=affine)
    return nn.Identity()


def _conv3x3(c_in: int, c_out: int, norm: str, affine: bool) -> nn.Module:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    if norm != "wn":
        return conv
    conv = weight_norm(conv)                      # weight = g * v / ||v|| per output channel
    conv.parametrizations.weight.original0.requires_grad_(affine)   # g: trained only if affine
    return conv


def fix_last_layer(linear: nn.Linear, norm: float = 10.0, zero_bias: bool = True) -> nn.Linear:
    """Rescale ``linear.weight`` to Frobenius norm ``norm``, zero its bias (``zero_bias``; else keep
    its random init, as the authors' code does), and freeze both."""
    with torch.no_grad():
        linear.weight.mul_(norm / linear.weight.norm())
        if linear.bias is not None and zero_bias:
            linear.bias.zero_()
    for p in linear.parameters():
        p.requires_grad_(False)
    return linear


def pooled_size(size: int, n_halvings: int, ceil: bool = False) -> int:
    """Spatial size after ``n_halvings`` halvings (floor: MaxPool2d(2); ceil: stride-2 conv)."""
    for _ in range(n_halvings):
        size = -(-size // 2) if ceil else size // 2
    return size


class ConvNet(nn.Module):
    """The paper's 4-block ConvNet (see module docstring)."""

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 3,
                 input_size: int = 32, mode: str = "si", last_layer_norm: float = 10.0,
                 keep_last_bias: bool = False, norm: str = "bn"):
        super().__init__()
        affine = mode != "si"
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        size, c_in = input_size, in_channels
        for i, c in enumerate(chans):
            layers += [_conv3x3(c_in, c, norm, affine), _norm_layer(norm, c, affine)]
            if i > 0 and size >= 2:
                layers.append(nn.MaxPool2d(2))   # max-pool and ReLU commute: pool first, 4x less ReLU
                size //= 2
            layers.append(nn.ReLU(inplace=True))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.MaxPool2d(size) if size > 1 else nn.Identity()
        self.linear = nn.Linear(chans[-1], num_classes, bias=True)
        if mode == "si":
            fix_last_layer(self.linear, last_layer_norm, zero_bias=not keep_last_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.features(x)), 1))


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool):
        super().__init__()
        self.bn1 = _bn(c_in, affine)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(c_out, affine)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(_bn(c_in, affine),
                                          nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + skip


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 for CIFAR-sized inputs (see module docstring)."""

    def __init__(self, width: int = 64, num_classes: int = 10, in_channels: int = 3,
                 input_size: int = 32, mode: str = "si", last_layer_norm: float = 10.0):
        super().__init__()
        affine = mode != "si"
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        stages, c_in = [], width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(PreActBlock(c_in, c, stride, affine), PreActBlock(c, c, 1, affine)))
            c_in = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = _bn(c_in, affine)
        size = pooled_size(input_size, 3, ceil=True)
        self.pool = nn.AvgPool2d(size) if size > 1 else nn.Identity()
        self.linear = nn.Linear(c_in, num_classes, bias=False)
        if mode == "si":
            fix_last_layer(self.linear, last_layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = self.pool(torch.relu(self.bn(out)))
        return self.linear(torch.flatten(out, 1))


def build_model(name: str, *, mode: str = "si", width: int = 32, num_classes: int = 10,
                in_channels: int = 3, input_size: int = 32, last_layer_norm: float = 10.0,
                keep_last_bias: bool = False, norm: str = "bn") -> nn.Module:
    """``"convnet"`` or ``"resnet18"`` in ``mode`` "si" or "practical", the ConvNet with any of
    :data:`NORMS` (see module docstring).

    ``keep_last_bias`` (ConvNet, "si" mode): freeze the last layer's bias at its random init
    instead of zero; the ResNet-18's last layer has no bias."""
    classes = {"convnet": ConvNet, "resnet18": PreActResNet18}
    if name not in classes:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(classes)}")
    if mode not in ("si", "practical"):
        raise ValueError(f"unknown mode {mode!r}; choose si or practical")
    if norm not in NORMS or (norm != "bn" and name != "convnet"):
        raise ValueError(f"norm must be one of {', '.join(NORMS)} (other than bn: convnet only), got {norm!r}")
    extra = {"keep_last_bias": keep_last_bias, "norm": norm} if name == "convnet" else {}
    return classes[name](width=width, num_classes=num_classes, in_channels=in_channels,
                         input_size=input_size, mode=mode, last_layer_norm=last_layer_norm, **extra)
