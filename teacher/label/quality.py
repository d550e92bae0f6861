"""Per-clip quality scores of a pseudo-label, computed while streaming (numpy only).

* ``mask_agreement`` — mean IoU of the binarised alpha (> 0.5) with the input mask (> 0.5);
  frames where both are empty count as 1;
* ``temporal_stability`` — 1 − mean |α_t − α_{t−1}| over frames (1 = no change at all);
  ``flicker`` — the same change measured only where the input mask did *not* change
  (alpha change that the guidance does not explain), ×1e3;
* ``soft_share`` — share of pixels with 0.02 < α < 0.98;
* ``edge_sharpness`` — mean alpha gradient magnitude (per pixel) over transition pixels
  (0.05 < α < 0.95), 0..~1; blurry mattes score low;
* ``empty_mask_frames`` / ``empty_mask`` — frames with an empty mask (alpha forced to 0);
* ``score`` — ``mask_agreement × exp(−flicker / 20)``, in 0..1 (0 for an all-empty-mask clip);
  ``--min-quality`` compares it.

Statistics are computed on a copy downscaled to at most 256 px on the long side.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

MAX_SIDE = 256


def _small(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(1.0, MAX_SIDE / max(h, w))
    if s >= 1.0:
        return a.astype(np.float32, copy=False)
    return cv2.resize(a.astype(np.float32), (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


class QualityAccumulator:
    def __init__(self):
        self.n = 0
        self.iou_sum = 0.0
        self.change_sum = 0.0
        self.flicker_sum = 0.0
        self.soft_sum = 0.0
        self.sharp_sum = 0.0
        self.sharp_n = 0
        self.empty = 0
        self._prev_a = None
        self._prev_m = None

    def update(self, alpha: np.ndarray, mask: np.ndarray) -> None:
        a, m = _small(alpha), _small(mask)
        if m.shape != a.shape:
            m = cv2.resize(m, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR)
        ab, mb = a > 0.5, m > 0.5
        union = np.logical_or(ab, mb).sum()
        self.iou_sum += 1.0 if union == 0 else float(np.logical_and(ab, mb).sum() / union)
        if float(m.max(initial=0.0)) < 1e-3:
            self.empty += 1
        self.soft_sum += float(((a > 0.02) & (a < 0.98)).mean())
        trans = (a > 0.05) & (a < 0.95)
        if trans.any():
            gx = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3) / 4.0
            gy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3) / 4.0
            self.sharp_sum += float(np.sqrt(gx * gx + gy * gy)[trans].mean())
            self.sharp_n += 1
        if self._prev_a is not None and self._prev_a.shape == a.shape:
            d = np.abs(a - self._prev_a)
            self.change_sum += float(d.mean())
            still = np.abs(m - self._prev_m) < 0.5
            self.flicker_sum += float(d[still].mean()) if still.any() else 0.0
        self._prev_a, self._prev_m = a, m
        self.n += 1

    def result(self) -> dict:
        n = max(1, self.n)
        pairs = max(1, self.n - 1)
        agreement = self.iou_sum / n
        flicker = 1e3 * self.flicker_sum / pairs
        empty = self.n > 0 and self.empty == self.n
        score = 0.0 if empty else agreement * math.exp(-flicker / 20.0)  # an all-empty clip teaches nothing
        return {
            "score": round(score, 4),
            "mask_agreement": round(agreement, 4),
            "temporal_stability": round(1.0 - self.change_sum / pairs, 4),
            "flicker": round(flicker, 3),
            "soft_share": round(self.soft_sum / n, 4),
            "edge_sharpness": round(self.sharp_sum / self.sharp_n, 4) if self.sharp_n else 0.0,
            "empty_mask_frames": self.empty,
            "empty_mask": self.n > 0 and self.empty == self.n,
            "frames": self.n,
        }
