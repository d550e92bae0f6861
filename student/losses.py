"""Distillation losses on alpha (and foreground). Inputs are ``[B,T,C,H,W]`` in 0..1."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    #: squared error on alpha (weighs the large, far-from-the-edge mistakes — spill, holes — that
    #: dominate dtSSD, an L2 metric, more than L1 does)
    mse: float = 0.0
    laplacian: float = 1.0
    gradient: float = 1.0
    temporal: float = 5.0
    fgr: float = 0.0
    feature: float = 0.0


def _gauss_kernel(device, dtype) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k = torch.outer(k, k)
    return (k / k.sum()).view(1, 1, 5, 5)


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Laplacian pyramid L1 (5 levels, 5x5 Gaussian), level i weighted 2**i (as in RVM/VideoMaMa)."""
    x = pred.flatten(0, 1)
    y = target.flatten(0, 1)
    k = _gauss_kernel(x.device, x.dtype)
    loss = x.new_zeros(())
    for i in range(levels):
        if min(x.shape[-2:]) < 4:
            break
        xd = F.avg_pool2d(F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k), 2)
        yd = F.avg_pool2d(F.conv2d(F.pad(y, (2, 2, 2, 2), mode="reflect"), k), 2)
        xu = F.interpolate(xd, size=x.shape[-2:], mode="bilinear", align_corners=False)
        yu = F.interpolate(yd, size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss + (2 ** i) * F.l1_loss(x - xu, y - yu)
        x, y = xd, yd
    return loss


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between finite-difference gradients (sharp, well-placed edges)."""
    def grads(a):
        return a[..., :, 1:] - a[..., :, :-1], a[..., 1:, :] - a[..., :-1, :]

    px, py = grads(pred)
    tx, ty = grads(target)
    return F.l1_loss(px, tx) + F.l1_loss(py, ty)


def temporal_loss(pred: torch.Tensor, target: torch.Tensor, prev_pred: torch.Tensor | None = None,
                  prev_target: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between frame differences of prediction and target (flicker / lag)."""
    if prev_pred is not None:
        pred = torch.cat([prev_pred[:, None], pred], dim=1)
        target = torch.cat([prev_target[:, None], target], dim=1)
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    return F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])


def fgr_loss(pred_fgr: torch.Tensor, target_fgr: torch.Tensor, target_alpha: torch.Tensor) -> torch.Tensor:
    """L1 on foreground colour where the target alpha is non-zero (+ its temporal term)."""
    w = (target_alpha > 1e-3).to(pred_fgr.dtype)
    denom = w.sum().clamp_min(1.0) * 3
    loss = ((pred_fgr - target_fgr).abs() * w).sum() / denom
    if pred_fgr.shape[1] > 1:
        dp = pred_fgr[:, 1:] - pred_fgr[:, :-1]
        dt = target_fgr[:, 1:] - target_fgr[:, :-1]
        loss = loss + 5 * (((dp - dt) ** 2) * w[:, 1:]).sum() / denom
    return loss


def feature_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity per position (after resizing the student map to the teacher's)."""
    if student_feat.shape[-2:] != teacher_feat.shape[-2:]:
        student_feat = F.interpolate(student_feat, size=teacher_feat.shape[-2:], mode="bilinear", align_corners=False)
    return (1 - F.cosine_similarity(student_feat, teacher_feat, dim=1)).mean()
