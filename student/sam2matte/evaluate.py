"""Tracking quality of a SAM2-Matte model on synthetic clips prompted on frame 0 only."""
from __future__ import annotations

import numpy as np
import torch

from .data import synthetic_clip, to_tensors


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = pred > 0.5, gt > 0.5
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


@torch.no_grad()
def evaluate_tracking(model, seeds, frames: int = 16, prompt: str = "click", p_exit: float = 0.0) -> dict:
    """Mean IoU(alpha>0.5, GT>0.5) and MAD over all frames of clips ``seeds``, against a static
    first-frame mask (the GT of frame 0 held for every frame) and a static first-frame GT box."""
    from .system import simulate_prompt

    rng = np.random.default_rng(0)
    size = model.config.image_size
    ious, mads, static_mads, static_ious, box_ious = [], [], [], [], []
    for seed in seeds:
        f, a = synthetic_clip(int(seed), frames, size, p_exit)
        batch = to_tensors(f, a, size)
        pts, lbs, msk = simulate_prompt(batch["alpha"][None, 0], prompt, rng)
        out = model.track_clip(batch["frames"][None], pts, lbs, msk)["alpha"][0].numpy()
        gt = batch["alpha"].numpy()
        ys, xs = np.nonzero(gt[0] > 0.5)
        box = np.zeros_like(gt[0])
        if len(xs):
            box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 1.0
        for i in range(frames):
            box_ious.append(iou(box, gt[i]))
            ious.append(iou(out[i], gt[i]))
            mads.append(float(np.abs(out[i] - gt[i]).mean()))
            static_ious.append(iou(gt[0], gt[i]))
            static_mads.append(float(np.abs(gt[0] - gt[i]).mean()))
    return {"iou": float(np.mean(ious)), "mad": float(np.mean(mads)), "static_iou": float(np.mean(static_ious)),
            "static_mad": float(np.mean(static_mads)),
            "static_box_iou": float(np.mean(box_ious)), "clips": len(list(seeds)), "frames": frames}


@torch.no_grad()
def memory_influence(model, seed: int = 3_000_001, frames: int = 4) -> dict:
    """How much the memory steers tracking: the clip is prompted on frame 0 with its true mask and
    then with the inverted mask (SAM2's mask-as-output path, so the memory holds exactly that);
    returns the mean |logit difference| on the tracked frames and the logits' std. A tracker that
    reads its memory changes a lot; the session-3 model: 1e-4 (std 0.9), i.e. memory-blind."""
    f, a = synthetic_clip(int(seed), frames, model.config.image_size, 0.0)
    batch = to_tensors(f, a, model.config.image_size)
    msk = (batch["alpha"][None, None, 0] > 0.5).float()
    o1 = model.track_clip(batch["frames"][None], None, None, msk)["logits"][0, 1:]
    o2 = model.track_clip(batch["frames"][None], None, None, 1 - msk)["logits"][0, 1:]
    return {"influence": float((o1 - o2).abs().mean()), "logit_std": float(o1.std())}
