"""Deep guided filter refiner: low-resolution prediction -> full-resolution alpha and foreground.

A locally linear model ``y = A * x + b`` (x = full-res RGB + gray, y = foreground + alpha) whose
coefficients are predicted at the trunk resolution by a small 1x1-conv net from the box-filtered
statistics plus decoder features, then bilinearly upsampled to the frame size (a static size:
no runtime Resize scales). Edges come from the full-resolution frame; cost at full resolution is
two 4-channel resizes, a multiply and an add per pixel (two 1-channel resizes when only alpha
is wanted).

An optional second guide for the alpha (``extra``): ``"mask"`` — the full-resolution coarse mask
itself, so the alpha can keep the mask's own edge where the mask is right (alpha = a*gray + c*mask
+ b); ``"chroma"`` — a learned colour projection of the frame (a 1x1 conv, initialised to R - B), so
edges between regions of equal brightness but different colour survive the upsampling. Either costs
one more 1-channel full-resolution resize, multiply and add; its coefficient starts at zero (the
refiner then computes exactly what it computes without it, so a trained student can be extended and
fine-tuned: :func:`extend_refiner_state`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    return F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)


#: the refiner's optional second alpha guide (StudentConfig.refiner_extra)
REFINER_EXTRAS = ("none", "mask", "chroma")


class DeepGuidedFilterRefiner(nn.Module):
    def __init__(self, hidden_in: int, hidden: int = 16, radius: int = 1, extra: str = "none", smooth: int = 0,
                 stabilizer: float = 0.0):
        super().__init__()
        #: blend weight of the previous frame's (motion-compensated) alpha coefficients, carried in
        #: the ``memory`` state (see :mod:`mamakit.stabilize`); 0 = off
        self.stabilizer = float(stabilizer)
        #: radius of a box mean of the coefficients A, b before they are upsampled (He et al.'s
        #: mean_a, mean_b; 0 = off): smoother coefficient fields, steadier edges at a large upsampling
        self.smooth = int(smooth)
        if extra not in REFINER_EXTRAS:
            raise ValueError(f"refiner extra guide {extra!r} is unknown: use one of {', '.join(REFINER_EXTRAS)}")
        self.radius = radius
        self.extra = extra
        n = 0 if extra == "none" else 1
        # inputs: cov(x, y) and var(x) of the 4 guide/target pairs, the decoder's features, then
        # cov(extra, alpha) and var(extra); outputs: the 4 slopes A, then the extra guide's slope
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hidden_in + 2 * n, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 4 + n, 1),
        )
        if extra == "chroma":  # R - B to start with (bright/dark-neutral, splits warm from cool)
            self.chroma = nn.Conv2d(3, 1, 1, bias=False)
            with torch.no_grad():
                self.chroma.weight.copy_(torch.tensor([0.5, 0.0, -0.5]).view(1, 3, 1, 1))

    def _extra_guides(self, fine_src, fine_guide, base_src, base_guide):
        if self.extra == "mask":
            return fine_guide, base_guide
        return self.chroma(fine_src), self.chroma(base_src)

    def forward(self, fine_src, base_src, base_fgr, base_pha, base_hid, want_fgr: bool = True,
                fine_guide=None, base_guide=None, memory=None):
        """``(fgr, pha, memory')`` at the size of ``fine_src``; ``fgr`` is None when ``want_fgr`` is False
        (then only the alpha channel's coefficients are upsampled: a quarter of the full-res work).
        ``fine_guide`` / ``base_guide``: the coarse mask at both sizes (used by ``extra="mask"``).

        ``memory`` [B,3,h,w] (the stabiliser state: the previous frame's alpha slope on the gray and
        offset, already moved onto this frame, and the blend weight per pixel): the alpha
        coefficients become ``coef + weight * (memory - coef)``, and ``memory'`` holds this frame's
        blended coefficients and :attr:`stabilizer` as the next weight (None without ``memory``).
        Weight 0 gives exactly the output without memory."""
        base_x = torch.cat([base_src, base_src.mean(dim=1, keepdim=True)], dim=1)
        base_y = torch.cat([base_fgr, base_pha], dim=1)
        r = self.radius
        mean_x = box_filter(base_x, r)
        mean_y = box_filter(base_y, r)
        cov_xy = box_filter(base_x * base_y, r) - mean_x * mean_y
        var_x = box_filter(base_x * base_x, r) - mean_x * mean_x
        size = (int(fine_src.shape[-2]), int(fine_src.shape[-1]))
        if self.extra != "none":
            fine_e, base_e = self._extra_guides(fine_src, fine_guide, base_src, base_guide)
            mean_e = box_filter(base_e, r)
            cov_ey = box_filter(base_e * base_pha, r) - mean_e * mean_y[:, 3:]
            var_e = box_filter(base_e * base_e, r) - mean_e * mean_e
            Ae = self.conv(torch.cat([cov_xy, var_x, base_hid, cov_ey, var_e], dim=1))
            A, c = Ae[:, :4], Ae[:, 4:]
            b = mean_y - A * mean_x
            b = torch.cat([b[:, :3], b[:, 3:] - c * mean_e], dim=1)
            if self.smooth:
                c = box_filter(c, self.smooth)
            extra = F.interpolate(c, size=size, mode="bilinear", align_corners=False) * fine_e
        else:
            A = self.conv(torch.cat([cov_xy, var_x, base_hid], dim=1))
            b = mean_y - A * mean_x
            extra = None
        if self.smooth:
            A, b = box_filter(A, self.smooth), box_filter(b, self.smooth)
        # full resolution: the gray guide as a sum of slices (cheaper than a channel ReduceMean in
        # ONNX Runtime), no 4-channel concat of the frame; its 1/3 is folded into A at the trunk
        # resolution (bilinear resizing is linear), saving a full-resolution multiply
        gray3 = fine_src[:, 0:1] + fine_src[:, 1:2] + fine_src[:, 2:3]
        a_gray, b_pha = A[:, 3:] * (1.0 / 3.0), b[:, 3:]
        new_memory = None
        if memory is not None:  # the stabiliser: blend the alpha coefficients with the carried ones
            if extra is not None:
                raise ValueError("the refiner's stabiliser memory needs refiner extra 'none'")
            coef = torch.cat([a_gray, b_pha], dim=1)
            coef = coef + memory[:, 2:3] * (memory[:, :2] - coef)
            new_memory = torch.cat([coef, torch.full_like(coef[:, :1], self.stabilizer)], dim=1)
            a_gray, b_pha = coef[:, :1], coef[:, 1:]
            b = torch.cat([b[:, :3], b_pha], dim=1)
        if not want_fgr:
            # two 1-channel resizes, not one 2-channel resize + Split: the Split copies two
            # full-resolution planes (1280x720, ONNX Runtime, 1 thread: ~1.2 ms of ~30)
            a1 = F.interpolate(a_gray, size=size, mode="bilinear", align_corners=False)
            b1 = F.interpolate(b_pha, size=size, mode="bilinear", align_corners=False)
            pha = a1 * gray3 + b1
            return None, (pha if extra is None else pha + extra), new_memory
        A = F.interpolate(torch.cat([A[:, :3], a_gray], dim=1), size=size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        pha = A[:, 3:] * gray3 + b[:, 3:]
        return A[:, :3] * fine_src + b[:, :3], (pha if extra is None else pha + extra), new_memory


def extend_refiner_state(state: dict, prefix: str, extra: str) -> dict:
    """A refiner state dict without an extra guide (``prefix`` + ``conv.…``) grown to ``extra``'s
    shapes: zero weights for the new inputs and the new slope, so the output is unchanged."""
    if extra == "none":
        return dict(state)
    out = dict(state)
    w0 = out[prefix + "conv.0.weight"]
    out[prefix + "conv.0.weight"] = torch.cat([w0, w0.new_zeros(w0.shape[0], 2, *w0.shape[2:])], dim=1)
    w6, b6 = out[prefix + "conv.6.weight"], out[prefix + "conv.6.bias"]
    out[prefix + "conv.6.weight"] = torch.cat([w6, w6.new_zeros(1, *w6.shape[1:])], dim=0)
    out[prefix + "conv.6.bias"] = torch.cat([b6, b6.new_zeros(1)], dim=0)
    if extra == "chroma":
        out[prefix + "chroma.weight"] = torch.tensor([0.5, 0.0, -0.5], dtype=w0.dtype).view(1, 3, 1, 1)
    return out
