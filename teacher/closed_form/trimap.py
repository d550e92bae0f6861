"""Adaptive trimaps from coarse masks.

The unknown band is centred on the mask boundary. Its half-width adapts to

* the object's size (``size_frac`` × sqrt(mask area)): a coarse mask of a big object is off by
  more pixels than one of a small object;
* the mask's estimated coarseness: the distance from the mask boundary to the nearest image
  edge (75th percentile over boundary pixels), × ``coarse_gain``. An accurate mask hugs image
  edges (distance ≈ 0–2 px); an 8×/16×/32×-downsampled or polygon-simplified one does not;
* soft mask values (0.05 < m < 0.95) are always unknown.

All widths are in pixels of the image passed in (the solve resolution).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TrimapConfig:
    min_band: float = 3.0        # px, half-width floor
    size_frac: float = 0.02      # half-width >= size_frac * sqrt(area)
    coarse_gain: float = 1.5     # half-width >= coarse_gain * estimated boundary error
    max_frac: float = 0.12       # half-width <= max_frac * sqrt(area)
    max_band: float = 40.0       # px, absolute ceiling


def _disk(r: int) -> np.ndarray:
    r = max(1, int(round(r)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def estimate_coarseness(image: np.ndarray, binary: np.ndarray) -> float:
    """Typical distance (px) from the mask boundary to the nearest image edge."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    med = float(np.median(gray))
    edges = cv2.Canny(gray, max(10.0, 0.66 * med * 0.5), max(30.0, 1.33 * med * 0.5))
    if not edges.any():
        return 0.0
    dist = cv2.distanceTransform((edges == 0).astype(np.uint8), cv2.DIST_L2, 3)
    b = binary.astype(np.uint8)
    boundary = (b - cv2.erode(b, _disk(1))).astype(bool)
    if not boundary.any():
        return 0.0
    return float(np.percentile(dist[boundary], 75))


def band_width(image: np.ndarray, binary: np.ndarray, cfg: TrimapConfig = TrimapConfig()) -> tuple[float, float]:
    """(half-width px, estimated coarseness px) for this frame."""
    area = float(binary.sum())
    size = np.sqrt(area)
    coarse = estimate_coarseness(image, binary)
    r = max(cfg.min_band, cfg.size_frac * size, cfg.coarse_gain * coarse)
    r = min(r, max(cfg.min_band, cfg.max_frac * size), cfg.max_band)
    return float(r), coarse


def make_trimap(image: np.ndarray, mask: np.ndarray, cfg: TrimapConfig = TrimapConfig()) -> tuple[np.ndarray, dict]:
    """Trimap (float64: 0 bg, 0.5 unknown, 1 fg) from a coarse mask (float 0..1) and the image (uint8)."""
    binary = mask >= 0.5
    r, coarse = band_width(image, binary, cfg)
    b = binary.astype(np.uint8)
    k = _disk(r)
    fg = cv2.erode(b, k).astype(bool)
    bg = ~cv2.dilate(b, k).astype(bool)
    trimap = np.full(mask.shape, 0.5, np.float64)
    trimap[fg] = 1.0
    trimap[bg] = 0.0
    trimap[(mask > 0.05) & (mask < 0.95)] = 0.5
    return trimap, {"band": r, "coarseness": coarse}
