"""Matting losses on alpha (L1, Laplacian pyramid, gradient) plus the tracking terms
(segmentation BCE + dice on the mask logits, occlusion-score BCE)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gauss_kernel(device, dtype):
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k = torch.outer(k, k)
    return (k / k.sum()).view(1, 1, 5, 5)


def laplacian_loss(pred: torch.Tensor, gt: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """pred, gt [N,1,H,W]: sum over levels of L1 between Laplacian pyramid bands (x 2^level)."""
    k = _gauss_kernel(pred.device, pred.dtype)
    loss = pred.new_zeros(())
    a, b = pred, gt
    for lvl in range(levels):
        if min(a.shape[-2:]) < 5:
            break
        ga = F.conv2d(F.pad(a, (2, 2, 2, 2), mode="reflect"), k)
        gb = F.conv2d(F.pad(b, (2, 2, 2, 2), mode="reflect"), k)
        loss = loss + (2 ** lvl) * F.l1_loss(a - ga, b - gb)
        a, b = F.avg_pool2d(ga, 2), F.avg_pool2d(gb, 2)
    return loss


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L1 between the finite-difference gradients of pred and gt ([N,1,H,W])."""
    dxp, dyp = pred[..., :, 1:] - pred[..., :, :-1], pred[..., 1:, :] - pred[..., :-1, :]
    dxg, dyg = gt[..., :, 1:] - gt[..., :, :-1], gt[..., 1:, :] - gt[..., :-1, :]
    return F.l1_loss(dxp, dxg) + F.l1_loss(dyp, dyg)


def seg_loss(logits: torch.Tensor, gt: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """BCE + dice on SAM2's logits vs the hard mask, on frames where the object is present."""
    if not bool(present.any()):
        return logits.new_zeros(())
    lg, tg = logits[present], (gt[present] > 0.5).float()
    lg = lg.clamp(-30, 30)  # the object gate writes -1024 where absent
    bce = F.binary_cross_entropy_with_logits(lg, tg)
    p = torch.sigmoid(lg).flatten(1)
    t = tg.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def matting_losses(out: dict, gt: torch.Tensor, weights: dict) -> dict:
    """out from ``Sam2Matte.track_clip``; gt [B,T,H,W] alpha 0..1. Returns named terms + ``loss``."""
    alpha = out["alpha"].flatten(0, 1).unsqueeze(1).float()
    g = gt.flatten(0, 1).unsqueeze(1).float()
    present = (gt > 0.5).flatten(2).sum(-1) >= 4  # [B,T]
    terms = {
        "l1": F.l1_loss(alpha, g),
        "lap": laplacian_loss(alpha, g),
        "grad": gradient_loss(alpha, g),
        "seg": seg_loss(out["logits"].float(), gt.float(), present),
        "obj": F.binary_cross_entropy_with_logits(out["obj_score"].float(), present.float()),
    }
    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    terms["loss"] = total
    return terms
