"""Adaptive trimaps from coarse masks.

The unknown band is centred on the mask boundary. Its half-width adapts to

* the object's size (``size_frac`` × sqrt(mask area)): a coarse mask of a big object is off by
  more pixels than one of a small object, and big objects have larger fuzzy regions;
* the mask's estimated coarseness (:func:`estimate_coarseness`: does the mask boundary sit on
  the image's edges?) scales it between ``coarse_lo`` and ``coarse_hi``;
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
    size_frac: float = 0.04      # half-width = size_frac * sqrt(area) * coarseness factor
    coarse_lo: float = 1.0       # factor for a mask that follows image edges (coarseness 0)
    coarse_hi: float = 2.0       # factor for a mask that ignores them (coarseness 1)
    aligned_ratio: float = 3.0   # boundary/ring gradient ratio at (and above) which coarseness is 0
    max_band: float = 48.0       # px, absolute ceiling


def _disk(r: float) -> np.ndarray:
    r = max(1, int(round(r)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def estimate_coarseness(image: np.ndarray, binary: np.ndarray, ring: int = 10, aligned_ratio: float = 3.0) -> float:
    """0 (the mask boundary lies on image edges) .. 1 (it ignores them).

    Ratio of the mean image-gradient magnitude on the mask boundary to that in a ring of
    ``ring`` px around it: an accurate mask's boundary sits on the strongest nearby edges
    (ratio >= ``aligned_ratio``), a downsampled or polygon-simplified one does not (ratio <= 0.5).
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    g = cv2.GaussianBlur(gray.astype(np.float32), (3, 3), 0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    b = binary.astype(np.uint8)
    boundary = (cv2.dilate(b, _disk(1)) - cv2.erode(b, _disk(1))).astype(bool)
    if not boundary.any():
        return 0.0
    around = cv2.dilate(boundary.astype(np.uint8), _disk(ring)).astype(bool) & ~boundary
    if not around.any():
        return 0.0
    ratio = float(mag[boundary].mean()) / (float(mag[around].mean()) + 1e-6)
    return float(np.clip((aligned_ratio - ratio) / (aligned_ratio - 0.5), 0.0, 1.0))


def band_width(image: np.ndarray, binary: np.ndarray, cfg: TrimapConfig = TrimapConfig()) -> tuple[float, float]:
    """(half-width px, estimated coarseness 0..1) for this frame."""
    size = float(np.sqrt(binary.sum()))
    coarse = estimate_coarseness(image, binary, aligned_ratio=cfg.aligned_ratio)
    factor = cfg.coarse_lo + (cfg.coarse_hi - cfg.coarse_lo) * coarse
    r = min(max(cfg.min_band, cfg.size_frac * size * factor), cfg.max_band)
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
