"""Deep guided filter refiner: low-resolution prediction -> full-resolution alpha and foreground.

A locally linear model ``y = A * x + b`` (x = full-res RGB + gray, y = foreground + alpha) whose
coefficients are predicted at the trunk resolution by a small 1x1-conv net from the box-filtered
statistics plus decoder features, then bilinearly upsampled to the frame size (a static size:
no runtime Resize scales). Edges come from the full-resolution frame; cost at full resolution is
two 4-channel resizes, a multiply and an add per pixel (two 1-channel resizes when only alpha
is wanted).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    return F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)


class DeepGuidedFilterRefiner(nn.Module):
    def __init__(self, hidden_in: int, hidden: int = 16, radius: int = 1):
        super().__init__()
        self.radius = radius
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hidden_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 4, 1),
        )

    def forward(self, fine_src, base_src, base_fgr, base_pha, base_hid, want_fgr: bool = True):
        """``(fgr, pha)`` at the size of ``fine_src``; ``fgr`` is None when ``want_fgr`` is False
        (then only the alpha channel's coefficients are upsampled: a quarter of the full-res work)."""
        base_x = torch.cat([base_src, base_src.mean(dim=1, keepdim=True)], dim=1)
        base_y = torch.cat([base_fgr, base_pha], dim=1)
        r = self.radius
        mean_x = box_filter(base_x, r)
        mean_y = box_filter(base_y, r)
        cov_xy = box_filter(base_x * base_y, r) - mean_x * mean_y
        var_x = box_filter(base_x * base_x, r) - mean_x * mean_x
        A = self.conv(torch.cat([cov_xy, var_x, base_hid], dim=1))
        b = mean_y - A * mean_x
        size = (int(fine_src.shape[-2]), int(fine_src.shape[-1]))
        # full resolution: the gray guide as a sum of slices (cheaper than a channel ReduceMean in
        # ONNX Runtime), no 4-channel concat of the frame; its 1/3 is folded into A at the trunk
        # resolution (bilinear resizing is linear), saving a full-resolution multiply
        gray3 = fine_src[:, 0:1] + fine_src[:, 1:2] + fine_src[:, 2:3]
        a_gray = A[:, 3:] * (1.0 / 3.0)
        if not want_fgr:
            # two 1-channel resizes, not one 2-channel resize + Split: the Split copies two
            # full-resolution planes (1280x720, ONNX Runtime, 1 thread: ~1.2 ms of ~30)
            a1 = F.interpolate(a_gray, size=size, mode="bilinear", align_corners=False)
            b1 = F.interpolate(b[:, 3:], size=size, mode="bilinear", align_corners=False)
            return None, a1 * gray3 + b1
        A = F.interpolate(torch.cat([A[:, :3], a_gray], dim=1), size=size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        return A[:, :3] * fine_src + b[:, :3], A[:, 3:] * gray3 + b[:, 3:]
