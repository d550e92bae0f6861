"""Recurrent decoder: LR-ASPP-lite context at 1/16, ConvGRU memory at 1/16, 1/8, 1/4 and 1/2.

Each GRU runs on half of the block's channels (the other half passes through), as in RVM.
The state of every GRU is explicit: ``forward(..., r1, r2, r3, r4) -> (hidden, r1', r2', r3', r4')``
with ``r1`` the finest (1/2) and ``r4`` the coarsest (1/16) level.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ConvBNAct


class ConvGRU(nn.Module):
    """Convolutional GRU cell. ``h`` starts as zeros of the same shape as ``x``."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.channels = channels
        pad = kernel // 2
        self.gates = nn.Conv2d(channels * 2, channels * 2, kernel, padding=pad)
        self.cand = nn.Conv2d(channels * 2, channels, kernel, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        c = self.channels
        g = torch.sigmoid(self.gates(torch.cat([x, h], dim=1)))
        r, z = g[:, :c], g[:, c:]
        cand = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * cand


class GRUBlock(nn.Module):
    """Runs a ConvGRU on the second half of the channels; the first half passes through."""

    def __init__(self, channels: int):
        super().__init__()
        self.keep = channels - channels // 2
        self.gru = ConvGRU(channels // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[:, : self.keep], x[:, self.keep:]
        h = self.gru(b, h)
        return torch.cat([a, h], dim=1), h


class ContextBlock(nn.Module):
    """LR-ASPP-lite: 1x1 conv gated by a global-pool attention branch."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = ConvBNAct(cin, cout, 1, act="relu")
        self.att = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * torch.sigmoid(self.att(x.mean(dim=(2, 3), keepdim=True)))


class ResBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv, plus the input. The last conv starts at zero, so a block added to a
    trained decoder leaves its output unchanged until fine-tuning moves it (see ``coarse_blocks``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBNAct(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class UpBlock(nn.Module):
    """Upsample to the skip's size, concat (x, skip, downsampled input), conv, GRU."""

    def __init__(self, cin: int, cskip: int, cimg: int, cout: int, separable: bool):
        super().__init__()
        c = cin + cskip + cimg
        if separable:
            self.conv = nn.Sequential(ConvBNAct(c, c, 3, groups=c, act="none"), ConvBNAct(c, cout, 1))
        else:
            self.conv = ConvBNAct(c, cout, 3)
        self.gru = GRUBlock(cout)

    def forward(self, x, skip, img, h):
        x = F.interpolate(x, size=(int(skip.shape[-2]), int(skip.shape[-1])), mode="bilinear", align_corners=False)
        x = self.conv(torch.cat([x, skip, img], dim=1))
        return self.gru(x, h)


class OutputBlock(nn.Module):
    """Upsample to the trunk resolution and fuse with the trunk input (no recurrence)."""

    def __init__(self, cin: int, cimg: int, cout: int, separable: bool):
        super().__init__()
        c = cin + cimg
        if separable:
            self.conv = nn.Sequential(ConvBNAct(c, c, 3, groups=c, act="none"), ConvBNAct(c, cout, 1))
        else:
            self.conv = ConvBNAct(c, cout, 3)

    def forward(self, x, img):
        x = F.interpolate(x, size=(int(img.shape[-2]), int(img.shape[-1])), mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, img], dim=1))


class RecurrentDecoder(nn.Module):
    """``channels`` = (c16, c8, c4, c2, c1): block widths from coarse to the trunk resolution."""

    def __init__(self, enc_channels: list[int], channels: tuple[int, ...], img_channels: int = 4,
                 separable: tuple[bool, ...] = (False, False, False, True, True), coarse_blocks: int = 0):
        super().__init__()
        e2, e4, e8, e16 = enc_channels
        c16, c8, c4, c2, c1 = channels
        self.context = ContextBlock(e16, c16)
        # extra residual blocks at 1/16 (~0.01 GFLOPs each at 720p): more capacity where the decoder decides
        # what is foreground; with none, an empty Sequential (no weights, no graph nodes)
        self.coarse = nn.Sequential(*[ResBlock(c16) for _ in range(int(coarse_blocks))])
        self.gru16 = GRUBlock(c16)
        self.up8 = UpBlock(c16, e8, img_channels, c8, separable[1])
        self.up4 = UpBlock(c8, e4, img_channels, c4, separable[2])
        self.up2 = UpBlock(c4, e2, img_channels, c2, separable[3])
        self.out = OutputBlock(c2, img_channels, c1, separable[4])

    def state_channels(self) -> list[int]:
        """GRU state channels, finest first (r1 at 1/2 ... r4 at 1/16)."""
        return [self.up2.gru.gru.channels, self.up4.gru.gru.channels,
                self.up8.gru.gru.channels, self.gru16.gru.channels]

    def forward(self, img, f2, f4, f8, f16, s2, s4, s8, r1, r2, r3, r4):
        x = self.coarse(self.context(f16))
        x, r4 = self.gru16(x, r4)
        x, r3 = self.up8(x, f8, s8, r3)
        x, r2 = self.up4(x, f4, s4, r2)
        x, r1 = self.up2(x, f2, s2, r1)
        x = self.out(x, img)
        return x, r1, r2, r3, r4
