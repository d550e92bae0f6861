"""Small layers shared by the student's parts (one place, no copy-paste between files).

Everything here exports to plain ONNX ops that ONNX Runtime and TensorRT run fast:
Conv (+ folded BatchNorm), Relu, HardSwish, HardSigmoid, GlobalAveragePool, Mul, Add.
"""
from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channel counts to a multiple of ``divisor`` (MobileNet convention)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}: expected relu, hswish or none")


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + activation; BatchNorm folds into the conv at export."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: str = "relu"):
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            activation(act),
        )


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-and-excitation (GlobalAveragePool -> 1x1 -> ReLU -> 1x1 -> HardSigmoid)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = make_divisible(channels / reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.relu(self.fc1(s))
        return x * nn.functional.hardsigmoid(self.fc2(s))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand -> depthwise kxk -> (SE) -> 1x1 project (+ residual)."""

    def __init__(self, cin: int, kernel: int, expand: int, cout: int, se: bool, act: str,
                 stride: int = 1, dilation: int = 1):
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != cin:
            layers.append(ConvBNAct(cin, expand, 1, act=act))
        layers.append(ConvBNAct(expand, expand, kernel, stride, groups=expand, dilation=dilation, act=act))
        if se:
            layers.append(SqueezeExcite(expand))
        layers.append(ConvBNAct(expand, cout, 1, act="none"))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


def half_size(h: int, w: int) -> tuple[int, int]:
    """Spatial size after a stride-2 conv with 'same' padding (ceil division)."""
    return (h + 1) // 2, (w + 1) // 2
