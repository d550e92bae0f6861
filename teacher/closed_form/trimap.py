"""Adaptive trimaps from coarse masks.

The unknown band is centred on the mask boundary. Its half-width adapts to

* the object's size (``size_frac`` × sqrt(mask area)): a coarse mask of a big object is off by
  more pixels than one of a small object, and big objects have larger fuzzy regions;
* the mask's estimated coarseness (:func:`estimate_coarseness`: does the mask boundary sit on
  the image's edges?) scales it between ``coarse_lo`` and ``coarse_hi``;
* soft mask values (0.05 < m < 0.95) are always unknown.

Then (:func:`snap_band`, ``snap`` on by default, used by the teacher as a second pass) the band is
*snapped to the image*: GrabCut (OpenCV, colour GMMs + graph cut) relabels the band, seeded with
the known regions as sure foreground/background and the mask inside the band as "probably", and
the unknown region shrinks to ``snap_frac`` × the half-width around GrabCut's boundary, plus every
pixel the first closed-form pass found soft (hair, transparency). A coarse mask of a solid object
over a textured background then gets a narrow unknown band on the real edge instead of a wide one
that closed-form matting leaks through; pixels outside the original band keep their labels.

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
    snap: bool = True            # re-centre a narrower band on GrabCut's boundary (see module doc)
    snap_frac: float = 0.5       # snapped half-width = snap_frac * half-width (>= min_band)
    snap_iters: int = 3          # GrabCut iterations
    snap_keep_soft: float = 0.1  # pass-1 alpha in (this, 1 - this) stays unknown after snapping


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


def snap_band(image: np.ndarray, binary: np.ndarray, trimap: np.ndarray, r: float,
              cfg: TrimapConfig = TrimapConfig(), keep_unknown: np.ndarray | None = None) -> np.ndarray | None:
    """The trimap with its unknown band re-centred on GrabCut's boundary (None: nothing to snap).

    ``keep_unknown`` (bool, optional): pixels that stay unknown whatever GrabCut says (the teacher
    passes what its first closed-form pass found soft)."""
    unknown = trimap == 0.5
    if not unknown.any():
        return None
    h, w = binary.shape
    ys, xs = np.nonzero(unknown)
    pad = int(np.ceil(r)) + 8   # enough sure pixels around the band for GrabCut's colour models
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    t = trimap[y0:y1, x0:x1]
    # GrabCut needs enough samples of both colour models to fit its 5-component GMMs
    if np.count_nonzero(t == 1.0) < 50 or np.count_nonzero(t == 0.0) < 50:
        return None
    gc = np.where(t == 1.0, cv2.GC_FGD, np.where(t == 0.0, cv2.GC_BGD,
                  np.where(binary[y0:y1, x0:x1], cv2.GC_PR_FGD, cv2.GC_PR_BGD))).astype(np.uint8)
    img = np.ascontiguousarray(image[y0:y1, x0:x1] if image.ndim == 3 else
                               cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_GRAY2RGB))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)   # GrabCut's k-means initialisation draws from OpenCV's global RNG
    cv2.grabCut(img, gc, None, bgd, fgd, int(cfg.snap_iters), cv2.GC_INIT_WITH_MASK)
    seg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    k = _disk(max(cfg.min_band, cfg.snap_frac * r))
    crop = np.full(t.shape, 0.5, np.float64)
    crop[cv2.erode(seg, k).astype(bool)] = 1.0
    crop[~cv2.dilate(seg, k).astype(bool)] = 0.0
    crop[t != 0.5] = t[t != 0.5]   # outside the original band nothing changes
    out = trimap.copy()
    out[y0:y1, x0:x1] = crop
    if keep_unknown is not None:
        out[keep_unknown & (trimap == 0.5)] = 0.5
    return out
