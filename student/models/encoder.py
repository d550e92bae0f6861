"""MobileNetV3-class encoders written in plain torch (no torchvision).

The first conv takes 4 channels (RGB + guide). Features are returned at strides 2, 4, 8 and 16
of the (downsampled) trunk input; the stride-32 stage of MobileNetV3 is replaced by dilated
stride-1 blocks (as in matting/segmentation practice) so the deepest map is 1/16.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBNAct, InvertedResidual

# (kernel, expand, out, se, act, stride, dilation); a None row marks where a feature is tapped.
_SPECS: dict[str, list] = {
    # MobileNetV3-Small-class: taps at 1/2 (16 ch), 1/4 (16), 1/8 (24), 1/16 (last).
    "mbv3-small": [
        ("stem", 16),
        None,                                   # 1/2
        (3, 16, 16, True, "relu", 2, 1),
        None,                                   # 1/4
        (3, 72, 24, False, "relu", 2, 1),
        (3, 88, 24, False, "relu", 1, 1),
        None,                                   # 1/8
        (5, 96, 40, True, "hswish", 2, 1),
        (5, 240, 40, True, "hswish", 1, 1),
        (5, 240, 40, True, "hswish", 1, 1),
        (5, 120, 48, True, "hswish", 1, 1),
        (5, 144, 48, True, "hswish", 1, 1),
        (5, 288, 96, True, "hswish", 1, 2),
        (5, 576, 96, True, "hswish", 1, 2),
        None,                                   # 1/16
    ],
    # MobileNetV3-Large-class (RVM's trunk, dilated last stage, without the 960 expansion).
    "mbv3-large": [
        ("stem", 16),
        (3, 16, 16, False, "relu", 1, 1),
        None,                                   # 1/2
        (3, 64, 24, False, "relu", 2, 1),
        (3, 72, 24, False, "relu", 1, 1),
        None,                                   # 1/4
        (5, 72, 40, True, "relu", 2, 1),
        (5, 120, 40, True, "relu", 1, 1),
        (5, 120, 40, True, "relu", 1, 1),
        None,                                   # 1/8
        (3, 240, 80, False, "hswish", 2, 1),
        (3, 200, 80, False, "hswish", 1, 1),
        (3, 184, 80, False, "hswish", 1, 1),
        (3, 184, 80, False, "hswish", 1, 1),
        (3, 480, 112, True, "hswish", 1, 1),
        (3, 672, 112, True, "hswish", 1, 1),
        (5, 672, 160, True, "hswish", 1, 2),
        (5, 960, 160, True, "hswish", 1, 2),
        None,                                   # 1/16
    ],
}

ENCODERS = tuple(_SPECS)


class MobileNetV3Encoder(nn.Module):
    """Returns ``[f2, f4, f8, f16]``; ``channels`` lists their channel counts."""

    def __init__(self, arch: str = "mbv3-small", in_channels: int = 4, se: bool = True):
        super().__init__()
        if arch not in _SPECS:
            raise ValueError(f"unknown encoder {arch!r}: expected one of {', '.join(ENCODERS)}")
        stages: list[nn.Module] = []
        current: list[nn.Module] = []
        self.channels: list[int] = []
        cin = in_channels
        for row in _SPECS[arch]:
            if row is None:
                stages.append(nn.Sequential(*current))
                self.channels.append(cin)
                current = []
            elif row[0] == "stem":
                current.append(ConvBNAct(cin, row[1], 3, 2, act="hswish"))
                cin = row[1]
            else:
                k, exp, out, use_se, act, stride, dil = row
                current.append(InvertedResidual(cin, k, exp, out, use_se and se, act, stride, dil))
                cin = out
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats
